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
or the policy in turn), so the user is told which field to change. Its ``reason`` (the
``Planned=False`` condition reason) names the constraint that binds: a pool name that
matches nothing, a quantization the engine release lacks, a GPU below the quantization's
capability floor, a tensor-parallel degree that does not divide the heads or does not fit
one node, a context longer than the model's, and memory (``NoFeasiblePlan``) only when
a candidate honouring every pin exists and is too small.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from llama_operator import api
from llama_operator.planning import config, engine_profiles, facts, pools, sizing

TP_DEGREES = (1, 2, 4, 8)

POLICY_BITS: dict[api.Optimize, int] = {"quality": 16, "balanced": 8, "cost": 4}

# Named here because inside ``Request`` the field ``pools`` hides the module.
Pools = tuple[pools.Pool, ...]

# ``PlanError.reason``: the Planned=False condition reason (docs/concepts/status.md).
NO_GPU_POOLS = "NoGPUPools"  # the operator knows no pool at all
UNKNOWN_POOL = "UnknownPool"  # spec.placement.pools names only pools that do not exist
QUANTIZATION_UNSUPPORTED = "QuantizationUnsupported"  # the engine release lacks it
GPU_CAPABILITY_TOO_LOW = "GPUCapabilityTooLow"  # below the quantization's GPU floor
HEADS_NOT_DIVISIBLE = "HeadsNotDivisible"  # tensorParallel does not divide the heads
TOO_FEW_GPUS_PER_NODE = "TooFewGPUsPerNode"  # tensorParallel exceeds a node's GPUs
CONTEXT_TOO_LONG = "ContextTooLong"  # maxModelLen beyond the model's maximum context
NO_FEASIBLE_PLAN = "NoFeasiblePlan"  # memory: what honours every pin is too small
INVALID_SPEC = "InvalidSpec"  # a contradiction the API refuses first (awq without checkpoint)


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
    # The operator config's runtimeOverheadGiB: replaces the calibrated in-budget overhead
    # (None: the engine profile's memory model decides it).
    overhead_gib: float | None = None
    # More memory left free per GPU on top (re-planning after an out-of-memory exit).
    headroom_gib: float = 0.0
    # The sequences the engine schedules at once (its --max-num-seqs): the sampler's
    # activation peak grows with them.
    scheduled_sequences: int = sizing.DEFAULT_SCHEDULED_SEQUENCES
    # The engine release the image holds (``engine_profiles.resolve``); None: the engine's default.
    resolved: engine_profiles.Resolved | None = None
    # Every pool the operator knows, before spec.placement.pools picked ``pools`` from
    # them (empty: ``pools`` is all of them), and the names the spec asked for: a
    # refusal lists what exists and what would work elsewhere.
    catalogue: Pools = ()
    asked_pools: tuple[str, ...] = ()
    # Observed / planned KV cache recorded from running pods of this model and engine
    # release, by GPU product (docs/concepts/observed-capacity.md); a product missing: none
    # recorded. A ratio below 1 scales down the KV cache planned on that product.
    kv_corrections: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def profile(self) -> engine_profiles.Profile:
        """What the configured engine release serves (quantizations and their GPU floors)."""
        if self.resolved is not None and self.resolved.profile.engine == self.engine:
            return self.resolved.profile
        return engine_profiles.get(self.engine)

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
        scheduled_sequences=max(
            spec.limits.maxConcurrentSequences or 0, sizing.DEFAULT_SCHEDULED_SEQUENCES
        ),
        resolved=resolve_engine(spec=spec, engine=engine, settings=settings),
        catalogue=tuple(available),
        asked_pools=tuple(placement.pools),
    )


def resolve_engine(
    *, spec: api.LlamaDeploymentSpec, engine: api.Engine, settings: config.OperatorConfig
) -> engine_profiles.Resolved:
    """The profile of the image this spec's pods will run: spec.image, else the operator's."""
    image = spec.image or (settings.images.vllm if engine == "vllm" else settings.images.tgi)
    return engine_profiles.resolve(engine=engine, image=image, versions=settings.images.versions)


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


def degrees(request: Request, pool: pools.Pool) -> list[int]:
    """Tensor-parallel degrees that divide the heads and fit one node."""
    allowed = [tp for tp in TP_DEGREES if tp <= pool.gpusPerNode and divides(request.model, tp)]
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
            max_model_len=request.max_model_len,
            concurrency=request.concurrency,
            **_memory_terms(request, pool),
        ),
    )


