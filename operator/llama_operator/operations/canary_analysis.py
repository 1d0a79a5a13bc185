"""Canary analysis: what each variant served between two scrapes, and the verdict on it.

Pipeline position: the canary probe (``runtime.canary_probe``) scrapes the canary's and the
stable pods' /metrics (``engine_metrics.traffic``, one ``Traffic`` per pod), keeps one scrape
as the baseline, and at each interval calls ``window`` (baseline and now -> what each variant
served in between) and ``judge`` (the canary's window against ``api.Analysis`` and the
stable window) -> ``Judgement``, which the rollout records in status.rollout.analysis and
acts on.

What counts as a failed request: the engine's server failures (the profile's
``outcomes.serverFailures``: vLLM error; TGI generation, incomplete), any kind the profile
does not know, and the kinds ``api.Analysis.countAsErrors`` adds (abort with the deprecated
``countAborted``). The other kinds (a client's cancel or going away, vLLM abort and TGI
dropped; bad input; a 429 of our own concurrency limit) are shown in the numbers and the
message, not counted.

Pure: numbers in, numbers and a message out; no I/O, no clock, no Kubernetes. Quantiles
follow Prometheus' ``histogram_quantile``, so a number in the status can be checked
against the same query on a dashboard.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from typing import Literal

from llama_operator import api
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

Result = Literal["Passed", "Failed", "Inconclusive"]

P95 = 0.95


def counts_as_error(
    kind: str, *, outcomes: engine_profiles.Outcomes, count: Collection[str] = ()
) -> bool:
    """Whether requests that ended as ``kind`` count as failed.

    ``outcomes``: the engine release's (``engine_profiles.get(engine, version).outcomes``);
    ``count``: the extra kinds the user counts (``api.Analysis.counted_outcomes()``).
    """
    if kind in outcomes.normal:
        return False
    if kind in outcomes.serverFailures:
        return True
    # A kind the profile does not know is a failure mode of a release the facts were not
    # read from, or a label we never saw (TGI's failure counter without err: "unknown").
    # It counts: a new way to fail must not pass a canary unseen.
    if kind not in outcomes.known:
        return True
    return kind in count


@dataclasses.dataclass(frozen=True)
class Window:
    """What one variant served between a baseline scrape and now."""

    pods: int
    requests: float  # finished, however they ended
    outcomes: engine_metrics.Kinds  # of those, the ones that did not end normally, by kind
    latency: engine_metrics.Histogram | None  # deltas, still in cumulative-bucket form
    ttft: engine_metrics.Histogram | None
    # Tokens generated in the window (operations.slo's throughput and cost); None when no
    # pod's page carries the engine's generated-tokens metric.
    tokens: float | None = None

    def failed(self, *, outcomes: engine_profiles.Outcomes, count: Collection[str] = ()) -> float:
        """The requests of the window that count as failed (see ``counts_as_error``)."""
        return sum(
            value
            for kind, value in self.outcomes
            if counts_as_error(kind, outcomes=outcomes, count=count)
        )

    def not_counted(
        self, *, outcomes: engine_profiles.Outcomes, count: Collection[str] = ()
    ) -> tuple[tuple[str, float], ...]:
        """The kinds seen that did not end normally yet do not count, most first."""
        left = [
            (kind, value)
            for kind, value in self.outcomes
            if value > 0
            and kind not in outcomes.normal
            and not counts_as_error(kind, outcomes=outcomes, count=count)
        ]
        return tuple(sorted(left, key=lambda pair: (-pair[1], pair[0])))

    def error_rate(
        self, *, outcomes: engine_profiles.Outcomes, count: Collection[str] = ()
    ) -> float | None:
        """Failed share of the finished requests; None when none finished."""
        if self.requests <= 0:
            return None
        return self.failed(outcomes=outcomes, count=count) / self.requests

    def p95_latency(self) -> float | None:
        return quantile(P95, self.latency)

    def p95_ttft(self) -> float | None:
        return quantile(P95, self.ttft)

    def numbers(
        self, *, outcomes: engine_profiles.Outcomes, count: Collection[str] = ()
    ) -> api.AnalysisNumbers:
        """The window for status: rounded so that a status diff is a real change.

        ``outcomes`` of the numbers: every kind that did not end normally, counted or not,
        with a non-zero count (so that status stays small); None when there is none.
        """
        shown = {
            kind: rounded
            for kind, value in self.outcomes
            if kind not in outcomes.normal and (rounded := round(value, 2)) > 0
        }
        return api.AnalysisNumbers(
            pods=self.pods,
            requests=round(self.requests, 2),
            errorRate=significant(self.error_rate(outcomes=outcomes, count=count)),
            p95LatencySeconds=significant(self.p95_latency()),
            p95TimeToFirstTokenSeconds=significant(self.p95_ttft()),
            outcomes=shown or None,
        )


def window(
    baseline: Mapping[str, engine_metrics.Traffic], current: Mapping[str, engine_metrics.Traffic]
) -> Window:
    """Per-pod deltas, summed.

    A pod absent from baseline contributes nothing (its counters hold its whole past; it
    is baselined by the caller next time) and is not counted in pods. A pod whose request
    counter, or the count of any kind, went down restarted: its delta is its current
    value. Histogram deltas are per bucket bound; if the bounds differ between baseline
    and current, treat as a restart (take current). Generated tokens: as the request
    counter (a token count that went down is a restart too).
    """
    pods = 0
    requests = 0.0
    tokens: float | None = None
    kinds: dict[str, float] = {}
    latencies: list[engine_metrics.Histogram] = []
    ttfts: list[engine_metrics.Histogram] = []
    for name, now in current.items():
        before = baseline.get(name)
        if before is None:
            continue
        pods += 1
        kinds_before, kinds_now = dict(before.outcomes), dict(now.outcomes)
        # Counters only go down when the process started over; everything it counted
        # since then happened after the baseline. A kind's series gone from the page
        # reads as 0: TGI only registers a series at its first increment, so it goes
        # away only with the process.
        restarted = (
            now.requests < before.requests
            or any(kinds_now.get(kind, 0.0) < value for kind, value in kinds_before.items())
            or (now.tokens is not None and now.tokens < (before.tokens or 0.0))
        )
        requests += now.requests if restarted else now.requests - before.requests
        tokens = _tokens_since(tokens, before=before, now=now, restarted=restarted)
        for kind, value in kinds_now.items():
            since = value if restarted else value - kinds_before.get(kind, 0.0)
            kinds[kind] = kinds.get(kind, 0.0) + since
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
        outcomes=engine_metrics.kinds(kinds),
        latency=engine_metrics.merge(latencies),
        ttft=engine_metrics.merge(ttfts),
        tokens=tokens,
    )


def _tokens_since(
    total: float | None,
    *,
    before: engine_metrics.Traffic,
    now: engine_metrics.Traffic,
    restarted: bool,
) -> float | None:
    """``total`` plus the tokens one pod generated since the baseline (None: none known)."""
    if now.tokens is None:
        return total
    # Not on the page at the baseline (TGI's histogram before its first success): every
    # token in it came after.
    earlier = 0.0 if restarted or before.tokens is None else before.tokens
    return (total or 0.0) + now.tokens - earlier


def _delta(
    before: engine_metrics.Histogram | None, now: engine_metrics.Histogram | None
) -> engine_metrics.Histogram | None:
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
    return engine_metrics.Histogram(
        buckets=tuple((bound, count) for (bound, _), count in zip(now.buckets, counts, strict=True))
    )


def quantile(q: float, histogram: engine_metrics.Histogram | None) -> float | None:
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


def judge(
    *,
    canary: Window,
    stable: Window | None,
    analysis: api.Analysis,
    outcomes: engine_profiles.Outcomes,
    stable_outcomes: engine_profiles.Outcomes | None = None,
) -> Judgement:
    """The canary's window against the thresholds of ``analysis`` and the stable window.

    ``outcomes``: how the canary's engine release labels the way a request ended
    (``engine_profiles.get(engine, version).outcomes``); ``stable_outcomes``: the stable's, when
    it runs another engine or release (None: the same as the canary's). Failed requests
    are the server failures, unknown kinds, and the kinds of
    ``analysis.counted_outcomes()``.

    Inconclusive with fewer than ``minRequests`` canary requests (the caller lets the
    window grow). Failed when any threshold is breached; a threshold whose metric the
    engine does not expose is skipped, and the message says so. Otherwise Passed.
    """
    counted = analysis.counted_outcomes()
    stable_kinds = stable_outcomes if stable_outcomes is not None else outcomes
    numbers = canary.numbers(outcomes=outcomes, count=counted)
    stable_numbers = (
        stable.numbers(outcomes=stable_kinds, count=counted) if stable is not None else None
    )
    seen = _count(canary.requests)
    if canary.requests < analysis.minRequests:
        lines = [
            _Line(
                f"{seen} of {analysis.minRequests} requests needed to judge the canary; "
                "waiting for more"
            )
        ]
        result: Result = "Inconclusive"
    elif canary.requests <= 0:
        lines = [_Line("no requests were seen; passed on time alone (minRequests is 0)")]
        result = "Passed"
    else:
        lines = [
            _Line(f"{seen} requests"),
            *_checked(
                canary=canary,
                stable=stable,
                analysis=analysis,
                outcomes=outcomes,
                stable_outcomes=stable_kinds,
                counted=counted,
            ),
        ]
        result = "Failed" if any(line.breach is not None for line in lines) else "Passed"
    return Judgement(
        result=result,
        canary=numbers,
        stable=stable_numbers,
        breaches=tuple(line.breach for line in lines if line.breach is not None),
        message="; ".join(line.text for line in lines),
    )


@dataclasses.dataclass(frozen=True)
class _Line:
    """One check in a judgement's message, and its breach when a threshold is exceeded."""

    text: str
    breach: str | None = None  # the short phrase for Judgement.breaches


def _checked(
    *,
    canary: Window,
    stable: Window | None,
    analysis: api.Analysis,
    outcomes: engine_profiles.Outcomes,
    stable_outcomes: engine_profiles.Outcomes,
    counted: Collection[str],
) -> list[_Line]:
    """Every threshold of ``analysis`` that is set, in the order the message lists them."""
    lines = [
        _threshold(
            "error rate",
            canary.error_rate(outcomes=outcomes, count=counted),
            analysis.maxErrorRate,
            stable=stable,
            stable_value=lambda window: window.error_rate(outcomes=stable_outcomes, count=counted),
            unit="",
        ),
        _not_counted(canary, outcomes=outcomes, counted=counted),
        _threshold(
            "p95 latency",
            canary.p95_latency(),
            analysis.maxP95LatencySeconds,
            stable=stable,
            stable_value=Window.p95_latency,
            unit="s",
        ),
        _threshold(
            "p95 time to first token",
            canary.p95_ttft(),
            analysis.maxP95TimeToFirstTokenSeconds,
            stable=stable,
            stable_value=Window.p95_ttft,
            unit="s",
        ),
        _latency_ratio(canary, stable=stable, ratio=analysis.maxLatencyRatio),
    ]
    return [line for line in lines if line is not None]


def _threshold(
    what: str,
    value: float | None,
    limit: float | None,
    *,
    stable: Window | None,
    stable_value: Callable[[Window], float | None],
    unit: str,
) -> _Line | None:
    """``what`` against its maximum, with the stable's value beside it; None when unset."""
    if limit is None:
        return None
    if value is None:
        return _Line(f"{what}: not exposed")
    shown = f"{what} {_show(value, unit)}"
    against = f"max {_show(limit, unit)}"
    if stable is not None:
        other = stable_value(stable)
        against += f" (stable {_show(other, unit) if other is not None else 'n/a'})"
    if value > limit:
        return _Line(f"{shown} > {against}", breach=f"{shown} > {_show(limit, unit)}")
    return _Line(f"{shown} <= {against}")


def _not_counted(
    canary: Window, *, outcomes: engine_profiles.Outcomes, counted: Collection[str]
) -> _Line | None:
    left = canary.not_counted(outcomes=outcomes, count=counted)
    if not left:
        return None
    # Seen, not counted (a client's cancel, bad input, our own 429s): a person reading
    # the verdict should know they were there (spec.rollout.analysis.countAsErrors).
    return _Line("not counted: " + ", ".join(f"{_count(value)} {kind}" for kind, value in left))


def _latency_ratio(canary: Window, *, stable: Window | None, ratio: float | None) -> _Line | None:
    """The canary's p95 latency against ``ratio`` times the stable's; None when unset."""
    if ratio is None:
        return None
    mine = canary.p95_latency()
    theirs = stable.p95_latency() if stable is not None else None
    if mine is None:
        return _Line("latency ratio: canary p95 latency not exposed")
    if theirs is None or theirs <= 0:
        # Nothing to compare with (no stable pods scraped, or no stable traffic in
        # the window): the absolute thresholds still apply.
        return _Line("latency ratio: stable p95 latency not known")
    shown = f"p95 latency {_show(mine, 's')}"
    against = f"{_show(ratio, '')} x stable {_show(theirs, 's')}"
    if mine > ratio * theirs:
        return _Line(f"{shown} > {against}", breach=f"{shown} > {against}")
    return _Line(f"{shown} <= {against}")


def significant(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits: what a person reads, and stable in status."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _show(value: float, unit: str) -> str:
    return f"{value:.3g}{unit}"


def _count(requests: float) -> str:
    # Engines count whole requests; fractions only come from test pods.
    return f"{requests:.0f}" if requests == int(requests) else f"{requests:.2f}"
