"""The plan phase: everything the operator wants to exist for a spec (``Desired``).

The second phase of a reconcile, after ``observe``, and the pipeline the CLI's ``plan`` and
``render`` run too: resolve model facts (spec > catalog > Hub), choose GPU pools (operator
config, else discovered nodes), plan (or keep the plan in status while its inputs are
unchanged and it still fits), detect the licence (spec > Hub card and its base models >
catalog > name), and build the children. A spec that cannot be planned raises
``PlanningError``: the reconcile then touches no child, and the ``Planned`` condition names
the field to fix.

For the primary (``plan_primary``), re-planning comes first: a pool without free GPUs or an
engine out of memory changes what the planner plans with (``operations.replanning``), and
when it has excluded every pool the last plan stands while a fallback serves.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.clients import hub
from llama_operator.licensing import terms
from llama_operator.operations import adapters, capacity, replanning
from llama_operator.planning import adapters as planning_adapters
from llama_operator.planning import catalog, config, facts, planner, pools, sizing
from llama_operator.reconcile import inputs, observe, status
from llama_operator.serving import builders, engines, scalers, security

# How many ancestors of a fine-tune are looked up on the Hub at most.
MAX_BASE_MODELS = 8


@dataclasses.dataclass(frozen=True)
class Desired:
    """Everything the operator wants to exist for one variant: its parsed spec, the model's
    facts, the plan and its pool, the licence, and the children to apply."""

    spec: api.LlamaDeploymentSpec
    model: facts.ModelFacts
    plan: api.Plan
    pool: pools.Pool
    detection: terms.Detection
    card_gated: bool | None  # None: the Hub card could not be read
    objects: list[dict[str, Any]]
    # spec.adapters: which are served (in the plan) and which held back, and why.
    adapter_decisions: adapters.Decisions = adapters.NONE

    def primary_deployment(self) -> dict[str, Any]:
        """The primary Deployment among ``objects``."""
        return next(
            obj
            for obj in self.objects
            if obj["kind"] == "Deployment"
            and obj["metadata"]["labels"].get(builders.VARIANT_LABEL) == builders.PRIMARY
        )


class PlanningError(Exception):
    def __init__(self, failure: status.PlanningFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclasses.dataclass(frozen=True)
class Planned:
    """The plan phase's result for the primary."""

    # None: nothing can be served as planned, and every child stays as it is. With a
    # failure: re-planning excluded every pool, and the last plan stands (its pods wait for
    # GPUs) while the failover serves from a fallback.
    wanted: Desired | None
    failure: status.PlanningFailure | None  # why the newest spec could not be planned
    recovered: replanning.Outcome | None  # this reconcile's re-planning (None: no spec)

    @property
    def plan(self) -> api.Plan | None:
        """The primary's plan this reconcile, when one fits (not the last plan standing)."""
        return self.wanted.plan if self.wanted is not None and self.failure is None else None


def plan_primary(
    seen: observe.Observed,
    *,
    settings: config.OperatorConfig,
    readers: inputs.Readers,
    clock: inputs.Clock,
) -> Planned:
    """Re-planning, then the primary's ``Desired`` (or why there is none)."""
    # Re-planning (a pool without free GPUs, an engine out of memory) decides from the
    # primary's health before planning: its outcome is what the planner plans with.
    recovered = _recover(seen, clock=clock)
    if seen.spec is None:
        return Planned(wanted=None, failure=seen.invalid, recovered=recovered)
    meta = seen.meta
    try:
        wanted = desired_of(
            seen.spec,
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            settings=settings,
            available=seen.available,
            fetch=readers.fetch,
            keep=seen.previous.current_plan,
            card=readers.card,
            keep_canary=seen.previous.canary_plan,
            recovery_state=recovered.state if recovered is not None else None,
            corrections=readers.corrections,
            adapter_read=readers.adapter,
        )
    except PlanningError as exc:
        standing = _last_plan_standing(recovered, seen, settings=settings, readers=readers)
        return Planned(wanted=standing, failure=exc.failure, recovered=recovered)
    return Planned(wanted=wanted, failure=None, recovered=recovered)


def _recover(seen: observe.Observed, *, clock: inputs.Clock) -> replanning.Outcome | None:
    if seen.spec is None:
        return None
    return replanning.decide(
        policy=api.failover_policy(seen.spec),
        state=seen.previous.recovery,
        inputs_hash=api.plan_inputs_hash(seen.spec),
        plan=seen.previous.current_plan,
        primary=seen.primary_health,
        now=clock.seconds,
        wall=clock.now,
    )


