"""Why nothing fits: the ``PlanError`` a refused plan raises, its reason and its advice.

The last step of planning, taken only when ``search`` finds no feasible candidate (or
the request has no pool, or the engine release cannot serve a pinned quantization).
``refusal`` finds the constraint that binds (the ``obstacles`` pins put in the way
before memory is looked at, else memory itself) and reruns the search with each pin or
the policy relaxed in turn, so the message names the field to change and what the
plan would then be.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence

from llama_operator import api
from llama_operator.planning import engine_profiles, plan_request, pools, search, sizing

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


def known_pools(request: plan_request.Request) -> tuple[pools.Pool, ...]:
    """Every pool the operator knows: the catalogue, else the pools the request allows."""
    return request.catalogue or request.pools


def unknown_pools(request: plan_request.Request) -> list[str]:
    """The names in spec.placement.pools that match no pool the operator knows."""
    names = {pool.name for pool in known_pools(request)}
    return [name for name in request.asked_pools if name not in names]


def no_pools(request: plan_request.Request) -> PlanError:
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


def _unknown_pools_text(request: plan_request.Request, unknown: Sequence[str]) -> str:
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


def unserved(request: plan_request.Request, quantization: api.Quantization) -> str:
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


def _blame(request: plan_request.Request) -> tuple[str, search.Candidate | None]:
    """The pinned field to change: the first whose release alone makes a plan fit, and
    that plan (None: no single release fits; then the first pinned field)."""
    pinned: list[tuple[str, plan_request.Request]] = []
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
        best = search.best(search.candidates_pruned(relaxed))
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


def obstacles(request: plan_request.Request) -> list[Obstacle]:
    """What rules candidates out before memory is looked at, most binding first.

    Model-wide obstacles come first: they hold on every pool, so no choice of pool lifts
    them. Only pins make obstacles: under auto the planner just leaves out a degree or a
    quantization that cannot work, and what is left always includes one that can.
    """
    everywhere = frozenset(pool.name for pool in request.pools)
    found = [
        _checkpoint_format(request=request, everywhere=everywhere),
        _degree(request=request, everywhere=everywhere),
        _context(request=request, everywhere=everywhere),
        _capability_floor(request=request),
        _gpus_per_node(request=request),
    ]
    return [obstacle for obstacle in found if obstacle is not None]


def _pinned_quantization(request: plan_request.Request) -> api.Quantization | None:
    """The serving precision the request pins (a checkpoint's, or placement's), if any."""
    if request.checkpoint != "none":
        return request.checkpoint
    if request.quantization in ("awq", "gptq"):
        return None  # no precision to serve: ``_checkpoint_format`` reports it
    if request.quantization != "auto":
        return request.quantization
    return None


def _checkpoint_format(
    *, request: plan_request.Request, everywhere: frozenset[str]
) -> Obstacle | None:
    if request.checkpoint != "none" or request.quantization not in ("awq", "gptq"):
        return None
    # The API refuses this spec; a request built around it plans nothing.
    return Obstacle(
        INVALID_SPEC,
        "spec.placement.quantization",
        everywhere,
        f"quantization {request.quantization} is a checkpoint format: it needs a "
        f"pre-quantized repository and spec.model.checkpointQuantization: "
        f"{request.quantization}",
    )


def _degree(*, request: plan_request.Request, everywhere: frozenset[str]) -> Obstacle | None:
    tp = request.tensor_parallel
    if tp is not None and tp not in search.TP_DEGREES:
        return Obstacle(
            INVALID_SPEC,
            "spec.placement.tensorParallel",
            everywhere,
            f"tensorParallel must be auto or one of {', '.join(map(str, search.TP_DEGREES))}",
        )
    if tp is not None and not search.divides(request.model, tp):
        return Obstacle(
            HEADS_NOT_DIVISIBLE,
            "spec.placement.tensorParallel",
            everywhere,
            _heads(request, tp),
        )
    return None


def _context(*, request: plan_request.Request, everywhere: frozenset[str]) -> Obstacle | None:
    model = request.model
    if request.max_model_len is None or request.max_model_len <= model.max_context:
        return None
    # vLLM: _get_and_verify_max_len (vllm/config/model.py, 0.24.0 and 0.34.0) raises
    # "User-specified max_model_len (L) is greater than the derived max_model_len"
    # unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, which it warns yields NaNs (RoPE) or
    # out-of-bounds errors: the planner never plans past the model's context.
    refused = " (vLLM refuses a longer --max-model-len)" if request.engine == "vllm" else ""
    return Obstacle(
        CONTEXT_TOO_LONG,
        "spec.placement.maxModelLen",
        everywhere,
        f"maxModelLen {request.max_model_len} is longer than {model.id}'s maximum "
        f"context of {model.max_context} tokens{refused}; set maxModelLen to "
        f"{model.max_context} or less, or auto",
    )


def _capability_floor(*, request: plan_request.Request) -> Obstacle | None:
    profile = request.profile
    wanted = _pinned_quantization(request)
    if wanted is None or wanted not in profile.quantizations:
        return None
    floor = profile.quantizations[wanted].minCapability
    short = [pool for pool in request.pools if pool.capability < floor]
    if not short:
        return None
    return Obstacle(
        GPU_CAPABILITY_TOO_LOW,
        # A checkpoint's format is the repository's; the pools are what can change.
        "spec.placement.pools" if request.checkpoint != "none" else "spec.placement.quantization",
        frozenset(pool.name for pool in short),
        _capability(request, wanted, floor, short),
    )


def _gpus_per_node(*, request: plan_request.Request) -> Obstacle | None:
    tp = request.tensor_parallel
    if tp is None:
        return None
    # One replica is one pod, and a pod runs on one node (serving.builders): a degree
    # needs that many GPUs on a single node of the pool.
    small = [pool for pool in request.pools if pool.gpusPerNode < tp]
    if not small:
        return None
    roomy = [pool.name for pool in known_pools(request) if pool.gpusPerNode >= tp]
    alternatives = (
        f"pools with {tp} or more: {', '.join(roomy)}"
        if roomy
        else f"no pool has {tp} GPUs per node"
    )
    return Obstacle(
        TOO_FEW_GPUS_PER_NODE,
        "spec.placement.tensorParallel",
        frozenset(pool.name for pool in small),
        f"tensorParallel {tp} needs {tp} GPUs on one node, and "
        + ", ".join(f"{pool.name} has {pool.gpusPerNode}" for pool in small)
        + f"; {alternatives}",
    )


def _heads(request: plan_request.Request, tp: int) -> str:
    model = request.model
    dividing = [str(degree) for degree in search.TP_DEGREES if search.divides(model, degree)]
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
    request: plan_request.Request,
    wanted: api.Quantization,
    floor: float,
    short: Sequence[pools.Pool],
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


def _binding(
    found: Sequence[Obstacle], fix: search.Candidate | None, request: plan_request.Request
) -> Obstacle | None:
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


def refusal(request: plan_request.Request) -> PlanError:
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


def _memory(request: plan_request.Request, found: Sequence[Obstacle]) -> str:
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
        allowed, tps = search.quantizations(request, pool), search.degrees(request, pool)
        if pool.name in blocked or not allowed or not tps:
            continue
        # The lightest precision on the most GPUs: the best this pool can do.
        q = min(allowed, key=lambda q: sizing.BYTES_PER_PARAMETER[q])
        tp = max(tps)
        sized = search.size(request, pool, request.pools.index(pool), q, tp).fit
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
        tp < degree <= pool.gpusPerNode for degree in search.TP_DEGREES
    ):
        text += (
            f" (no larger degree divides its {model.attention_heads} attention heads and "
            f"{model.kv_heads} KV heads)"
        )
    return text


def _suggestions(request: plan_request.Request) -> list[str]:
    """The relaxations that would plan, each with the plan it would get."""
    found = []
    for label, relaxed in _relaxations(request):
        best = search.best(search.candidates_pruned(relaxed))
        if best is None:
            continue
        # Label None: more pools; name the one the plan lands on.
        shown = label if label is not None else f"pools: add {best.pool.name}"
        found.append(f"{shown} ({best.tensor_parallel}x {best.pool.name} at {best.quantization})")
    return found


def _relaxations(
    request: plan_request.Request,
) -> Iterable[tuple[str | None, plan_request.Request]]:
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
