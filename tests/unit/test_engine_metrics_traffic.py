"""engine_metrics.traffic: finished requests, their outcomes by kind and latency histograms."""

from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import podserver
from llama_operator.serving import engine_metrics

INF = math.inf
MODEL = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'


def bounds(histogram: engine_metrics.Histogram | None) -> list[float]:
    assert histogram is not None
    return [bound for bound, _ in histogram.buckets]


def at(histogram: engine_metrics.Histogram | None, bound: float) -> float:
    assert histogram is not None
    return dict(histogram.buckets)[bound]


def kinds(found: engine_metrics.Traffic | None) -> dict[str, float]:
    """The requests that did not end normally, by kind."""
    assert found is not None
    return dict(found.outcomes)


class TestFakePodPages:
    def test_vllm_history(self) -> None:
        found = engine_metrics.traffic(podserver.FakePod("vllm").text(), engine="vllm")
        assert found is not None
        # 118 stop + 9 length + 1 abort + 0 error (+ 0 repetition): the normal ends are not
        # listed by kind, the others are, at 0 too.
        assert found.requests == 128
        assert {kind: n for kind, n in kinds(found).items() if n} == {"abort": 1}
        assert found.outcome("error") == 0
        assert "error" in kinds(found)
        assert bounds(found.latency) == [*podserver.VLLM_LATENCY_BOUNDS, INF]
        assert bounds(found.ttft) == [*podserver.VLLM_TTFT_BOUNDS, INF]
        assert found.latency is not None
        assert found.latency.count == 128
        assert (at(found.ttft, 0.1), at(found.ttft, 1.0), at(found.ttft, INF)) == (71, 120, 128)

    def test_tgi_history(self) -> None:
        found = engine_metrics.traffic(podserver.FakePod("tgi").text(), engine="tgi")
        assert found is not None
        assert found.requests == 215  # 212 successes + 3 failures
        assert kinds(found) == {"generation": 3}
        assert len(podserver.TGI_DURATION_BOUNDS) == 35
        assert bounds(found.latency) == [*podserver.TGI_DURATION_BOUNDS, INF]
        assert bounds(found.ttft) == [*podserver.TGI_DURATION_BOUNDS, INF]
        # TGI observes its histograms on the success path only.
        assert found.latency is not None
        assert found.latency.count == 212
        assert found.ttft is not None
        assert found.ttft.count == 212

    def test_vllm_traffic_lands_where_the_pod_says(self) -> None:
        pod = podserver.FakePod("vllm", rate=50, error_rate=0.1, latency=1.0, ttft=0.3)
        before = engine_metrics.traffic(pod.text(), engine="vllm")
        pod.advance()
        pod.advance()
        after = engine_metrics.traffic(pod.text(), engine="vllm")
        assert before is not None
        assert after is not None
        assert after.requests - before.requests == 100
        assert after.outcome("error") - before.outcome("error") == pytest.approx(10)
        assert after.outcome("abort") == before.outcome("abort") == 1
        assert pod.finished["stop"] == pytest.approx(118 + 0.9 * 90)
        assert pod.finished["length"] == pytest.approx(9 + 0.1 * 90)
        # A bound is inclusive: 1.0 s lands in le="1.0"; vLLM observes aborted requests too.
        assert at(after.latency, 1.0) - at(before.latency, 1.0) == 100
        assert at(after.latency, 0.8) == at(before.latency, 0.8)
        assert at(after.ttft, 0.25) == at(before.ttft, 0.25)
        assert at(after.ttft, 0.5) - at(before.ttft, 0.5) == 100

    def test_tgi_traffic_lands_where_the_pod_says(self) -> None:
        pod = podserver.FakePod("tgi", rate=20, error_rate=0.25, latency=2.0, ttft=0.05)
        pod.advance()
        found = engine_metrics.traffic(pod.text(), engine="tgi")
        assert found is not None
        assert found.requests == 235
        assert kinds(found) == {"generation": 8}
        # Failed requests are not in TGI's histograms: 15 successes, all above 1.68 s.
        assert found.latency is not None
        assert found.latency.count == 227
        assert at(found.latency, podserver.TGI_DURATION_BOUNDS[23]) == 180  # 1.68 s
        assert at(found.latency, podserver.TGI_DURATION_BOUNDS[24]) == 195  # 2.53 s
        assert at(found.ttft, podserver.TGI_DURATION_BOUNDS[16]) == 215  # 0.0985 s

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_restart_zeroes_everything(self, engine: str) -> None:
        pod = podserver.FakePod(engine, rate=10)
        pod.advance()
        pod.restart()
        found = engine_metrics.traffic(pod.text(), engine=engine)  # type: ignore[arg-type]
        assert found is not None  # the counters are there, at zero: not "not exposed"
        assert found.requests == 0
        assert all(count == 0 for count in kinds(found).values())
        assert found.latency is not None
        assert found.latency.count == 0
        pod.advance()
        again = engine_metrics.traffic(pod.text(), engine=engine)  # type: ignore[arg-type]
        assert again is not None
        assert again.requests == 10

    def test_fractional_rates_render_and_read_back(self) -> None:
        pod = podserver.FakePod("tgi", rate=2.5, error_rate=0.5)
        pod.advance()
        found = engine_metrics.traffic(pod.text(), engine="tgi")
        assert found is not None
        assert found.requests == 217.5
        assert kinds(found) == {"generation": 4.25}

    def test_gauges_still_read_the_same(self) -> None:
        pod = podserver.FakePod("vllm", waiting=4, running=6, rate=3)
        pod.advance()
        assert engine_metrics.read(pod.text(), engine="vllm", signal="queue") == (4, 6)

    def test_a_scrape_advances_the_counters(self) -> None:
        with podserver.FakePod("vllm", rate=5, error_rate=0.2) as pod:
            url = f"http://127.0.0.1:{pod.port}/metrics"
            for _ in range(2):
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.requests == 138
        assert found.outcome("error") == pytest.approx(2)  # 20% of 10 new requests
        assert found.outcome("abort") == 1  # the history's one cancelled request
        assert pod.scrapes == 2

    def test_the_older_vllm_page_has_no_counters(self) -> None:
        assert (
            engine_metrics.traffic(podserver.FakePod("vllm-legacy").text(), engine="vllm") is None
        )


