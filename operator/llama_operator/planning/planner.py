"""The planner: from model facts, GPU pools and the user's policy to one Plan.

Pure. It enumerates the candidates the policy and pins allow (pool x quantization x
tensor-parallel degree), sizes each with ``sizing.fit`` and keeps the best by
``search.rank``: cheapest per replica, then higher precision, then more KV cache, then
fewer GPUs, then the pool preference order. Because a replica's cost grows with its
GPU count, only the smallest feasible degree of each (pool, quantization) can win,
so ``plan`` solves for that degree directly instead of sizing every degree;
``plan_exhaustive`` sizes them all and exists to check ``plan`` against (tests and
``make bench``).

When nothing fits, ``PlanError`` says why and what would fit (by relaxing each pin
or the policy in turn), so the user is told which field to change. Its ``reason`` (the
``Planned=False`` condition reason) names the constraint that binds: a pool name that
matches nothing, a quantization the engine release lacks, a GPU below the quantization's
capability floor, a tensor-parallel degree that does not divide the heads or does not fit
one node, a context longer than the model's, and memory (``NoFeasiblePlan``) only when
a candidate honouring every pin exists and is too small.

The steps, in order, each in its own module: ``plan_request`` (the ``Request``, built
from a spec by ``request_for``), ``search`` (candidates, sizing, ranking), this module
(the winner as an ``api.Plan``) and ``diagnosis`` (``PlanError``: why nothing fits).
Their public names are re-exported here, so callers write ``planner.request_for``,
``planner.PlanError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from llama_operator import api
from llama_operator.planning import adapters, diagnosis, plan_request, search, sizing
from llama_operator.planning.diagnosis import (
    CONTEXT_TOO_LONG,
    GPU_CAPABILITY_TOO_LOW,
    HEADS_NOT_DIVISIBLE,
    INVALID_SPEC,
    NO_FEASIBLE_PLAN,
    NO_GPU_POOLS,
    QUANTIZATION_UNSUPPORTED,
    TOO_FEW_GPUS_PER_NODE,
    UNKNOWN_POOL,
    Obstacle,
    PlanError,
    known_pools,
    no_pools,
    obstacles,
    refusal,
    unknown_pools,
    unserved,
)
from llama_operator.planning.plan_request import (
    Pools,
    Request,
    request_for,
    resolve_engine,
)
from llama_operator.planning.search import (
    POLICY_BITS,
    TP_DEGREES,
    Candidate,
    candidates_exhaustive,
    candidates_pruned,
    degrees,
    divides,
    quantizations,
    rank,
    size,
)

# What moved to the step modules stays importable as ``planner.X``.
__all__ = [
    "CONTEXT_TOO_LONG",
    "GPU_CAPABILITY_TOO_LOW",
    "HEADS_NOT_DIVISIBLE",
    "INVALID_SPEC",
    "NO_FEASIBLE_PLAN",
    "NO_GPU_POOLS",
    "POLICY_BITS",
    "QUANTIZATION_UNSUPPORTED",
    "TOO_FEW_GPUS_PER_NODE",
    "TP_DEGREES",
    "UNKNOWN_POOL",
    "Candidate",
    "Obstacle",
    "PlanError",
    "Pools",
    "Request",
    "candidates_exhaustive",
    "candidates_pruned",
    "degrees",
    "divides",
    "known_pools",
    "no_pools",
    "obstacles",
    "plan",
    "plan_exhaustive",
    "plan_memory",
    "quantizations",
    "rank",
    "refusal",
    "request_for",
    "resolve_engine",
    "size",
    "to_plan",
    "unknown_pools",
    "unserved",
]


def plan(request: plan_request.Request) -> api.Plan:
    """The best plan, or ``PlanError`` explaining what would fit instead."""
    return _plan(request, search.candidates_pruned)


def plan_exhaustive(request: plan_request.Request) -> api.Plan:
    """Same answer as ``plan`` by sizing every candidate; the reference for checks."""
    return _plan(request, search.candidates_exhaustive)


def _plan(
    request: plan_request.Request,
    generate: Callable[[plan_request.Request], Iterable[search.Candidate]],
) -> api.Plan:
    if not request.pools:
        raise diagnosis.no_pools(request)
    pinned = request.checkpoint if request.checkpoint != "none" else request.quantization
    if pinned != "auto" and not request.profile.serves(pinned):
        raise diagnosis.PlanError(
            diagnosis.unserved(request, pinned),
            field=(
                "spec.model.checkpointQuantization"
                if request.checkpoint != "none"
                else "spec.placement.quantization"
            ),
            reason=diagnosis.QUANTIZATION_UNSUPPORTED,
        )
    best = search.best(generate(request))
    if best is None:
        # Diagnosed with the pruned search whichever search failed, so ``plan`` and
        # ``plan_exhaustive`` refuse with the same words.
        raise diagnosis.refusal(request)
    return to_plan(request, best)


def to_plan(request: plan_request.Request, best: search.Candidate) -> api.Plan:
    model, fit = request.model, best.fit
    # awq/gptq kernels compute in fp16 everywhere; 16-bit and load-time quantizations use
    # bf16 where the GPU has it.
    dtype: Literal["bfloat16", "float16"] = (
        "bfloat16" if best.pool.bf16 and best.quantization not in ("awq", "gptq") else "float16"
    )
    precision = _precision_name(best.quantization, dtype)
    cost = (
        round(best.tensor_parallel * best.pool.costPerGPUHour, 2)
        if best.pool.costPerGPUHour is not None
        else None
    )
    full = sizing.weights_gib(model, "none")
    price = f", ${cost:.2f}/h" if cost is not None else ""
    memory = plan_memory(fit, best.tensor_parallel)
    correction = request.kv_corrections.get(best.pool.gpuProduct)
    corrected = (
        f", x{correction:.2f} as observed on running pods"
        if correction is not None and correction < 1
        else ""
    )
    capped = (
        f"; gpuMemoryUtilization capped to {fit.memory_fraction:g} so the CUDA context fits "
        "beside it"
        if fit.memory_fraction < request.memory_fraction
        else ""
    )
    reason = (
        f"{model.billions:.4g}B at 16-bit needs {full:.0f} GiB of weights; "
        f"{best.tensor_parallel}x {best.pool.gpuProduct} ({best.pool.name}) at {precision} "
        f"fits with {fit.kv_cache_gib:.0f} GiB KV cache "
        f"({fit.max_sequences} x {fit.max_model_len} tokens{corrected}), "
        f"{memory.marginGiB:.1f} GiB per GPU to spare{price}{capped}"
    )
    lora = adapters.plan_lora(request.lora, model=model, tensor_parallel=best.tensor_parallel)
    reason += _lora_reason(request, lora)
    return api.Plan(
        engine=request.engine,
        engineVersion=request.engine_version,
        pool=best.pool.name,
        gpuProduct=best.pool.gpuProduct,
        gpusPerReplica=best.tensor_parallel,
        tensorParallel=best.tensor_parallel,
        quantization=best.quantization,
        dtype=dtype,
        maxModelLen=fit.max_model_len,
        maxConcurrentSequences=fit.max_sequences,
        gpuMemoryUtilization=fit.memory_fraction,
        weightsGiB=round(fit.weights_gib, 2),
        estimatedGPUMemoryGiB=round(fit.estimated_per_gpu_gib, 2),
        kvCacheGiB=round(fit.kv_cache_gib, 2),
        checkpointGiB=round(
            full if best.quantization not in ("none", "awq", "gptq") else fit.weights_gib, 2
        ),
        kvCacheTokens=fit.kv_cache_tokens,
        memory=memory,
        kvCorrection=correction if correction is not None and correction < 1 else None,
        costPerHour=cost,
        adapters=adapters.plan_adapters(request.adapters, profile=request.profile),
        lora=lora,
        reason=reason,
    )


def _lora_reason(request: plan_request.Request, lora: api.PlanLora | None) -> str:
    """The adapters' part of the plan's reason; empty without adapters."""
    if lora is None:
        return ""
    if lora.runtime:
        # No count: the list changes in the running pods while this plan stands.
        return (
            f"; {lora.maxLoras} LoRA slot(s) of rank {lora.maxLoraRank} for adapters loaded "
            f"at runtime take {lora.loraGiB:.2f} GiB per GPU"
        )
    held = (
        f"{lora.maxLoras} slot(s) of rank {lora.maxLoraRank}"
        if request.profile.lora.memory == "slots"
        else "their weights, loaded at start"
    )
    return f"; {len(request.adapters)} LoRA adapter(s) take {lora.loraGiB:.2f} GiB per GPU ({held})"


def plan_memory(fit: sizing.Fit, tensor_parallel: int) -> api.PlanMemory:
    """One GPU of a sized candidate, as status.plan.memory shows it."""
    overhead = fit.overhead.total if fit.overhead is not None else 0.0
    kv = fit.kv_cache_gib / tensor_parallel
    return api.PlanMemory(
        gpuGiB=round(fit.gpu_gib, 2),
        budgetGiB=round(fit.usable_per_gpu_gib, 2),
        outsideBudgetGiB=round(fit.outside_gib, 2),
        weightsGiB=round(fit.weights_gib / tensor_parallel, 2),
        overheadGiB=round(overhead, 2),
        kvCacheGiB=round(kv, 2),
        neededKVCacheGiB=round(fit.needed_kv_gib, 2),
        marginGiB=round(kv - fit.needed_kv_gib, 2),
    )


def _precision_name(q: api.Quantization, dtype: str) -> str:
    if q == "none":
        return "bf16" if dtype == "bfloat16" else "fp16"
    return q
