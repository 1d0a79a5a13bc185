"""TGI (text-generation-inference): how a Plan becomes ``text-generation-launcher`` flags.

The engine-specific half of the serving container, kept pure: ``engines`` (the
package) asks this module for the command and the arguments and wraps them in the
parts both engines share (ports, probes, resources, security, volumes). TGI has been
in maintenance mode upstream since 2025-12; it stays supported, never the default.
"""

from __future__ import annotations

from llama_operator import api
from llama_operator.engines import flags
from llama_operator.engines.input_limits import limits as engines_limits

ENGINE: api.Engine = "tgi"
DISPLAY_NAME = "TGI"

# Empty: the image's entrypoint is text-generation-launcher, and keeping it lets the
# image own how the launcher is started.
COMMAND: tuple[str, ...] = ()
# The launcher's --api-key, read from the environment (clap's env fallback): a Bearer
# token required on the generation routes; /health and /metrics stay open.
API_KEY_ENV = "API_KEY"

# Plan quantization -> value of ``--quantize`` (None: no flag, 16-bit).
QUANTIZATION: dict[api.Quantization, str | None] = {
    "none": None,
    "fp8": "fp8",
    "eetq": "eetq",
    # TGI's plain "bitsandbytes" is the 8-bit LLM.int8() mode.
    "bitsandbytes-int8": "bitsandbytes",
    "bitsandbytes-nf4": "bitsandbytes-nf4",
    "awq": "awq",
    "gptq": "gptq",
}


def quantization_flag(*, quantization: api.Quantization) -> str | None:
    """The ``--quantize`` value for a planned quantization, or None for 16-bit."""
    return flags.quantization(table=QUANTIZATION, engine=DISPLAY_NAME, quantization=quantization)


def args(*, spec: api.LlamaDeploymentSpec, plan: api.Plan, host: str, port: int) -> list[str]:
    """Launcher arguments: the planned flags, then the user's engineArgs."""
    quantization = quantization_flag(quantization=plan.quantization)
    limits = engines_limits(spec=spec, plan=plan)
    result = [
        "--model-id",
        spec.model.id,
        "--revision",
        spec.model.revision,
        "--hostname",
        host,
        # The image defaults to port 80, which a non-root user cannot bind.
        "--port",
        str(port),
        "--num-shard",
        str(plan.tensorParallel),
        # TGI counts the prompt and the generated tokens separately; one token must be
        # left for generation, so the prompt gets the planned context minus one.
        "--max-input-tokens",
        str(limits.max_tokens_per_request - 1),
        "--max-total-tokens",
        str(limits.max_tokens_per_request),
        "--cuda-memory-fraction",
        str(plan.gpuMemoryUtilization),
    ]
    if "--max-concurrent-requests" not in _flags(spec.engineArgs):
        # Requests in flight (queued or running) per replica; TGI answers more with 429,
        # which is backpressure a client or gateway can act on. Left out when engineArgs
        # names it, since the launcher refuses a flag given twice.
        result += ["--max-concurrent-requests", str(limits.max_concurrent_sequences)]
    if quantization is not None:
        result += ["--quantize", quantization]
    else:
        # TGI refuses --dtype together with --quantize, so the 16-bit type is only
        # named when the weights stay 16-bit.
        result += ["--dtype", plan.dtype]
    # Last. TGI's parser refuses a flag given twice, so an engineArg that repeats a
    # planned flag stops the launcher with a clear error instead of silently winning.
    return result + list(spec.engineArgs)


def _flags(arguments: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in arguments if arg.startswith("--")}