def _last_plan_standing(
    recovered: replanning.Outcome | None,
    seen: observe.Observed,
    *,
    settings: config.OperatorConfig,
    readers: inputs.Readers,
) -> Desired | None:
    """When re-planning has excluded every pool: the plan in status, as it is, so the rest
    of the reconcile (fallbacks, failover) goes on; None for any other planning failure,
    which leaves every child as it is."""
    if recovered is None or not recovered.state.excludedPools:
        return None
    # status.plan, whatever the Planned condition says now (it turned False the first
    # time, and stays so): the plan the primary was last applied with.
    kept = seen.previous.plan
    if kept is None or seen.spec is None:
        return None
    # Kept as it is: its inputs hash had the re-planning state folded in.
    kept = kept.model_copy(update={"inputsHash": api.plan_inputs_hash(seen.spec)})
    try:
        return desired_of(
            seen.spec,
            name=seen.meta.name,
            namespace=seen.meta.namespace,
            uid=seen.meta.uid,
            settings=settings,
            available=seen.available,
            fetch=readers.fetch,
            keep=kept,
            card=readers.card,
            adapter_read=readers.adapter,
        )
    except PlanningError:
        return None


def desired(  # noqa: PLR0913 - the CLI and tests call it with the spec unparsed
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: inputs.HubFetch | None,
    keep: api.Plan | None = None,
    card: inputs.CardFetch | None = None,
    keep_canary: api.Plan | None = None,
    recovery_state: api.RecoveryStatus | None = None,
    clamp_limits: bool = False,
    corrections: inputs.CorrectionsRead | None = None,
    adapter_read: inputs.AdapterRead | None = None,
) -> Desired:
    """Everything the operator wants to exist for this resource, or ``PlanningError``.

    ``keep`` is the plan currently in status: it is reused while the spec fields it was
    made from are unchanged and its pool is still available, so scaling, a new pool or
    a price change in the operator config never moves a running endpoint.
    ``keep_canary`` is the plan of a canary under way (status.rollout.canaryPlan), kept the
    same way, so the canary is not re-planned (and restarted) on every reconcile.
    ``recovery_state`` (status.recovery) leaves out the pools re-planning excluded and adds
    the memory headroom it asked for. ``clamp_limits``: a spec.limits token limit above the
    plan's context is held to it instead of refused (a fallback inherits the primary's
    limits, planned for another model). ``corrections``: the KV-cache corrections learnt from
    running pods, applied to a plan made anew (never to a kept one: a correction changes
    the next plan, it does not move a running endpoint). ``adapter_read``: spec.adapters'
    facts from the Hub (None: from the spec alone, as the offline CLI does).
    """
    try:
        spec = api.parse_spec(dict(raw_spec))
    except api.SpecError as exc:
        raise PlanningError(status.PlanningFailure("InvalidSpec", str(exc))) from exc
    return desired_of(
        spec,
        name=name,
        namespace=namespace,
        uid=uid,
        settings=settings,
        available=available,
        fetch=fetch,
        keep=keep,
        card=card,
        keep_canary=keep_canary,
        recovery_state=recovery_state,
        clamp_limits=clamp_limits,
        corrections=corrections,
        adapter_read=adapter_read,
    )


def desired_of(  # noqa: PLR0913 - the planning inputs and the kept state
    spec: api.LlamaDeploymentSpec,
    *,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: inputs.HubFetch | None,
    keep: api.Plan | None = None,
    card: inputs.CardFetch | None = None,
    keep_canary: api.Plan | None = None,
    recovery_state: api.RecoveryStatus | None = None,
    clamp_limits: bool = False,
    corrections: inputs.CorrectionsRead | None = None,
    adapter_read: inputs.AdapterRead | None = None,
) -> Desired:
    """``desired`` for a spec already parsed (the reconcile parses it once, in ``observe``)."""
    try:
        model = resolve_facts(model=spec.model, namespace=namespace, fetch=fetch)
    except (facts.FactsError, api.SpecError) as exc:
        raise PlanningError(status.PlanningFailure("ModelFactsUnavailable", str(exc))) from exc
    # The licence comes before the plan: an adapter whose card declares another licence
    # than the base model's is held back, and the plan sizes only the adapters served.
    detection, card_gated = detect_license(spec=spec, namespace=namespace, card=card)
    decided = decide_adapters(
        spec=spec, namespace=namespace, read=adapter_read, base_license=detection.license
    )
    unrecovered, decided = _request_for(
        spec=spec, model=model, available=available, settings=settings, decided=decided
    )
    request = replanning.apply(unrecovered, recovery_state)
    inputs_hash = adapters_hash(
        replanning.inputs_hash(api.plan_inputs_hash(spec), recovery_state),
        decided.servable,
        lora=request.lora,
    )
    _check_pools_left(request, recovery_state=recovery_state)
    plan = _chosen_plan(
        request,
        spec,
        inputs_hash=inputs_hash,
        kept=(keep_canary, keep),
        recovery_state=recovery_state,
        corrections=corrections,
    )
    pool = next(p for p in request.pools if p.name == plan.pool)
    _check_plan_serves_spec(spec, plan, clamp_limits=clamp_limits)
    return Desired(
        spec=spec,
        model=model,
        plan=plan,
        pool=pool,
        detection=detection,
        card_gated=card_gated,
        objects=_children(
            spec,
            plan=plan,
            pool=pool,
            detection=detection,
            name=name,
            namespace=namespace,
            uid=uid,
            settings=settings,
        ),
        adapter_decisions=decided,
    )