def _memory_terms(request: Request, pool: pools.Pool) -> dict[str, Any]:
    """What ``sizing`` needs of the request and the pool beyond the candidate itself."""
    return {
        "memory_fraction": request.memory_fraction,
        "memory": request.profile.memory,
        "product": pool.gpuProduct,
        "scheduled_sequences": request.scheduled_sequences,
        "overhead_gib": request.overhead_gib,
        "extra_gib": request.headroom_gib,
        "kv_correction": request.kv_corrections.get(pool.gpuProduct, 1.0),
    }


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
                    max_model_len=request.max_model_len,
                    concurrency=request.concurrency,
                    **_memory_terms(request, pool),
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
        raise no_pools(request)
    pinned = request.checkpoint if request.checkpoint != "none" else request.quantization
    if pinned != "auto" and not request.profile.serves(pinned):
        raise PlanError(
            unserved(request, pinned),
            field=(
                "spec.model.checkpointQuantization"
                if request.checkpoint != "none"
                else "spec.placement.quantization"
            ),
            reason=QUANTIZATION_UNSUPPORTED,
        )
    best, _ = _best(generate(request))
    if best is None:
        # Diagnosed with the pruned search whichever search failed, so ``plan`` and
        # ``plan_exhaustive`` refuse with the same words.
        raise refusal(request)
    return to_plan(request, best)


def known_pools(request: Request) -> tuple[pools.Pool, ...]:
    """Every pool the operator knows: the catalogue, else the pools the request allows."""
    return request.catalogue or request.pools


def unknown_pools(request: Request) -> list[str]:
    """The names in spec.placement.pools that match no pool the operator knows."""
    names = {pool.name for pool in known_pools(request)}
    return [name for name in request.asked_pools if name not in names]


def no_pools(request: Request) -> PlanError:
    """Why no pool is left to plan on: none exists, or the spec names none that does."""
    field = "spec.placement.pools"
    unknown = unknown_pools(request)
    if known_pools(request) and unknown:
        return PlanError(_unknown_pools_text(request, unknown), field=field, reason=UNKNOWN_POOL)
    if not known_pools(request):
        asked = ", ".join(repr(name) for name in request.asked_pools)
        return PlanError(
            "no GPU pool is available: the operator config lists none and none were "
            "discovered from node labels"
            + (f"; spec.placement.pools names {asked}" if asked else ""),
            field=field,
            reason=NO_GPU_POOLS,
        )
    return PlanError(
        "no GPU pool is available: none of the pools spec.placement.pools names is left",
        field=field,
        reason=NO_GPU_POOLS,
    )


def _closest_name(name: str, names: Sequence[str]) -> str | None:
    """The pool a misspelt name most likely meant: one it abbreviates (a100 for a100-80),
    else the most similar spelling."""
    prefixed = [known for known in names if known.startswith(name) or name.startswith(known)]
    if prefixed:
        return " or ".join(prefixed)
    close = difflib.get_close_matches(name, names, n=1)
    return close[0] if close else None


def _unknown_pools_text(request: Request, unknown: Sequence[str]) -> str:
    names = [pool.name for pool in known_pools(request)]
    quoted = ", ".join(repr(name) for name in unknown)
    verb = "matches" if len(unknown) == 1 else "match"
    guesses = [(name, close) for name in unknown if (close := _closest_name(name, names))]
    if len(unknown) == 1 and guesses:
        hint = f" (did you mean {guesses[0][1]}?)"
    elif guesses:
        hint = " (did you mean " + ", ".join(f"{good} for {bad!r}" for bad, good in guesses) + "?)"
    else:
        hint = ""
    return f"{quoted} {verb} no GPU pool{hint}; the pools are: {', '.join(names)}"


def unserved(request: Request, quantization: api.Quantization) -> str:
    """Why the configured engine release cannot serve ``quantization``, and what can."""
    profile = request.profile
    version = request.engine_version or f"{profile.since}+"
    served = ", ".join(q for q in profile.quantizations if q != "none")
    elsewhere = []
    earlier = [
        p
        for p in engine_profiles.profiles(request.engine)
        if p.serves(quantization) and p != profile
    ]
    for other in ("vllm", "tgi"):
        candidate = engine_profiles.get(other)
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
        reason=reason,
    )


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


