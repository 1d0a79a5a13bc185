"""The search: candidate replicas enumerated, sized and ranked.

Second step of planning, after ``plan_request``: every (pool, quantization,
tensor-parallel degree) the request's policy and pins allow is a ``Candidate``, sized
with ``sizing.fit``; ``rank`` orders them and ``best`` keeps the first feasible one.
``candidates_pruned`` sizes only the degrees that can win for each (pool, quantization): the
smallest that fits, or on a free pool every degree (the KV cache breaks the tie);
``candidates_exhaustive`` sizes them all (the reference ``planner.plan_exhaustive``
checks against). ``diagnosis`` reruns the search on relaxed requests to say what would
fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from llama_operator import api
from llama_operator.planning import facts, plan_request, pools, sizing

TP_DEGREES = (1, 2, 4, 8)

POLICY_BITS: dict[api.Optimize, int] = {"quality": 16, "balanced": 8, "cost": 4}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to serve a replica: a pool, a precision and a degree, sized on that pool."""

    pool: pools.Pool
    pool_index: int
    quantization: api.Quantization
    tensor_parallel: int
    fit: sizing.Fit

    @property
    def cost_per_hour(self) -> float:
        return self.tensor_parallel * self.pool.rank_price


def rank(candidate: Candidate) -> tuple[float, int, float, int, int]:
    """Smaller is better: cost, precision, KV headroom, GPU count, pool preference."""
    return (
        candidate.cost_per_hour,
        sizing.PRECISION_ORDER.index(candidate.quantization),
        -candidate.fit.kv_cache_gib,
        candidate.tensor_parallel,
        candidate.pool_index,
    )


def quantizations(request: plan_request.Request, pool: pools.Pool) -> list[api.Quantization]:
    """Serving precisions allowed by the checkpoint, pins, policy, engine and GPU."""
    supported = request.profile.quantizations
    if request.checkpoint != "none":
        # A pre-quantized checkpoint has exactly one serving precision; the policy does
        # not apply because the user chose the precision by choosing the repository.
        wanted: list[api.Quantization] = [request.checkpoint]
    elif request.quantization in ("awq", "gptq"):
        # awq and gptq are checkpoint formats, not load-time quantizations: without a
        # pre-quantized repository there is nothing to serve at that precision.
        wanted = []
    elif request.quantization != "auto":
        wanted = [request.quantization]
    else:
        floor = POLICY_BITS[request.optimize]
        wanted = [
            q
            for q in sizing.PRECISION_ORDER
            if sizing.BITS[q] >= floor and q not in ("awq", "gptq")
        ]
    return [q for q in wanted if q in supported and pool.capability >= supported[q].minCapability]


def divides(model: facts.ModelFacts, tp: int) -> bool:
    """Whether tensor-parallel degree ``tp`` gives each GPU a whole share of the heads.

    vLLM refuses a degree that does not divide the attention heads: "Total number of
    attention heads (H) must be divisible by tensor parallel size (T)"
    (ModelConfig.verify_with_parallel_config, vllm/config/model.py, 0.24.0 and 0.34.0).
    KV heads it splits with ``divide()`` or, when T >= the KV heads, replicates onto
    T / KV GPUs each (QKVParallelLinear, vllm/model_executor/layers/linear.py, same
    releases). TGI 3.3.7 refuses both: "`num_heads` must be divisible by `num_shards`"
    and "`num_key_value_heads` must be divisible by `num_shards`" (FlashLlamaAttention,
    server/text_generation_server/models/custom_modeling/flash_llama_modeling.py). The
    planner applies TGI's rule to both engines: replicated KV heads would hold more KV
    cache per GPU than ``sizing.fit`` counts.
    """
    return model.attention_heads % tp == 0 and model.kv_heads % tp == 0


def degrees(request: plan_request.Request, pool: pools.Pool) -> list[int]:
    """Tensor-parallel degrees that divide the heads and fit one node."""
    allowed = [tp for tp in TP_DEGREES if tp <= pool.gpusPerNode and divides(request.model, tp)]
    if request.tensor_parallel is not None:
        allowed = [tp for tp in allowed if tp == request.tensor_parallel]
    return allowed


def size(
    request: plan_request.Request, pool: pools.Pool, index: int, q: api.Quantization, tp: int
) -> Candidate:
    return Candidate(
        pool=pool,
        pool_index=index,
        quantization=q,
        tensor_parallel=tp,
        fit=sizing.fit(
            model=request.model,
            quantization=q,
            gpu_memory_gib=pool.memory_gib,
            tensor_parallel=tp,
            max_model_len=request.max_model_len,
            concurrency=request.concurrency,
            **_memory_terms(request, pool),
        ),
    )


def _memory_terms(request: plan_request.Request, pool: pools.Pool) -> dict[str, Any]:
    """What ``sizing`` needs of the request and the pool beyond the candidate itself."""
    return {
        "memory_fraction": request.memory_fraction,
        "memory": request.profile.memory,
        "product": pool.gpuProduct,
        "scheduled_sequences": request.scheduled_sequences,
        "overhead_gib": request.overhead_gib,
        "extra_gib": request.headroom_gib,
        "kv_correction": request.kv_corrections.get(pool.gpuProduct, 1.0),
        "lora": request.lora,
    }


def candidates_exhaustive(request: plan_request.Request) -> Iterable[Candidate]:
    """Every allowed candidate, sized (feasible or not)."""
    for index, pool in enumerate(request.pools):
        for q in quantizations(request, pool):
            for tp in degrees(request, pool):
                yield size(request, pool, index, q, tp)


def candidates_pruned(request: plan_request.Request) -> Iterable[Candidate]:
    """For each (pool, quantization), only the degree that can win."""
    for index, pool in enumerate(request.pools):
        allowed = degrees(request, pool)
        if not allowed:
            continue
        for q in quantizations(request, pool):
            if pool.rank_price == 0:
                # Free GPUs: every degree costs the same and the tie-break is the KV
                # cache, which does not always grow with the degree: at TP >= 2 each GPU
                # also holds the larger CUDA context and the communication buffers, so a
                # small model on a small budget keeps more KV cache on one GPU than on
                # two. Every feasible degree competes.
                feasible = (size(request, pool, index, q, tp) for tp in allowed)
                yield from (candidate for candidate in feasible if candidate.fit.feasible)
                continue
            lowest = sizing.min_tensor_parallel(
                model=request.model,
                quantization=q,
                gpu_memory_gib=pool.memory_gib,
                max_model_len=request.max_model_len,
                concurrency=request.concurrency,
                **_memory_terms(request, pool),
            )
            if lowest is None:
                continue
            for tp in (tp for tp in allowed if tp >= lowest):
                candidate = size(request, pool, index, q, tp)
                if candidate.fit.feasible:
                    yield candidate
                    break


def best(candidates: Iterable[Candidate]) -> Candidate | None:
    """The feasible candidate that ranks first (None: none is feasible)."""
    winner: Candidate | None = None
    for candidate in candidates:
        if not candidate.fit.feasible:
            continue
        if winner is None or rank(candidate) < rank(winner):
            winner = candidate
    return winner
