"""One reconcile of one LlamaDeployment: decide, apply what changed, report.

The pipeline of architecture.md in one place: parse the spec, resolve model facts
(spec > catalog > Hub), choose GPU pools (operator config, else discovered nodes),
plan, detect the licence (spec > Hub card and its base models > catalog > name),
render the children, pass the licence and gated-access gates, apply only the
children whose content hash differs from what is live, and compute the status and
Events. Decisions are delegated to pure modules; the only I/O is through the
injected ``k8s.Client`` and the Hub callables.

A spec that cannot be planned never touches the children: whatever was serving
keeps serving, and the ``Planned`` condition names the field to fix. A closed gate
(licence not accepted, no access to a gated model) holds back the serving
Deployments only: nothing that serves is torn down or changed, and the licence
ConfigMap and Services are still applied.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Literal

import pydantic

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.clients import hub, k8s
from llama_operator.licensing import gating, terms
from llama_operator.operations import (
    canary_analysis,
    capacity,
    failover,
    health,
    replanning,
    rollout,
)
from llama_operator.planning import catalog, config, facts, planner, pools
from llama_operator.reconcile import status
from llama_operator.serving import builders, engines, scalers, security

# (kind, namespace, name) -> the live object as last seen by a watch, or None.
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]
HubFetch = Callable[[api.ModelSpec, str], facts.PartialFacts]
# (repository, revision, the model whose token to use, namespace) -> its Hub card.
CardFetch = Callable[[str, str, api.ModelSpec, str], hub.Card]
# (model, namespace) -> whether the referenced token can read the repository.
AccessCheck = Callable[[api.ModelSpec, str], gating.AccessAnswer]
# (spec.auth.apiKeySecretRef, namespace) -> whether that Secret holds a non-empty key.
KeyCheck = Callable[[api.APIKeySecretRef, str], bool]


@dataclasses.dataclass(frozen=True)
class MeasureRequest:
    """What a canary judgement needs: which pods to compare, how, against what."""

    namespace: str
    name: str
    uid: str
    revision: str  # the canary's: a judgement is only for the canary it measured
    canary_engine: api.Engine
    stable_engine: api.Engine
    analysis: api.Analysis
    # The engine releases (Plan.engineVersion): whose metric names and request outcomes
    # the scrapes are read with. None: the engine's default release.
    canary_engine_version: str | None = None
    stable_engine_version: str | None = None


# A judgement of the canary against the stable pods, or None when none is due yet (the
# interval has not passed, or the window has too few requests so far).
Measure = Callable[[MeasureRequest], "canary_analysis.Judgement | None"]
# (namespace, name, plan) -> the primary's waiting requests per ready pod, or None when
# no pod could be read (spec.failover.overloadQueuePerReplica). The plan names the engine
# release whose profile names the queue metric.
QueueRead = Callable[[str, str, api.Plan], float | None]
# (namespace, name, plan) -> the KV capacity each ready pod of the primary reports, by pod
# (None: its page carries none; pods that could not be read are left out), or None when
# no reading is due (capacity.due: the same ready pods as the plan's observation).
CapacityRead = Callable[[str, str, api.Plan], Mapping[str, "capacity.PodCapacity | None"] | None]
# () -> the KV-cache corrections recorded so far (the calibration ConfigMap), by data key.
# Called only when a plan is made anew: a kept plan is never re-planned for a correction.
CorrectionsRead = Callable[[], Mapping[str, "capacity.Correction"]]

# How many ancestors of a fine-tune are looked up on the Hub at most.
MAX_BASE_MODELS = 8
# Kinds the operator writes but does not watch: watching every ConfigMap in the cluster
# to find our few costs far more than one no-op apply now and then. Their last applied
# hash is remembered in process; they are re-applied when it changes, and every
# REAPPLY_SECONDS anyway, which restores one deleted or edited by hand.
UNWATCHED_KINDS = frozenset(
    {"ConfigMap", "ScaledObject", "HorizontalPodAutoscaler", "HTTPRoute", "NetworkPolicy"}
)
REAPPLY_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event]
    written: list[str]  # "Kind/name" applied because they changed
    phase: str
    failure: str | None  # the Planned=False reason, when the spec could not be planned
    refreshed: list[str] = dataclasses.field(default_factory=list)  # re-applied unchanged
    consume_action: bool = False  # remove the llamaops.dev/rollout annotation (acted on)


@dataclasses.dataclass(frozen=True)
class Desired:
    spec: api.LlamaDeploymentSpec
    model: facts.ModelFacts
    plan: api.Plan
    pool: pools.Pool
    detection: terms.Detection
    card_gated: bool | None  # None: the Hub card could not be read
    objects: list[dict[str, Any]]


class PlanningError(Exception):
    def __init__(self, failure: status.PlanningFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def resolve_facts(
    *, model: api.ModelSpec, namespace: str, fetch: HubFetch | None
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


def desired(
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: HubFetch | None,
    keep: api.Plan | None = None,
    card: CardFetch | None = None,
    keep_canary: api.Plan | None = None,
    recovery_state: api.RecoveryStatus | None = None,
    clamp_limits: bool = False,
    corrections: CorrectionsRead | None = None,
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
    the next plan, it does not move a running endpoint).
    """
    try:
        spec = api.parse_spec(dict(raw_spec))
    except api.SpecError as exc:
        raise PlanningError(status.PlanningFailure("InvalidSpec", str(exc))) from exc
    try:
        model = resolve_facts(model=spec.model, namespace=namespace, fetch=fetch)
    except (facts.FactsError, api.SpecError) as exc:
        raise PlanningError(status.PlanningFailure("ModelFactsUnavailable", str(exc))) from exc
    request = replanning.apply(
        planner.request_for(spec=spec, model=model, available=available, settings=settings),
        recovery_state,
    )
    inputs = replanning.inputs_hash(api.plan_inputs_hash(spec), recovery_state)
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
    try:
        kept = [p for p in (keep_canary, keep) if p is not None and p.inputsHash == inputs]
        if kept and _still_fits(request, kept[0]):
            # The image may have moved to another release of the same engine (a new
            # operator default): the plan stands if that release serves it too (checked
            # by _still_fits), and is rendered with that release's profile.
            plan = kept[0].model_copy(update={"engineVersion": request.engine_version})
        else:
            plan = _plan_in_order(
                _corrected(request, spec, corrections), spec, recovery_state
            ).model_copy(update={"inputsHash": inputs})
    except planner.PlanError as exc:
        reason = exc.reason or ("NoGPUPools" if not request.pools else "NoFeasiblePlan")
        message = f"{exc.field}: {exc}{replanning.exhausted(recovery_state)}"
        raise PlanningError(status.PlanningFailure(reason, message)) from exc
    pool = next(p for p in request.pools if p.name == plan.pool)
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
    detection, card_gated = detect_license(spec=spec, namespace=namespace, card=card)
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
    return Desired(
        spec=spec,
        model=model,
        plan=plan,
        pool=pool,
        detection=detection,
        card_gated=card_gated,
        objects=objects,
    )


