"""One reconcile of one LlamaDeployment: decide, apply what changed, report.

The pipeline of architecture.md in one place: parse the spec, resolve model facts
(spec > catalog > Hub), choose GPU pools (operator config, else discovered nodes),
plan, render the children, apply only the children whose content hash differs from
what is live, and compute the status and Events. Decisions are delegated to pure
modules; the only I/O is through the injected ``k8s.Client`` and ``hub.fetch``.

A spec that cannot be planned never touches the children: whatever was serving
keeps serving, and the ``Planned`` condition names the field to fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Literal

import pydantic

from llama_operator import (
    api,
    builders,
    catalog,
    conditions,
    config,
    facts,
    hub,
    k8s,
    planner,
    pools,
    status,
)

# (kind, namespace, name) -> the live object as last seen by a watch, or None.
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]
HubFetch = Callable[[api.ModelSpec, str], facts.PartialFacts]


@dataclasses.dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event]
    written: list[str]
    phase: str
    failure: str | None  # the Planned=False reason, when the spec could not be planned


@dataclasses.dataclass(frozen=True)
class Desired:
    model: facts.ModelFacts
    plan: api.Plan
    pool: pools.Pool
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
) -> Desired:
    """Everything the operator wants to exist for this resource, or ``PlanningError``.

    ``keep`` is the plan currently in status: it is reused while the spec fields it was
    made from are unchanged and its pool is still available, so scaling, a new pool or
    a price change in the operator config never moves a running endpoint.
    """
    try:
        spec = api.parse_spec(dict(raw_spec))
    except api.SpecError as exc:
        raise PlanningError(status.PlanningFailure("InvalidSpec", str(exc))) from exc
    try:
        model = resolve_facts(model=spec.model, namespace=namespace, fetch=fetch)
    except (facts.FactsError, api.SpecError) as exc:
        raise PlanningError(status.PlanningFailure("ModelFactsUnavailable", str(exc))) from exc
    request = planner.request_for(spec=spec, model=model, available=available, settings=settings)
    inputs = api.plan_inputs_hash(spec)
    try:
        if keep is not None and keep.inputsHash == inputs and _still_fits(request, keep):
            plan = keep
        else:
            plan = planner.plan(request).model_copy(update={"inputsHash": inputs})
    except planner.PlanError as exc:
        reason = "NoGPUPools" if not request.pools else "NoFeasiblePlan"
        raise PlanningError(status.PlanningFailure(reason, f"{exc.field}: {exc}")) from exc
    pool = next(p for p in request.pools if p.name == plan.pool)
    objects = builders.build_all(
        name=name,
        namespace=namespace,
        uid=uid,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
    )
    return Desired(model=model, plan=plan, pool=pool, objects=objects)


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
) -> Outcome:
    """Reconcile one LlamaDeployment.

    ``generations`` remembers, per child ("Kind/name"), the ``metadata.generation`` our last
    apply produced (the handlers keep it in the object's memo): a live generation past
    it means someone else edited the child, which is then re-applied.
    """
    generations = {} if generations is None else generations
    meta = body.get("metadata") or {}
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = meta.get("generation")
    raw_spec = body.get("spec") or {}
    previous = body.get("status") or {}
    available = settings.pools or pools.discover(gpu_nodes)
    primary_name = f"{name}-primary"

    events: list[Event] = []
    written: list[str] = []
    plan: api.Plan | None = None
    failure: status.PlanningFailure | None = None
    deployment = lookup("Deployment", namespace, primary_name)
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
        )
    except PlanningError as exc:
        failure = exc.failure
    else:
        plan = wanted.plan
        for obj in wanted.objects:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            child = f"{kind}/{obj_name}"
            live = lookup(kind, namespace, obj_name)
            if (
                live is not None
                and _live_hash(live) == _live_hash(obj)
                and not _edited_by_others(live, child, generations)
            ):
                continue  # unchanged since our last apply: no write
            result = client.apply(obj)
            applied_generation = (result.get("metadata") or {}).get("generation")
            if isinstance(applied_generation, int):
                generations[child] = applied_generation
            written.append(child)
            if kind == "Deployment" and obj_name == primary_name:
                deployment = result
        if plan.model_dump(mode="json", exclude_none=True) != previous.get("plan"):
            events.append(Event("Normal", "Planned", plan.reason))
        if written:
            events.append(Event("Normal", "Applied", ", ".join(written)))

    spec_replicas = raw_spec.get("replicas", 1)
    new_status = status.compute(
        status.Observation(
            generation=generation,
            previous=previous,
            plan=plan,
            failure=failure,
            deployment=deployment,
            desired_replicas=spec_replicas if isinstance(spec_replicas, int) else 1,
            selector=builders.selector_string(name=name, variant="primary"),
            not_yet_active=not_yet_active(raw_spec),
            now=now,
        )
    )
    events.extend(_condition_events(previous, new_status))
    return Outcome(
        status_patch=status.diff(previous, new_status),
        events=events,
        written=written,
        phase=new_status["phase"],
        failure=failure.reason if failure is not None else None,
    )


def _current_plan(previous: Mapping[str, Any]) -> api.Plan | None:
    """The plan in status, when it was planned successfully and still parses."""
    planned = conditions.find(previous.get("conditions") or [], conditions.PLANNED)
    if planned is None or planned.get("status") != "True":
        return None
    try:
        return api.Plan.model_validate(previous.get("plan"))
    except pydantic.ValidationError:
        return None  # absent, or written by another operator version: plan again


def _edited_by_others(
    live: Mapping[str, Any], child: str, generations: MutableMapping[str, int]
) -> bool:
    live_generation = (live.get("metadata") or {}).get("generation")
    if not isinstance(live_generation, int):
        return False  # kinds without a generation (Services): the hash alone decides
    ours = generations.setdefault(child, live_generation)  # first sight: take it as ours
    # Only a newer generation is an edit: an older one is a watch that has not caught
    # up with our own apply yet.
    return live_generation > ours


def _live_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(builders.HASH_ANNOTATION)
    return str(value) if value is not None else None


def _condition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Warnings for conditions that newly went bad (not on every tick they stay bad)."""
    result = []
    old_conditions = old.get("conditions") or []
    for type_ in (conditions.PLANNED, conditions.NOT_YET_ACTIVE):
        after = conditions.find(new.get("conditions") or [], type_)
        before = conditions.find(old_conditions, type_)
        if after is None:
            continue
        bad = (type_ == conditions.PLANNED and after["status"] == "False") or (
            type_ == conditions.NOT_YET_ACTIVE and after["status"] == "True"
        )
        if bad and (
            before is None
            or before.get("status") != after["status"]
            or before.get("message") != after.get("message")
        ):
            result.append(Event("Warning", after["reason"], after["message"]))
    return result


def token_fetcher(client: k8s.Client) -> HubFetch:
    """A Hub fetch that reads the token from the referenced Secret, only when called."""

    def fetch(model: api.ModelSpec, namespace: str) -> facts.PartialFacts:
        known = hub.cached(repo_id=model.id, revision=model.revision)
        if known is not None:
            return known  # no Secret read, no request: the answer does not change
        token = None
        if model.tokenSecretRef is not None:
            token = client.read_secret_value(
                namespace=namespace, name=model.tokenSecretRef.name, key=model.tokenSecretRef.key
            )
        return hub.fetch(repo_id=model.id, revision=model.revision, token=token)

    return fetch
