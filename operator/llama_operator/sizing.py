"""The sizing model: does a model fit a GPU shape, and with how much KV cache.

Per GPU, within the engine's memory fraction: weights / TP + KV cache / TP + a fixed
runtime overhead must fit. Weights are parameters x bytes per parameter of the
serving precision; the KV cache needs 2 x layers x kv_heads x head_dim x 2 bytes per
token and must hold ``concurrency`` sequences of ``maxModelLen`` tokens. Pure
arithmetic, shared by the planner, its brute-force check and the tests.
"""

from __future__ import annotations

import dataclasses
import math

from llama_operator import api, facts

GIB = 1024**3

# Bytes per parameter. 8-bit and 4-bit formats carry scales (and usually keep the
# embeddings and LM head in 16-bit), hence a few percent over 1 and 0.5.
BYTES_PER_PARAMETER: dict[api.Quantization, float] = {
    "none": 2.0,
    "fp8": 1.03,
    "eetq": 1.03,
    "bitsandbytes-int8": 1.03,
    "awq": 0.56,
    "gptq": 0.56,
    "bitsandbytes-nf4": 0.56,
}
BITS: dict[api.Quantization, int] = {
    "none": 16,
    "fp8": 8,
    "eetq": 8,
    "bitsandbytes-int8": 8,
    "awq": 4,
    "gptq": 4,
    "bitsandbytes-nf4": 4,
}
# Higher precision first: the planner's tie-break after cost.
PRECISION_ORDER: tuple[api.Quantization, ...] = (
    "none",
    "fp8",
    "eetq",
    "bitsandbytes-int8",
    "awq",
    "gptq",
    "bitsandbytes-nf4",
)
KV_BYTES = 2  # the KV cache stays 16-bit; fp8 KV is an engine flag users can add
CONTEXT_GRANULARITY = 256
# "auto" never plans less context than this (or the model's own maximum if smaller):
# a Llama endpoint that cannot hold a 4k-token conversation is not healthy.
MIN_AUTO_CONTEXT = 4096


@dataclasses.dataclass(frozen=True)
class Fit:
    """Memory arithmetic of one candidate; ``feasible`` is the verdict."""

    weights_gib: float
    usable_per_gpu_gib: float
    kv_cache_gib: float  # per replica, what the engine will allocate
    max_model_len: int
    max_sequences: int
    estimated_per_gpu_gib: float
    feasible: bool


def weights_gib(model: facts.ModelFacts, quantization: api.Quantization) -> float:
    return model.parameters * BYTES_PER_PARAMETER[quantization] / GIB


def kv_gib_per_token(model: facts.ModelFacts) -> float:
    return model.kv_bytes_per_token(KV_BYTES) / GIB


def min_context(model: facts.ModelFacts) -> int:
    return min(MIN_AUTO_CONTEXT, model.max_context)


def fit(
    *,
    model: facts.ModelFacts,
    quantization: api.Quantization,
    gpu_memory_gib: float,
    tensor_parallel: int,
    memory_fraction: float,
    overhead_gib: float,
    max_model_len: int | None,
    concurrency: int,
) -> Fit:
    """Size one candidate. ``max_model_len=None`` picks the largest healthy context."""
    weights = weights_gib(model, quantization)
    usable = gpu_memory_gib * memory_fraction
    kv_cache = (usable - overhead_gib) * tensor_parallel - weights
    per_token = kv_gib_per_token(model)
    tokens = int(kv_cache / per_token) if kv_cache > 0 else 0
    if max_model_len is None:
        length = tokens // concurrency
        if length >= model.max_context:
            length = model.max_context
        elif length > CONTEXT_GRANULARITY:
            length -= length % CONTEXT_GRANULARITY  # engines like round block multiples
        needed = min_context(model)
    else:
        length = max_model_len
        needed = max_model_len
    sequences = tokens // length if length > 0 else 0
    feasible = (
        kv_cache > 0
        and length >= needed
        and length <= model.max_context
        and sequences >= concurrency
    )
    required_kv = length * concurrency * per_token
    estimated = (weights + required_kv) / tensor_parallel + overhead_gib
    return Fit(
        weights_gib=weights,
        usable_per_gpu_gib=usable,
        kv_cache_gib=max(kv_cache, 0.0),
        max_model_len=max(length, 0),
        max_sequences=sequences,
        estimated_per_gpu_gib=estimated,
        feasible=feasible,
    )


def min_tensor_parallel(
    *,
    model: facts.ModelFacts,
    quantization: api.Quantization,
    gpu_memory_gib: float,
    memory_fraction: float,
    overhead_gib: float,
    max_model_len: int | None,
    concurrency: int,
) -> int | None:
    """Smallest real-valued GPU count whose memory holds weights and the needed KV cache.

    Solves (usable - overhead) x tp - weights >= concurrency x length x kv_per_token
    for tp, so the planner can skip every smaller degree without sizing it.
    """
    per_gpu = gpu_memory_gib * memory_fraction - overhead_gib
    if per_gpu <= 0:
        return None
    length = max_model_len if max_model_len is not None else min_context(model)
    needed = weights_gib(model, quantization) + concurrency * length * kv_gib_per_token(model)
    return max(1, math.ceil(needed / per_gpu - 1e-9))
