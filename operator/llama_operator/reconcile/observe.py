"""The observe phase: the LlamaDeployment and what runs for it, each read once.

The first phase of a reconcile (``reconcile.reconcile``). From the object it reads the
metadata the other phases name children after, the spec (parsed once: every phase after
this one is handed the parsed spec), and the status the last reconcile wrote (``Previous``:
its slices parsed into the API's status models once). From the cluster it reads the GPU
pools, the primary Deployment as watched, and its health (its pods only when they may
tell something). Nothing is written here.

A status slice that does not validate reads as absent, as it always has: a status written
by another operator version, or edited by hand, must never stop a reconcile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import failover, health, rollout
from llama_operator.planning import config, pools
from llama_operator.reconcile import inputs, status
from llama_operator.serving import builders, engines


@dataclasses.dataclass(frozen=True)
class Meta:
    """The LlamaDeployment's metadata, as the phases use it."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    annotations: Mapping[str, Any] | None  # the rollout action is one of them
    resource_version: str | None  # a rollout action is acted on once per version


def meta_of(body: Mapping[str, Any]) -> Meta:
    meta = body.get("metadata") or {}
    return Meta(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=meta.get("generation"),
        annotations=meta.get("annotations"),
        resource_version=meta.get("resourceVersion"),
    )


def name_failure(name: str) -> status.PlanningFailure | None:
    """``InvalidName`` when no child could be named after ``name`` (``api.name_problem``)."""
    problem = api.name_problem(name)
    return status.PlanningFailure("InvalidName", problem) if problem is not None else None


def not_yet_active(raw_spec: Mapping[str, Any]) -> list[str]:
    """Spec fields the user set whose behaviour this version does not have yet."""
    return [name for name in api.NOT_YET_ACTIVE if raw_spec.get(name) not in (None, [], {})]


@dataclasses.dataclass(frozen=True)
class Previous:
    """``.status`` as the last reconcile left it.

    The slices the phases decide from are parsed once, here, each on its own: one that
    does not validate is None (empty for the history) and the others still count. What
    the phases only carry over or compare is read from ``raw`` as written (the diff base
    of ``report``, the conditions, the licence, the children recorded by name).
    """

    raw: Mapping[str, Any]
    plan: api.Plan | None  # status.plan, whatever the Planned condition says
    planned: bool  # the Planned condition is True
    rollout: api.RolloutStatus | None
    failover: api.FailoverStatus | None
    recovery: api.RecoveryStatus | None
    plan_history: tuple[api.PlanChange, ...]

    @property
    def current_plan(self) -> api.Plan | None:
        """The plan in status, when it was planned successfully and still parses."""
        return self.plan if self.planned else None

    @property
    def canary_running(self) -> bool:
        """Whether a canary rollout is under way (it owns a canary Deployment)."""
        return self.rollout is not None and self.rollout.phase in api.ROLLOUT_IN_PROGRESS

    @property
    def canary_plan(self) -> api.Plan | None:
        """The plan of a canary under way, when status has one this version can read."""
        return self.rollout.canaryPlan if self.rollout is not None and self.canary_running else None

    @property
    def plan_as_written(self) -> Mapping[str, Any]:
        """status.plan as written, even when this version cannot parse it: its pool and
        engine still say what runs."""
        plan = self.raw.get("plan")
        return plan if isinstance(plan, Mapping) else {}

    @property
    def conditions(self) -> list[Mapping[str, Any]]:
        """status.conditions as written (``conditions.find`` reads them by type)."""
        return list(self.raw.get("conditions") or [])

    @property
    def license(self) -> Any:
        """status.license as written: the licence gate carries its acceptance over, and a
        held primary's entry Service keeps its annotations."""
        return self.raw.get("license")

    @property
    def http_route(self) -> str | None:
        """The HTTPRoute status names (status.httpRoute), if any."""
        route = self.raw.get("httpRoute")
        return route if isinstance(route, str) and route else None

    @property
    def network_policy(self) -> str | None:
        """The NetworkPolicy status names (status.networkPolicy), if any."""
        policy = self.raw.get("networkPolicy")
        return policy if isinstance(policy, str) and policy else None

    @property
    def external_scaler(self) -> Mapping[str, Any] | None:
        """status.externalScaler as written (compared whole with the one wanted now)."""
        scaler = self.raw.get("externalScaler")
        return scaler if isinstance(scaler, Mapping) else None


def previous_of(raw: Mapping[str, Any]) -> Previous:
    """``raw`` (the object's ``.status``) with its slices parsed."""
    planned = conditions.find(raw.get("conditions") or [], conditions.PLANNED)
    return Previous(
        raw=raw,
        plan=_plan(raw.get("plan")),
        planned=planned is not None and planned.get("status") == "True",
        rollout=rollout.previous_of(raw.get("rollout")),
        failover=failover.previous_of(raw.get("failover")),
        recovery=_recovery(raw.get("recovery")),
        plan_history=_plan_history(raw.get("planHistory")),
    )