def decide_adapters(
    *,
    spec: api.LlamaDeploymentSpec,
    namespace: str,
    read: inputs.AdapterRead | None,
    base_license: terms.License | None,
) -> adapters.Decisions:
    """Each spec.adapters entry resolved (the Hub through ``read``, overridden by the spec's
    rank and targetModules) and decided: served, or held back with the reason. A failing
    read holds back that adapter only."""
    found = [
        read(adapter, spec.model, namespace) if read is not None else adapters.Found()
        for adapter in spec.adapters
    ]
    return adapters.decide(
        adapters=spec.adapters, found=found, model_id=spec.model.id, base_license=base_license
    )


def adapters_hash(
    base: str, served: Sequence[facts.AdapterFacts], *, lora: sizing.LoraLoad | None = None
) -> str:
    """``Plan.inputsHash`` with the served adapters folded in (unchanged without any), so a
    kept plan is made anew when an adapter held back becomes servable, or the other way
    round, though the spec did not change (a licence or a Hub answer did).

    With runtime updates (``lora.runtime``) only the slots are folded in: an adapter added
    or removed within them keeps the plan, whose adapter list ``_chosen_plan`` refreshes,
    so the pod template does not change and the operator loads it into the running pods.
    """
    if lora is not None and lora.runtime:
        extra = f"runtime:{lora.max_loras}x{lora.max_rank}"
    elif not served:
        return base
    else:
        extra = ";".join(
            f"{a.name}={a.source}@{a.revision}/{a.rank}/{','.join(a.target_modules)}"
            for a in served
        )
    return hashlib.sha256(f"{base}/{extra}".encode()).hexdigest()[:16]


def _request_for(
    *,
    spec: api.LlamaDeploymentSpec,
    model: facts.ModelFacts,
    available: Sequence[pools.Pool],
    settings: config.OperatorConfig,
    decided: adapters.Decisions,
) -> tuple[planner.Request, adapters.Decisions]:
    """The planner's request with the adapters that may be served, and the decisions with
    those the planned engine release cannot serve (``planning.adapters.unservable``) held
    back too."""
    request = planner.request_for(spec=spec, model=model, available=available, settings=settings)
    profile = request.profile
    runtime = planning_adapters.runtime(spec.adapterUpdates, profile=profile)
    refused = {
        adapter.name: why
        for adapter in decided.servable
        if (why := planning_adapters.unservable(adapter, profile=profile, updates=runtime))
        is not None
    }
    decided = adapters.hold(decided, refused=refused)
    if spec.runtime_adapters() and runtime is None:
        decided = adapters.noted(
            decided,
            f"spec.adapterUpdates.mode Runtime: {profile.displayName} loads adapters only at "
            "start, so a change to them rolls out through the canary (as mode Rollout)",
        )
    return (
        planner.request_for(
            spec=spec,
            model=model,
            available=available,
            settings=settings,
            adapters=decided.servable,
        ),
        decided,
    )


def resolve_facts(
    *, model: api.ModelSpec, namespace: str, fetch: inputs.HubFetch | None
) -> facts.ModelFacts:
    """spec overrides > built-in catalog > Hub; the Hub only when the others fall short."""
    entry = catalog.lookup(model.id)
    try:
        return facts.resolve(model=model, catalog_entry=entry)
    except facts.FactsError as missing:
        if fetch is None:
            raise
        try:
            from_hub = fetch(model, namespace)
        except hub.HubError as exc:
            raise facts.FactsError(f"{missing} ({exc})") from exc
    return facts.resolve(model=model, catalog_entry=entry, hub=from_hub)


