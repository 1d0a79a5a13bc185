"""Canary analysis: what each variant served between two scrapes, and the verdict on it.

Pipeline position: the rollout scrapes the canary's and the stable pods' /metrics
(``podmetrics.traffic``, one ``Traffic`` per pod), keeps one scrape as the baseline, and
at each interval calls ``window`` (baseline and now -> what each variant served in
between) and ``judge`` (the canary's window against ``api.Analysis`` and the stable
window) -> ``Judgement``, which it records in status.rollout.analysis and acts on.

Pure: numbers in, numbers and a message out; no I/O, no clock, no Kubernetes. Quantiles
follow Prometheus' ``histogram_quantile``, so a number in the status can be checked
against the same query on a dashboard.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Literal

from llama_operator import api, podmetrics

Result = Literal["Passed", "Failed", "Inconclusive"]

P95 = 0.95


@dataclasses.dataclass(frozen=True)
class Window:
    """What one variant served between a baseline scrape and now."""

    pods: int
    requests: float
    errors: float
    latency: podmetrics.Histogram | None  # deltas, still in cumulative-bucket form
    ttft: podmetrics.Histogram | None
    aborted: float = 0.0  # cancelled requests (vLLM), failures only with countAborted

    def error_rate(self, *, count_aborted: bool = False) -> float | None:
        """Failed share of the finished requests; None when none finished."""
        failed = self.errors + (self.aborted if count_aborted else 0.0)
        return failed / self.requests if self.requests > 0 else None

    def p95_latency(self) -> float | None:
        return quantile(P95, self.latency)

    def p95_ttft(self) -> float | None:
        return quantile(P95, self.ttft)

    def numbers(self, *, count_aborted: bool = False) -> api.AnalysisNumbers:
        """The window for status: rounded so that a status diff is a real change."""
        return api.AnalysisNumbers(
            pods=self.pods,
            requests=round(self.requests, 2),
            errorRate=_significant(self.error_rate(count_aborted=count_aborted)),
            p95LatencySeconds=_significant(self.p95_latency()),
            p95TimeToFirstTokenSeconds=_significant(self.p95_ttft()),
        )


def window(
    baseline: Mapping[str, podmetrics.Traffic], current: Mapping[str, podmetrics.Traffic]
) -> Window:
    """Per-pod deltas, summed.

    A pod absent from baseline contributes nothing (its counters hold its whole past; it
    is baselined by the caller next time) and is not counted in pods. A pod whose request
    counter went down restarted: its delta is its current value. Histogram deltas are per
    bucket bound; if the bounds differ between baseline and current, treat as a restart
    (take current).
    """
    pods = 0
    requests = errors = aborted = 0.0
    latencies: list[podmetrics.Histogram] = []
    ttfts: list[podmetrics.Histogram] = []
    for name, now in current.items():
        before = baseline.get(name)
        if before is None:
            continue
        pods += 1
        # Counters only go down when the process started over; everything it counted
        # since then happened after the baseline.
        restarted = now.requests < before.requests or now.errors < before.errors
        if restarted:
            requests += now.requests
            errors += now.errors
            aborted += now.aborted
        else:
            requests += now.requests - before.requests
            errors += now.errors - before.errors
            aborted += max(0.0, now.aborted - before.aborted)
        for past, present, into in (
            (before.latency, now.latency, latencies),
            (before.ttft, now.ttft, ttfts),
        ):
            delta = _delta(None if restarted else past, present)
            if delta is not None:
                into.append(delta)
    return Window(
        pods=pods,
        requests=requests,
        errors=errors,
        latency=podmetrics.merge(latencies),
        ttft=podmetrics.merge(ttfts),
        aborted=aborted,
    )


def _delta(
    before: podmetrics.Histogram | None, now: podmetrics.Histogram | None
) -> podmetrics.Histogram | None:
    if now is None:
        return None
    if before is None:
        # Not exposed at the baseline (TGI registers a histogram at its first
        # observation): everything in it came after.
        return now
    if [bound for bound, _ in before.buckets] != [bound for bound, _ in now.buckets]:
        return now  # a new engine build with other buckets: it restarted
    counts = [
        late - early for (_, early), (_, late) in zip(before.buckets, now.buckets, strict=True)
    ]
    if any(count < 0 for count in counts):
        return now  # a histogram that went down was reset, whatever the counters say
    return podmetrics.Histogram(
        buckets=tuple((bound, count) for (bound, _), count in zip(now.buckets, counts, strict=True))
    )


def quantile(q: float, histogram: podmetrics.Histogram | None) -> float | None:
    """Prometheus histogram_quantile semantics.

    Linear interpolation inside the bucket that holds rank q*count; the first bucket's
    lower bound is 0; a rank in the +Inf bucket returns the highest finite bound; None
    when the count is 0 or histogram is None.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    if histogram is None or histogram.count <= 0:
        return None
    # Prometheus' own fix for buckets that are not monotonic (series scraped at slightly
    # different moments, or summed from different layouts): a running maximum.
    buckets: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in histogram.buckets:
        highest = max(highest, count)
        buckets.append((bound, highest))
    finite = [bucket for bucket in buckets if not math.isinf(bucket[0])]
    if not finite:
        return None  # only a +Inf bucket: no bound to report
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    if finite[0][0] <= 0:
        return finite[0][0]  # as Prometheus: no interpolation below a non-positive bound
    for bound, count in finite:
        # rank 0 (q = 0) belongs to the first bucket that holds anything, so that the
        # result is its lower bound, not a division by an empty bucket.
        if count >= rank and count > below:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return finite[-1][0]


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The verdict on one canary window."""

    result: Result
    canary: api.AnalysisNumbers
    stable: api.AnalysisNumbers | None
    breaches: tuple[str, ...]  # one short phrase per failed threshold
    message: str  # every check with the measured value, the threshold and the stable value


def judge(*, canary: Window, stable: Window | None, analysis: api.Analysis) -> Judgement:
    """The canary's window against the thresholds of ``analysis`` and the stable window.

    Inconclusive with fewer than ``minRequests`` canary requests (the caller lets the
    window grow). Failed when any threshold is breached; a threshold whose metric the
    engine does not expose is skipped, and the message says so. Otherwise Passed.
    """
    aborted = analysis.countAborted
    numbers = canary.numbers(count_aborted=aborted)
    stable_numbers = stable.numbers(count_aborted=aborted) if stable is not None else None

    def verdict(result: Result, breaches: list[str], message: str) -> Judgement:
        return Judgement(
            result=result,
            canary=numbers,
            stable=stable_numbers,
            breaches=tuple(breaches),
            message=message,
        )

    seen = _count(canary.requests)
    if canary.requests < analysis.minRequests:
        return verdict(
            "Inconclusive",
            [],
            f"{seen} of {analysis.minRequests} requests needed to judge the canary; "
            "waiting for more",
        )
    if canary.requests <= 0:
        return verdict(
            "Passed", [], "no requests were seen; passed on time alone (minRequests is 0)"
        )

    checks: list[str] = [f"{seen} requests"]
    breaches: list[str] = []

    def check(
        what: str,
        value: float | None,
        limit: float | None,
        stable_value: Callable[[Window], float | None],
        unit: str,
    ) -> None:
        if limit is None:
            return
        if value is None:
            checks.append(f"{what}: not exposed")
            return
        shown = f"{what} {_show(value, unit)}"
        against = f"max {_show(limit, unit)}"
        if stable is not None:
            other = stable_value(stable)
            against += f" (stable {_show(other, unit) if other is not None else 'n/a'})"
        if value > limit:
            breaches.append(f"{shown} > {_show(limit, unit)}")
            checks.append(f"{shown} > {against}")
        else:
            checks.append(f"{shown} <= {against}")

    check(
        "error rate",
        canary.error_rate(count_aborted=aborted),
        analysis.maxErrorRate,
        lambda window: window.error_rate(count_aborted=aborted),
        "",
    )
    check(
        "p95 latency",
        canary.p95_latency(),
        analysis.maxP95LatencySeconds,
        Window.p95_latency,
        "s",
    )
    check(
        "p95 time to first token",
        canary.p95_ttft(),
        analysis.maxP95TimeToFirstTokenSeconds,
        Window.p95_ttft,
        "s",
    )
    ratio = analysis.maxLatencyRatio
    if ratio is not None:
        mine = canary.p95_latency()
        theirs = stable.p95_latency() if stable is not None else None
        if mine is None:
            checks.append("latency ratio: canary p95 latency not exposed")
        elif theirs is None or theirs <= 0:
            # Nothing to compare with (no stable pods scraped, or no stable traffic in
            # the window): the absolute thresholds still apply.
            checks.append("latency ratio: stable p95 latency not known")
        else:
            shown = f"p95 latency {_show(mine, 's')}"
            against = f"{_show(ratio, '')} x stable {_show(theirs, 's')}"
            if mine > ratio * theirs:
                breaches.append(f"{shown} > {against}")
                checks.append(f"{shown} > {against}")
            else:
                checks.append(f"{shown} <= {against}")
    return verdict("Failed" if breaches else "Passed", breaches, "; ".join(checks))


def _significant(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits: what a person reads, and stable in status."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _show(value: float, unit: str) -> str:
    return f"{value:.3g}{unit}"


def _count(requests: float) -> str:
    # Engines count whole requests; fractions only come from test pods.
    return f"{requests:.0f}" if requests == int(requests) else f"{requests:.2f}"
