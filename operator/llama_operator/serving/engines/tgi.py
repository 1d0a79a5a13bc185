"""TGI (text-generation-inference): how a Plan becomes ``text-generation-launcher`` flags.

The engine-specific half of the serving container, kept pure: ``engines`` (the
package) asks this module for the arguments and wraps them in the parts both engines
share (ports, probes, resources, security, volumes). The flag names and how each
quantization is spelled are the release's profile (``data/engines.yaml``, from
launcher/src/main.rs of the TGI release). TGI has been in maintenance mode upstream since
2025-12; it stays supported, never the default.
"""

from __future__ import annotations

from llama_operator import api
from llama_operator.planning import engine_profiles
from llama_operator.serving.engines import flags
from llama_operator.serving.engines.input_limits import limits as engines_limits


def args(
    *,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    profile: engine_profiles.Profile,
    host: str,
    port: int,
) -> list[str]:
    """Launcher arguments: the planned flags, then the user's engineArgs."""
    quantization = flags.quantization(profile=profile, quantization=plan.quantization)
    limits = engines_limits(spec=spec, plan=plan)
    flag = profile.flag
    result = [
        flag("model"),
        spec.model.id,
        flag("revision"),
        spec.model.revision,
        flag("host"),
        host,
        # The image defaults to port 80; every engine serves on the same port here.
        flag("port"),
        str(port),
        flag("tensorParallel"),
        str(plan.tensorParallel),
        # TGI counts the prompt and the generated tokens separately; one token must be
        # left for generation, so the prompt gets the planned context minus one.
        flag("maxInputTokens"),
        str(limits.max_tokens_per_request - 1),
        flag("maxModelLen"),
        str(limits.max_tokens_per_request),
        flag("memoryFraction"),
        str(plan.gpuMemoryUtilization),
    ]
    concurrency = flag("maxConcurrentSequences")
    if concurrency not in _flags(spec.engineArgs):
        # Requests in flight (queued or running) per replica; TGI answers more with 429,
        # which is backpressure a client or gateway can act on. Left out when engineArgs
        # names it, since the launcher refuses a flag given twice.
        result += [concurrency, str(limits.max_concurrent_sequences)]
    if quantization is not None:
        result += [flag("quantization"), quantization]
    else:
        # TGI refuses --dtype together with --quantize, so the 16-bit type is only
        # named when the weights stay 16-bit.
        result += [flag("dtype"), plan.dtype]
    # Last. TGI's parser refuses a flag given twice, so an engineArg that repeats a
    # planned flag stops the launcher with a clear error instead of silently winning.
    return result + list(spec.engineArgs)


def _flags(arguments: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in arguments if arg.startswith("--")}