def _blame(request: Request) -> tuple[str, Candidate | None]:
    """The pinned field to change: the first whose release alone makes a plan fit, and
    that plan (None: no single release fits; then the first pinned field)."""
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
        return "spec.placement", None
    for field, relaxed in pinned:
        best, _ = _best(candidates_pruned(relaxed))
        if best is not None:
            return field, best
    return pinned[0][0], None


@dataclasses.dataclass(frozen=True)
class Obstacle:
    """A pin no candidate on the pools in ``where`` can honour, whatever their memory."""

    reason: str  # a PlanError reason
    field: str  # the spec field to change
    where: frozenset[str]  # pool names
    text: str  # one clause: the constraint, the numbers, and what would work


def obstacles(request: Request) -> list[Obstacle]:
    """What rules candidates out before memory is looked at, most binding first.

    Model-wide obstacles come first: they hold on every pool, so no choice of pool lifts
    them. Only pins make obstacles: under auto the planner just leaves out a degree or a
    quantization that cannot work, and what is left always includes one that can.
    """
    model, profile = request.model, request.profile
    everywhere = frozenset(pool.name for pool in request.pools)
    found: list[Obstacle] = []
    wanted: api.Quantization | None = None
    if request.checkpoint != "none":
        wanted = request.checkpoint
    elif request.quantization in ("awq", "gptq"):
        # The API refuses this spec; a request built around it plans nothing.
        found.append(
            Obstacle(
                INVALID_SPEC,
                "spec.placement.quantization",
                everywhere,
                f"quantization {request.quantization} is a checkpoint format: it needs a "
                f"pre-quantized repository and spec.model.checkpointQuantization: "
                f"{request.quantization}",
            )
        )
    elif request.quantization != "auto":
        wanted = request.quantization
    tp = request.tensor_parallel
    if tp is not None and tp not in TP_DEGREES:
        found.append(
            Obstacle(
                INVALID_SPEC,
                "spec.placement.tensorParallel",
                everywhere,
                f"tensorParallel must be auto or one of {', '.join(map(str, TP_DEGREES))}",
            )
        )
    elif tp is not None and not divides(model, tp):
        found.append(
            Obstacle(
                HEADS_NOT_DIVISIBLE,
                "spec.placement.tensorParallel",
                everywhere,
                _heads(request, tp),
            )
        )
    if request.max_model_len is not None and request.max_model_len > model.max_context:
        # vLLM: _get_and_verify_max_len (vllm/config/model.py, 0.24.0 and 0.34.0) raises
        # "User-specified max_model_len (L) is greater than the derived max_model_len"
        # unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, which it warns yields NaNs (RoPE) or
        # out-of-bounds errors: the planner never plans past the model's context.
        refused = " (vLLM refuses a longer --max-model-len)" if request.engine == "vllm" else ""
        found.append(
            Obstacle(
                CONTEXT_TOO_LONG,
                "spec.placement.maxModelLen",
                everywhere,
                f"maxModelLen {request.max_model_len} is longer than {model.id}'s maximum "
                f"context of {model.max_context} tokens{refused}; set maxModelLen to "
                f"{model.max_context} or less, or auto",
            )
        )
    if wanted is not None and wanted in profile.quantizations:
        floor = profile.quantizations[wanted].minCapability
        short = [pool for pool in request.pools if pool.capability < floor]
        if short:
            found.append(
                Obstacle(
                    GPU_CAPABILITY_TOO_LOW,
                    # A checkpoint's format is the repository's; the pools are what can change.
                    "spec.placement.pools"
                    if request.checkpoint != "none"
                    else "spec.placement.quantization",
                    frozenset(pool.name for pool in short),
                    _capability(request, wanted, floor, short),
                )
            )
    if tp is not None:
        # One replica is one pod, and a pod runs on one node (builders.py): a degree
        # needs that many GPUs on a single node of the pool.
        small = [pool for pool in request.pools if pool.gpusPerNode < tp]
        if small:
            roomy = [pool.name for pool in known_pools(request) if pool.gpusPerNode >= tp]
            alternatives = (
                f"pools with {tp} or more: {', '.join(roomy)}"
                if roomy
                else f"no pool has {tp} GPUs per node"
            )
            found.append(
                Obstacle(
                    TOO_FEW_GPUS_PER_NODE,
                    "spec.placement.tensorParallel",
                    frozenset(pool.name for pool in small),
                    f"tensorParallel {tp} needs {tp} GPUs on one node, and "
                    + ", ".join(f"{pool.name} has {pool.gpusPerNode}" for pool in small)
                    + f"; {alternatives}",
                )
            )
    return found


