"""analysis.py: windows between scrapes, Prometheus quantiles, and the canary verdict."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import podserver
from llama_operator import analysis, api, podmetrics

INF = math.inf
Histogram = podmetrics.Histogram


def traffic(
    requests: float,
    errors: float = 0,
    latency: Histogram | None = None,
    ttft: Histogram | None = None,
) -> podmetrics.Traffic:
    return podmetrics.Traffic(requests=requests, errors=errors, latency=latency, ttft=ttft)


def hist(*buckets: tuple[float, float]) -> Histogram:
    return Histogram(buckets=tuple(buckets))


def spread(p95: float, n: float = 100) -> Histogram:
    """n observations whose Prometheus p95 is exactly ``p95``."""
    return hist((p95, 0.95 * n), (2 * p95, n), (INF, n))


def win(
    requests: float,
    errors: float = 0,
    *,
    latency: float | None = None,
    ttft: float | None = None,
    pods: int = 2,
) -> analysis.Window:
    return analysis.Window(
        pods=pods,
        requests=requests,
        errors=errors,
        latency=spread(latency, requests) if latency is not None else None,
        ttft=spread(ttft, requests) if ttft is not None else None,
    )


class TestWindow:
    def test_deltas_are_summed_over_pods(self) -> None:
        baseline = {
            "a": traffic(100, 2, hist((1.0, 50), (INF, 100))),
            "b": traffic(10, 0, hist((1.0, 5), (INF, 10))),
        }
        current = {
            "a": traffic(130, 5, hist((1.0, 60), (INF, 130))),
            "b": traffic(20, 1, hist((1.0, 15), (INF, 20))),
        }
        got = analysis.window(baseline, current)
        assert (got.pods, got.requests, got.errors) == (2, 40, 4)
        assert got.latency == hist((1.0, 20), (INF, 40))
        assert got.ttft is None
        assert got.error_rate() == pytest.approx(0.1)

    def test_a_new_pod_is_ignored_until_baselined(self) -> None:
        baseline = {"a": traffic(100, 0)}
        current = {"a": traffic(110, 1), "new": traffic(5000, 4000)}
        got = analysis.window(baseline, current)
        assert (got.pods, got.requests, got.errors) == (1, 10, 1)

    def test_a_pod_gone_since_the_baseline_is_ignored(self) -> None:
        got = analysis.window({"a": traffic(100), "gone": traffic(50)}, {"a": traffic(104)})
        assert (got.pods, got.requests) == (1, 4)

    def test_a_restarted_pod_contributes_its_current_values(self) -> None:
        baseline = {"a": traffic(500, 20, hist((1.0, 400), (INF, 500)))}
        current = {"a": traffic(12, 3, hist((1.0, 2), (INF, 12)))}
        got = analysis.window(baseline, current)
        assert (got.pods, got.requests, got.errors) == (1, 12, 3)
        assert got.latency == hist((1.0, 2), (INF, 12))

    def test_errors_going_down_is_a_restart_too(self) -> None:
        got = analysis.window({"a": traffic(10, 5)}, {"a": traffic(30, 2)})
        assert (got.requests, got.errors) == (30, 2)

    def test_changed_bounds_take_the_current_histogram(self) -> None:
        baseline = {"a": traffic(100, 0, hist((1.0, 90), (INF, 100)))}
        current = {"a": traffic(110, 0, hist((0.5, 3), (2.0, 9), (INF, 10)))}
        got = analysis.window(baseline, current)
        assert got.requests == 10
        assert got.latency == hist((0.5, 3), (2.0, 9), (INF, 10))

    def test_a_histogram_that_went_down_is_taken_whole(self) -> None:
        baseline = {"a": traffic(100, 0, ttft=hist((1.0, 90), (INF, 100)))}
        current = {"a": traffic(105, 0, ttft=hist((1.0, 4), (INF, 5)))}
        assert analysis.window(baseline, current).ttft == hist((1.0, 4), (INF, 5))

    def test_a_histogram_new_since_the_baseline_is_all_new(self) -> None:
        got = analysis.window(
            {"a": traffic(3, 3)}, {"a": traffic(8, 3, latency=hist((1.0, 4), (INF, 5)))}
        )
        assert got.latency == hist((1.0, 4), (INF, 5))

    def test_a_histogram_no_longer_exposed_is_left_out(self) -> None:
        baseline = {"a": traffic(1, 0, hist((1.0, 1), (INF, 1))), "b": traffic(1)}
        current = {"a": traffic(2), "b": traffic(3, 0, hist((1.0, 2), (INF, 2)))}
        assert analysis.window(baseline, current).latency == hist((1.0, 2), (INF, 2))

    def test_fake_pods_between_two_scrapes(self) -> None:
        pods = {
            name: podserver.FakePod("vllm", rate=20, error_rate=0.05, latency=1.8)
            for name in ("a", "b")
        }

        def scrape() -> dict[str, podmetrics.Traffic]:
            found = {n: podmetrics.traffic(p.text(), engine="vllm") for n, p in pods.items()}
            return {n: t for n, t in found.items() if t is not None}

        baseline = scrape()
        for pod in pods.values():
            pod.advance()
        got = analysis.window(baseline, scrape())
        assert (got.pods, got.requests) == (2, 40)
        assert got.errors == pytest.approx(2)
        assert got.latency is not None
        assert got.latency.count == 40
        # All 40 in (1.5, 2.0]: p95 interpolates to 1.5 + 0.5 * 38 / 40.
        assert got.p95_latency() == pytest.approx(1.975)
        assert got.p95_ttft() == pytest.approx(0.08 + 0.02 * 0.95)  # 0.1 s lands in le=0.1

    def test_no_requests(self) -> None:
        got = analysis.window({"a": traffic(7)}, {"a": traffic(7)})
        assert got.error_rate() is None
        assert got.p95_latency() is None
        assert got.numbers() == api.AnalysisNumbers(pods=1, requests=0)

    def test_numbers_are_rounded_for_status(self) -> None:
        window = analysis.Window(
            pods=3,
            requests=1234.5678,
            errors=1,
            latency=hist((1.0, 0), (3.0, 3), (INF, 3)),
            ttft=hist((0.001, 3), (INF, 3)),
        )
        assert window.numbers() == api.AnalysisNumbers(
            pods=3,
            requests=1234.57,
            errorRate=0.00081,  # 1 / 1234.5678 = 0.000810000...
            p95LatencySeconds=2.9,  # 1 + 2 * 0.95
            p95TimeToFirstTokenSeconds=0.00095,
        )
        assert analysis.Window(3, 3, 1, None, None).numbers().errorRate == 0.3333


class TestQuantile:
    BUCKETS = hist((1.0, 10), (2.0, 30), (4.0, 40), (INF, 40))

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            (0.1, 0.4),  # rank 4 in (0, 1]: 4 of 10
            (0.25, 1.0),  # rank 10 is the first bucket's top
            (0.5, 1.5),  # rank 20 in (1, 2]: 10 of 20
            (0.95, 3.6),  # rank 38 in (2, 4]: 8 of 10
            (1.0, 4.0),
        ],
    )
    def test_linear_interpolation(self, q: float, expected: float) -> None:
        assert analysis.quantile(q, self.BUCKETS) == pytest.approx(expected)

    def test_a_rank_in_the_inf_bucket_is_the_highest_finite_bound(self) -> None:
        histogram = hist((1.0, 10), (2.0, 30), (INF, 100))
        assert analysis.quantile(0.95, histogram) == 2.0
        assert analysis.quantile(0.3, histogram) == 2.0  # rank 30 is still (1, 2]'s top
        assert analysis.quantile(0.31, histogram) == 2.0

    def test_empty_and_missing(self) -> None:
        assert analysis.quantile(0.95, None) is None
        assert analysis.quantile(0.95, hist((1.0, 0), (INF, 0))) is None
        assert analysis.quantile(0.95, hist()) is None
        assert analysis.quantile(0.95, hist((INF, 5))) is None  # no finite bound to give

    def test_zero_is_the_lower_bound_of_the_first_bucket_used(self) -> None:
        assert analysis.quantile(0.0, hist((1.0, 0), (2.0, 0), (4.0, 8), (INF, 8))) == 2.0
        assert analysis.quantile(0.0, self.BUCKETS) == 0.0

    def test_not_monotonic_buckets_are_fixed_as_prometheus_does(self) -> None:
        # Bucket 2.0 lower than 1.0 (series scraped a moment apart): read as 10.
        histogram = hist((1.0, 10), (2.0, 8), (4.0, 20), (INF, 20))
        assert analysis.quantile(0.5, histogram) == 1.0
        assert analysis.quantile(0.75, histogram) == pytest.approx(3.0)

    def test_q_outside_zero_to_one(self) -> None:
        with pytest.raises(ValueError, match="outside"):
            analysis.quantile(1.5, self.BUCKETS)


@st.composite
def histograms(draw: st.DrawFn) -> Histogram:
    bounds = sorted(
        draw(
            st.sets(
                st.floats(min_value=0.001, max_value=1e4, allow_nan=False), min_size=1, max_size=12
            )
        )
    )
    increments = draw(
        st.lists(
            st.integers(min_value=0, max_value=1000),
            min_size=len(bounds) + 1,
            max_size=len(bounds) + 1,
        )
    )
    running, buckets = 0.0, []
    for bound, increment in zip([*bounds, INF], increments, strict=True):
        running += increment
        buckets.append((bound, running))
    return Histogram(buckets=tuple(buckets))


class TestProperties:
    @given(
        histograms(),
        st.floats(min_value=0, max_value=1),
        st.floats(min_value=0, max_value=1),
    )
    def test_quantile_is_monotone_and_inside_its_bucket(
        self, histogram: Histogram, a: float, b: float
    ) -> None:
        low, high = sorted((a, b))
        q_low, q_high = analysis.quantile(low, histogram), analysis.quantile(high, histogram)
        if histogram.count == 0:
            assert q_low is None
            assert q_high is None
            return
        assert q_low is not None
        assert q_high is not None
        assert q_low <= q_high + 1e-9 * max(1.0, abs(q_high))
        highest = histogram.buckets[-2][0]
        assert 0 <= q_low <= highest
        # Inside the bucket that holds the rank (or the highest bound for the +Inf bucket).
        rank = high * histogram.count
        lower = 0.0
        for bound, count in histogram.buckets:
            if count >= rank and count > 0:
                upper = highest if math.isinf(bound) else bound
                low_end = highest if math.isinf(bound) else lower
                assert low_end - 1e-9 * upper <= q_high <= upper * (1 + 1e-9)
                break
            lower = bound

    @given(st.dictionaries(st.sampled_from("abcdef"), histograms(), max_size=5))
    def test_a_window_between_identical_scrapes_is_empty(self, pods: dict[str, Histogram]) -> None:
        scrape = {
            name: traffic(histogram.count, histogram.count / 3, histogram, histogram)
            for name, histogram in pods.items()
        }
        got = analysis.window(scrape, dict(scrape))
        assert (got.pods, got.requests, got.errors) == (len(pods), 0, 0)
        for merged in (got.latency, got.ttft):
            assert merged is None or all(count == 0 for _, count in merged.buckets)
            assert analysis.quantile(0.95, merged) is None


def thresholds(**fields: object) -> api.Analysis:
    return api.Analysis.model_validate({"minRequests": 20, **fields})


class TestJudge:
    def test_within_every_threshold_passes(self) -> None:
        got = analysis.judge(
            canary=win(84, latency=1.2, ttft=0.2),
            stable=win(800, latency=1.1, ttft=0.25),
            analysis=thresholds(
                maxP95LatencySeconds=20,
                maxP95TimeToFirstTokenSeconds=1,
                maxLatencyRatio=1.2,
            ),
        )
        assert got.result == "Passed"
        assert got.breaches == ()
        assert got.message == (
            "84 requests; error rate 0 <= max 0.02 (stable 0); "
            "p95 latency 1.2s <= max 20s (stable 1.1s); "
            "p95 time to first token 0.2s <= max 1s (stable 0.25s); "
            "p95 latency 1.2s <= 1.2 x stable 1.1s"
        )
        assert got.canary == api.AnalysisNumbers(
            pods=2, requests=84, errorRate=0, p95LatencySeconds=1.2, p95TimeToFirstTokenSeconds=0.2
        )
        assert got.stable is not None
        assert got.stable.requests == 800

    def test_error_rate_alone_fails(self) -> None:
        got = analysis.judge(
            canary=win(100, 31, latency=1.0),
            stable=win(100, 0, latency=1.0),
            analysis=thresholds(maxP95LatencySeconds=20),
        )
        assert got.result == "Failed"
        assert got.breaches == ("error rate 0.31 > 0.02",)
        assert got.message == (
            "100 requests; error rate 0.31 > max 0.02 (stable 0); "
            "p95 latency 1s <= max 20s (stable 1s)"
        )

    def test_cancelled_requests_fail_only_when_counted(self) -> None:
        # 10 of 100 requests cancelled by their clients (vLLM's finished_reason abort).
        canary = dataclasses.replace(win(100, 0, latency=1.0), aborted=10)
        lenient = analysis.judge(canary=canary, stable=None, analysis=thresholds())
        assert lenient.result == "Passed"
        assert lenient.canary.errorRate == 0
        strict = analysis.judge(canary=canary, stable=None, analysis=thresholds(countAborted=True))
        assert strict.result == "Failed"
        assert strict.breaches == ("error rate 0.1 > 0.02",)
        assert strict.canary.errorRate == 0.1

    def test_aborted_requests_are_windowed_like_the_others(self) -> None:
        before = {"a": podmetrics.Traffic(100, 1, None, None, aborted=3)}
        after = {"a": podmetrics.Traffic(150, 2, None, None, aborted=8)}
        got = analysis.window(before, after)
        assert (got.requests, got.errors, got.aborted) == (50, 1, 5)

    def test_error_rate_at_the_threshold_passes(self) -> None:
        got = analysis.judge(canary=win(100, 2), stable=None, analysis=thresholds())
        assert got.result == "Passed"
        assert got.message == "100 requests; error rate 0.02 <= max 0.02"

    def test_p95_latency_alone_fails(self) -> None:
        got = analysis.judge(
            canary=win(50, latency=25.0),
            stable=win(50, latency=2.0),
            analysis=thresholds(maxP95LatencySeconds=20),
        )
        assert (got.result, got.breaches) == ("Failed", ("p95 latency 25s > 20s",))

    def test_p95_time_to_first_token_alone_fails(self) -> None:
        got = analysis.judge(
            canary=win(50, latency=1.0, ttft=3.0),
            stable=None,
            analysis=thresholds(maxP95LatencySeconds=20, maxP95TimeToFirstTokenSeconds=2),
        )
        assert (got.result, got.breaches) == ("Failed", ("p95 time to first token 3s > 2s",))
        assert got.stable is None

    def test_slower_than_stable_by_more_than_the_ratio_fails(self) -> None:
        got = analysis.judge(
            canary=win(50, latency=2.4),
            stable=win(500, latency=1.1),
            analysis=thresholds(maxLatencyRatio=1.2),
        )
        assert got.result == "Failed"
        assert got.breaches == ("p95 latency 2.4s > 1.2 x stable 1.1s",)

    def test_within_the_ratio_passes(self) -> None:
        got = analysis.judge(
            canary=win(50, latency=1.3),
            stable=win(500, latency=1.1),
            analysis=thresholds(maxLatencyRatio=1.2),  # 1.3 <= 1.32
        )
        assert got.result == "Passed"

    @pytest.mark.parametrize(
        "stable",
        [None, win(0), analysis.Window(2, 10, 0, hist((1.0, 0), (INF, 0)), None)],
        ids=["no-stable-pods", "no-stable-traffic", "empty-histogram"],
    )
    def test_the_ratio_is_skipped_without_a_stable_p95(
        self, stable: analysis.Window | None
    ) -> None:
        got = analysis.judge(
            canary=win(50, latency=100.0), stable=stable, analysis=thresholds(maxLatencyRatio=1.2)
        )
        assert got.result == "Passed"
        assert "latency ratio: stable p95 latency not known" in got.message

    def test_a_stable_p95_of_zero_skips_the_ratio(self) -> None:
        stable = analysis.Window(2, 10, 0, hist((0.0, 10), (INF, 10)), None)
        assert stable.p95_latency() == 0.0
        got = analysis.judge(
            canary=win(50, latency=3.0), stable=stable, analysis=thresholds(maxLatencyRatio=1.2)
        )
        assert got.result == "Passed"

    def test_missing_metrics_are_skipped_and_named(self) -> None:
        got = analysis.judge(
            canary=win(50),
            stable=win(50),
            analysis=thresholds(
                maxP95LatencySeconds=1, maxP95TimeToFirstTokenSeconds=1, maxLatencyRatio=1.1
            ),
        )
        assert got.result == "Passed"
        assert got.message == (
            "50 requests; error rate 0 <= max 0.02 (stable 0); p95 latency: not exposed; "
            "p95 time to first token: not exposed; "
            "latency ratio: canary p95 latency not exposed"
        )

    def test_a_stable_value_not_exposed_is_shown_as_such(self) -> None:
        got = analysis.judge(
            canary=win(50, latency=1.0),
            stable=win(50),
            analysis=thresholds(maxP95LatencySeconds=5),
        )
        assert "p95 latency 1s <= max 5s (stable n/a)" in got.message

    def test_every_breach_is_listed(self) -> None:
        got = analysis.judge(
            canary=win(40, 40, latency=30.0, ttft=9.0),
            stable=win(40, latency=2.0),
            analysis=thresholds(
                maxP95LatencySeconds=20, maxP95TimeToFirstTokenSeconds=2, maxLatencyRatio=1.5
            ),
        )
        assert got.breaches == (
            "error rate 1 > 0.02",
            "p95 latency 30s > 20s",
            "p95 time to first token 9s > 2s",
            "p95 latency 30s > 1.5 x stable 2s",
        )

    def test_too_few_requests_is_inconclusive(self) -> None:
        got = analysis.judge(
            canary=win(12, 12, latency=100.0),
            stable=win(100),
            analysis=thresholds(maxP95LatencySeconds=1),
        )
        assert got.result == "Inconclusive"
        assert got.breaches == ()
        assert got.message == "12 of 20 requests needed to judge the canary; waiting for more"
        assert got.canary.requests == 12

    def test_min_requests_zero_without_requests_passes(self) -> None:
        got = analysis.judge(
            canary=win(0), stable=None, analysis=thresholds(minRequests=0, maxP95LatencySeconds=1)
        )
        assert got.result == "Passed"
        assert "no requests were seen" in got.message

    def test_min_requests_zero_with_requests_still_checks(self) -> None:
        got = analysis.judge(canary=win(3, 1), stable=None, analysis=thresholds(minRequests=0))
        assert (got.result, got.breaches) == ("Failed", ("error rate 0.333 > 0.02",))

    def test_fractional_requests_are_shown_as_such(self) -> None:
        got = analysis.judge(canary=win(7.5), stable=None, analysis=thresholds())
        assert got.message.startswith("7.50 of 20 requests")
