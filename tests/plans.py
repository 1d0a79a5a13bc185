"""A Plan to render from, for tests of any tier that need one without planning (the
engine renderers, the security checks, the TGI log-filter test)."""

from __future__ import annotations

from typing import Any

from llama_operator import api


def make_plan(**overrides: Any) -> api.Plan:
    """Llama-3.1-8B on one L4 at 16-bit; ``overrides`` replace any field."""
    base: dict[str, Any] = {
        "engine": "vllm",
        "pool": "l4",
        "gpuProduct": "NVIDIA-L4",
        "gpusPerReplica": 1,
        "tensorParallel": 1,
        "quantization": "none",
        "dtype": "bfloat16",
        "maxModelLen": 8192,
        "maxConcurrentSequences": 4,
        "gpuMemoryUtilization": 0.9,
        "weightsGiB": 14.96,
        "estimatedGPUMemoryGiB": 20.0,
        "kvCacheGiB": 4.0,
        "reason": "test plan",
    }
    return api.Plan(**{**base, **overrides})