def _corrected(
    request: planner.Request, spec: api.LlamaDeploymentSpec, corrections: CorrectionsRead | None
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


def detect_license(
    *, spec: api.LlamaDeploymentSpec, namespace: str, card: CardFetch | None
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


def not_yet_active(raw_spec: Mapping[str, Any]) -> list[str]:
    """Spec fields the user set whose behaviour this version does not have yet."""
    return [name for name in api.NOT_YET_ACTIVE if raw_spec.get(name) not in (None, [], {})]


def reconcile(
    *,
    body: Mapping[str, Any],
    settings: config.OperatorConfig,
    client: k8s.Client,
    lookup: Lookup,
    gpu_nodes: Iterable[Mapping[str, Any]],
    fetch: HubFetch | None,
    now: str,
    generations: MutableMapping[str, int] | None = None,
    card: CardFetch | None = None,
    access: AccessCheck | None = None,
    unwatched: MutableMapping[str, tuple[str | None, float]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    measure: Measure | None = None,
    handled: MutableMapping[str, str] | None = None,
    instant: float | None = None,
    queue: QueueRead | None = None,
    api_key: KeyCheck | None = None,
    kv_capacity: CapacityRead | None = None,
    corrections: CorrectionsRead | None = None,
) -> Outcome:
    """Reconcile one LlamaDeployment.

    ``generations`` remembers, per child ("Kind/name"), the ``metadata.generation`` our last
    apply produced (the handlers keep it in the object's memo): a live generation past
    it means someone else edited the child, which is then re-applied. A child this
    process has not applied yet (the first reconcile after a start) is applied once,
    quietly, whatever its annotations say: an edit made while no operator watched left
    the hash annotation as it was, and only the apply itself compares the live fields with
    ours. When that apply changes the object's generation, the edit is reverted and a
    ``DriftReverted`` Warning says which child.

    ``card`` reads Hub cards (licence detection, gating); ``access`` checks a referenced
    token against a gated repository, and is called only when a serving Deployment is
    about to be created or changed. Either may be None (not available: offline CLI,
    tests), which leaves the licence to the catalog and access unchecked.

    ``measure`` scrapes and judges a canary in traffic (``canary.Analyzer``); None leaves
    canaries unjudged (their steps then wait, as with too little traffic). ``handled``
    remembers the rollout actions already acted on, so a stale copy of the object that
    still carries the annotation does not act twice. ``instant`` is ``now`` in seconds
    since the epoch with its fraction (rollout pauses are timed from it); None reads it
    from ``now``. ``api_key`` checks that the Secret of spec.auth.apiKeySecretRef holds its
    key, only when serving pods are about to be created or changed; None leaves it unchecked.

    ``kv_capacity`` reads the KV cache the primary's ready pods allocated, once the primary
    is rolled out on its current template (``status.plan.observed``, the KVCacheCapacity
    condition, a correction recorded for the next plans); None leaves it unobserved.
    ``corrections`` reads the corrections recorded so far, for a primary planned anew.
    """
    generations = {} if generations is None else generations
    unwatched = {} if unwatched is None else unwatched
    # The primary and every fallback name the same Secret: ask about it once per reconcile.
    api_key = _asked_once(api_key)
    meta = body.get("metadata") or {}
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = meta.get("generation")
    raw_spec = body.get("spec") or {}
    previous = body.get("status") or {}
    unservable = name_failure(name)
    if unservable is not None:
        # No Service could be named after it: create no child at all, rather than the
        # half of an endpoint that the API server would accept before refusing the rest.
        return _unservable_name(
            unservable,
            name=name,
            namespace=namespace,
            raw_spec=raw_spec,
            previous=previous,
            generation=generation,
            lookup=lookup,
            now=now,
        )
    available = settings.pools or pools.discover(gpu_nodes)
    primary_name = f"{name}-primary"

    events: list[Event] = []
    written: list[str] = []  # applied because they changed
    refreshed: list[str] = []  # applied unchanged: the periodic re-apply of unwatched kinds
    drifted: list[str] = []  # refreshed after a start, and found edited (DriftReverted)
    plan: api.Plan | None = None
    failure: status.PlanningFailure | None = None
    gate: Gate | None = None
    held_back: str | None = None
    scaler_missing: str | None = None  # an external scaler kind the cluster does not serve
    external: dict[str, str] | None = None
    scaler_known = False  # whether external says what is in place (else status keeps it)
    route_missing: str | None = None  # the cluster does not serve the Gateway API
    route: str | None = None
    route_known = False
    network_policy: str | None = None
    policy_known = False  # False: status.networkPolicy stays as it is
    decision: rollout.Decision | None = None
    rollout_status: dict[str, Any] | None = None
    rollout_held: str | None = None
    consume_action = False  # the llamaops.dev/rollout annotation was acted on: remove it
    removed_children: list[str] = []  # the canary's, deleted once no canary is wanted
    canary_counts = status.counts(None)
    switched: failover.Decision | None = None  # where the entry point serves from
    planned_now: api.Plan | None = None  # the primary's plan this reconcile, when one fits
    spec_replicas = raw_spec.get("replicas", 1)
    desired_replicas = spec_replicas if isinstance(spec_replicas, int) else 1
    deployment = lookup("Deployment", namespace, primary_name)
    moment = rollout.epoch(now) if instant is None else instant
    wanted: Desired | None = None
    # Re-planning (a pool without free GPUs, an engine out of memory) decides from the
    # primary's health before planning: its outcome is what the planner plans with.
    spec_now = _parsed(raw_spec)
    primary_health = _primary_health(
        deployment,
        spec_now,
        previous,
        client=client,
        namespace=namespace,
        name=name,
        pools_of=available,
    )
    recovered = _recover(spec_now, previous, primary_health, now=moment, wall=now)
    try:
        wanted = desired(
            name=name,
            namespace=namespace,
            uid=uid,
            raw_spec=raw_spec,
            settings=settings,
            available=available,
            fetch=fetch,
            keep=_current_plan(previous),
            card=card,
            keep_canary=_canary_plan(previous),
            recovery_state=recovered.state if recovered is not None else None,
            corrections=corrections,
        )
    except PlanningError as exc:
        failure = exc.failure
        wanted = _last_plan_standing(
            recovered,
            previous,
            name=name,
            namespace=namespace,
            uid=uid,
            raw_spec=raw_spec,
            settings=settings,
            available=available,
            fetch=fetch,
            card=card,
        )
    if wanted is not None:
        # failure with a plan: re-planning excluded every pool; the last plan stands (its
        # pods wait for GPUs) and the failover below serves from a fallback meanwhile.
        plan = wanted.plan if failure is None else None
        planned_now = plan
        serving = deployment is not None
        recorded = _recorded(name, previous)
        gate = gates(
            wanted,
            name=name,
            namespace=namespace,
            previous=previous,
            serving=serving,
            creating_pods=_changes_pods(wanted, lookup, namespace, generations),
            access=access,
            settings=settings,
            api_key=api_key,
        )
        if gate.hold is None:
            # A closed gate decides nothing about rollouts: no canary of a change that may
            # not be served, and a rollout under way stays as it is until the gate opens.
            decision, consumed = _rollout_decision(
                wanted,
                body=body,
                previous=previous,
                client=client,
                lookup=lookup,
                measure=measure,
                handled=handled,
                now=now,
                instant=moment,
            )
            if consumed is not None:
                consume_action = True
                if consumed:
                    events.append(Event("Warning", "UnknownRolloutAction", consumed))
        backups = _fallbacks(
            wanted,
            name=name,
            namespace=namespace,
            uid=uid,
            raw_spec=raw_spec,
            settings=settings,
            available=available,
            fetch=fetch,
            card=card,
            access=access,
            lookup=lookup,
            generations=generations,
            primary=wanted.detection,
            api_key=api_key,
        )
        switched = failover.decide(
            policy=api.failover_policy(wanted.spec),
            previous=failover.previous_of(previous.get("failover")),
            primary=primary_health or health.Health(desired=desired_replicas, ready=0),
            primary_model=wanted.spec.model.id,
            fallbacks=[b.candidate for b in backups],
            overloaded=_overloaded(wanted, primary_health, queue, namespace, name),
            now=moment,
            wall=now,
        )
        events.extend(switched.events)
        objects = _render(
            wanted,
            decision,
            name=name,
            namespace=namespace,
            uid=uid,
            previous=previous,
            settings=settings,
            backups=backups,
            switched=switched,
        )
        reasons = {
            id(obj): _write_reason(
                obj,
                namespace,
                lookup=lookup,
                generations=generations,
                unwatched=unwatched,
                now=clock(),
                # status records what was applied before (the licence, the external
                # scaler): a child it does not name is new, one it names and this process
                # has not seen is a restart's first sight.
                new=f"{obj['kind']}/{obj['metadata']['name']}" not in recorded,
            )
            for obj in objects
        }
        pending = [obj for obj in objects if reasons[id(obj)] is not None]
        for obj in pending:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            # A closed gate: no serving Deployment is created or changed. While one serves,
            # nothing else changes either, so the /licenses its pods mount and the
            # annotations keep describing what actually runs. The NetworkPolicy is the
            # exception: it describes no pod, and who may connect is never held back.
            if (
                gate.hold is not None
                and (kind == "Deployment" or serving)
                and kind != "NetworkPolicy"
            ):
                if reasons[id(obj)] == "change":
                    held_back = gate.hold
                continue
            child = f"{kind}/{obj_name}"
            # Read before the apply: the watch may deliver the apply's own result to the
            # index while the apply's answer is still on its way here.
            before = None if kind in UNWATCHED_KINDS else lookup(kind, namespace, obj_name)
            try:
                result = client.apply(obj)
            except k8s.APIError as exc:
                if kind not in OPTIONAL_KINDS or exc.status != 404:
                    raise
                if kind == "HTTPRoute":
                    route_missing = f"{obj['apiVersion']} {kind}"
                else:
                    scaler_missing = f"{obj['apiVersion']} {kind}"
                # Tried again when the object changes or REAPPLY_SECONDS pass, like a
                # refresh, not on every resync (the status says it is missing meanwhile).
                unwatched[child] = (_live_hash(obj), clock())
                continue  # the cluster does not serve the kind: reported, the rest applies
            applied_generation = (result.get("metadata") or {}).get("generation")
            # Services have no generation: 0 still records that this process applied it.
            generations[child] = applied_generation if isinstance(applied_generation, int) else 0
            if reasons[id(obj)] == "refresh" and _reverted(before, applied_generation):
                drifted.append(child)
            if kind in UNWATCHED_KINDS:
                unwatched[child] = (_live_hash(obj), clock())
            if reasons[id(obj)] == "change":
                written.append(child)
            else:
                refreshed.append(child)
            if kind == "Deployment" and obj_name == primary_name:
                deployment = result
        # An optional kind refused earlier and not tried again this time is still missing.
        untried = {
            obj["kind"]: f"{obj['apiVersion']} {obj['kind']}"
            for obj in objects
            if obj["kind"] in OPTIONAL_KINDS and reasons[id(obj)] is None
        }
        if "HTTPRoute" in untried and _refused(previous, conditions.TRAFFIC):
            route_missing = untried["HTTPRoute"]
        for kind in EXTERNAL_SCALER_KINDS & untried.keys():
            if _refused(previous, conditions.AUTOSCALING):
                scaler_missing = untried[kind]
        if decision is not None:
            deployment = _resize_held_primary(
                decision,
                deployment,
                client=client,
                namespace=namespace,
                name=primary_name,
                generations=generations,
                written=written,
            )
            removed_children = _remove_canary(
                decision,
                client=client,
                lookup=lookup,
                namespace=namespace,
                name=name,
                previous=previous,
            )
            route, route_known = _sync_route(
                wanted,
                previous=previous,
                client=client,
                namespace=namespace,
                name=name,
                missing=route_missing,
            )
        network_policy, policy_known = _sync_network_policy(
            wanted, settings, previous=previous, client=client, namespace=namespace, name=name
        )
        if held_back is None or not serving:
            external = _sync_external_scaler(
                wanted,
                previous=previous,
                client=client,
                namespace=namespace,
                missing=scaler_missing,
            )
            scaler_known = True
        # else: a closed gate holds everything back; the scaler recorded stays as it is.
        if held_back is not None and serving:
            # status describes what runs: the held plan and licence are not it (the
            # conditions say what is held and why).
            plan, gate = None, dataclasses.replace(gate, license=None)
        elif decision is not None and decision.mode in ("canary", "hold"):
            # The primary runs the stable revision: its plan and licence stay in status;
            # the canary's plan is in status.rollout.
            plan, gate = None, dataclasses.replace(gate, license=None)
        elif plan is not None and plan.model_dump(mode="json", exclude_none=True) != previous.get(
            "plan"
        ):
            events.append(Event("Normal", "Planned", plan.reason))
        if written:
            events.append(Event("Normal", "Applied", ", ".join(written)))
        if drifted:
            events.append(
                Event(
                    "Warning",
                    "DriftReverted",
                    f"{', '.join(drifted)}: changed outside the operator while it was not "
                    "running; the operator's fields were re-applied",
                )
            )
        if switched is not None:
            removed_children += _remove_stale_fallbacks(
                previous,
                wanted.spec,
                client=client,
                lookup=lookup,
                namespace=namespace,
                name=name,
            )
        if removed_children:
            events.append(Event("Normal", "Removed", ", ".join(removed_children)))
        if decision is not None:
            events.extend(decision.events)
            rollout_status = decision.status
            if rollout_status is not None and decision.mode != "direct":
                rollout_status = {
                    **rollout_status,
                    "canaryPlan": wanted.plan.model_dump(mode="json", exclude_none=True),
                }
            rollout_held = decision.held
            if decision.mode == "canary":
                desired_replicas = decision.stable_replicas
            in_traffic = (decision.status or {}).get("phase") in (
                "Progressing",
                "Paused",
                "Promoting",
            )
            if decision.canary_exists and in_traffic:
                canary_counts = status.counts(lookup("Deployment", namespace, f"{name}-canary"))

    # What the primary's engines allocated, against the plan they serve (only while status
    # gets this plan: not while a canary or a closed gate keeps the stable one there).
    capacity_check: conditions.Check | None = None
    capacity_known = False  # False: KVCacheCapacity stays as it is
    if plan is not None and wanted is not None and gate is not None:
        capacity_known = True
        plan, capacity_check = _observe_capacity(
            plan,
            wanted=wanted,
            gate=gate,
            deployment=deployment,
            read=kv_capacity,
            client=client,
            settings=settings,
            namespace=namespace,
            name=name,
            now=now,
        )
    history, recovery_status = _replanned(recovered, previous, plan=planned_now, events=events)
    new_status = status.compute(
        status.Observation(
            generation=generation,
            previous=previous,
            plan=plan,
            failure=failure,
            deployment=deployment,
            desired_replicas=desired_replicas,
            selector=builders.selector_string(name=name, variant="primary"),
            not_yet_active=not_yet_active(raw_spec),
            now=now,
            license=gate.license if gate is not None else None,
            checks=(
                (
                    *gate.checks,
                    *_autoscaling_checks(wanted.spec, scaler_missing),
                    *(decision.checks if decision is not None else ()),
                    *_traffic_checks(wanted.spec, name, route_missing),
                    *(switched.checks if switched is not None else ()),
                    *((switched.placement,) if switched and switched.placement else ()),
                    *((capacity_check,) if capacity_check is not None else ()),
                )
                if gate is not None and wanted is not None
                else ()
            ),
            removed=(
                (
                    *gate.removed,
                    *_autoscaling_removed(wanted.spec),
                    *(decision.removed if decision is not None else ()),
                    *(switched.removed if switched is not None else ()),
                    *(() if wanted.spec.fallbacks else (conditions.FALLBACKS_PLANNED,)),
                    *(
                        ()
                        if wanted.spec.traffic and wanted.spec.traffic.gatewayRef
                        else (conditions.TRAFFIC,)
                    ),
                    *(
                        (conditions.KV_CACHE_CAPACITY,)
                        if capacity_known and capacity_check is None
                        else ()
                    ),
                )
                if gate is not None and wanted is not None
                else ()
            ),
            held_back=held_back or rollout_held,
            external_scaler=external,
            scaler_known=scaler_known,
            autoscaled=isinstance(raw_spec.get("autoscaling"), Mapping),
            rollout=rollout_status,
            canary_replicas=canary_counts.replicas,
            canary_ready=canary_counts.ready,
            http_route=route,
            route_known=route_known,
            network_policy=network_policy,
            network_policy_known=policy_known,
            failover=switched.status if switched is not None else None,
            failover_known=switched is not None,
            active_model=switched.active_model if switched is not None else None,
            serving_fallback=_serving_fallback(switched),
            fallback_ready=_active_ready(switched),
            recovery=recovery_status,
            plan_history=history,
        )
    )
    events.extend(_condition_events(previous, new_status))
    return Outcome(
        status_patch=status.diff(previous, new_status),
        events=events,
        written=written,
        phase=new_status["phase"],
        failure=failure.reason if failure is not None else None,
        refreshed=refreshed,
        consume_action=consume_action,
    )


def _observe_capacity(
    plan: api.Plan,
    *,
    wanted: Desired,
    gate: Gate,
    deployment: Mapping[str, Any] | None,
    read: CapacityRead | None,
    client: k8s.Client,
    settings: config.OperatorConfig,
    namespace: str,
    name: str,
    now: str,
) -> tuple[api.Plan, conditions.Check | None]:
    """The plan with what its pods report (``plan.observed``), and ``KVCacheCapacity``.

    The pods are read only once the primary runs this template on every pod (a rolling
    update's old pods were sized by another plan) and the set of ready pods changed since
    the last reading; a correction is written to the calibration ConfigMap only when it
    differs from the one the last reading recorded."""
    before = plan.observed
    observed = before
    if read is not None and _rolled_out(deployment):
        readings = read(namespace, name, plan)
        if readings:  # every pod failed to answer: keep what was known
            observed = capacity.observe(readings, plan=plan, now=now)
    unrecorded = _not_recorded(settings, gate)
    if observed is not None and observed is not before:
        where = capacity.already_recorded(before, observed)
        record = capacity.correction(
            plan.model_copy(update={"observed": observed}),
            model=wanted.spec.model.id,
            source=f"{namespace}/{name}",
        )
        home = settings.calibration.namespace  # None: _not_recorded says why
        if where is None and unrecorded is None and record is not None and home is not None:
            _record_correction(client, home, settings.calibration.configMap, record)
            where = capacity.recorded_in(home, settings.calibration.configMap, record)
        observed = observed.model_copy(update={"recordedIn": where})
    plan = plan.model_copy(update={"observed": observed})
    return plan, capacity.condition(plan, not_recorded=unrecorded)


def _rolled_out(deployment: Mapping[str, Any] | None) -> bool:
    """Every pod of the primary runs its current template, and one is ready."""
    c = status.counts(deployment)
    return deployment is not None and c.current and c.ready > 0 and c.updated >= c.replicas


def _not_recorded(settings: config.OperatorConfig, gate: Gate) -> str | None:
    """Why a shortfall would not be recorded as a correction, or None."""
    if settings.calibration.namespace is None:
        return (
            "the operator config names no calibration namespace (calibration.namespace; "
            "the Helm chart sets it to the operator's)"
        )
    args = next((c for c in gate.checks if c.type == conditions.ENGINE_ARGS), None)
    if args is not None and args.status == "False":
        return (
            "spec.engineArgs override the plan's sizing (the EngineArgs condition), so the "
            "shortfall says nothing about the memory model"
        )
    return None


def _record_correction(
    client: k8s.Client, namespace: str, name: str, record: capacity.Correction
) -> None:
    """Merge one key into the calibration ConfigMap (no read, so corrections of other
    keys written meanwhile are never lost); create it by server-side apply when missing."""
    data = {record.key: record.value()}
    try:
        client.merge_patch(
            api_version="v1", kind="ConfigMap", namespace=namespace, name=name, body={"data": data}
        )
    except k8s.APIError as exc:
        if exc.status != 404:
            raise
        client.apply(capacity.config_map(namespace=namespace, name=name, data=data))


def corrections_reader(
    client: k8s.Client, settings: config.OperatorConfig
) -> CorrectionsRead | None:
    """The recorded corrections, read from the calibration ConfigMap when called (a plan is
    made anew); None when the operator config names no calibration namespace."""
    namespace, name = settings.calibration.namespace, settings.calibration.configMap
    if namespace is None:
        return None

    def read() -> Mapping[str, capacity.Correction]:
        found = client.get(api_version="v1", kind="ConfigMap", namespace=namespace, name=name)
        return capacity.records((found or {}).get("data"))

    return read


def name_failure(name: str) -> status.PlanningFailure | None:
    """``InvalidName`` when no child could be named after ``name`` (``api.name_problem``)."""
    problem = api.name_problem(name)
    return status.PlanningFailure("InvalidName", problem) if problem is not None else None


def _unservable_name(
    failure: status.PlanningFailure,
    *,
    name: str,
    namespace: str,
    raw_spec: Mapping[str, Any],
    previous: Mapping[str, Any],
    generation: int | None,
    lookup: Lookup,
    now: str,
) -> Outcome:
    """A LlamaDeployment whose name no child could have (``api.name_problem``): Planned
    False with reason InvalidName, nothing applied, read or deleted. A Deployment an older
    operator version left under this name is reported as it is, and goes with the
    LlamaDeployment (owner references) once it is deleted."""
    replicas = raw_spec.get("replicas", 1)
    new_status = status.compute(
        status.Observation(
            generation=generation,
            previous=previous,
            plan=None,
            failure=failure,
            deployment=lookup("Deployment", namespace, f"{name}-{builders.PRIMARY}"),
            desired_replicas=replicas if isinstance(replicas, int) else 1,
            selector=builders.selector_string(name=name, variant=builders.PRIMARY),
            not_yet_active=not_yet_active(raw_spec),
            now=now,
        )
    )
    return Outcome(
        status_patch=status.diff(previous, new_status),
        events=_condition_events(previous, new_status),
        written=[],
        phase=new_status["phase"],
        failure=failure.reason,
    )


def _replanned(
    recovered: replanning.Outcome | None,
    previous: Mapping[str, Any],
    *,
    plan: api.Plan | None,
    events: list[Event],
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """status.planHistory and status.recovery after this reconcile's re-planning (None:
    unchanged), and its Event."""
    if recovered is None:
        return None, None
    state = recovered.state.model_dump(mode="json", exclude_none=True)
    empty = not recovered.state.excludedPools and recovered.state.headroom == 0
    recovery_status = None if empty and not previous.get("recovery") else state
    change = recovered.change
    if change is None:
        return None, recovery_status
    landed = change.model_copy(update={"toPool": plan.pool if plan is not None else None})
    where = (
        f"now on pool {plan.pool}: {builders.plan_summary(plan=plan)}, maxModelLen "
        f"{plan.maxModelLen}"
        if plan is not None
        else "and no plan fits any more (see the Planned condition)"
    )
    events.append(Event("Warning", "Replanned", f"{change.message}; {where}"))
    try:
        before = [
            api.PlanChange.model_validate(e, strict=False)
            for e in previous.get("planHistory") or []
        ]
    except pydantic.ValidationError:
        before = []
    history = replanning.merge_history(before, landed)
    return [e.model_dump(mode="json", exclude_none=True) for e in history], recovery_status


def _serving_fallback(switched: failover.Decision | None) -> str | None:
    if switched is None or switched.active == failover.PRIMARY:
        return None
    state = switched.status or {}
    return f"serving from {switched.active} ({switched.active_model}): {state.get('message', '')}"


def _active_ready(switched: failover.Decision | None) -> int:
    if switched is None or switched.index is None:
        return 0
    rows = (switched.status or {}).get("fallbacks") or []
    return int(rows[switched.index].get("readyReplicas") or 0) if switched.index < len(rows) else 0


def _remove_stale_fallbacks(
    previous: Mapping[str, Any],
    spec: api.LlamaDeploymentSpec,
    *,
    client: k8s.Client,
    lookup: Lookup,
    namespace: str,
    name: str,
) -> list[str]:
    """Delete the children of fallbacks the spec no longer has (status names them)."""
    before = failover.previous_of(previous.get("failover"))
    if before is None:
        return []
    wanted = {f"{name}-{failover.name_of(i)}" for i in range(len(spec.fallbacks))}
    removed = []
    for row in before.fallbacks:
        child = f"{name}-{row.name}"
        if child in wanted:
            continue
        for api_version, kind, obj_name in (
            ("apps/v1", "Deployment", child),
            ("v1", "Service", child),
            ("v1", "ConfigMap", gating.config_map_name(child)),
        ):
            if kind != "ConfigMap" and lookup(kind, namespace, obj_name) is None:
                continue
            if client.delete(
                api_version=api_version, kind=kind, namespace=namespace, name=obj_name
            ):
                removed.append(f"{kind}/{obj_name}")
    return removed


def _last_plan_standing(
    recovered: replanning.Outcome | None,
    previous: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: HubFetch | None,
    card: CardFetch | None,
) -> Desired | None:
    """When re-planning has excluded every pool: the plan in status, as it is, so the rest
    of the reconcile (fallbacks, failover) goes on; None for any other planning failure,
    which leaves every child as it is."""
    if recovered is None or not recovered.state.excludedPools:
        return None
    try:
        # status.plan, whatever the Planned condition says now (it turned False the first
        # time, and stays so): the plan the primary was last applied with.
        kept = api.Plan.model_validate(previous.get("plan"))
        spec = api.parse_spec(dict(raw_spec))
    except (pydantic.ValidationError, api.SpecError):
        return None
    # Kept as it is: its inputs hash had the re-planning state folded in.
    kept = kept.model_copy(update={"inputsHash": api.plan_inputs_hash(spec)})
    try:
        return desired(
            name=name,
            namespace=namespace,
            uid=uid,
            raw_spec=raw_spec,
            settings=settings,
            available=available,
            fetch=fetch,
            keep=kept,
            card=card,
        )
    except PlanningError:
        return None


def _parsed(raw_spec: Mapping[str, Any]) -> api.LlamaDeploymentSpec | None:
    try:
        return api.parse_spec(dict(raw_spec))
    except api.SpecError:
        return None  # desired() reports it


def _plan_selector(
    previous: Mapping[str, Any], available: Sequence[pools.Pool]
) -> Mapping[str, str] | None:
    """The nodeSelector of the pool status.plan is on: a pod asking for another pool's
    nodes was made from an earlier plan, and says nothing about this one."""
    pool = (previous.get("plan") or {}).get("pool")
    found = next((p for p in available if p.name == pool), None)
    return dict(found.nodeSelector) if found is not None else None


def _primary_health(
    deployment: Mapping[str, Any] | None,
    spec: api.LlamaDeploymentSpec | None,
    previous: Mapping[str, Any],
    *,
    client: k8s.Client,
    namespace: str,
    name: str,
    pools_of: Sequence[pools.Pool] = (),
) -> health.Health | None:
    """The primary's health; its pods are read only when they may tell something: the
    Deployment has fewer ready pods than it asks for, or a failover or an exclusion is
    under way (a healthy endpoint costs no request)."""
    if deployment is None or spec is None:
        return None
    asked = (deployment.get("spec") or {}).get("replicas")
    desired = asked if isinstance(asked, int) else spec.replicas
    ready = status.counts(deployment).ready
    before = failover.previous_of(previous.get("failover"))
    away = before is not None and before.active != failover.PRIMARY
    if not (health.needs_pods(deployment, desired) or away):
        return health.Health(desired=desired, ready=ready)
    pods = client.list_pods(
        namespace=namespace, labels=builders.selector(name=name, variant=builders.PRIMARY)
    )
    return health.of(
        desired=desired,
        ready=ready,
        pods=pods,
        node_selector=_plan_selector(previous, pools_of),
        memory_patterns=_memory_patterns(previous),
    )


def _memory_patterns(previous: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The out-of-memory log lines of the engine release the primary was last applied with
    (status.plan); None when status has no plan this version reads (every profile's)."""
    try:
        plan = api.Plan.model_validate(previous.get("plan"))
    except pydantic.ValidationError:
        return None
    return engines.profile(plan=plan).outOfMemoryLogs


def _recover(
    spec: api.LlamaDeploymentSpec | None,
    previous: Mapping[str, Any],
    primary: health.Health | None,
    *,
    now: float,
    wall: str,
) -> replanning.Outcome | None:
    if spec is None:
        return None
    raw = previous.get("recovery")
    try:
        state = api.RecoveryStatus.model_validate(raw, strict=False) if raw else None
    except pydantic.ValidationError:
        state = None
    return replanning.decide(
        policy=api.failover_policy(spec),
        state=state,
        inputs_hash=api.plan_inputs_hash(spec),
        plan=_current_plan(previous),
        primary=primary,
        now=now,
        wall=wall,
    )


@dataclasses.dataclass(frozen=True)
class Backup:
    """One fallback: its plan and children when it can have them, and how it is."""

    candidate: failover.Candidate
    wanted: Desired | None = None  # its plan, licence and spec, when it could be planned
    live: bool = False  # its Deployment exists


def _fallbacks(
    wanted: Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: HubFetch | None,
    card: CardFetch | None,
    access: AccessCheck | None,
    lookup: Lookup,
    generations: MutableMapping[str, int],
    primary: terms.Detection,
    api_key: KeyCheck | None = None,
) -> list[Backup]:
    """Each spec.fallbacks[i], planned and sized like the primary (its placement policy),
    with its own licence and gated-access gates: a fallback that may not serve is
    reported with the reason, and gets no pods. The primary's re-planning does not apply:
    re-planning a serving fallback would restart it."""
    result = []
    accepted = wanted.spec.license is not None and wanted.spec.license.accept
    for index, fallback in enumerate(wanted.spec.fallbacks):
        variant = f"{builders.FALLBACK_PREFIX}{index}"
        raw = _fallback_spec(raw_spec, fallback)
        live = lookup("Deployment", namespace, f"{name}-{variant}")
        ready = status.counts(live).ready
        base = failover.Candidate(
            index=index, model=fallback.model.id, configured=fallback.replicas, ready=ready
        )
        try:
            planned = desired(
                name=f"{name}-{variant}",
                namespace=namespace,
                uid=uid,
                raw_spec=raw,
                settings=settings,
                available=available,
                fetch=fetch,
                card=card,
                clamp_limits=True,
            )
        except PlanningError as exc:
            reason = _fallback_fields(f"{exc.failure.reason}: {exc.failure.message}", index)
            result.append(
                Backup(dataclasses.replace(base, servable=False, reason=reason, planned=False))
            )
            continue
        if fallback.license is None and accepted and planned.detection.id == primary.id:
            # The same licence the primary's acceptance covers: accepted for it too.
            raw = {**raw, "license": {"accept": True}}
            planned = dataclasses.replace(planned, spec=api.parse_spec(raw))
        children = _fallback_children(
            planned,
            name=name,
            namespace=namespace,
            uid=uid,
            index=index,
            settings=settings,
            replicas=fallback.replicas,
        )
        pods = next(o for o in children if o["kind"] == "Deployment")
        gate = gates(
            planned,
            name=f"{name}-{variant}",
            namespace=namespace,
            previous={},
            serving=live is not None,
            # Access to a gated model is checked when its pods are about to change.
            creating_pods=live is None
            or _live_hash(live) != _live_hash(pods)
            or _edited_by_others(live, f"Deployment/{name}-{variant}", generations),
            access=access,
            settings=settings,
            api_key=api_key,
        )
        candidate = dataclasses.replace(
            base,
            servable=gate.hold is None,
            reason=_fallback_fields(gate.hold or "", index),
            pool=planned.plan.pool,
        )
        result.append(Backup(candidate, planned, live=live is not None))
    return result


def _fallback_children(
    planned: Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    index: int,
    settings: config.OperatorConfig,
    replicas: int,
) -> list[dict[str, Any]]:
    return builders.fallback_objects(
        name=name,
        namespace=namespace,
        uid=uid,
        index=index,
        spec=planned.spec,
        plan=planned.plan,
        pool=planned.pool,
        settings=settings,
        detection=planned.detection,
        replicas=replicas,
    )


def _fallback_spec(raw_spec: Mapping[str, Any], fallback: api.Fallback) -> dict[str, Any]:
    """The primary's spec with the fallback's model: the same engine choice, image and
    placement policy (optimize, pools, concurrency), but not the primary's pins (its
    quantization, tensor-parallel degree, context, memory fraction are for its model)
    nor its model cache (a claim holds the primary's weights); no rollout, autoscaling,
    traffic or fallbacks of its own. The endpoint's security is the primary's: the same API
    key, network rules and input limits (a token limit held to the fallback's context)."""
    shared = {"engine", "image", "auth", "network", "limits"}
    raw = {key: value for key, value in raw_spec.items() if key in shared}
    placement = raw_spec.get("placement")
    if isinstance(placement, Mapping):
        policy = {"optimize", "pools", "concurrentSequences"}
        raw["placement"] = {k: v for k, v in placement.items() if k in policy}
    raw["model"] = fallback.model.model_dump(mode="json", exclude_none=True)
    raw["replicas"] = fallback.replicas
    if fallback.license is not None:
        raw["license"] = fallback.license.model_dump(mode="json", exclude_none=True)
    return raw


def _fallback_fields(text: str, index: int) -> str:
    """Messages of the gates and the planner name the primary's fields; a fallback's are
    under spec.fallbacks[i]."""
    return (
        text.replace("spec.license.", f"spec.fallbacks[{index}].license.")
        .replace("spec.model.", f"spec.fallbacks[{index}].model.")
        .replace("spec.replicas", f"spec.fallbacks[{index}].replicas")
    )


def _overloaded(
    wanted: Desired,
    primary: health.Health | None,
    queue: QueueRead | None,
    namespace: str,
    name: str,
) -> bool:
    """Whether the primary's queue per ready replica is above the failover threshold now
    (read only when the threshold is set and fallbacks exist)."""
    threshold = api.failover_policy(wanted.spec).overloadQueuePerReplica
    if threshold is None or queue is None or not wanted.spec.fallbacks:
        return False
    if primary is None or primary.ready == 0:
        return False
    per_pod = queue(namespace, name, wanted.plan)
    return per_pod is not None and per_pod > threshold


def _changes_pods(
    wanted: Desired,
    lookup: Lookup,
    namespace: str,
    generations: MutableMapping[str, int],
) -> bool:
    """Whether the newest spec would create or change serving pods (primary or canary)."""
    primary = _primary_of(wanted)
    live = lookup("Deployment", namespace, primary["metadata"]["name"])
    return (
        live is None
        or _live_hash(live) != _live_hash(primary)
        or _edited_by_others(live, f"Deployment/{primary['metadata']['name']}", generations)
    )


def _primary_of(wanted: Desired) -> dict[str, Any]:
    return next(
        obj
        for obj in wanted.objects
        if obj["kind"] == "Deployment"
        and obj["metadata"]["labels"].get(builders.VARIANT_LABEL) == builders.PRIMARY
    )


def _variant(deployment: Mapping[str, Any] | None) -> rollout.Variant:
    if deployment is None:
        return rollout.Variant()
    c = status.counts(deployment)
    return rollout.Variant(
        exists=True,
        revision=builders.revision_of(deployment),
        replicas=c.replicas,
        ready=c.ready,
        updated=c.updated,
        current=c.current,
        deadline_exceeded=c.deadline_exceeded,
    )


def _rollout_decision(
    wanted: Desired,
    *,
    body: Mapping[str, Any],
    previous: Mapping[str, Any],
    client: k8s.Client,
    lookup: Lookup,
    measure: Measure | None,
    handled: MutableMapping[str, str] | None,
    now: str,
    instant: float,
) -> tuple[rollout.Decision, str | None]:
    """The rollout decision for this reconcile, and the manual action consumed: None (no
    annotation), "" (acted on), or a warning (an unknown action, removed all the same)."""
    meta = body.get("metadata") or {}
    name, namespace, uid = meta["name"], meta["namespace"], meta.get("uid", "")
    before = rollout.previous_of(previous.get("rollout"))
    revision = builders.revision_of(_primary_of(wanted)) or ""
    primary = lookup("Deployment", namespace, f"{name}-primary")
    canary = lookup("Deployment", namespace, f"{name}-{builders.CANARY}")
    policy = rollout.policy_of(wanted.spec)

    written = rollout.action_of(meta.get("annotations"))
    consumed: str | None = None
    action = rollout.parse_action(written)
    if written is not None:
        # Once per object version: a stale copy still carrying the annotation (the watch
        # has not caught up with its removal) must not act twice ("next" would skip a step).
        version = f"{meta.get('resourceVersion')}/{written}"
        if handled is not None and handled.get(uid) == version:
            action, consumed = None, None
        else:
            if handled is not None:
                handled[uid] = version
            consumed = (
                ""
                if action is not None
                else f"{rollout.ACTION_ANNOTATION}={written!r} is not an action: use one of "
                + ", ".join(rollout.ACTIONS)
                + "; the annotation was removed"
            )

    in_progress = before is not None and before.phase in api.ROLLOUT_UNDER_TEST
    failure = None
    if canary is not None and in_progress:
        # This revision's pods only: a crashed pod of an older canary template (the spec
        # changed mid-rollout) says nothing about the newest one.
        pods = client.list_pods(
            namespace=namespace,
            labels={
                **builders.selector(name=name, variant=builders.CANARY),
                builders.REVISION_LABEL: revision,
            },
        )
        failure = rollout.pod_failure(pods)
    judgement = None
    stable_plan = previous.get("plan") or {}
    if (
        measure is not None
        and rollout.should_measure(before, revision)
        and stable_plan.get("engine") in ("vllm", "tgi")
    ):
        judgement = measure(
            MeasureRequest(
                namespace=namespace,
                name=name,
                uid=uid,
                revision=revision,
                canary_engine=wanted.plan.engine,
                stable_engine=stable_plan["engine"],
                analysis=policy.analysis,
                canary_engine_version=wanted.plan.engineVersion,
                stable_engine_version=_version_of(stable_plan),
            )
        )
    replicas = wanted.spec.replicas
    traffic = wanted.spec.traffic
    # A Gateway the cluster cannot route for (no Gateway API: the HTTPRoute apply was
    # refused) carries no canary traffic: split by replica ratio behind the Service.
    routed = traffic is not None and traffic.gatewayRef is not None
    refused = conditions.find(previous.get("conditions") or [], conditions.TRAFFIC)
    if refused is not None and refused.get("reason") == "GatewayAPINotInstalled":
        routed = False
    decision = rollout.decide(
        policy,
        before,
        rollout.Observed(
            desired_revision=revision,
            primary=_variant(primary),
            canary=_variant(canary),
            replicas=replicas,
            gateway=routed,
            now=instant,
            wall=now,
            canary_failure=failure,
            judgement=judgement,
            action=action,
        ),
    )
    return decision, consumed


def _render(
    wanted: Desired,
    decision: rollout.Decision | None,
    *,
    name: str,
    namespace: str,
    uid: str,
    previous: Mapping[str, Any],
    settings: config.OperatorConfig,
    backups: Sequence[Backup] = (),
    switched: failover.Decision | None = None,
) -> list[dict[str, Any]]:
    """The children to apply for the rollout mode: the newest spec's, the stable primary's
    held back while a canary runs or after a rollback, the canary's, the fallbacks' that
    may serve, and the route; the entry Service and the route on the active fallback.

    ``decision`` None: no rollout decided (a closed gate, the CLI): the newest spec's."""
    spec = wanted.spec
    held = decision is not None and decision.mode in ("canary", "hold")
    canary = decision is not None and decision.canary_exists
    # The entry Service and the route describe what the primary runs, which is not the
    # newest spec while it is held.
    annotations = (
        builders.license_annotations_of_status(previous.get("license"))
        if held
        else builders.license_annotations(wanted.detection)
    )
    stable = {
        ("Deployment", f"{name}-primary"),
        ("ConfigMap", builders.license_config_map_name(name=name)),
        ("Service", f"{name}-primary"),
    }
    objects = [
        obj
        for obj in wanted.objects
        if not (held and (obj["kind"], obj["metadata"]["name"]) in stable)
    ]
    active = switched.index if switched is not None else None
    serving_backup = next((b for b in backups if b.candidate.index == active), None)
    if serving_backup is not None and serving_backup.wanted is not None:
        annotations = builders.license_annotations(serving_backup.wanted.detection)
    # The entry point: the primary's pods, or (without a Gateway, while the canary takes
    # traffic) both variants', so the canary's share follows its replica count; an
    # active fallback's alone while the primary cannot serve.
    entry = builders.with_hash(
        builders.service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=name,
            variant=builders.PRIMARY,
            annotations=annotations,
            all_variants=decision is not None and decision.both and active is None,
            target=failover.name_of(active) if active is not None else None,
        )
    )
    objects = [
        entry if obj["kind"] == "Service" and obj["metadata"]["name"] == name else obj
        for obj in objects
    ]
    if decision is not None and canary:
        objects += builders.canary_objects(
            name=name,
            namespace=namespace,
            uid=uid,
            spec=spec,
            plan=wanted.plan,
            pool=wanted.pool,
            settings=settings,
            detection=wanted.detection,
            replicas=decision.canary_replicas,
            revision=builders.revision_of(_primary_of(wanted)) or "",
        )
    counts = switched.replicas if switched else tuple(b.candidate.configured for b in backups)
    for backup, replicas in zip(backups, counts, strict=False):
        if backup.wanted is None:
            continue  # could not be planned: reported in status.failover
        if not backup.candidate.servable and not backup.live:
            continue  # reported in status.failover, never given pods
        objects += _fallback_children(
            backup.wanted,
            name=name,
            namespace=namespace,
            uid=uid,
            index=backup.candidate.index,
            settings=settings,
            # A fallback that may not serve any more keeps its objects but no pods.
            replicas=replicas if backup.candidate.servable else 0,
        )
    if spec.traffic is not None and spec.traffic.gatewayRef is not None:
        objects.append(
            builders.http_route(
                name=name,
                namespace=namespace,
                uid=uid,
                traffic=spec.traffic,
                canary_weight=decision.weight if decision is not None and canary else None,
                annotations=annotations,
                stable=failover.name_of(active) if active is not None else builders.PRIMARY,
            )
        )
    return objects


def steady_children(
    wanted: Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
    backups: Sequence[Backup] = (),
) -> list[dict[str, Any]]:
    """Every child of a resource with no rollout under way and the primary serving (the
    CLI's render): the fallbacks that may serve at their configured replicas."""
    return _render(
        wanted,
        None,
        name=name,
        namespace=namespace,
        uid=uid,
        previous={},
        settings=settings,
        backups=backups,
    )


def plan_fallbacks(
    wanted: Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: HubFetch | None,
    card: CardFetch | None,
) -> list[Backup]:
    """The fallbacks as a first reconcile plans them, offline (the CLI): nothing runs
    yet, and no token is checked."""
    return _fallbacks(
        wanted,
        name=name,
        namespace=namespace,
        uid=uid,
        raw_spec=raw_spec,
        settings=settings,
        available=available,
        fetch=fetch,
        card=card,
        access=None,
        lookup=lambda kind, ns, obj_name: None,
        generations={},
        primary=wanted.detection,
    )


def _resize_held_primary(
    decision: rollout.Decision,
    deployment: Mapping[str, Any] | None,
    *,
    client: k8s.Client,
    namespace: str,
    name: str,
    generations: MutableMapping[str, int],
    written: list[str],
) -> Mapping[str, Any] | None:
    """While the primary's template is held, only its replica count follows the split.

    A merge patch of spec.replicas alone: applying a partial object with server-side apply
    would drop every field this manager owns and leaves out.
    """
    if decision.mode not in ("canary", "hold") or deployment is None:
        return deployment
    live = (deployment.get("spec") or {}).get("replicas")
    if live == decision.stable_replicas:
        return deployment
    result = client.merge_patch(
        api_version="apps/v1",
        kind="Deployment",
        namespace=namespace,
        name=name,
        body={"spec": {"replicas": decision.stable_replicas}},
    )
    applied = (result.get("metadata") or {}).get("generation")
    if isinstance(applied, int):
        generations[f"Deployment/{name}"] = applied  # our own edit, not someone else's
    written.append(f"Deployment/{name} (replicas {live} -> {decision.stable_replicas})")
    return result or deployment


def _remove_canary(
    decision: rollout.Decision,
    *,
    client: k8s.Client,
    lookup: Lookup,
    namespace: str,
    name: str,
    previous: Mapping[str, Any],
) -> list[str]:
    """Delete the canary's children once no canary is wanted (after the entry Service and
    route were switched back to the primary above, so no request meets a vanishing pod)."""
    if decision.canary_exists:
        return []
    canary = f"{name}-{builders.CANARY}"
    deployment = lookup("Deployment", namespace, canary)
    service = lookup("Service", namespace, canary)
    before = rollout.previous_of(previous.get("rollout"))
    was_running = before is not None and before.phase in rollout.IN_PROGRESS
    removed = []
    targets = [
        ("apps/v1", "Deployment", canary, deployment is not None),
        ("v1", "Service", canary, service is not None),
        (
            "v1",
            "ConfigMap",
            builders.license_config_map_name(name=name, variant=builders.CANARY),
            deployment is not None or service is not None or was_running,
        ),
    ]
    for api_version, kind, child, present in targets:
        if present and client.delete(
            api_version=api_version, kind=kind, namespace=namespace, name=child
        ):
            removed.append(f"{kind}/{child}")
    return removed


def _sync_route(
    wanted: Desired,
    *,
    previous: Mapping[str, Any],
    client: k8s.Client,
    namespace: str,
    name: str,
    missing: str | None,
) -> tuple[str | None, bool]:
    """status.httpRoute, and the route deleted once spec.traffic.gatewayRef is gone."""
    traffic = wanted.spec.traffic
    if traffic is not None and traffic.gatewayRef is not None:
        return (None if missing is not None else name), True
    before = previous.get("httpRoute")
    if isinstance(before, str) and before:
        client.delete(
            api_version=builders.HTTPROUTE_API_VERSION,
            kind="HTTPRoute",
            namespace=namespace,
            name=before,
        )
        return None, True
    return None, False


def _sync_network_policy(
    wanted: Desired,
    settings: config.OperatorConfig,
    *,
    previous: Mapping[str, Any],
    client: k8s.Client,
    namespace: str,
    name: str,
) -> tuple[str | None, bool]:
    """status.networkPolicy, and the policy deleted once it is switched off."""
    if security.network_policy_enabled(wanted.spec, settings):
        return builders.network_policy_name(name), True
    before = previous.get("networkPolicy")
    if isinstance(before, str) and before:
        client.delete(
            api_version="networking.k8s.io/v1",
            kind="NetworkPolicy",
            namespace=namespace,
            name=before,
        )
        return None, True
    return None, False


def _refused(previous: Mapping[str, Any], type_: str) -> bool:
    """Whether status says the cluster refused the optional kind behind condition ``type_``."""
    found = conditions.find(previous.get("conditions") or [], type_)
    return found is not None and found.get("reason") in (
        "GatewayAPINotInstalled",
        "ScalerNotInstalled",
    )


def _traffic_checks(
    spec: api.LlamaDeploymentSpec, name: str, missing: str | None
) -> tuple[conditions.Check, ...]:
    """The Traffic condition: how the weights reach the Gateway, or why they cannot."""
    if spec.traffic is None or spec.traffic.gatewayRef is None:
        return ()
    ref = spec.traffic.gatewayRef
    gateway = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    if missing is not None:
        message = (
            f"the cluster does not serve {missing}: a canary's traffic is split by replica "
            "ratio behind the Service meanwhile; install the Gateway API CRDs for exact "
            "weights, or remove spec.traffic.gatewayRef"
        )
        return (conditions.Check(conditions.TRAFFIC, "False", "GatewayAPINotInstalled", message),)
    message = f"HTTPRoute {name} on Gateway {gateway} carries the variants' weights"
    return (conditions.Check(conditions.TRAFFIC, "True", "HTTPRoute", message),)


OPTIONAL_KINDS = frozenset({"ScaledObject", "HorizontalPodAutoscaler", "HTTPRoute"})
EXTERNAL_SCALER_KINDS = frozenset({"ScaledObject", "HorizontalPodAutoscaler"})
_SCALER_API_VERSIONS = {
    "ScaledObject": scalers.KEDA_API_VERSION,
    "HorizontalPodAutoscaler": scalers.HPA_API_VERSION,
}


def _sync_external_scaler(
    wanted: Desired,
    *,
    previous: Mapping[str, Any],
    client: k8s.Client,
    namespace: str,
    missing: str | None,
) -> dict[str, str] | None:
    """The external scaler now in place (status.externalScaler); a stale one is deleted.

    Switching spec.autoscaling.engine (or turning autoscaling off) must not leave the old
    ScaledObject or HPA scaling the endpoint against the new engine, so the one recorded
    in status is deleted once it is no longer wanted.
    """
    current = next(
        (o for o in wanted.objects if o["kind"] in EXTERNAL_SCALER_KINDS and missing is None),
        None,
    )
    now = (
        {"kind": current["kind"], "name": current["metadata"]["name"]}
        if current is not None
        else None
    )
    before = previous.get("externalScaler")
    if (
        isinstance(before, Mapping)
        and before.get("kind") in _SCALER_API_VERSIONS
        and (now is None or dict(before) != now)
    ):
        client.delete(
            api_version=_SCALER_API_VERSIONS[str(before["kind"])],
            kind=str(before["kind"]),
            namespace=namespace,
            name=str(before.get("name")),
        )
    return now


def _autoscaling_checks(
    spec: api.LlamaDeploymentSpec, missing: str | None
) -> tuple[conditions.Check, ...]:
    """The Autoscaling condition: who scales this endpoint, on what, or why nobody can."""
    a = spec.autoscaling
    if a is None:
        return ()
    target = f"target {a.effective_target():g} {a.metric} per replica"
    bounds = f"{a.minReplicas}..{a.maxReplicas} replicas"
    if a.engine == "builtin":
        message = f"the operator scales on {target}, every {a.intervalSeconds}s, {bounds}"
        return (conditions.Check(conditions.AUTOSCALING, "True", "Builtin", message),)
    kind = "ScaledObject" if a.engine == "keda" else "HorizontalPodAutoscaler"
    if missing is not None:
        fix = "install KEDA" if a.engine == "keda" else "check the autoscaling/v2 API"
        message = (
            f"the cluster does not serve {missing}: {fix}, or set spec.autoscaling.engine: "
            "builtin; replicas stay as spec.replicas says meanwhile"
        )
        return (conditions.Check(conditions.AUTOSCALING, "False", "ScalerNotInstalled", message),)
    if a.engine == "keda":
        message = f"KEDA scales on {target} through the ScaledObject, {bounds}"
    else:
        message = f"a HorizontalPodAutoscaler scales on {target}, {bounds}"
    return (conditions.Check(conditions.AUTOSCALING, "True", kind, message),)


def _autoscaling_removed(spec: api.LlamaDeploymentSpec) -> tuple[str, ...]:
    return (conditions.AUTOSCALING,) if spec.autoscaling is None else ()


@dataclasses.dataclass(frozen=True)
class Gate:
    hold: str | None  # why serving Deployments are held back, or None
    license: dict[str, Any] | None  # status.license; None keeps the one in status
    checks: tuple[conditions.Check, ...]
    removed: tuple[str, ...]
    auth: security.AuthVerdict  # the API-key gate's part of hold and checks


def gates(
    wanted: Desired,
    *,
    name: str,
    namespace: str,
    previous: Mapping[str, Any],
    serving: bool,
    creating_pods: bool,
    access: AccessCheck | None,
    settings: config.OperatorConfig,
    api_key: KeyCheck | None = None,
) -> Gate:
    """The licence gate, then (only when pods are about to be created or changed) access,
    then the API key (``security.auth``; its Secret is looked at under the same rule)."""
    model = wanted.spec.model
    verdict = gating.license_verdict(
        detection=wanted.detection,
        model_id=model.id,
        spec_license=wanted.spec.license,
        previous=previous.get("license"),
        serving=serving,
    )
    answer: gating.AccessAnswer | None = None
    token_referenced = model.tokenSecretRef is not None
    if token_referenced and creating_pods and verdict.hold is None and access is not None:
        answer = access(model, namespace)  # the Hub is asked only when it matters
    accessible = gating.access_check(
        model_id=model.id,
        page=hub.model_page(model.id),
        token_referenced=token_referenced,
        card_gated=wanted.card_gated,
        answer=answer,
    )
    hold = verdict.hold
    if hold is None and gating.holds(accessible):
        assert accessible is not None
        hold = accessible.message
    key_ref = wanted.spec.auth.apiKeySecretRef
    present: bool | None = None
    if key_ref is not None and creating_pods and hold is None and api_key is not None:
        present = api_key(key_ref, namespace)
    auth = security.auth(wanted.spec, settings, secret_present=present, namespace=namespace)
    if hold is None:
        hold = auth.hold
    # spec.engineArgs that contradict the plan: a warning, or a hold for flags the
    # operator owns or the engine refuses twice (engines.overrides).
    engine_args = engines.check_engine_args(spec=wanted.spec, plan=wanted.plan)
    if hold is None:
        hold = engine_args.hold
    engine = (
        security.engine_profile_check(
            planner.resolve_engine(spec=wanted.spec, engine=wanted.plan.engine, settings=settings)
        ),
        *((engine_args.check,) if engine_args.check is not None else ()),
        security.pod_security_check(wanted.plan),
    )
    checks = (
        verdict.checks + ((accessible,) if accessible is not None else ()) + (auth.check, *engine)
    )
    return Gate(
        hold=hold,
        license=gating.license_status(
            detection=wanted.detection,
            accepted=verdict.accepted,
            config_map=gating.config_map_name(name),
        ),
        checks=checks,
        removed=verdict.removed
        + (() if engine_args.check is not None else (conditions.ENGINE_ARGS,)),
        auth=auth,
    )


def _recorded(name: str, previous: Mapping[str, Any]) -> set[str]:
    """Unwatched children that status says were applied already ("Kind/name"): the
    licence ConfigMap, the external scaler, the HTTPRoute, a canary's licence."""
    known = set()
    if previous.get("license"):
        known.add(f"ConfigMap/{gating.config_map_name(name)}")
    scaler = previous.get("externalScaler")
    if isinstance(scaler, Mapping):
        known.add(f"{scaler.get('kind')}/{scaler.get('name')}")
    route = previous.get("httpRoute")
    if isinstance(route, str) and route:
        known.add(f"HTTPRoute/{route}")
    policy = previous.get("networkPolicy")
    if isinstance(policy, str) and policy:
        known.add(f"NetworkPolicy/{policy}")
    before = rollout.previous_of(previous.get("rollout"))
    if before is not None and before.phase in rollout.IN_PROGRESS:
        canary_license = builders.license_config_map_name(name=name, variant=builders.CANARY)
        known.add(f"ConfigMap/{canary_license}")
    return known


def _write_reason(
    obj: Mapping[str, Any],
    namespace: str,
    *,
    lookup: Lookup,
    generations: MutableMapping[str, int],
    unwatched: Mapping[str, tuple[str | None, float]],
    now: float,
    new: bool,
) -> Literal["change", "refresh"] | None:
    """Why ``obj`` must be applied: it differs from what is live ("change"), or an unwatched
    child is due for its periodic re-apply ("refresh": neither an Event nor counted as an
    apply in the metrics, which would otherwise show churn); else None."""
    kind, obj_name = obj["kind"], obj["metadata"]["name"]
    if kind in UNWATCHED_KINDS:
        last = unwatched.get(f"{kind}/{obj_name}")
        if (last is None and new) or (last is not None and last[0] != _live_hash(obj)):
            return "change"
        # Never applied by this process (a restart) or applied long ago: the live object is
        # unknown, so apply it quietly; server-side apply of the same content changes nothing.
        if last is None or now - last[1] >= REAPPLY_SECONDS:
            return "refresh"
        return None
    live = lookup(kind, namespace, obj_name)
    if (
        live is None
        or _live_hash(live) != _live_hash(obj)
        or _edited_by_others(live, f"{kind}/{obj_name}", generations)
    ):
        return "change"
    if f"{kind}/{obj_name}" not in generations:
        # Not applied by this process (a restart): its hash annotation says what we last
        # applied, not what is live now, because an edit made while no operator ran leaves
        # annotations alone. Apply once: server-side apply of the same content changes
        # nothing, and restores our fields where they were edited.
        return "refresh"
    return None


def _version_of(plan: Mapping[str, Any]) -> str | None:
    """``engineVersion`` of a plan read from status (absent in plans written before 0.7)."""
    version = plan.get("engineVersion")
    return version if isinstance(version, str) else None


def _current_plan(previous: Mapping[str, Any]) -> api.Plan | None:
    """The plan in status, when it was planned successfully and still parses."""
    planned = conditions.find(previous.get("conditions") or [], conditions.PLANNED)
    if planned is None or planned.get("status") != "True":
        return None
    try:
        return api.Plan.model_validate(previous.get("plan"))
    except pydantic.ValidationError:
        return None  # absent, or written by another operator version: plan again


def _canary_plan(previous: Mapping[str, Any]) -> api.Plan | None:
    """The plan of a canary under way, when status has one this version can read."""
    before = rollout.previous_of(previous.get("rollout"))
    if before is None or before.phase not in rollout.IN_PROGRESS:
        return None
    return before.canaryPlan


def _edited_by_others(
    live: Mapping[str, Any], child: str, generations: MutableMapping[str, int]
) -> bool:
    live_generation = (live.get("metadata") or {}).get("generation")
    ours = generations.get(child)
    if not isinstance(live_generation, int) or ours is None:
        # Kinds without a generation (Services): the hash alone decides. Not applied by
        # this process yet: unknown, and _write_reason applies it once to find out.
        return False
    # Only a newer generation is an edit: an older one is a watch that has not caught
    # up with our own apply yet.
    return live_generation > ours


def _reverted(before: Mapping[str, Any] | None, applied_generation: object) -> bool:
    """Whether an apply of unchanged content moved the generation: the live spec had
    been edited, and the apply put our fields back."""
    live_generation = ((before or {}).get("metadata") or {}).get("generation")
    return (
        isinstance(live_generation, int)
        and isinstance(applied_generation, int)
        and applied_generation > live_generation
    )


def _live_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(builders.HASH_ANNOTATION)
    return str(value) if value is not None else None


# Condition types whose move to this status is a Warning Event (once, not every tick).
_WARN_WHEN = {
    conditions.PLANNED: "False",
    conditions.RECONCILED: "False",
    conditions.NOT_YET_ACTIVE: "True",
    conditions.LICENSE_ACCEPTED: "False",
    conditions.MODEL_ACCESSIBLE: "False",
    conditions.LICENSE_RESTRICTED: "True",
    conditions.AUTOSCALING: "False",
    conditions.AUTHENTICATED: "False",
    conditions.ENGINE_PROFILE: "False",
    conditions.POD_SECURITY: "False",
    conditions.ENGINE_ARGS: "False",
    conditions.FALLBACKS_PLANNED: "False",
    conditions.KV_CACHE_CAPACITY: "False",
}
# Reasons of a condition above that are a choice, not a fault: no Warning for them.
_CHOSEN = {"AuthOptional"}
# ...and those whose recovery from a warning is worth a Normal Event.
_RECOVERED_WHEN = {
    conditions.RECONCILED: "True",
    conditions.LICENSE_ACCEPTED: "True",
    conditions.MODEL_ACCESSIBLE: "True",
    conditions.AUTHENTICATED: "True",
    conditions.ENGINE_ARGS: "True",
    conditions.FALLBACKS_PLANNED: "True",
    conditions.KV_CACHE_CAPACITY: "True",
}


def _condition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events for conditions that newly went bad, or recovered (not on every tick)."""
    result = []
    old_conditions = old.get("conditions") or []
    for type_, bad in _WARN_WHEN.items():
        after = conditions.find(new.get("conditions") or [], type_)
        before = conditions.find(old_conditions, type_)
        if after is None:
            continue
        changed = (
            before is None
            or before.get("status") != after["status"]
            or before.get("message") != after.get("message")
        )
        if after["status"] == bad and changed and after.get("reason") not in _CHOSEN:
            result.append(Event("Warning", after["reason"], after["message"]))
        elif (
            _RECOVERED_WHEN.get(type_) == after["status"]
            and before is not None
            and before.get("status") == bad
        ):
            result.append(Event("Normal", after["reason"], after["message"]))
    return result


# A reconcile that raised ------------------------------------------------------------
#
# Kopf retries it (a transient error heals: an API server restarting, a webhook briefly
# down, a conflict), after ``retry_delay``; meanwhile ``Reconciled`` is False with the
# error, and a Warning Event says so once per distinct error (again after
# REPEAT_WARNING_SECONDS while it lasts: Events expire after an hour by default).

REPEAT_WARNING_SECONDS = 1800.0
# Retries wait the resync interval, doubling with each failure in a row, up to this many
# intervals (5 minutes at the default 15 s).
MAX_RETRY_INTERVALS = 20
ERROR_MESSAGE_LIMIT = 400
API_ERROR = "APIError"
UNEXPECTED_ERROR = "UnexpectedError"


@dataclasses.dataclass(frozen=True)
class Failed:
    """What to report of a reconcile that raised, and when to try again."""

    status_patch: dict[str, Any]
    events: list[Event]
    message: str  # the condition's message: what the log line says too
    log_traceback: bool  # an unexpected error seen for the first time (or again, later)
    retry_in: float


def describe_error(error: BaseException) -> tuple[str, str]:
    """The ``Reconciled`` condition's reason and message for ``error``.

    An API error names the request it answered (the child and what was done to it) and
    what the API server said; anything else, its type and the first line of its text. No
    request body is ever included, and the objects the operator sends carry no secret
    (Secrets are referenced by name), so neither does the API server's answer about them.
    """
    if isinstance(error, k8s.APIError):
        where = f"{error.request}: " if error.request else ""
        text = f"{where}the API server answered {error.status} {error.reason}: {error.message}"
        return API_ERROR, _short(text)
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return UNEXPECTED_ERROR, _short(f"{text} (the operator's log has the traceback)")


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= ERROR_MESSAGE_LIMIT:
        return text
    return text[: ERROR_MESSAGE_LIMIT - 3].rstrip() + "..."


def retry_delay(attempt: int, interval: float) -> float:
    """Seconds before retry ``attempt`` (0: the first) of a reconcile that raised."""
    return float(interval * min(2 ** min(attempt, 16), MAX_RETRY_INTERVALS))


def failed(
    *,
    body: Mapping[str, Any],
    error: BaseException,
    now: str,
    instant: float,
    reported: MutableMapping[str, float],
    attempt: int,
    interval: float,
) -> Failed:
    """What a reconcile that raised ``error`` leaves: ``Reconciled`` False with the error,
    and a Warning Event, rate-limited.

    The Warning is posted when the condition turns False or its error changes, and again
    when the same error has lasted REPEAT_WARNING_SECONDS; never once per retry.
    ``reported`` (the object's memo, cleared by a reconcile that succeeds) remembers when
    this process last posted the current error, so two retries that both read a status
    from before the first one's write (a change handler and the timer) post it once.
    """
    meta = body.get("metadata") or {}
    previous = body.get("status") or {}
    reason, message = describe_error(error)
    before = conditions.find(previous.get("conditions") or [], conditions.RECONCILED)
    changed = (
        before is None
        or before.get("status") != "False"
        or before.get("reason") != reason
        or before.get("message") != message
    )
    key = f"{reason}: {message}"
    last = reported.get(key)
    post = changed if last is None else instant - last >= REPEAT_WARNING_SECONDS
    if last is None or post:
        reported.clear()
        reported[key] = instant
    new_status = status.failed(
        previous, reason=reason, message=message, generation=meta.get("generation"), now=now
    )
    return Failed(
        status_patch=status.diff(previous, new_status),
        events=[Event("Warning", reason, message)] if post else [],
        message=f"{reason}: {message}",
        log_traceback=reason == UNEXPECTED_ERROR and (last is None or post),
        retry_in=retry_delay(attempt, interval),
    )


def token_fetcher(client: k8s.Client) -> HubFetch:
    """A Hub fetch that reads the token from the referenced Secret, only when called."""

    def fetch(model: api.ModelSpec, namespace: str) -> facts.PartialFacts:
        known = hub.cached(repo_id=model.id, revision=model.revision)
        if known is not None:
            return known  # no Secret read, no request: the answer does not change
        token = _token_of(client, model, namespace)()
        return hub.fetch(repo_id=model.id, revision=model.revision, token=token)

    return fetch


def _token_of(client: k8s.Client, model: api.ModelSpec, namespace: str) -> Callable[[], str | None]:
    """Reads the referenced token when called: the Secret is read only if the Hub is asked."""

    def read() -> str | None:
        ref = model.tokenSecretRef
        if ref is None:
            return None
        return client.read_secret_value(namespace=namespace, name=ref.name, key=ref.key)

    return read


def _asked_once(check: KeyCheck | None) -> KeyCheck | None:
    """``check`` answering each (Secret, key, namespace) from the first answer."""
    if check is None:
        return None
    answers: dict[tuple[str, str, str], bool] = {}

    def once(ref: api.APIKeySecretRef, namespace: str) -> bool:
        where = (ref.name, ref.key, namespace)
        if where not in answers:
            answers[where] = check(ref, namespace)
        return answers[where]

    return once


def key_checker(client: k8s.Client) -> KeyCheck:
    """Whether the Secret of spec.auth.apiKeySecretRef holds its key (its value unread)."""

    def check(ref: api.APIKeySecretRef, namespace: str) -> bool:
        return client.secret_has_key(namespace=namespace, name=ref.name, key=ref.key)

    return check


def card_fetcher(client: k8s.Client) -> CardFetch:
    """Hub cards, with the model's token read only on a lookup that goes to the Hub."""

    def fetch(repo_id: str, revision: str, model: api.ModelSpec, namespace: str) -> hub.Card:
        return hub.card(
            repo_id=repo_id, revision=revision, token=_token_of(client, model, namespace)
        )

    return fetch


def access_checker(client: k8s.Client, settings: config.OperatorConfig) -> AccessCheck:
    """Gated-access checks of the token in spec.model.tokenSecretRef (never logged)."""

    def check(model: api.ModelSpec, namespace: str) -> gating.AccessAnswer:
        ref = model.tokenSecretRef
        token = _token_of(client, model, namespace)()
        if ref is None or token is None:
            where = f"{ref.name!r} (key {ref.key!r})" if ref is not None else "(none)"
            return gating.AccessAnswer(
                "SecretMissing",
                f"the Secret {where} named in spec.model.tokenSecretRef does not exist in "
                f"namespace {namespace} or has no such key: create it with a Hugging Face "
                f"token that has been granted access to {model.id}",
            )
        try:
            answer = hub.access(
                repo_id=model.id,
                token=token,
                retry_seconds=settings.hub.accessRetrySeconds,
                max_retry_seconds=settings.hub.accessMaxRetrySeconds,
            )
        except hub.HubError as exc:
            return gating.AccessAnswer(
                "Unreachable",
                f"gated access to {model.id} could not be checked ({exc}); serving goes ahead "
                "and the engine reports any access error itself",
            )
        return gating.AccessAnswer(answer.reason, answer.message)  # type: ignore[arg-type]

    return check
