"""The operator's own Prometheus metrics, and the HTTP endpoint that serves them.

Handlers record each reconcile here; ``serve`` exposes them on ``:9090/metrics``
(``LLAMA_OPERATOR_METRICS_PORT``, ``0`` disables). A private registry keeps the
output to our metrics (plus the process collector), so a scrape stays small.
Phases are kept per object and counted at scrape time, so a deleted
LlamaDeployment stops counting as soon as ``forget`` is called for it.

``record_endpoint`` keeps per-endpoint gauges for the chart's alerts and dashboard
(``charts/llama-operator/templates/prometheusrule.yaml``, docs/operations/observability.md):
each endpoint's SLO thresholds, whether it serves from a fallback, what it costs per hour,
whether it meets its SLO, its canary's weight and replicas, and its pods per LoRA adapter
(loaded, running, waiting). They are read from the raw object after each reconcile, so
they follow the same status the user sees.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import core, registry

import llama_operator
from llama_operator import api
from llama_operator.api import conditions, slo_spec

PORT_ENV = "LLAMA_OPERATOR_METRICS_PORT"
ADDRESS_ENV = "LLAMA_OPERATOR_METRICS_ADDRESS"
DEFAULT_PORT = 9090
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")

REGISTRY = prometheus_client.CollectorRegistry()
prometheus_client.ProcessCollector(registry=REGISTRY)

RECONCILES = prometheus_client.Counter(
    "llama_operator_reconciles",
    "Reconciles of LlamaDeployments, by outcome (unchanged, applied, planning_failed, error).",
    ["outcome"],
    registry=REGISTRY,
)
DURATION = prometheus_client.Histogram(
    "llama_operator_reconcile_duration_seconds",
    "Wall time of one reconcile, including API calls.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
APPLIES = prometheus_client.Counter(
    "llama_operator_applies",
    "Server-side applies of child objects, by kind.",
    ["kind"],
    registry=REGISTRY,
)
PLANNING_FAILURES = prometheus_client.Counter(
    "llama_operator_planning_failures",
    "Reconciles whose spec could not be planned, by reason (the Planned condition's reason).",
    ["reason"],
    registry=REGISTRY,
)
BUILD = prometheus_client.Info(
    "llama_operator_build", "The running operator's version.", registry=REGISTRY
)
BUILD.info({"version": llama_operator.__version__})

SCALE_EVENTS = prometheus_client.Counter(
    "llama_operator_autoscaler_scale_events",
    "Replica changes made by the built-in autoscaler, by direction (up, down).",
    ["direction"],
    registry=REGISTRY,
)
SCRAPES = prometheus_client.Counter(
    "llama_operator_autoscaler_scrapes",
    "Scrapes of serving pods' /metrics by the built-in autoscaler, by result (ok, failed).",
    ["result"],
    registry=REGISTRY,
)
TICK = prometheus_client.Histogram(
    "llama_operator_autoscaler_tick_seconds",
    "Wall time of one autoscaler evaluation: finding pods, scraping them, deciding, acting.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)

ROLLOUTS = prometheus_client.Counter(
    "llama_operator_rollouts",
    "Canary rollouts, by what happened (started, restarted, promoted, rolled_back, cancelled).",
    ["outcome"],
    registry=REGISTRY,
)
JUDGEMENTS = prometheus_client.Counter(
    "llama_operator_canary_judgements",
    "Judgements of canaries against their analysis thresholds, by result "
    "(Passed, Failed, Inconclusive).",
    ["result"],
    registry=REGISTRY,
)
FAILOVERS = prometheus_client.Counter(
    "llama_operator_failovers",
    "Fallback switches and re-plannings, by event (failed_over, failed_back, "
    "fallback_started, replanned).",
    ["event"],
    registry=REGISTRY,
)
# Event reasons of the failover and re-planning -> the FAILOVERS event they count as.
_FAILOVER_EVENTS = {
    "FailedOver": "failed_over",
    "FailedBack": "failed_back",
    "StartingFallback": "fallback_started",
    "Replanned": "replanned",
}
# Event reasons of the rollout state machine -> the ROLLOUTS outcome they count as.
_ROLLOUT_OUTCOMES = {
    "RolloutStarted": "started",
    "RolloutRetried": "started",
    "RolloutRestarted": "restarted",
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
    "Cancelled": "cancelled",
    "SpecReverted": "cancelled",
    "AppliedDirectly": "cancelled",
}

_phases: dict[str, str] = {}
# uid -> (namespace, name, metric, load, target, desired replicas) of the last evaluation
_scaling: dict[str, tuple[str, str, str, float | None, float, int]] = {}
_lock = threading.Lock()


class _PhaseCollector(registry.Collector):
    def collect(self) -> Iterator[core.Metric]:
        gauge = core.GaugeMetricFamily(
            "llama_operator_llamadeployments",
            "LlamaDeployments handled by this operator, by phase.",
            labels=["phase"],
        )
        with _lock:
            counts = dict.fromkeys(PHASES, 0)
            for phase in _phases.values():
                counts[phase] = counts.get(phase, 0) + 1
        for phase, count in sorted(counts.items()):
            gauge.add_metric([phase], count)
        yield gauge


REGISTRY.register(_PhaseCollector())


class _ScalingCollector(registry.Collector):
    def collect(self) -> Iterator[core.Metric]:
        labels = ["namespace", "name", "metric"]
        desired = core.GaugeMetricFamily(
            "llama_operator_autoscaler_desired_replicas",
            "Replicas the built-in autoscaler last decided, per LlamaDeployment.",
            labels=labels,
        )
        load = core.GaugeMetricFamily(
            "llama_operator_autoscaler_load",
            "The scaling metric summed over the ready pods at the last evaluation "
            "(absent when no pod could be scraped).",
            labels=labels,
        )
        target = core.GaugeMetricFamily(
            "llama_operator_autoscaler_target",
            "The per-replica target of the scaling metric.",
            labels=labels,
        )
        with _lock:
            rows = list(_scaling.values())
        for namespace, name, metric, value, goal, replicas in rows:
            desired.add_metric([namespace, name, metric], replicas)
            target.add_metric([namespace, name, metric], goal)
            if value is not None:
                load.add_metric([namespace, name, metric], value)
        yield desired
        yield load
        yield target


REGISTRY.register(_ScalingCollector())


# spec.slo key -> the objective label of llama_operator_slo_objective, and its default when
# spec.slo is set but the key is not (None: no objective). The defaults are the operations
# guidance's examples (P95 under 2 s, errors under 1 %); they match api.SLO's.
# spec.slo's keys, their objective label, and the default api.SLO applies when slo is set.
SLO_OBJECTIVES: Mapping[str, tuple[str, float | None]] = {
    "maxP95LatencySeconds": ("p95_latency_seconds", slo_spec.DEFAULT_MAX_P95_LATENCY_SECONDS),
    "maxP95TimeToFirstTokenSeconds": ("p95_time_to_first_token_seconds", None),
    "maxErrorRate": ("error_rate", slo_spec.DEFAULT_MAX_ERROR_RATE),
    "minTokensPerSecond": ("min_tokens_per_second", None),
}


@dataclasses.dataclass(frozen=True)
class EndpointFigures:
    """What the per-endpoint gauges show for one LlamaDeployment (None: absent)."""

    namespace: str
    name: str
    objectives: tuple[tuple[str, float], ...]
    on_fallback: int
    cost_per_hour: float | None
    slo_met: int | None
    canary_weight: float
    rolled_back: int
    replicas: float | None
    ready_replicas: float | None
    # (adapter, state, pods): state "loaded" from status.adapters[].loadedPods, "running"
    # and "waiting" from status.serving.adapters.
    adapter_pods: tuple[tuple[str, str, float], ...] = ()


_endpoints: dict[str, EndpointFigures] = {}


def _number(value: Any) -> float | None:
    # Raw status: a number of the wrong type (a hand edit, an older operator) reads as absent.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def slo_objectives(spec: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """(objective label, threshold) of ``spec.slo``, defaults applied; none without it."""
    slo = spec.get("slo")
    if not isinstance(slo, Mapping):
        return ()
    found = []
    for key, (objective, default) in SLO_OBJECTIVES.items():
        value = _number(slo.get(key))
        value = default if value is None else value
        if value is not None:
            found.append((objective, value))
    return tuple(found)


def _slo_met(status: Mapping[str, Any]) -> int | None:
    listed = status.get("conditions")
    written = [c for c in listed if isinstance(c, Mapping)] if isinstance(listed, list) else []
    met = conditions.find(written, conditions.SLO_MET)
    return None if met is None else {"True": 1, "False": 0}.get(str(met.get("status")))


def _canary(status: Mapping[str, Any]) -> tuple[float, int]:
    """(percent of traffic on the canary now, 1 while the last rollout is rolled back)."""
    rollout = _mapping(status.get("rollout"))
    phase = rollout.get("phase")
    weight = 0.0
    if phase in api.ROLLOUT_IN_PROGRESS:
        # The share the canary really gets, where known; else the step's intended weight.
        effective = _number(rollout.get("effectiveWeight"))
        weight = effective if effective is not None else _number(rollout.get("weight")) or 0.0
    return weight, int(phase == "RolledBack")


def _entries(value: Any) -> list[Mapping[str, Any]]:
    """The named mappings of a raw status list (anything else reads as absent)."""
    if not isinstance(value, list):
        return []
    return [e for e in value if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def adapter_pods(status: Mapping[str, Any]) -> tuple[tuple[str, str, float], ...]:
    """(adapter, state, pods) of llama_operator_adapter_pods: "loaded" where
    status.adapters[].loadedPods is set (runtime updates), "running" and "waiting" for each
    adapter status.serving.adapters lists (the engine's own activity metric)."""
    found: list[tuple[str, str, float]] = []
    for entry in _entries(status.get("adapters")):
        loaded = _number(entry.get("loadedPods"))
        if loaded is not None:
            found.append((entry["name"], "loaded", loaded))
    for entry in _entries(_mapping(status.get("serving")).get("adapters")):
        for state, key in (("running", "runningPods"), ("waiting", "waitingPods")):
            # A count the status leaves out is the API's default, 0.
            count = _number(entry.get(key, 0))
            if count is not None:
                found.append((entry["name"], state, count))
    return tuple(found)


def endpoint_figures(
    *, namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> EndpointFigures:
    """The per-endpoint gauges' values for one object: pure, for ``record_endpoint``."""
    active = _mapping(status.get("failover")).get("active") or api.PRIMARY
    price = _number(_mapping(status.get("plan")).get("costPerHour"))
    ready = _number(status.get("readyReplicas"))
    weight, rolled_back = _canary(status)
    return EndpointFigures(
        namespace=namespace,
        name=name,
        objectives=slo_objectives(spec),
        on_fallback=int(active != api.PRIMARY),
        # The plan's price is per replica; pods that are not ready yet cost too, but are
        # not serving: the figure is what the serving capacity costs.
        cost_per_hour=None if price is None else price * (ready or 0.0),
        slo_met=_slo_met(status),
        canary_weight=weight,
        rolled_back=rolled_back,
        replicas=_number(status.get("replicas")),
        ready_replicas=ready,
        adapter_pods=adapter_pods(status),
    )


def record_endpoint(
    *, uid: str, namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    """Keep one LlamaDeployment's per-endpoint gauges, from its raw spec and status after
    a reconcile; ``forget`` drops them."""
    figures = endpoint_figures(namespace=namespace, name=name, spec=spec, status=status)
    with _lock:
        _endpoints[uid] = figures


class _EndpointCollector(registry.Collector):
    def collect(self) -> Iterator[core.Metric]:
        labels = ["namespace", "name"]
        objective = core.GaugeMetricFamily(
            "llama_operator_slo_objective",
            "Thresholds of each LlamaDeployment's spec.slo (defaults applied), by objective "
            "(p95_latency_seconds, p95_time_to_first_token_seconds, error_rate, "
            "min_tokens_per_second).",
            labels=[*labels, "objective"],
        )
        fallback = core.GaugeMetricFamily(
            "llama_operator_endpoint_on_fallback",
            "1 while the entry point serves from a fallback (status.failover.active), else 0.",
            labels=labels,
        )
        cost = core.GaugeMetricFamily(
            "llama_operator_endpoint_cost_per_hour",
            "The plan's price per replica-hour x ready replicas (absent: the plan has no price).",
            labels=labels,
        )
        met = core.GaugeMetricFamily(
            "llama_operator_slo_met",
            "1 while the SLOMet condition is True, 0 while False (absent: Unknown or no SLO).",
            labels=labels,
        )
        weight = core.GaugeMetricFamily(
            "llama_operator_endpoint_canary_weight",
            "Percent of traffic on the canary while a rollout is in progress, else 0.",
            labels=labels,
        )
        rolled_back = core.GaugeMetricFamily(
            "llama_operator_endpoint_rolled_back",
            "1 while the last canary rollout is rolled back and its change held, else 0.",
            labels=labels,
        )
        replicas = core.GaugeMetricFamily(
            "llama_operator_endpoint_replicas",
            "The primary's replicas (status.replicas and status.readyReplicas), by state "
            "(desired, ready).",
            labels=[*labels, "state"],
        )
        with _lock:
            rows = list(_endpoints.values())
        for row in rows:
            key = [row.namespace, row.name]
            for label, value in row.objectives:
                objective.add_metric([*key, label], value)
            fallback.add_metric(key, row.on_fallback)
            if row.cost_per_hour is not None:
                cost.add_metric(key, row.cost_per_hour)
            if row.slo_met is not None:
                met.add_metric(key, row.slo_met)
            weight.add_metric(key, row.canary_weight)
            rolled_back.add_metric(key, row.rolled_back)
            for state, count in (("desired", row.replicas), ("ready", row.ready_replicas)):
                if count is not None:
                    replicas.add_metric([*key, state], count)
        yield from (objective, fallback, cost, met, weight, rolled_back, replicas)


REGISTRY.register(_EndpointCollector())


class _AdapterCollector(registry.Collector):
    """llama_operator_adapter_pods, from the same per-endpoint rows (``forget`` drops them)."""

    def collect(self) -> Iterator[core.Metric]:
        pods = core.GaugeMetricFamily(
            "llama_operator_adapter_pods",
            "Pods of the primary per LoRA adapter, by state: loaded (status.adapters[]."
            "loadedPods: ready pods whose engine lists it in /v1/models; runtime updates "
            "only), running and waiting (status.serving.adapters: pods where it had running "
            "or waiting requests at the last scrape, from vLLM's vllm:lora_requests_info).",
            labels=["namespace", "name", "adapter", "state"],
        )
        with _lock:
            rows = list(_endpoints.values())
        for row in rows:
            for adapter, state, count in row.adapter_pods:
                pods.add_metric([row.namespace, row.name, adapter, state], count)
        yield pods


REGISTRY.register(_AdapterCollector())


def record_autoscale(  # noqa: PLR0913 - one keyword per recorded figure
    *,
    uid: str,
    namespace: str,
    name: str,
    metric: str,
    load: float | None,
    target: float,
    replicas: int,
    previous: int,
    scraped: int,
    failed: int,
    seconds: float,
) -> None:
    """Account for one built-in autoscaler evaluation."""
    TICK.observe(seconds)
    if scraped:
        SCRAPES.labels(result="ok").inc(scraped)
    if failed:
        SCRAPES.labels(result="failed").inc(failed)
    if replicas != previous:
        SCALE_EVENTS.labels(direction="up" if replicas > previous else "down").inc()
    with _lock:
        _scaling[uid] = (namespace, name, metric, load, target, replicas)


def forget_autoscale(uid: str) -> None:
    with _lock:
        _scaling.pop(uid, None)


def record(
    *, uid: str, phase: str | None, written: list[str], failure: str | None, seconds: float
) -> None:
    """Account for one finished reconcile."""
    DURATION.observe(seconds)
    for child in written:
        APPLIES.labels(kind=child.split("/", 1)[0]).inc()
    if failure is not None:
        PLANNING_FAILURES.labels(reason=failure).inc()
        RECONCILES.labels(outcome="planning_failed").inc()
    else:
        RECONCILES.labels(outcome="applied" if written else "unchanged").inc()
    if phase is not None:
        with _lock:
            _phases[uid] = phase


def record_rollout(reasons: list[str]) -> None:
    """Count the rollout, failover and re-planning transitions among a reconcile's Event
    reasons."""
    for reason in reasons:
        outcome = _ROLLOUT_OUTCOMES.get(reason)
        if outcome is not None:
            ROLLOUTS.labels(outcome=outcome).inc()
        event = _FAILOVER_EVENTS.get(reason)
        if event is not None:
            FAILOVERS.labels(event=event).inc()


def record_judgement(result: str) -> None:
    JUDGEMENTS.labels(result=result).inc()


def record_error(*, seconds: float) -> None:
    """A reconcile that raised (Kopf retries it)."""
    DURATION.observe(seconds)
    RECONCILES.labels(outcome="error").inc()


def forget(uid: str) -> None:
    with _lock:
        _phases.pop(uid, None)
        _scaling.pop(uid, None)
        _endpoints.pop(uid, None)


def render() -> bytes:
    """The exposition text, as a scrape would see it."""
    return prometheus_client.generate_latest(REGISTRY)


def serve() -> WSGIServer | None:
    """Start the /metrics endpoint in a background thread (None when disabled)."""
    port = int(os.environ.get(PORT_ENV, str(DEFAULT_PORT)))
    if port == 0:
        return None
    # All interfaces by default: Prometheus scrapes the pod from elsewhere.
    address = os.environ.get(ADDRESS_ENV, "0.0.0.0")
    server, _thread = prometheus_client.start_http_server(port, addr=address, registry=REGISTRY)
    return server
