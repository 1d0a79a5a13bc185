"""operations.canary_analysis: windows between scrapes, quantiles, and the canary verdict."""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Mapping
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import podserver
from llama_operator import api
from llama_operator.api import crd
from llama_operator.operations import canary_analysis
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

INF = math.inf
Histogram = engine_metrics.Histogram
# The outcomes of the engines' default releases; "error" is vLLM's server failure, the
# kind ``errors`` stands for in the helpers below.
VLLM = engine_profiles.get("vllm").outcomes
TGI = engine_profiles.get("tgi").outcomes


def traffic(
    requests: float,
    errors: float = 0,
    latency: Histogram | None = None,
    ttft: Histogram | None = None,
    *,
    outcomes: Mapping[str, float] | None = None,
) -> engine_metrics.Traffic:
    return engine_metrics.Traffic(
        requests=requests,
        outcomes=engine_metrics.kinds({"error": errors, **(outcomes or {})}),
        latency=latency,
        ttft=ttft,
    )


def failed(window: canary_analysis.Window) -> float:
    """The window's failed requests, as vLLM counts them by default."""
    return window.failed(outcomes=VLLM)


# The verdict on a vLLM canary (``outcomes=`` overrides it).
judge = functools.partial(canary_analysis.judge, outcomes=VLLM)


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
    outcomes: Mapping[str, float] | None = None,
) -> canary_analysis.Window:
    return canary_analysis.Window(
        pods=pods,
        requests=requests,
        outcomes=engine_metrics.kinds({"error": errors, **(outcomes or {})}),
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
        got = canary_analysis.window(baseline, current)
        assert (got.pods, got.requests, failed(got)) == (2, 40, 4)
        assert got.latency == hist((1.0, 20), (INF, 40))
        assert got.ttft is None
        assert got.error_rate(outcomes=VLLM) == pytest.approx(0.1)

    def test_a_new_pod_is_ignored_until_baselined(self) -> None:
        baseline = {"a": traffic(100, 0)}
        current = {"a": traffic(110, 1), "new": traffic(5000, 4000)}
        got = canary_analysis.window(baseline, current)
        assert (got.pods, got.requests, failed(got)) == (1, 10, 1)

    def test_a_pod_gone_since_the_baseline_is_ignored(self) -> None:
        got = canary_analysis.window({"a": traffic(100), "gone": traffic(50)}, {"a": traffic(104)})
        assert (got.pods, got.requests) == (1, 4)

    def test_a_restarted_pod_contributes_its_current_values(self) -> None:
        baseline = {"a": traffic(500, 20, hist((1.0, 400), (INF, 500)))}
        current = {"a": traffic(12, 3, hist((1.0, 2), (INF, 12)))}
        got = canary_analysis.window(baseline, current)
        assert (got.pods, got.requests, failed(got)) == (1, 12, 3)
        assert got.latency == hist((1.0, 2), (INF, 12))

    def test_errors_going_down_is_a_restart_too(self) -> None:
        got = canary_analysis.window({"a": traffic(10, 5)}, {"a": traffic(30, 2)})
        assert (got.requests, failed(got)) == (30, 2)

    def test_changed_bounds_take_the_current_histogram(self) -> None:
        baseline = {"a": traffic(100, 0, hist((1.0, 90), (INF, 100)))}
        current = {"a": traffic(110, 0, hist((0.5, 3), (2.0, 9), (INF, 10)))}
        got = canary_analysis.window(baseline, current)
        assert got.requests == 10
        assert got.latency == hist((0.5, 3), (2.0, 9), (INF, 10))

    def test_a_histogram_that_went_down_is_taken_whole(self) -> None:
        baseline = {"a": traffic(100, 0, ttft=hist((1.0, 90), (INF, 100)))}
        current = {"a": traffic(105, 0, ttft=hist((1.0, 4), (INF, 5)))}
        assert canary_analysis.window(baseline, current).ttft == hist((1.0, 4), (INF, 5))

    def test_a_histogram_new_since_the_baseline_is_all_new(self) -> None:
        got = canary_analysis.window(
            {"a": traffic(3, 3)}, {"a": traffic(8, 3, latency=hist((1.0, 4), (INF, 5)))}
        )
        assert got.latency == hist((1.0, 4), (INF, 5))

    def test_a_histogram_no_longer_exposed_is_left_out(self) -> None:
        baseline = {"a": traffic(1, 0, hist((1.0, 1), (INF, 1))), "b": traffic(1)}
        current = {"a": traffic(2), "b": traffic(3, 0, hist((1.0, 2), (INF, 2)))}
        assert canary_analysis.window(baseline, current).latency == hist((1.0, 2), (INF, 2))

    def test_fake_pods_between_two_scrapes(self) -> None:
        pods = {
            name: podserver.FakePod("vllm", rate=20, error_rate=0.05, latency=1.8)
            for name in ("a", "b")
        }

        def scrape() -> dict[str, engine_metrics.Traffic]:
            found = {n: engine_metrics.traffic(p.text(), engine="vllm") for n, p in pods.items()}
            return {n: t for n, t in found.items() if t is not None}

        baseline = scrape()
        for pod in pods.values():
            pod.advance()
        got = canary_analysis.window(baseline, scrape())
        assert (got.pods, got.requests) == (2, 40)
        assert failed(got) == pytest.approx(2)
        assert got.latency is not None
        assert got.latency.count == 40
        # All 40 in (1.5, 2.0]: p95 interpolates to 1.5 + 0.5 * 38 / 40.
        assert got.p95_latency() == pytest.approx(1.975)
        assert got.p95_ttft() == pytest.approx(0.08 + 0.02 * 0.95)  # 0.1 s lands in le=0.1

    def test_no_requests(self) -> None:
        got = canary_analysis.window({"a": traffic(7)}, {"a": traffic(7)})
        assert got.error_rate(outcomes=VLLM) is None
        assert got.p95_latency() is None
        assert got.numbers(outcomes=VLLM) == api.AnalysisNumbers(pods=1, requests=0)

    def test_numbers_are_rounded_for_status(self) -> None:
        window = canary_analysis.Window(
            pods=3,
            requests=1234.5678,
            outcomes=(("abort", 2.0 / 3), ("error", 1), ("repetition", 0.001)),
            latency=hist((1.0, 0), (3.0, 3), (INF, 3)),
            ttft=hist((0.001, 3), (INF, 3)),
        )
        assert window.numbers(outcomes=VLLM) == api.AnalysisNumbers(
            pods=3,
            requests=1234.57,
            errorRate=0.00081,  # 1 / 1234.5678 = 0.000810000...
            p95LatencySeconds=2.9,  # 1 + 2 * 0.95
            p95TimeToFirstTokenSeconds=0.00095,
            outcomes={"abort": 0.67, "error": 1.0},  # 0.001 rounds to nothing: left out
        )
        window = canary_analysis.Window(3, 3, (("error", 1),), None, None)
        assert window.numbers(outcomes=VLLM).errorRate == 0.3333


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
        assert canary_analysis.quantile(q, self.BUCKETS) == pytest.approx(expected)

    def test_a_rank_in_the_inf_bucket_is_the_highest_finite_bound(self) -> None:
        histogram = hist((1.0, 10), (2.0, 30), (INF, 100))
        assert canary_analysis.quantile(0.95, histogram) == 2.0
        assert canary_analysis.quantile(0.3, histogram) == 2.0  # rank 30 is still (1, 2]'s top
        assert canary_analysis.quantile(0.31, histogram) == 2.0

    def test_empty_and_missing(self) -> None:
        assert canary_analysis.quantile(0.95, None) is None
        assert canary_analysis.quantile(0.95, hist((1.0, 0), (INF, 0))) is None
        assert canary_analysis.quantile(0.95, hist()) is None
        assert canary_analysis.quantile(0.95, hist((INF, 5))) is None  # no finite bound to give

    def test_zero_is_the_lower_bound_of_the_first_bucket_used(self) -> None:
        assert canary_analysis.quantile(0.0, hist((1.0, 0), (2.0, 0), (4.0, 8), (INF, 8))) == 2.0
        assert canary_analysis.quantile(0.0, self.BUCKETS) == 0.0

    def test_not_monotonic_buckets_are_fixed_as_prometheus_does(self) -> None:
        # Bucket 2.0 lower than 1.0 (series scraped a moment apart): read as 10.
        histogram = hist((1.0, 10), (2.0, 8), (4.0, 20), (INF, 20))
        assert canary_analysis.quantile(0.5, histogram) == 1.0
        assert canary_analysis.quantile(0.75, histogram) == pytest.approx(3.0)

    def test_q_outside_zero_to_one(self) -> None:
        with pytest.raises(ValueError, match="outside"):
            canary_analysis.quantile(1.5, self.BUCKETS)


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
        q_low, q_high = (
            canary_analysis.quantile(low, histogram),
            canary_analysis.quantile(high, histogram),
        )
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
        got = canary_analysis.window(scrape, dict(scrape))
        assert (got.pods, got.requests, failed(got)) == (len(pods), 0, 0)
        assert all(count == 0 for _, count in got.outcomes)
        for merged in (got.latency, got.ttft):
            assert merged is None or all(count == 0 for _, count in merged.buckets)
            assert canary_analysis.quantile(0.95, merged) is None


def thresholds(**fields: object) -> api.Analysis:
    return api.Analysis.model_validate({"minRequests": 20, **fields})


class TestJudge:
    def test_within_every_threshold_passes(self) -> None:
        got = judge(
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
        got = judge(
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
        canary = win(100, 0, latency=1.0, outcomes={"abort": 10})
        lenient = judge(canary=canary, stable=None, analysis=thresholds())
        assert lenient.result == "Passed"
        assert lenient.canary.errorRate == 0
        for counted in ({"countAborted": True}, {"countAsErrors": ["abort"]}):
            strict = judge(canary=canary, stable=None, analysis=thresholds(**counted))
            assert strict.result == "Failed"
            assert strict.breaches == ("error rate 0.1 > 0.02",)
            assert strict.canary.errorRate == 0.1
            assert "not counted" not in strict.message

    def test_aborted_requests_are_windowed_like_the_others(self) -> None:
        before = {"a": traffic(100, 1, outcomes={"abort": 3})}
        after = {"a": traffic(150, 2, outcomes={"abort": 8})}
        got = canary_analysis.window(before, after)
        assert (got.requests, failed(got), dict(got.outcomes)["abort"]) == (50, 1, 5)

    def test_error_rate_at_the_threshold_passes(self) -> None:
        got = judge(canary=win(100, 2), stable=None, analysis=thresholds())
        assert got.result == "Passed"
        assert got.message == "100 requests; error rate 0.02 <= max 0.02"

    def test_p95_latency_alone_fails(self) -> None:
        got = judge(
            canary=win(50, latency=25.0),
            stable=win(50, latency=2.0),
            analysis=thresholds(maxP95LatencySeconds=20),
        )
        assert (got.result, got.breaches) == ("Failed", ("p95 latency 25s > 20s",))

    def test_p95_time_to_first_token_alone_fails(self) -> None:
        got = judge(
            canary=win(50, latency=1.0, ttft=3.0),
            stable=None,
            analysis=thresholds(maxP95LatencySeconds=20, maxP95TimeToFirstTokenSeconds=2),
        )
        assert (got.result, got.breaches) == ("Failed", ("p95 time to first token 3s > 2s",))
        assert got.stable is None

    def test_slower_than_stable_by_more_than_the_ratio_fails(self) -> None:
        got = judge(
            canary=win(50, latency=2.4),
            stable=win(500, latency=1.1),
            analysis=thresholds(maxLatencyRatio=1.2),
        )
        assert got.result == "Failed"
        assert got.breaches == ("p95 latency 2.4s > 1.2 x stable 1.1s",)

    def test_within_the_ratio_passes(self) -> None:
        got = judge(
            canary=win(50, latency=1.3),
            stable=win(500, latency=1.1),
            analysis=thresholds(maxLatencyRatio=1.2),  # 1.3 <= 1.32
        )
        assert got.result == "Passed"

    @pytest.mark.parametrize(
        "stable",
        [None, win(0), canary_analysis.Window(2, 10, (), hist((1.0, 0), (INF, 0)), None)],
        ids=["no-stable-pods", "no-stable-traffic", "empty-histogram"],
    )
    def test_the_ratio_is_skipped_without_a_stable_p95(
        self, stable: canary_analysis.Window | None
    ) -> None:
        got = judge(
            canary=win(50, latency=100.0), stable=stable, analysis=thresholds(maxLatencyRatio=1.2)
        )
        assert got.result == "Passed"
        assert "latency ratio: stable p95 latency not known" in got.message

    def test_a_stable_p95_of_zero_skips_the_ratio(self) -> None:
        stable = canary_analysis.Window(2, 10, (), hist((0.0, 10), (INF, 10)), None)
        assert stable.p95_latency() == 0.0
        got = judge(
            canary=win(50, latency=3.0), stable=stable, analysis=thresholds(maxLatencyRatio=1.2)
        )
        assert got.result == "Passed"

    def test_missing_metrics_are_skipped_and_named(self) -> None:
        got = judge(
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
        got = judge(
            canary=win(50, latency=1.0),
            stable=win(50),
            analysis=thresholds(maxP95LatencySeconds=5),
        )
        assert "p95 latency 1s <= max 5s (stable n/a)" in got.message

    def test_every_breach_is_listed(self) -> None:
        got = judge(
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
        got = judge(
            canary=win(12, 12, latency=100.0),
            stable=win(100),
            analysis=thresholds(maxP95LatencySeconds=1),
        )
        assert got.result == "Inconclusive"
        assert got.breaches == ()
        assert got.message == "12 of 20 requests needed to judge the canary; waiting for more"
        assert got.canary.requests == 12

    def test_min_requests_zero_without_requests_passes(self) -> None:
        got = judge(
            canary=win(0), stable=None, analysis=thresholds(minRequests=0, maxP95LatencySeconds=1)
        )
        assert got.result == "Passed"
        assert "no requests were seen" in got.message

    def test_min_requests_zero_with_requests_still_checks(self) -> None:
        got = judge(canary=win(3, 1), stable=None, analysis=thresholds(minRequests=0))
        assert (got.result, got.breaches) == ("Failed", ("error rate 0.333 > 0.02",))

    def test_fractional_requests_are_shown_as_such(self) -> None:
        got = judge(canary=win(7.5), stable=None, analysis=thresholds())
        assert got.message.startswith("7.50 of 20 requests")


def vllm_page(**reasons: float) -> str:
    """A vLLM page with vllm:request_success_total per finished_reason."""
    return "# TYPE vllm:request_success_total counter\n" + "".join(
        f'vllm:request_success_total{{engine="0",finished_reason="{reason}"}} {count}\n'
        for reason, count in reasons.items()
    )


def tgi_page(success: float, **failures: float) -> str:
    """A TGI page: tgi_request_success, and tgi_request_failure per err label."""
    page = f"# TYPE tgi_request_success counter\ntgi_request_success {success}\n"
    if failures:
        page += "# TYPE tgi_request_failure counter\n" + "".join(
            f'tgi_request_failure{{err="{err}"}} {count}\n' for err, count in failures.items()
        )
    return page


def scraped(engine: api.Engine, before: str, after: str) -> canary_analysis.Window:
    """The window of one pod between two pages, read as the canary reads them."""
    first = engine_metrics.traffic(before, engine=engine)
    second = engine_metrics.traffic(after, engine=engine)
    assert first is not None
    assert second is not None
    return canary_analysis.window({"pod": first}, {"pod": second})


class TestWhatCountsAsFailed:
    """Server failures count, the engine's other kinds only when countAsErrors says so."""

    # dropped: the client went away (TGI v3.3.7 backends/v3/src/queue.rs and backend.rs
    # count it when the request's response channel is closed), TGI's vLLM abort.
    @pytest.mark.parametrize("err", ["validation", "overloaded", "template", "dropped"])
    def test_tgi_client_side_and_our_own_refusals_do_not_fail(self, err: str) -> None:
        canary = scraped("tgi", tgi_page(100), tgi_page(150, **{err: 50}))
        got = judge(canary=canary, stable=None, analysis=thresholds(), outcomes=TGI)
        assert got.result == "Passed"
        assert got.canary.errorRate == 0
        assert got.canary.requests == 100  # every finished request, failed or not
        assert got.canary.outcomes == {err: 50}
        assert got.message == f"100 requests; error rate 0 <= max 0.02; not counted: 50 {err}"

    @pytest.mark.parametrize("err", ["generation", "incomplete"])
    def test_tgi_server_failures_fail(self, err: str) -> None:
        canary = scraped("tgi", tgi_page(100), tgi_page(190, **{err: 10}))
        got = judge(canary=canary, stable=None, analysis=thresholds(), outcomes=TGI)
        assert got.result == "Failed"
        assert got.breaches == ("error rate 0.1 > 0.02",)
        assert got.canary.outcomes == {err: 10}
        assert "not counted" not in got.message

    @pytest.mark.parametrize("reason", ["abort", "repetition"])
    def test_vllm_cancels_and_repetitions_do_not_fail(self, reason: str) -> None:
        canary = scraped("vllm", vllm_page(stop=10), vllm_page(stop=60, **{reason: 40}))
        got = judge(canary=canary, stable=None, analysis=thresholds())
        assert got.result == "Passed"
        assert got.canary.errorRate == 0
        assert got.canary.outcomes == {reason: 40}
        assert got.message.endswith(f"; not counted: 40 {reason}")

    def test_a_vllm_error_fails(self) -> None:
        canary = scraped(
            "vllm", vllm_page(stop=10, error=0), vllm_page(stop=67, length=40, error=3)
        )
        got = judge(canary=canary, stable=None, analysis=thresholds())
        assert got.result == "Failed"
        assert got.breaches == ("error rate 0.03 > 0.02",)
        assert got.canary.outcomes == {"error": 3}  # stop and length are not listed

    @pytest.mark.parametrize(
        ("engine", "before", "after", "kind"),
        [
            # A reason a later vLLM release adds.
            ("vllm", vllm_page(stop=10), vllm_page(stop=57, timeout=3), "timeout"),
            # A TGI err label the profile does not list.
            ("tgi", tgi_page(10), tgi_page(57, **{"backend-gone": 3}), "backend-gone"),
            # A TGI failure with no err label at all.
            (
                "tgi",
                tgi_page(10),
                tgi_page(57) + "# TYPE tgi_request_failure counter\ntgi_request_failure 3\n",
                engine_metrics.UNKNOWN,
            ),
        ],
    )
    def test_a_kind_the_profile_does_not_know_fails(
        self, engine: api.Engine, before: str, after: str, kind: str
    ) -> None:
        outcomes = engine_profiles.get(engine).outcomes
        assert kind not in outcomes.known
        got = judge(
            canary=scraped(engine, before, after),
            stable=None,
            analysis=thresholds(),
            outcomes=outcomes,
        )
        assert got.result == "Failed"
        assert got.canary.errorRate == 0.06
        assert got.canary.outcomes == {kind: 3}

    def test_count_as_errors_counts_a_kind(self) -> None:
        canary = scraped("tgi", tgi_page(0), tgi_page(85, overloaded=12, validation=3))
        lenient = judge(canary=canary, stable=None, analysis=thresholds(), outcomes=TGI)
        assert lenient.result == "Passed"
        assert lenient.message == (
            "100 requests; error rate 0 <= max 0.02; not counted: 12 overloaded, 3 validation"
        )
        strict = judge(
            canary=canary,
            stable=None,
            analysis=thresholds(countAsErrors=["overloaded"]),
            outcomes=TGI,
        )
        assert strict.result == "Failed"
        assert strict.breaches == ("error rate 0.12 > 0.02",)
        assert strict.message == (
            "100 requests; error rate 0.12 > max 0.02; not counted: 3 validation"
        )
        assert strict.canary.outcomes == {"overloaded": 12, "validation": 3}

    def test_tgi_dropped_counts_only_when_asked(self) -> None:
        # A client going away is not the server's failure, as vLLM's abort is not.
        assert "dropped" not in TGI.serverFailures
        assert "dropped" in TGI.other
        canary = scraped("tgi", tgi_page(0), tgi_page(90, dropped=10))
        lenient = judge(canary=canary, stable=None, analysis=thresholds(), outcomes=TGI)
        assert (lenient.result, lenient.canary.errorRate) == ("Passed", 0)
        assert lenient.message.endswith("; not counted: 10 dropped")
        strict = judge(
            canary=canary,
            stable=None,
            analysis=thresholds(countAsErrors=["dropped"]),
            outcomes=TGI,
        )
        assert strict.result == "Failed"
        assert strict.breaches == ("error rate 0.1 > 0.02",)
        assert "not counted" not in strict.message

    def test_a_kind_of_the_other_engine_changes_nothing(self) -> None:
        canary = win(100, outcomes={"abort": 10})
        got = judge(canary=canary, stable=None, analysis=thresholds(countAsErrors=["overloaded"]))
        assert (got.result, got.canary.errorRate) == ("Passed", 0)

    def test_count_aborted_and_count_as_errors_together(self) -> None:
        canary = win(100, outcomes={"abort": 2, "repetition": 2})
        got = judge(
            canary=canary,
            stable=None,
            analysis=thresholds(countAborted=True, countAsErrors=["repetition"]),
        )
        assert (got.result, got.canary.errorRate) == ("Failed", 0.04)
        assert thresholds(countAborted=True).counted_outcomes() == {"abort"}
        assert thresholds().counted_outcomes() == frozenset()

    def test_outcomes_are_in_the_numbers_of_both_variants(self) -> None:
        got = judge(
            canary=win(100, 1, outcomes={"abort": 4, "repetition": 0}),
            stable=win(300, outcomes={"abort": 7.126}),
            analysis=thresholds(),
        )
        assert got.canary.outcomes == {"abort": 4, "error": 1}  # zero counts left out
        assert got.stable is not None
        assert got.stable.outcomes == {"abort": 7.13}  # rounded like requests
        assert got.stable.errorRate == 0
        assert got.message == (
            "100 requests; error rate 0.01 <= max 0.02 (stable 0); not counted: 4 abort"
        )

    def test_no_outcomes_is_none(self) -> None:
        got = judge(canary=win(100), stable=win(100), analysis=thresholds())
        assert got.canary.outcomes is None
        assert got.stable is not None
        assert got.stable.outcomes is None

    def test_the_stable_is_judged_by_its_own_engine(self) -> None:
        # A canary that moves from TGI to vLLM: the stable's overloaded requests are
        # TGI's 429s, not failures; an unknown kind to vLLM's profile would count.
        got = canary_analysis.judge(
            canary=win(100),
            stable=win(100, outcomes={"overloaded": 50}),
            analysis=thresholds(),
            outcomes=VLLM,
            stable_outcomes=TGI,
        )
        assert got.stable is not None
        assert got.stable.errorRate == 0
        alike = canary_analysis.judge(
            canary=win(100),
            stable=win(100, outcomes={"overloaded": 50}),
            analysis=thresholds(),
            outcomes=VLLM,
        )
        assert alike.stable is not None
        assert alike.stable.errorRate == 0.5

    def test_a_kind_going_down_is_a_restart(self) -> None:
        before = {"a": traffic(100, outcomes={"abort": 9})}
        after = {"a": traffic(120, outcomes={"abort": 2})}
        got = canary_analysis.window(before, after)
        assert (got.requests, dict(got.outcomes)["abort"]) == (120, 2)

    def test_a_kind_new_since_the_baseline_counts_from_zero(self) -> None:
        got = scraped("tgi", tgi_page(10), tgi_page(20, dropped=2))
        assert (got.requests, dict(got.outcomes)) == (12, {"dropped": 2})

    def test_fake_tgi_pods_fail_on_generation_errors(self) -> None:
        pod = podserver.FakePod("tgi", rate=40, error_rate=0.05)
        before = engine_metrics.traffic(pod.text(), engine="tgi")
        pod.advance()
        after = engine_metrics.traffic(pod.text(), engine="tgi")
        assert before is not None
        assert after is not None
        got = judge(
            canary=canary_analysis.window({"p": before}, {"p": after}),
            stable=None,
            analysis=thresholds(),
            outcomes=TGI,
        )
        assert (got.result, got.canary.outcomes) == ("Failed", {"generation": 2})


class TestCountAsErrors:
    """The API field: the kinds it takes are the profiles' other kinds, and nothing else."""

    def test_the_kinds_are_the_profiles_other_kinds(self) -> None:
        def other(engine: api.Engine) -> set[str]:
            return {kind for p in engine_profiles.profiles(engine) for kind in p.outcomes.other}

        assert set(typing.get_args(api.VllmOutcomeKind)) == other("vllm")
        assert set(typing.get_args(api.TgiOutcomeKind)) == other("tgi")
        assert set(typing.get_args(api.OutcomeKind)) == other("vllm") | other("tgi")

    def test_the_crd_lists_them(self) -> None:
        spec = crd.openapi_schema()["properties"]["spec"]
        field = spec["properties"]["rollout"]["properties"]["analysis"]["properties"]
        assert field["countAsErrors"]["type"] == "array"
        assert field["countAsErrors"]["default"] == []
        assert field["countAsErrors"]["items"]["enum"] == list(typing.get_args(api.OutcomeKind))

    @pytest.mark.parametrize("kind", ["error", "generation", "stop", "Overloaded", "unknown"])
    def test_another_kind_is_refused_naming_the_field_and_the_kinds(self, kind: str) -> None:
        with pytest.raises(api.SpecError) as caught:
            api.parse_spec(
                {
                    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                    "rollout": {"analysis": {"countAsErrors": ["abort", kind]}},
                }
            )
        assert caught.value.field == "spec.rollout.analysis.countAsErrors"
        message = caught.value.message
        assert repr(kind) in message
        for allowed in typing.get_args(api.OutcomeKind):
            assert allowed in message
        # The server failures the message says always count are the profiles' own.
        for engine in ("vllm", "tgi"):
            for failure in engine_profiles.get(engine).outcomes.serverFailures:
                assert failure in message

    def test_a_list_of_kinds_is_taken(self) -> None:
        got = api.Analysis.model_validate({"countAsErrors": ["overloaded", "repetition"]})
        assert got.countAsErrors == ["overloaded", "repetition"]
        assert got.counted_outcomes() == {"overloaded", "repetition"}

    @pytest.mark.parametrize("value", ["abort", [1], None])
    def test_not_a_list_of_strings_is_refused(self, value: Any) -> None:
        with pytest.raises(pydantic.ValidationError):
            api.Analysis.model_validate({"countAsErrors": value})
