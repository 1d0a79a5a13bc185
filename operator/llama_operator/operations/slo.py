"""Live SLO and cost: from scrapes of the primary's pods to the window's figures, and the
verdict against spec.slo.

Adapters (``adapter_activity``): the newest scrape's per-pod adapter activity (vLLM's
vllm:lora_requests_info, ``engine_metrics.Adapters``) counted per adapter: on how many pods
it had running and waiting requests. Engines label no request count, latency or error by
adapter, so that is all status.serving says per adapter.

Pipeline position: the runtime's window keeper (``runtime.slo_probe``) scrapes the
primary's ready pods when a scrape is ``due`` (a fifth of ``spec.slo.window``, never more
often than the operator's resync) and keeps the scrapes of the last window (``keep``);
the reconcile's serving phase (``reconcile.serving_slo``) turns them into ``Figures``
(``measure``: the oldest kept scrape against the newest, per pod, by
``canary_analysis.window``, so counter resets and histogram deltas are read exactly as
for a canary), into ``status.serving`` (``serving_status``) and, with ``spec.slo``, into
the ``SLOMet`` condition (``verdict``).

Cost per million tokens: the plan's cost per replica-hour x the primary's ready replicas,
over the tokens generated per hour, x 1,000,000: what a million generated tokens cost at
this window's rate, with idle capacity charged to the tokens that were served.

Pure: scrapes, objectives and numbers in, numbers, status and a condition out; no I/O,
no clock of its own. See docs/concepts/slo.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import canary_analysis
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

# Scrapes per window: the figures slide by a fifth of it.
SCRAPES_PER_WINDOW = 5
# Finished requests a verdict needs (the canary analysis' default minRequests): a p95 or
# an error rate of a handful of requests says nothing.
MIN_REQUESTS = 20

WITHIN = "WithinObjectives"
MISSED = "ObjectiveMissed"
NO_TRAFFIC = "NoTraffic"
NOT_MEASURED = "NotMeasured"


@dataclasses.dataclass(frozen=True)
class Scrape:
    """The primary's pods as read at one moment: each readable pod's traffic counters."""

    at: float  # seconds, on the keeper's clock
    pods: Mapping[str, engine_metrics.Traffic]


def interval(window: float, *, floor: float) -> float:
    """Seconds between scrapes for a window of ``window`` seconds: a fifth of it, at least
    ``floor`` (the operator's resync: a scrape happens in a reconcile)."""
    return max(window / SCRAPES_PER_WINDOW, floor)


def due(history: Sequence[Scrape], *, now: float, every: float) -> bool:
    """Whether a scrape is due: none yet, or the last is ``every`` seconds old."""
    return not history or now - history[-1].at >= every


def keep(history: Sequence[Scrape], scrape: Scrape, *, window: float) -> tuple[Scrape, ...]:
    """``history`` with ``scrape`` added, trimmed to the window: the newest scrape that is at
    least ``window`` seconds older than ``scrape`` (the window's start), and every later one.
    Until the keeper has watched for a whole window, everything is kept."""
    kept = [*history, scrape]
    start = 0
    for index, earlier in enumerate(kept[:-1]):
        if scrape.at - earlier.at >= window:
            start = index
    return tuple(kept[start:])


@dataclasses.dataclass(frozen=True)
class Figures:
    """What the primary served between the first and the last kept scrape."""

    seconds: float  # the span between them
    served: canary_analysis.Window
    outcomes: engine_profiles.Outcomes  # how the engine release labels a request's end
    ready: int  # the primary's ready replicas, for the cost
    cost_per_hour: float | None  # per replica (the plan's); None: the pool has no price

    @property
    def requests_per_second(self) -> float:
        return self.served.requests / self.seconds

    @property
    def tokens_per_second(self) -> float | None:
        tokens = self.served.tokens
        return None if tokens is None else tokens / self.seconds

    @property
    def error_rate(self) -> float | None:
        rate = self.served.error_rate(outcomes=self.outcomes)
        # At most 1: pages scraped mid-update (a failure counted before its request) must
        # not show more failures than requests.
        return None if rate is None else min(rate, 1.0)

    @property
    def cost_per_million_tokens(self) -> float | None:
        return cost_per_million_tokens(
            cost_per_hour=self.cost_per_hour,
            replicas=self.ready,
            tokens_per_second=self.tokens_per_second,
        )


def cost_per_million_tokens(
    *, cost_per_hour: float | None, replicas: int, tokens_per_second: float | None
) -> float | None:
    """cost per replica-hour x replicas / tokens per hour x 1e6; None without a price or
    without a generated token (no figure rather than an infinite one)."""
    if cost_per_hour is None or tokens_per_second is None or tokens_per_second <= 0:
        return None
    return max(cost_per_hour, 0.0) * max(replicas, 0) / (tokens_per_second * 3600.0) * 1e6


def measure(
    history: Sequence[Scrape],
    *,
    outcomes: engine_profiles.Outcomes,
    ready: int,
    cost_per_hour: float | None,
) -> Figures | None:
    """The window between the first and the last scrape of ``history``; None with fewer
    than two scrapes (the first one is only a baseline), or when no pod was read at both
    ends."""
    if len(history) < 2:
        return None
    first, last = history[0], history[-1]
    seconds = last.at - first.at
    if seconds <= 0:
        return None
    served = canary_analysis.window(first.pods, last.pods)
    if served.pods == 0:
        return None  # no pod was read at both ends: nothing was measured
    return Figures(
        seconds=seconds,
        served=served,
        outcomes=outcomes,
        ready=ready,
        cost_per_hour=cost_per_hour,
    )


def duration(seconds: float) -> str:
    """``seconds`` as a duration like the spec's: 5m, 1m30s, 45s, 1h."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(
        f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value
    )
    return text or "0s"


def adapter_activity(
    pods: Mapping[str, engine_metrics.Traffic],
) -> list[api.AdapterActivity] | None:
    """status.serving.adapters from one scrape: per adapter, the pods where it had running
    and waiting requests, sorted by name; None when no pod showed any adapter with requests
    (the engine exports no such metric, or every adapter was idle)."""
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for traffic in pods.values():
        if traffic.adapters is None:
            continue
        # A pod counts once per adapter, whatever the engine lists twice.
        for name in set(traffic.adapters.running):
            running[name] = running.get(name, 0) + 1
        for name in set(traffic.adapters.waiting):
            waiting[name] = waiting.get(name, 0) + 1
    names = sorted({*running, *waiting})
    if not names:
        return None
    return [
        api.AdapterActivity(
            name=name, runningPods=running.get(name, 0), waitingPods=waiting.get(name, 0)
        )
        for name in names
    ]


def serving_status(
    figures: Figures | None,
    *,
    pods: int,
    now: str,
    newest: Mapping[str, engine_metrics.Traffic] | None = None,
) -> api.ServingStatus:
    """status.serving: the figures, rounded so that a status diff is a real change; only
    when and how many pods were read while there is no window yet. ``newest``: the pods of
    the window's newest scrape, whose adapter activity status.serving.adapters shows (with
    or without a window: it is a reading of now, not of the window)."""
    adapters = adapter_activity(newest) if newest is not None else None
    if figures is None:
        return api.ServingStatus(observedAt=now, pods=pods, adapters=adapters)
    served = figures.served
    return api.ServingStatus(
        window=duration(figures.seconds),
        observedAt=now,
        pods=served.pods,
        requestsPerSecond=_rounded(figures.requests_per_second),
        generatedTokensPerSecond=_rounded(figures.tokens_per_second),
        p95LatencySeconds=_rounded(served.p95_latency()),
        p95TimeToFirstTokenSeconds=_rounded(served.p95_ttft()),
        errorRate=_rounded(figures.error_rate),
        costPerMillionTokens=_rounded(figures.cost_per_million_tokens),
        adapters=adapters,
    )


def _rounded(value: float | None) -> float | None:
    return canary_analysis.significant(value) if value is None or math.isfinite(value) else None


def verdict(figures: Figures | None, *, slo: api.SLO, pods: int) -> conditions.Check:
    """The SLOMet condition: the window against each objective of ``slo``.

    Unknown NotMeasured without a window (no ready pod could be read, or the first scrape
    is only its baseline); Unknown NoTraffic with fewer than ``MIN_REQUESTS`` requests.
    An objective whose metric the engine does not expose is not judged, and the message
    says so. False ObjectiveMissed when any objective is missed, the message naming each
    with its measured value; else True WithinObjectives."""
    if figures is None:
        why = (
            "no ready pod of the primary could be read"
            if pods == 0
            else "the window starts: its first scrape is the baseline"
        )
        return conditions.Check(conditions.SLO_MET, "Unknown", NOT_MEASURED, why)
    span = duration(figures.seconds)
    requests = figures.served.requests
    if requests < MIN_REQUESTS:
        return conditions.Check(
            conditions.SLO_MET,
            "Unknown",
            NO_TRAFFIC,
            f"{requests:.0f} requests in the last {span}; {MIN_REQUESTS} are needed to judge",
        )
    lines = _lines(figures, slo=slo)
    missed = [text for text, breach in lines if breach]
    summary = f"over the last {span} ({requests:.0f} requests)"
    if missed:
        return conditions.Check(
            conditions.SLO_MET, "False", MISSED, f"{'; '.join(missed)} {summary}"
        )
    shown = "; ".join(text for text, _ in lines)
    return conditions.Check(conditions.SLO_MET, "True", WITHIN, f"{shown} {summary}")


def _lines(figures: Figures, *, slo: api.SLO) -> list[tuple[str, bool]]:
    """(text, missed) per objective set, in the order the message lists them."""
    served = figures.served
    lines = [
        _at_most("p95 latency", served.p95_latency(), slo.maxP95LatencySeconds, unit="s"),
        _at_most("p95 TTFT", served.p95_ttft(), slo.maxP95TimeToFirstTokenSeconds, unit="s"),
        _at_most("error rate", figures.error_rate, slo.maxErrorRate, unit=""),
        _at_least("generated tokens/s", figures.tokens_per_second, slo.minTokensPerSecond),
    ]
    return [line for line in lines if line is not None]


def _at_most(
    what: str, value: float | None, limit: float | None, *, unit: str
) -> tuple[str, bool] | None:
    if limit is None:
        return None
    if value is None:
        return (f"{what}: not exposed by the engine", False)
    if value > limit:
        return (f"{what} {_show(value, unit)} > {_show(limit, unit)}", True)
    return (f"{what} {_show(value, unit)} <= {_show(limit, unit)}", False)


def _at_least(what: str, value: float | None, floor: float | None) -> tuple[str, bool] | None:
    if floor is None:
        return None
    if value is None:
        return (f"{what}: not exposed by the engine", False)
    if value < floor:
        return (f"{what} {_show(value, '')} < {_show(floor, '')}", True)
    return (f"{what} {_show(value, '')} >= {_show(floor, '')}", False)


def _show(value: float, unit: str) -> str:
    return f"{value:.3g}{unit}"
