"""vLLM: how a Plan becomes the command line of ``vllm serve``.

The engine-specific half of the serving container, kept pure: ``engines`` (the
package) asks this module for the command and the arguments and wraps them in the
parts both engines share (ports, probes, resources, security, volumes). Flags are
those of ``vllm serve`` as listed in the design notes (``shared/design/facts.md``).
"""

from __future__ import annotations

from llama_operator import api
from llama_operator.engines import flags
from llama_operator.engines.input_limits import limits as engines_limits

ENGINE: api.Engine = "vllm"
DISPLAY_NAME = "vLLM"

# The image's entrypoint changed between releases (api_server module, then
# ``vllm serve``); naming the command keeps the arguments meaningful on both.
COMMAND: tuple[str, ...] = ("vllm", "serve")
# vLLM reads its API key from here when --api-key is not given, and then requires it on
# every /v1 route; /health and /metrics stay open.
API_KEY_ENV = "VLLM_API_KEY"

# Plan quantization -> value of ``--quantization`` (None: no flag, the checkpoint's
# own 16-bit precision). Anything missing here vLLM cannot serve.
QUANTIZATION: dict[api.Quantization, str | None] = {
    "none": None,
    "fp8": "fp8",
    # Pre-quantized checkpoints declare their format in config.json; vLLM then picks the
    # fast Marlin kernel where the GPU allows. Naming "awq"/"gptq" explicitly would force
    # the legacy fp16-only kernels instead.
    "awq": None,
    "gptq": None,
    # vLLM names the 4-bit NF4 load-time quantization just "bitsandbytes".
    "bitsandbytes-nf4": "bitsandbytes",
}


def quantization_flag(*, quantization: api.Quantization) -> str | None:
    """The ``--quantization`` value for a planned quantization, or None for 16-bit."""
    return flags.quantization(table=QUANTIZATION, engine=DISPLAY_NAME, quantization=quantization)


def args(*, spec: api.LlamaDeploymentSpec, plan: api.Plan, host: str, port: int) -> list[str]:
    """Arguments after ``vllm serve``: the planned flags, then the user's engineArgs."""
    quantization = quantization_flag(quantization=plan.quantization)
    limits = engines_limits(spec=spec, plan=plan)
    result = [
        spec.model.id,
        "--revision",
        spec.model.revision,
        "--served-model-name",
        spec.model.servedName or spec.model.id,
        "--host",
        host,
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(plan.tensorParallel),
        # The planned context, or spec.limits.maxTokensPerRequest below it: vLLM refuses
        # a request whose prompt plus max_tokens is longer.
        "--max-model-len",
        str(limits.max_tokens_per_request),
        "--gpu-memory-utilization",
        str(plan.gpuMemoryUtilization),
        "--dtype",
        plan.dtype,
    ]
    if quantization is not None:
        result += ["--quantization", quantization]
    # Sequences scheduled at once; more wait in the queue (which autoscaling reads).
    result += ["--max-num-seqs", str(limits.max_concurrent_sequences)]
    # Last, so a user's flag wins over a planned one (argparse keeps the last value).
    return result + list(spec.engineArgs)