def _check_pools_left(
    request: planner.Request, *, recovery_state: api.RecoveryStatus | None
) -> None:
    """``PlanningError`` when re-planning has excluded every pool the spec allows."""
    if not request.pools and recovery_state is not None and recovery_state.excludedPools:
        raise PlanningError(
            status.PlanningFailure(
                "NoFeasiblePlan",
                "spec.placement.pools: every GPU pool the spec allows was excluded after its "
                "pods stayed unschedulable (no free GPUs)"
                + replanning.exhausted(recovery_state)
                + ". Add GPU capacity or allow more pools; set spec.failover.retryPoolsAfter "
                "to try them again, or change the spec to start afresh",
            )
        )


def _chosen_plan(
    request: planner.Request,
    spec: api.LlamaDeploymentSpec,
    *,
    inputs_hash: str,
    kept: tuple[api.Plan | None, api.Plan | None],
    recovery_state: api.RecoveryStatus | None,
    corrections: inputs.CorrectionsRead | None,
) -> api.Plan:
    """The first of ``kept`` (a canary's plan, the plan in status) made from these inputs
    that still fits, else a plan made anew; ``PlanningError`` when none fits."""
    previous = next((p for p in kept if p is not None), None)
    try:
        still = [p for p in kept if p is not None and p.inputsHash == inputs_hash]
        if still and _still_fits(request, still[0]):
            # The image may have moved to another release of the same engine (a new
            # operator default): the plan stands if that release serves it too (checked
            # by _still_fits), and is rendered with that release's profile.
            kept_plan = still[0].model_copy(update={"engineVersion": request.engine_version})
            return runtime_adapters(kept_plan, request=request, previous=still[0])
        made = _plan_in_order(
            _corrected(request, spec, corrections), spec, recovery_state
        ).model_copy(update={"inputsHash": inputs_hash})
        return runtime_adapters(made, request=request, previous=previous)
    except planner.PlanError as exc:
        reason = exc.reason or ("NoGPUPools" if not request.pools else "NoFeasiblePlan")
        message = f"{exc.field}: {exc}{replanning.exhausted(recovery_state)}"
        raise PlanningError(status.PlanningFailure(reason, message)) from exc


def runtime_adapters(
    plan: api.Plan, *, request: planner.Request, previous: api.Plan | None
) -> api.Plan:
    """With runtime updates, ``plan`` listing the adapters served now, and its
    ``lora.revision`` carried from ``previous`` (the canary's or status' plan) unless an
    adapter ``previous`` serves gets a new version (another id or path): then a new one.

    The adapter list is not a plan input (``adapters_hash``), so a kept plan is refreshed
    here; the revision is in the pod template (``builders.workload``), so adding or removing
    an adapter never restarts a pod, while a new version of one rolls out through the
    canary, by weight, like any pod change. A plan without runtime updates is returned as
    it is."""
    lora = plan.lora
    if lora is None or not lora.runtime:
        return plan
    served = planning_adapters.plan_adapters(request.adapters, profile=request.profile)
    revision = previous.lora.revision if previous is not None and previous.lora else None
    before = {a.name: a.source for a in previous.adapters} if previous is not None else {}
    changed = sorted(
        f"{a.name}={a.source}" for a in served if before.get(a.name, a.source) != a.source
    )
    if changed:
        revision = hashlib.sha256(f"{revision}/{';'.join(changed)}".encode()).hexdigest()[:12]
    return plan.model_copy(
        update={"adapters": served, "lora": lora.model_copy(update={"revision": revision})}
    )


def _still_fits(request: planner.Request, plan: api.Plan) -> bool:
    """Whether a kept plan still fits its pool as the pool is described now."""
    for index, pool in enumerate(request.pools):
        if pool.name == plan.pool:
            return (
                plan.quantization in planner.quantizations(request, pool)
                and plan.tensorParallel in planner.degrees(request, pool)
                and planner.size(
                    request, pool, index, plan.quantization, plan.tensorParallel
                ).fit.feasible
            )
    return False  # the pool is gone


def _corrected(
    request: planner.Request,
    spec: api.LlamaDeploymentSpec,
    corrections: inputs.CorrectionsRead | None,
) -> planner.Request:
    """``request`` with the corrections recorded for its model and engine release on each
    of its pools' GPU products (``capacity.ratios``)."""
    if corrections is None or not request.pools:
        return request
    found = capacity.ratios(
        corrections(),
        model=spec.model.id,
        engine=request.engine,
        version=request.engine_version,
        gpu_products=sorted({pool.gpuProduct for pool in request.pools}),
    )
    return dataclasses.replace(request, kv_corrections=found) if found else request