def _plan(raw: object) -> api.Plan | None:
    try:
        return api.Plan.model_validate(raw)
    except pydantic.ValidationError:
        return None  # absent, or written by another operator version: plan again


def _recovery(raw: object) -> api.RecoveryStatus | None:
    try:
        return api.RecoveryStatus.model_validate(raw, strict=False) if raw else None
    except pydantic.ValidationError:
        return None


def _plan_history(raw: Any) -> tuple[api.PlanChange, ...]:
    try:
        return tuple(api.PlanChange.model_validate(e, strict=False) for e in raw or [])
    except (pydantic.ValidationError, TypeError):
        return ()  # the history restarts from the next re-planning


@dataclasses.dataclass(frozen=True)
class Observed:
    """The observe phase's result: everything later phases read of the object and the
    cluster before deciding."""

    meta: Meta
    raw_spec: Mapping[str, Any]  # as written: status reports some of it as the user set it
    spec: api.LlamaDeploymentSpec | None  # None: it does not validate (``invalid`` says why)
    invalid: status.PlanningFailure | None
    previous: Previous
    replicas: int  # spec.replicas as written (1 when unset or not a number)
    available: tuple[pools.Pool, ...]  # the GPU pools: the operator config's, else discovered
    primary: Mapping[str, Any] | None  # the primary Deployment, as watched
    primary_health: health.Health | None  # None: no primary yet, or no spec to judge by

    @property
    def primary_name(self) -> str:
        return f"{self.meta.name}-{builders.PRIMARY}"


def read(
    body: Mapping[str, Any],
    *,
    meta: Meta,
    settings: config.OperatorConfig,
    cluster: inputs.Cluster,
) -> Observed:
    """The object and what runs for it. The only request: the primary's pods, read only
    when its health needs them (``primary_health``)."""
    raw_spec = body.get("spec") or {}
    previous = previous_of(body.get("status") or {})
    spec, invalid = _parsed(raw_spec)
    available = tuple(settings.pools or pools.discover(cluster.gpu_nodes))
    deployment = cluster.lookup("Deployment", meta.namespace, f"{meta.name}-{builders.PRIMARY}")
    spec_replicas = raw_spec.get("replicas", 1)
    return Observed(
        meta=meta,
        raw_spec=raw_spec,
        spec=spec,
        invalid=invalid,
        previous=previous,
        replicas=spec_replicas if isinstance(spec_replicas, int) else 1,
        available=available,
        primary=deployment,
        primary_health=primary_health(
            deployment,
            spec,
            previous,
            cluster=cluster,
            namespace=meta.namespace,
            name=meta.name,
            pools_of=available,
        ),
    )


def _parsed(
    raw_spec: Mapping[str, Any],
) -> tuple[api.LlamaDeploymentSpec | None, status.PlanningFailure | None]:
    try:
        return api.parse_spec(dict(raw_spec)), None
    except api.SpecError as exc:
        return None, status.PlanningFailure("InvalidSpec", str(exc))


def primary_health(
    deployment: Mapping[str, Any] | None,
    spec: api.LlamaDeploymentSpec | None,
    previous: Previous,
    *,
    cluster: inputs.Cluster,
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
    before = previous.failover
    away = before is not None and before.active != failover.PRIMARY
    if not (health.needs_pods(deployment, desired) or away):
        return health.Health(desired=desired, ready=ready)
    pods = cluster.client.list_pods(
        namespace=namespace, labels=builders.selector(name=name, variant=builders.PRIMARY)
    )
    return health.of(
        desired=desired,
        ready=ready,
        pods=pods,
        node_selector=_plan_selector(previous, pools_of),
        memory_patterns=_memory_patterns(previous),
    )


def _plan_selector(previous: Previous, available: Sequence[pools.Pool]) -> Mapping[str, str] | None:
    """The nodeSelector of the pool status.plan is on: a pod asking for another pool's
    nodes was made from an earlier plan, and says nothing about this one."""
    pool = previous.plan_as_written.get("pool")
    found = next((p for p in available if p.name == pool), None)
    return dict(found.nodeSelector) if found is not None else None


def _memory_patterns(previous: Previous) -> tuple[str, ...] | None:
    """The out-of-memory log lines of the engine release the primary was last applied with
    (status.plan); None when status has no plan this version reads (every profile's)."""
    if previous.plan is None:
        return None
    return engines.profile(plan=previous.plan).outOfMemoryLogs