class TestCounterShapes:
    """How prometheus_client names counter samples, and that traffic reads each shape."""

    @pytest.mark.parametrize(
        ("page", "sample"),
        [
            # vLLM (prometheus_client): the TYPE line already carries _total.
            ("# TYPE vllm:x_total counter\nvllm:x_total 3\n", "vllm:x_total"),
            # OpenMetrics style: family without the suffix, samples with it.
            ("# TYPE vllm:x counter\nvllm:x_total 3\n", "vllm:x_total"),
            # TGI (metrics-exporter-prometheus): no _total anywhere; the parser adds it.
            ("# TYPE tgi_x counter\ntgi_x 3\n", "tgi_x_total"),
            # Without a TYPE line the sample keeps the name it was written with.
            ("tgi_x 3\n", "tgi_x"),
        ],
    )
    def test_parser_sample_names(self, page: str, sample: str) -> None:
        names = [s.name for f in text_string_to_metric_families(page) for s in f.samples]
        assert names == [sample]

    @pytest.mark.parametrize(
        "header",
        [
            "# HELP vllm:request_success_total Count.\n# TYPE vllm:request_success_total counter\n",
            "# TYPE vllm:request_success counter\n",
            "",
        ],
    )
    def test_vllm_counter_in_every_shape(self, header: str) -> None:
        page = (
            header + 'vllm:request_success_total{finished_reason="stop"} 7\n'
            'vllm:request_success_total{finished_reason="abort"} 2\n'
            'vllm:request_success_total{finished_reason="error"} 1\n'
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.requests == 10
        assert kinds(found) == {"abort": 2, "error": 1}

    @pytest.mark.parametrize("typed", [True, False])
    def test_tgi_counters_typed_and_untyped(self, typed: bool) -> None:
        success = "# TYPE tgi_request_success counter\n" if typed else ""
        failure = "# TYPE tgi_request_failure counter\n" if typed else ""
        page = (
            f"{success}tgi_request_success 40\n"
            f'{failure}tgi_request_failure{{err="generation"}} 3\n'
            'tgi_request_failure{err="overloaded"} 2\n'
        )
        found = engine_metrics.traffic(page, engine="tgi")
        assert found is not None
        assert found.requests == 45
        assert kinds(found) == {"generation": 3, "overloaded": 2}

    def test_tgi_before_its_first_failure(self) -> None:
        # TGI registers a counter at its first increment: no failure yet, no failure line.
        found = engine_metrics.traffic(
            "# TYPE tgi_request_success counter\ntgi_request_success 9\n", engine="tgi"
        )
        assert found is not None
        assert found.requests == 9
        assert found.outcomes == ()
        assert (found.latency, found.ttft) == (None, None)

    def test_tgi_with_failures_only(self) -> None:
        page = '# TYPE tgi_request_failure counter\ntgi_request_failure{err="validation"} 4\n'
        found = engine_metrics.traffic(page, engine="tgi")
        assert found is not None
        assert found.requests == 4
        assert kinds(found) == {"validation": 4}


class TestHandWrittenPages:
    def test_finished_reasons(self) -> None:
        page = (
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="stop"} 50\n'
            'vllm:request_success_total{finished_reason="length"} 20\n'
            'vllm:request_success_total{finished_reason="abort"} 6\n'
            'vllm:request_success_total{finished_reason="error"} 4\n'
            'vllm:request_success_total{finished_reason="timeout"} 1\n'  # one added later
            "vllm:request_success_total 10\n"  # no reason at all: finished, not failed
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        # Every reason but stop and length is listed; which are failures is the analysis'.
        assert found.requests == 91
        assert kinds(found) == {"abort": 6, "error": 4, "timeout": 1}

    def test_every_vllm_reason_is_its_own_kind(self) -> None:
        page = (
            "# TYPE vllm:request_success_total counter\n"
            f'vllm:request_success_total{{{MODEL},finished_reason="stop"}} 30\n'
            f'vllm:request_success_total{{{MODEL},finished_reason="length"}} 5\n'
            f'vllm:request_success_total{{{MODEL},finished_reason="abort"}} 4\n'
            f'vllm:request_success_total{{{MODEL},finished_reason="error"}} 2\n'
            f'vllm:request_success_total{{{MODEL},finished_reason="repetition"}} 3\n'
        )
        found = engine_metrics.traffic(page, engine="vllm", version="0.34.0")
        assert found is not None
        assert found.requests == 44
        assert found.outcomes == (("abort", 4), ("error", 2), ("repetition", 3))  # by kind
        assert (found.outcome("repetition"), found.outcome("stop")) == (3, 0)

    def test_every_tgi_err_is_its_own_kind(self) -> None:
        # The err labels of tgi_request_failure in TGI v3.3.7.
        failures = {
            # Not the server's failures: the client's input, our own 429, the client gone.
            "validation": 7,
            "overloaded": 12,
            "template": 1,
            "dropped": 4,
            # The server's failures.
            "generation": 2,
            "incomplete": 3,
        }
        page = "# TYPE tgi_request_success counter\ntgi_request_success 100\n" + (
            "# TYPE tgi_request_failure counter\n"
            + "".join(f'tgi_request_failure{{err="{err}"}} {n}\n' for err, n in failures.items())
        )
        found = engine_metrics.traffic(page, engine="tgi", version="3.3.7")
        assert found is not None
        assert found.requests == 129  # 100 successes + 29 failures of any kind
        assert kinds(found) == failures

    def test_a_tgi_failure_without_its_label_is_unknown(self) -> None:
        page = (
            "# TYPE tgi_request_success counter\ntgi_request_success 10\n"
            "# TYPE tgi_request_failure counter\n"
            "tgi_request_failure 2\n"
            'tgi_request_failure{err=""} 1\n'
        )
        found = engine_metrics.traffic(page, engine="tgi")
        assert found is not None
        assert found.requests == 13
        assert kinds(found) == {engine_metrics.UNKNOWN: 3}

    def test_traffic_is_hashable(self) -> None:
        one = engine_metrics.Traffic(12, engine_metrics.kinds({"error": 1, "abort": 2}), None, None)
        two = engine_metrics.Traffic(12, (("abort", 2), ("error", 1)), None, None)
        assert one == two
        assert hash(one) == hash(two)

    def test_series_of_engines_and_models_are_summed(self) -> None:
        page = (
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{engine="0",finished_reason="stop",model_name="a"} 10\n'
            'vllm:request_success_total{engine="1",finished_reason="stop",model_name="a"} 20\n'
            'vllm:request_success_total{engine="0",finished_reason="abort",model_name="b"} 1\n'
            'vllm:request_success_total{engine="1",finished_reason="abort",model_name="b"} 2\n'
            "# TYPE vllm:e2e_request_latency_seconds histogram\n"
            'vllm:e2e_request_latency_seconds_bucket{engine="0",le="1.0"} 4\n'
            'vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf"} 11\n'
            'vllm:e2e_request_latency_seconds_count{engine="0"} 11\n'
            'vllm:e2e_request_latency_seconds_sum{engine="0"} 30.5\n'
            'vllm:e2e_request_latency_seconds_bucket{engine="1",le="1.0"} 20\n'
            'vllm:e2e_request_latency_seconds_bucket{engine="1",le="+Inf"} 22\n'
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.requests == 33
        assert kinds(found) == {"abort": 3}
        assert found.latency == engine_metrics.Histogram(buckets=((1.0, 24), (INF, 33)))
        assert found.ttft is None

    def test_a_renamed_histogram_is_none(self) -> None:
        page = (
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="stop"} 5\n'
            "# TYPE vllm:e2e_request_latency_seconds_v2 histogram\n"
            'vllm:e2e_request_latency_seconds_v2_bucket{le="1.0"} 5\n'
            'vllm:e2e_request_latency_seconds_v2_bucket{le="+Inf"} 5\n'
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.requests == 5
        assert (found.latency, found.ttft) == (None, None)

    def test_a_histogram_without_its_inf_bucket_is_none(self) -> None:
        page = (
            'vllm:request_success_total{finished_reason="stop"} 5\n'
            'vllm:time_to_first_token_seconds_bucket{le="1.0"} 5\n'
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.ttft is None

    def test_created_samples_and_other_families_are_left_alone(self) -> None:
        page = (
            "# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="stop"} 5\n'
            "# TYPE vllm:request_success_created gauge\n"
            'vllm:request_success_created{finished_reason="stop"} 1.7e+09\n'
            "vllm:some_histogram_bucket{le= broken\n"  # a family traffic does not read
        )
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.requests == 5

    @pytest.mark.parametrize(
        "page",
        [
            "<html><body>502 Bad Gateway</body></html>\n",
            'vllm:request_success_total{finished_reason="stop" 5\n',
            "vllm:request_success_total five\n",
            'vllm:request_success_total 5\nvllm:e2e_request_latency_seconds_bucket{le="x"} 1\n',
        ],
    )
    def test_not_prometheus_text_is_an_error(self, page: str) -> None:
        with pytest.raises(engine_metrics.MetricsError):
            engine_metrics.traffic(page, engine="vllm")

    @pytest.mark.parametrize(
        "page",
        [
            "",
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 3\n",
            "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n",
        ],
    )
    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_no_counters_is_none(self, page: str, engine: str) -> None:
        assert engine_metrics.traffic(page, engine=engine) is None  # type: ignore[arg-type]


class TestMerge:
    def test_equal_layouts_add_per_bucket(self) -> None:
        one = engine_metrics.Histogram(buckets=((1.0, 2), (2.0, 5), (INF, 6)))
        two = engine_metrics.Histogram(buckets=((1.0, 1), (2.0, 1), (INF, 4)))
        assert engine_metrics.merge([one, two]) == engine_metrics.Histogram(
            buckets=((1.0, 3), (2.0, 6), (INF, 10))
        )

    def test_different_layouts_stay_cumulative(self) -> None:
        one = engine_metrics.Histogram(buckets=((1.0, 2), (INF, 6)))
        two = engine_metrics.Histogram(buckets=((0.5, 1), (2.0, 3), (INF, 4)))
        # At 0.5 the first has nothing it can vouch for; at 1.0 the second still has 1.
        assert engine_metrics.merge([one, two]) == engine_metrics.Histogram(
            buckets=((0.5, 1), (1.0, 3), (2.0, 5), (INF, 10))
        )

    def test_nothing_to_merge(self) -> None:
        assert engine_metrics.merge([]) is None
        assert engine_metrics.merge([engine_metrics.Histogram(buckets=())]) is None
        assert engine_metrics.Histogram(buckets=()).count == 0.0