def _heads(request: Request, tp: int) -> str:
    model = request.model
    dividing = [str(degree) for degree in TP_DEGREES if divides(model, degree)]
    text = (
        f"tensorParallel {tp} does not divide the heads of {model.id}: it has "
        f"{model.attention_heads} attention heads and {model.kv_heads} KV heads, and each "
        f"GPU must hold a whole share of both; the degrees that divide both: "
        f"{', '.join(dividing)}"
    )
    if model.attention_heads % tp == 0 and request.engine == "vllm":
        text += (
            " (vLLM would copy KV heads onto several GPUs instead, which the operator's "
            "memory model does not plan)"
        )
    return text


def _capability(
    request: Request, wanted: api.Quantization, floor: float, short: Sequence[pools.Pool]
) -> str:
    profile = request.profile
    label = f"{profile.displayName} {request.engine_version or f'{profile.since}+'}"
    article = "an" if wanted[0] in "aeiou" else "a"
    what = f"{article} {wanted} checkpoint" if request.checkpoint != "none" else wanted
    gpus = ", ".join(
        f"{pool.name} ({pool.gpuProduct}, compute capability {pool.capability:.1f})"
        for pool in short
    )
    one = len(short) == 1
    text = (
        f"{label} runs {what} only on GPUs of compute capability {floor:.1f} or higher, "
        f"and {'pool' if one else 'pools'} {gpus} {'has' if one else 'have'} less"
    )
    if request.checkpoint == "none":
        lowest = min(pool.capability for pool in short)
        runs = [
            "none (16-bit)" if q == "none" else q
            for q, support in profile.quantizations.items()
            if support.minCapability <= lowest and q not in ("awq", "gptq")
        ]
        text += f"; on {'that GPU' if one else 'those GPUs'} it runs {', '.join(runs)}"
    able = [pool.name for pool in known_pools(request) if pool.capability >= floor]
    if able:
        text += f"; pools whose GPUs run {wanted}: {', '.join(able)}"
    else:
        text += f"; no pool has a GPU that runs {wanted}"
    return text


def _binding(found: Sequence[Obstacle], fix: Candidate | None, request: Request) -> Obstacle | None:
    """The obstacle a refusal reports, or None when memory is the reason.

    The candidates closest to the user's pins decide, because their reason is the one the
    user can act on:
    - A pool that honours every pin holds the closest candidates (they change nothing the
      user asked for), so if one exists the pins are not the problem; memory is.
      Obstacles on other pools are mentioned, not blamed: "the A100 cannot run fp8"
      alone would send the user to an fp8 GPU where the model still does not fit.
    - Else, if releasing one pin alone plans (``fix``), that plan is one field away:
      report what stops the pinned request on its pool. The reason then agrees with the
      field blamed and with the first "Would fit" suggestion.
    - Else every pool is ruled out by pins, several at once: report the pool with the
      fewest obstacles (the fewest fields to change), the first in the user's pool order
      on a tie, and its most binding obstacle.
    """
    count = {pool.name: sum(pool.name in o.where for o in found) for pool in request.pools}
    if not found or min(count.values()) == 0:
        return None
    if fix is not None:
        return next(o for o in found if fix.pool.name in o.where)
    closest = min(request.pools, key=lambda pool: count[pool.name])  # min keeps the first
    return next(o for o in found if closest.name in o.where)


def refusal(request: Request) -> PlanError:
    """Why nothing fits, the constraint that binds as the reason, and what would fit."""
    field, fix = _blame(request)
    found = obstacles(request)
    binding = _binding(found, fix, request)
    if binding is None:
        reason, text = NO_FEASIBLE_PLAN, _memory(request, found)
        others = list(found)
    else:
        reason, text, field = binding.reason, binding.text, binding.field
        others = [o for o in found if o is not binding]
    for other in others:
        text += f"; also, {other.text}"
    unknown = unknown_pools(request)
    if unknown:
        text += f"; also, spec.placement.pools: {_unknown_pools_text(request, unknown)}"
    suggestions = _suggestions(request)
    if suggestions:
        return PlanError(
            f"{text}. Would fit: {'; or '.join(suggestions[:3])}", field=field, reason=reason
        )
    if binding is None:
        tail = "Nothing in the pool catalogue fits this model; add a pool with larger GPUs"
    else:
        tail = "Nothing in the pool catalogue fits this model even without the pins"
    return PlanError(f"{text}. {tail}", field=field, reason=reason)


