"""The planner: from model facts, GPU pools and the user's policy to one Plan.

Pure. It enumerates the candidates the policy and pins allow (pool x quantization x
tensor-parallel degree), sizes each with ``sizing.fit`` and keeps the best by
``rank``: cheapest per replica, then higher precision, then more KV cache, then
fewer GPUs, then the pool preference order. Because a replica's cost grows with its
GPU count, only the smallest feasible degree of each (pool, quantization) can win,
so ``plan`` solves for that degree directly instead of sizing every degree;
``plan_exhaustive`` sizes them all and exists to check ``plan`` against (tests and
``make bench``).

When nothing fits, ``PlanError`` says why and what would fit (by relaxing each pin
or the policy in turn), so the user is told which field to change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from llama_operator import api, config, facts, pools, profiles, sizing

TP_DEGREES = (1, 2, 4, 8)

POLICY_BITS: dict[api.Optimize, int] = {"quality": 16, "balanced": 8, "cost": 4}


class PlanError(ValueError):
    """No plan fits; the message says why and, where possible, what would."""

    def __init__(
        self, message: str, *, field: str = "spec.placement", reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason  # a condition reason more specific than NoFeasiblePlan


@dataclasses.dataclass(frozen=True)
class Request:
    """Everything the planner decides from, already resolved (no I/O)."""

    model: facts.ModelFacts
    engine: api.Engine
    optimize: api.Optimize = "balanced"
    pools: tuple[pools.Pool, ...] = ()
    quantization: api.QuantizationChoice = "auto"
    tensor_parallel: int | None = None
    max_model_len: int | None = None
    concurrency: int = 4
    checkpoint: api.CheckpointQuantization = "none"
    memory_fraction: float = 0.9
    overhead_gib: float = 1.5
    # The engine release the image holds (``profiles.resolve``); None: the engine's default.
    resolved: profiles.Resolved | None = None

    @property
    def profile(self) -> profiles.Profile:
        """What the configured engine release serves (quantizations and their GPU floors)."""
        if self.resolved is not None and self.resolved.profile.engine == self.engine:
            return self.resolved.profile
        return profiles.get(self.engine)

    @property
    def engine_version(self) -> str | None:
        if self.resolved is not None and self.resolved.profile.engine == self.engine:
            return self.resolved.version
        return self.profile.default


@dataclasses.dataclass(frozen=True)
class Candidate:
    pool: pools.Pool
    pool_index: int
    quantization: api.Quantization
    tensor_parallel: int
    fit: sizing.Fit

    @property
    def cost_per_hour(self) -> float:
        return self.tensor_parallel * self.pool.rank_price


def request_for(
    *,
    spec: api.LlamaDeploymentSpec,
    model: facts.ModelFacts,
    available: Sequence[pools.Pool],
    settings: config.OperatorConfig,
) -> Request:
    """Turn a spec plus operator settings into a planner request."""
    placement = spec.placement
    engine: api.Engine = "tgi" if spec.engine == "tgi" else "vllm"  # auto = vLLM
    return Request(
        model=model,
        engine=engine,
        optimize=placement.optimize,
        pools=pools.restrict(available, placement.pools),
        quantization=placement.quantization,
        tensor_parallel=None if placement.tensorParallel == "auto" else placement.tensorParallel,
        max_model_len=None if placement.maxModelLen == "auto" else placement.maxModelLen,
        concurrency=placement.concurrentSequences,
        checkpoint=spec.model.checkpointQuantization,
        memory_fraction=placement.gpuMemoryUtilization or settings.gpuMemoryUtilization,
        overhead_gib=settings.runtimeOverheadGiB,
        resolved=resolve_engine(spec=spec, engine=engine, settings=settings),
    )


def resolve_engine(
    *, spec: api.LlamaDeploymentSpec, engine: api.Engine, settings: config.OperatorConfig
) -> profiles.Resolved:
    """The profile of the image this spec's pods will run: spec.image, else the operator's."""
    image = spec.image or (settings.images.vllm if engine == "vllm" else settings.images.tgi)
    return profiles.resolve(engine=engine, image=image, versions=settings.images.versions)


def rank(candidate: Candidate) -> tuple[float, int, float, int, int]:
    """Smaller is better: cost, precision, KV headroom, GPU count, pool preference."""
    return (
        candidate.cost_per_hour,
        sizing.PRECISION_ORDER.index(candidate.quantization),
        -candidate.fit.kv_cache_gib,
        candidate.tensor_parallel,
        candidate.pool_index,
    )


def quantizations(request: Request, pool: pools.Pool) -> list[api.Quantization]:
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


def degrees(request: Request, pool: pools.Pool) -> list[int]:
    """Tensor-parallel degrees that divide the heads and fit one node."""
    model = request.model
    allowed = [
        tp
        for tp in TP_DEGREES
        if tp <= pool.gpusPerNode and model.attention_heads % tp == 0 and model.kv_heads % tp == 0
    ]
    if request.tensor_parallel is not None:
        allowed = [tp for tp in allowed if tp == request.tensor_parallel]
    return allowed


def size(request: Request, pool: pools.Pool, index: int, q: api.Quantization, tp: int) -> Candidate:
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
            memory_fraction=request.memory_fraction,
            overhead_gib=request.overhead_gib,
            max_model_len=request.max_model_len,
            concurrency=request.concurrency,
        ),
    )


def candidates_exhaustive(request: Request) -> Iterable[Candidate]:
    """Every allowed candidate, sized (feasible or not)."""
    for index, pool in enumerate(request.pools):
        for q in quantizations(request, pool):
            for tp in degrees(request, pool):
                yield size(request, pool, index, q, tp)


def candidates_pruned(request: Request) -> Iterable[Candidate]:
    """For each (pool, quantization), only the degree that can win."""
    for index, pool in enumerate(request.pools):
        allowed = degrees(request, pool)
        if not allowed:
            continue
        for q in quantizations(request, pool):
            if pool.rank_price == 0:
                # Free GPUs: every degree costs the same, and more GPUs mean more KV
                # cache, so the largest feasible degree wins the tie-break.
                order = list(reversed(allowed))
            else:
                lowest = sizing.min_tensor_parallel(
                    model=request.model,
                    quantization=q,
                    gpu_memory_gib=pool.memory_gib,
                    memory_fraction=request.memory_fraction,
                    overhead_gib=request.overhead_gib,
                    max_model_len=request.max_model_len,
                    concurrency=request.concurrency,
                )
                if lowest is None:
                    continue
                order = [tp for tp in allowed if tp >= lowest]
            for tp in order:
                candidate = size(request, pool, index, q, tp)
                if candidate.fit.feasible:
                    yield candidate
                    break


def _best(candidates: Iterable[Candidate]) -> tuple[Candidate | None, int]:
    best: Candidate | None = None
    count = 0
    for candidate in candidates:
        if not candidate.fit.feasible:
            continue
        count += 1
        if best is None or rank(candidate) < rank(best):
            best = candidate
    return best, count


def plan(request: Request) -> api.Plan:
    """The best plan, or ``PlanError`` explaining what would fit instead."""
    return _plan(request, candidates_pruned)


def plan_exhaustive(request: Request) -> api.Plan:
    """Same answer as ``plan`` by sizing every candidate; the reference for checks."""
    return _plan(request, candidates_exhaustive)


def _plan(request: Request, generate: Callable[[Request], Iterable[Candidate]]) -> api.Plan:
    if not request.pools:
        raise PlanError(
            "no GPU pool is available: the operator config lists none, none were discovered "
            "from node labels, or spec.placement.pools names none of them",
            field="spec.placement.pools",
        )
    pinned = request.checkpoint if request.checkpoint != "none" else request.quantization
    if pinned != "auto" and not request.profile.serves(pinned):
        raise PlanError(
            unserved(request, pinned),
            field=(
                "spec.model.checkpointQuantization"
                if request.checkpoint != "none"
                else "spec.placement.quantization"
            ),
            reason="QuantizationUnsupported",
        )
    best, _ = _best(generate(request))
    if best is None:
        raise PlanError(explain(request), field=_blamed_field(request))
    return to_plan(request, best)


def unserved(request: Request, quantization: api.Quantization) -> str:
    """Why the configured engine release cannot serve ``quantization``, and what can."""
    profile = request.profile
    version = request.engine_version or f"{profile.since}+"
    served = ", ".join(q for q in profile.quantizations if q != "none")
    elsewhere = []
    earlier = [
        p for p in profiles.profiles(request.engine) if p.serves(quantization) and p != profile
    ]
    for other in ("vllm", "tgi"):
        candidate = profiles.get(other)
        if other != request.engine and candidate.serves(quantization):
            elsewhere.append(f"engine: {other} ({candidate.displayName} {candidate.default})")
    if earlier:
        elsewhere.append(
            f"a {profile.displayName} image from {earlier[0].since} up to, not including, "
            f"{profile.since} in spec.image"
        )
    alternatives = f"; it would work with {', or '.join(elsewhere)}" if elsewhere else ""
    return (
        f"{profile.displayName} {version} cannot serve quantization {quantization!r} "
        f"(not among its quantization methods); it serves {served}{alternatives}"
    )


def to_plan(request: Request, best: Candidate) -> api.Plan:
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
    reason = (
        f"{model.billions:.4g}B at 16-bit needs {full:.0f} GiB of weights; "
        f"{best.tensor_parallel}x {best.pool.gpuProduct} ({best.pool.name}) at {precision} "
        f"fits with {fit.kv_cache_gib:.0f} GiB KV cache "
        f"({fit.max_sequences} x {fit.max_model_len} tokens){price}"
    )
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
        gpuMemoryUtilization=request.memory_fraction,
        weightsGiB=round(fit.weights_gib, 2),
        estimatedGPUMemoryGiB=round(fit.estimated_per_gpu_gib, 2),
        kvCacheGiB=round(fit.kv_cache_gib, 2),
        costPerHour=cost,
        reason=reason,
    )


def _precision_name(q: api.Quantization, dtype: str) -> str:
    if q == "none":
        return "bf16" if dtype == "bfloat16" else "fp16"
    return q


def _blamed_field(request: Request) -> str:
    """The pinned field to change: the first whose release alone makes a plan fit."""
    pinned: list[tuple[str, Request]] = []
    if request.tensor_parallel is not None:
        pinned.append(
            ("spec.placement.tensorParallel", dataclasses.replace(request, tensor_parallel=None))
        )
    if request.max_model_len is not None:
        pinned.append(
            ("spec.placement.maxModelLen", dataclasses.replace(request, max_model_len=None))
        )
    if request.quantization != "auto":
        pinned.append(
            ("spec.placement.quantization", dataclasses.replace(request, quantization="auto"))
        )
    if not pinned:
        return "spec.placement"
    for field, relaxed in pinned:
        if _best(candidates_pruned(relaxed))[0] is not None:
            return field
    return pinned[0][0]


def explain(request: Request) -> str:
    """Why nothing fits, and the nearest relaxations that would."""
    model = request.model
    pins = []
    if request.tensor_parallel is not None:
        pins.append(f"tensorParallel={request.tensor_parallel}")
    if request.quantization != "auto":
        pins.append(f"quantization={request.quantization}")
    if request.max_model_len is not None:
        pins.append(f"maxModelLen={request.max_model_len}")
    constraints = ", ".join([f"optimize={request.optimize}", *pins])
    largest = max(
        (
            pool.memory_gib * request.memory_fraction * max(degrees(request, pool) or [0])
            for pool in request.pools
        ),
        default=0.0,
    )
    head = (
        f"no plan fits {model.id} ({model.billions:.4g}B) on pools "
        f"{', '.join(p.name for p in request.pools)} with {constraints}: its 16-bit weights "
        f"need {sizing.weights_gib(model, 'none'):.0f} GiB and the largest allowed replica "
        f"has {largest:.0f} GiB usable"
    )
    suggestions = []
    for label, relaxed in _relaxations(request):
        best, _ = _best(candidates_pruned(relaxed))
        if best is not None:
            suggestions.append(
                f"{label} ({best.tensor_parallel}x {best.pool.name} at {best.quantization})"
            )
    if suggestions:
        return f"{head}. Would fit: {'; or '.join(suggestions[:3])}"
    return f"{head}. Nothing in the pool catalogue fits this model; add a pool with larger GPUs"


def _relaxations(request: Request) -> Iterable[tuple[str, Request]]:
    if request.tensor_parallel is not None:
        yield "tensorParallel: auto", dataclasses.replace(request, tensor_parallel=None)
    if request.quantization != "auto" and request.checkpoint == "none":
        yield "quantization: auto", dataclasses.replace(request, quantization="auto")
    if request.max_model_len is not None:
        yield "maxModelLen: auto", dataclasses.replace(request, max_model_len=None)
    if request.concurrency > 1:
        yield "concurrentSequences: 1", dataclasses.replace(request, concurrency=1)
    if request.optimize == "quality" and request.checkpoint == "none":
        yield (
            "optimize: balanced",
            dataclasses.replace(request, optimize="balanced", quantization="auto"),
        )
    if request.optimize != "cost" and request.checkpoint == "none":
        yield "optimize: cost", dataclasses.replace(request, optimize="cost", quantization="auto")
    if request.engine == "vllm":
        yield "engine: tgi", dataclasses.replace(request, engine="tgi")
    yield (
        "all pins removed (tensorParallel, quantization, maxModelLen: auto; optimize: cost)",
        (
            dataclasses.replace(
                request,
                tensor_parallel=None,
                quantization="auto" if request.checkpoint == "none" else request.quantization,
                max_model_len=None,
                optimize="cost",
            )
        ),
    )