def _plan_in_order(
    request: planner.Request,
    spec: api.LlamaDeploymentSpec,
    recovery_state: api.RecoveryStatus | None,
) -> api.Plan:
    """The planner's best plan; after a pool was excluded for lack of GPUs, and with
    spec.placement.pools naming an order, the first pool of that order that fits instead
    (the user's preference, not the cheapest)."""
    if recovery_state is None or not recovery_state.excludedPools or not spec.placement.pools:
        return planner.plan(request)
    for pool in request.pools:  # pools.restrict kept the spec's order
        try:
            return planner.plan(dataclasses.replace(request, pools=(pool,)))
        except planner.PlanError:
            continue
    return planner.plan(request)  # none fits alone: the planner explains why


def _check_plan_serves_spec(
    spec: api.LlamaDeploymentSpec, plan: api.Plan, *, clamp_limits: bool
) -> None:
    """``PlanningError`` for what the planned engine cannot do that the spec asks for."""
    if (
        spec.autoscaling is not None
        and spec.autoscaling.metric == "kvCache"
        and (plan.engine == "tgi")
    ):
        raise PlanningError(
            status.PlanningFailure(
                "InvalidSpec",
                "spec.autoscaling.metric: TGI exposes no KV-cache metric; use queue or "
                "inflight, or engine: vllm",
            )
        )
    if not clamp_limits:
        try:
            engines.check_limits(spec=spec, plan=plan)
        except api.SpecError as exc:
            raise PlanningError(status.PlanningFailure("InvalidSpec", str(exc))) from exc


def detect_license(
    *, spec: api.LlamaDeploymentSpec, namespace: str, card: inputs.CardFetch | None
) -> tuple[terms.Detection, bool | None]:
    """The model's licence, and whether its repository is gated (None: card unreadable).

    Reads the model's Hub card and, for a fine-tune, the cards of its ancestors (nearest
    first, at most ``MAX_BASE_MODELS``; an ancestor whose repository name already tells
    its licence is not looked up). A Hub that cannot be reached is not an error here:
    detection falls back to the catalog and the repository name.
    """
    model = spec.model
    entry = catalog.lookup(model.id)
    own: hub.Card | None = None
    bases: list[str] = []
    base_cards: dict[str, tuple[str | None, str | None]] = {}
    if card is not None:
        try:
            own = card(model.id, model.revision, model, namespace)
        except hub.HubError:
            own = None
    if own is not None:
        queue = list(own.base_models)
        while queue and len(bases) < MAX_BASE_MODELS:
            base = queue.pop(0)
            if base in bases or base == model.id:
                continue
            bases.append(base)
            if card is None or terms.by_pattern(base) is not None:
                continue
            try:
                ancestor = card(base, "main", model, namespace)
            except hub.HubError:
                continue
            base_cards[base] = (ancestor.license, ancestor.license_name)
            queue.extend(ancestor.base_models)
    detection = terms.detect(
        model_id=model.id,
        override=spec.license.id if spec.license is not None else None,
        card_license=own.license if own else None,
        card_license_name=own.license_name if own else None,
        base_models=bases,
        base_cards=base_cards,
        catalog_license=entry.license if entry is not None else None,
    )
    return detection, (own.gated if own is not None else None)


def _children(
    spec: api.LlamaDeploymentSpec,
    *,
    plan: api.Plan,
    pool: pools.Pool,
    detection: terms.Detection,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
) -> list[dict[str, Any]]:
    """The children of the newest spec: the endpoint's, its external scaler, its
    NetworkPolicy."""
    objects = builders.build_all(
        name=name,
        namespace=namespace,
        uid=uid,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
        detection=detection,
    )
    try:
        objects += scalers.for_spec(
            name=name,
            namespace=namespace,
            uid=uid,
            spec=spec,
            engine=plan.engine,
            settings=settings,
        )
    except scalers.ScalerError as exc:
        raise PlanningError(status.PlanningFailure("InvalidSpec", str(exc))) from exc
    if security.network_policy_enabled(spec, settings):
        objects.append(
            builders.network_policy(
                name=name,
                namespace=namespace,
                uid=uid,
                network=spec.network,
                settings=settings.security.networkPolicy,
            )
        )
    return objects