def _memory(request: Request, found: Sequence[Obstacle]) -> str:
    """The memory shortfall of the allowed replica closest to fitting, in GiB."""
    model = request.model
    pins = []
    if request.tensor_parallel is not None:
        pins.append(f"tensorParallel={request.tensor_parallel}")
    if request.quantization != "auto":
        pins.append(f"quantization={request.quantization}")
    if request.max_model_len is not None:
        pins.append(f"maxModelLen={request.max_model_len}")
    constraints = ", ".join([f"optimize={request.optimize}", *pins])
    head = (
        f"no plan fits {model.id} ({model.billions:.4g}B) on pools "
        f"{', '.join(p.name for p in request.pools)} with {constraints}"
    )
    blocked = {name for o in found for name in o.where}
    length = request.max_model_len or sizing.min_context(model)
    kv = request.concurrency * length * sizing.kv_gib_per_token(model)
    nearest: tuple[float, pools.Pool, api.Quantization, int, float] | None = None
    for pool in request.pools:
        allowed, tps = quantizations(request, pool), degrees(request, pool)
        if pool.name in blocked or not allowed or not tps:
            continue
        # The lightest precision on the most GPUs: the best this pool can do.
        q = min(allowed, key=lambda q: sizing.BYTES_PER_PARAMETER[q])
        tp = max(tps)
        sized = size(request, pool, request.pools.index(pool), q, tp).fit
        overhead = sized.overhead.total if sized.overhead is not None else 0.0
        if request.profile.memory.budget == "freeAfterWarmup":
            overhead += sized.outside_gib  # TGI's budget holds the CUDA context too
        room = (sized.usable_per_gpu_gib - overhead) * tp
        gap = room - sizing.weights_gib(model, q) - kv
        if nearest is None or gap > nearest[0]:
            nearest = (gap, pool, q, tp, room)
    if nearest is None:
        return head
    _, pool, q, tp, room = nearest
    text = (
        f"{head}: at {'16-bit' if q == 'none' else q} its weights need "
        f"{sizing.weights_gib(model, q):.0f} GiB, plus {kv:.3g} GiB of KV cache for "
        f"{request.concurrency} sequences of {length} tokens; the allowed replica closest "
        f"to fitting, {tp}x {pool.name}, has {room:.0f} GiB after runtime overhead"
    )
    if request.tensor_parallel is None and any(
        tp < degree <= pool.gpusPerNode for degree in TP_DEGREES
    ):
        text += (
            f" (no larger degree divides its {model.attention_heads} attention heads and "
            f"{model.kv_heads} KV heads)"
        )
    return text


def _suggestions(request: Request) -> list[str]:
    """The relaxations that would plan, each with the plan it would get."""
    found = []
    for label, relaxed in _relaxations(request):
        best, _ = _best(candidates_pruned(relaxed))
        if best is None:
            continue
        # Label None: more pools; name the one the plan lands on.
        shown = label if label is not None else f"pools: add {best.pool.name}"
        found.append(f"{shown} ({best.tensor_parallel}x {best.pool.name} at {best.quantization})")
    return found


def _relaxations(request: Request) -> Iterable[tuple[str | None, Request]]:
    """Each pin or policy relaxed in turn (label None: the pools the spec left out, added)."""
    if request.tensor_parallel is not None:
        yield "tensorParallel: auto", dataclasses.replace(request, tensor_parallel=None)
    if request.quantization != "auto" and request.checkpoint == "none":
        yield "quantization: auto", dataclasses.replace(request, quantization="auto")
    if request.max_model_len is not None:
        yield "maxModelLen: auto", dataclasses.replace(request, max_model_len=None)
    if request.asked_pools:
        # Only pools the spec left out: one it allows but re-planning excluded (no free
        # GPUs there) is no suggestion.
        others = tuple(p for p in request.catalogue if p.name not in request.asked_pools)
        if others:
            yield None, dataclasses.replace(request, pools=request.pools + others)
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
