"""The operator's own Prometheus metrics, and the HTTP endpoint that serves them.

Handlers record each reconcile here; ``serve`` exposes them on ``:9090/metrics``
(``LLAMA_OPERATOR_METRICS_PORT``, ``0`` disables). A private registry keeps the
output to our metrics (plus the process collector), so a scrape stays small.
Phases are kept per object and counted at scrape time, so a deleted
LlamaDeployment stops counting as soon as ``forget`` is called for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import core, registry

import llama_operator

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
