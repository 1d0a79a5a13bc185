"""vLLM: how a Plan becomes the command line of ``vllm serve``.

The engine-specific half of the serving container, kept pure: ``engines`` (the
package) asks this module for the arguments and wraps them in the parts both engines
share (ports, probes, resources, security, volumes). The flag names and how each
quantization is spelled are the release's profile (``data/engines.yaml``, read from the
vLLM wheel's ``vllm/engine/arg_utils.py`` and ``cli_args.py``, checked by
tests/engines/test_vllm_source.py).
"""

from __future__ import annotations

from llama_operator import api
from llama_operator.planning import engine_profiles
from llama_operator.serving.engines import flags, lora
from llama_operator.serving.engines.input_limits import limits as engines_limits


def args(
    *,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    profile: engine_profiles.Profile,
    host: str,
    port: int,
) -> list[str]:
    """Arguments after ``vllm serve``: the planned flags, then the user's engineArgs."""
    quantization = flags.quantization(profile=profile, quantization=plan.quantization)
    limits = engines_limits(spec=spec, plan=plan)
    flag = profile.flag
    result = [
        spec.model.id,
        flag("revision"),
        spec.model.revision,
        flag("servedModelName"),
        spec.model.servedName or spec.model.id,
        flag("host"),
        host,
        flag("port"),
        str(port),
        flag("tensorParallel"),
        str(plan.tensorParallel),
        # The planned context, or spec.limits.maxTokensPerRequest below it: vLLM refuses
        # a request whose prompt plus max_tokens is longer.
        flag("maxModelLen"),
        str(limits.max_tokens_per_request),
        flag("memoryFraction"),
        str(plan.gpuMemoryUtilization),
        flag("dtype"),
        plan.dtype,
    ]
    if quantization is not None:
        result += [flag("quantization"), quantization]
    # Sequences scheduled at once; more wait in the queue (which autoscaling reads).
    result += [flag("maxConcurrentSequences"), str(limits.max_concurrent_sequences)]
    # The adapters the plan serves (none: no LoRA flag at all).
    result += lora.args(plan=plan, profile=profile)
    # Last, so a user's flag wins over a planned one (argparse keeps the last value).
    return result + list(spec.engineArgs)
