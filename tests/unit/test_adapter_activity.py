"""Per-adapter activity: engine_metrics.traffic reads vllm:lora_requests_info, slo.serving_status
counts it over pods into status.serving.adapters, and operator_metrics shows it (with
status.adapters[].loadedPods) as llama_operator_adapter_pods.

What vLLM exposes per adapter (vllm/v1/metrics/loggers.py, 0.24.0 to 0.34.0): only the gauge
vllm:lora_requests_info, set to the current time (set_to_current_time) with the labels
max_lora, running_lora_adapters and waiting_lora_adapters (the adapters' names joined with
",", "" for none). prometheus_client keeps every label set it was ever set with, so the
series with the largest value is the current one. No request, latency or error metric
carries an adapter's name; TGI 3.3.7 exports nothing per adapter. The pages are rendered by
tests/podserver.py, which writes the gauge as prometheus_client does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import parser

import podserver
from llama_operator import api
from llama_operator.operations import slo
from llama_operator.planning import engine_profiles
from llama_operator.runtime import operator_metrics
from llama_operator.serving import engine_metrics

INF = math.inf


def vllm_page(*series: tuple[str, str, float]) -> str:
    pod = podserver.FakePod("vllm")
    pod.lora_info = list(series)
    return pod.text()


def adapters(text: str, engine: api.Engine = "vllm") -> engine_metrics.Adapters | None:
    found = engine_metrics.traffic(text, engine=engine)
    assert found is not None
    return found.adapters


# -- reading a page -----------------------------------------------------------------------


class TestParsing:
    def test_the_newest_series_wins_over_older_label_sets(self) -> None:
        page = vllm_page(
            ("sql", "", 1_700_000_010.5),
            ("sql,chat", "summary", 1_700_000_030.25),  # the newest
            ("", "", 1_700_000_020.0),
        )
        assert adapters(page) == engine_metrics.Adapters(
            running=("sql", "chat"), waiting=("summary",)
        )

    def test_the_newest_series_may_say_no_adapter_has_requests(self) -> None:
        page = vllm_page(("sql", "chat", 1_700_000_010.0), ("", "", 1_700_000_040.0))
        assert adapters(page) == engine_metrics.Adapters(running=(), waiting=())

    def test_waiting_only(self) -> None:
        page = vllm_page(("", "chat,sql", 1_700_000_010.0))
        assert adapters(page) == engine_metrics.Adapters(running=(), waiting=("chat", "sql"))

    def test_a_page_without_the_gauge_has_no_adapters(self) -> None:
        page = podserver.FakePod("vllm").text()
        assert "vllm:lora_requests_info" not in page
        found = engine_metrics.traffic(page, engine="vllm")
        assert found is not None
        assert found.adapters is None
        # Everything else as before.
        assert found.requests == 128

    def test_the_gauge_leaves_the_other_figures_as_they_were(self) -> None:
        plain = engine_metrics.traffic(podserver.FakePod("vllm").text(), engine="vllm")
        with_gauge = engine_metrics.traffic(vllm_page(("sql", "", 1_700_000_000.0)), engine="vllm")
        assert plain is not None
        assert with_gauge is not None
        assert with_gauge.adapters == engine_metrics.Adapters(running=("sql",), waiting=())
        assert dataclass_without_adapters(with_gauge) == dataclass_without_adapters(plain)

    def test_every_vllm_release_reads_the_same_gauge(self) -> None:
        page = vllm_page(("sql", "chat", 1_700_000_000.0))
        for version in ("0.24.0", "0.28.0", "0.34.0"):
            found = engine_metrics.traffic(page, engine="vllm", version=version)
            assert found is not None
            assert found.adapters == engine_metrics.Adapters(running=("sql",), waiting=("chat",))

    def test_tgi_exports_nothing_per_adapter(self) -> None:
        page = podserver.FakePod("tgi").text()
        # Even a page carrying vLLM's gauge is not read for TGI: its profile has no activity.
        foreign = (
            page
            + "# TYPE vllm:lora_requests_info gauge\n"
            + 'vllm:lora_requests_info{max_lora="1",running_lora_adapters="sql",'
            + 'waiting_lora_adapters=""} 1.7e+09\n'
        )
        assert adapters(page, "tgi") is None
        assert adapters(foreign, "tgi") is None

    def test_a_page_without_finished_requests_is_still_none(self) -> None:
        page = (
            "# TYPE vllm:lora_requests_info gauge\n"
            'vllm:lora_requests_info{max_lora="1",running_lora_adapters="sql",'
            'waiting_lora_adapters=""} 1.7e+09\n'
        )
        assert engine_metrics.traffic(page, engine="vllm") is None


def dataclass_without_adapters(found: engine_metrics.Traffic) -> engine_metrics.Traffic:
    return engine_metrics.Traffic(
        requests=found.requests,
        outcomes=found.outcomes,
        latency=found.latency,
        ttft=found.ttft,
        tokens=found.tokens,
    )


# -- status.serving.adapters --------------------------------------------------------------


def traffic(
    running: tuple[str, ...] | None = None, waiting: tuple[str, ...] = (), requests: float = 0
) -> engine_metrics.Traffic:
    histogram = engine_metrics.Histogram(buckets=((0.5, requests), (INF, requests)))
    return engine_metrics.Traffic(
        requests=requests,
        outcomes=(),
        latency=histogram,
        ttft=histogram,
        adapters=None
        if running is None
        else engine_metrics.Adapters(running=running, waiting=waiting),
    )


class TestServingStatus:
    def test_counted_over_pods_sorted_by_name(self) -> None:
        pods = {
            "a": traffic(("sql", "chat"), ("summary",)),
            "b": traffic(("sql",), ("chat",)),
            "c": traffic((), ("summary", "chat")),
            "d": traffic(None),  # not reporting (an engine without the gauge)
        }
        shown = slo.serving_status(None, pods=4, now="t", newest=pods)
        assert shown.adapters == [
            api.AdapterActivity(name="chat", runningPods=1, waitingPods=2),
            api.AdapterActivity(name="sql", runningPods=2, waitingPods=0),
            api.AdapterActivity(name="summary", runningPods=0, waitingPods=2),
        ]
        assert shown.model_dump(mode="json", exclude_none=True) == {
            "observedAt": "t",
            "pods": 4,
            "adapters": [
                {"name": "chat", "runningPods": 1, "waitingPods": 2},
                {"name": "sql", "runningPods": 2, "waitingPods": 0},
                {"name": "summary", "runningPods": 0, "waitingPods": 2},
            ],
        }

    def test_a_name_listed_twice_counts_its_pod_once(self) -> None:
        shown = slo.serving_status(
            None, pods=1, now="t", newest={"a": traffic(("sql", "sql"), ("sql",))}
        )
        assert shown.adapters == [api.AdapterActivity(name="sql", runningPods=1, waitingPods=1)]

    @pytest.mark.parametrize(
        "pods",
        [
            {},
            {"a": traffic(None)},
            {"a": traffic(()), "b": traffic(None)},
        ],
    )
    def test_none_without_any_adapter_activity(
        self, pods: dict[str, engine_metrics.Traffic]
    ) -> None:
        assert slo.serving_status(None, pods=len(pods), now="t", newest=pods).adapters is None

    def test_without_the_newest_scrape_none(self) -> None:
        assert slo.serving_status(None, pods=0, now="t").adapters is None

    def test_with_a_window_the_newest_scrape_is_shown(self) -> None:
        first = slo.Scrape(at=0.0, pods={"a": traffic(("chat",), requests=100)})
        last = slo.Scrape(at=10.0, pods={"a": traffic(("sql",), ("chat",), requests=150)})
        figures = slo.measure(
            (first, last),
            outcomes=engine_profiles.get("vllm").outcomes,
            ready=1,
            cost_per_hour=None,
        )
        assert figures is not None
        shown = slo.serving_status(figures, pods=1, now="t", newest=last.pods)
        assert shown.requestsPerSecond == 5.0
        assert shown.window == "10s"
        assert shown.adapters == [
            api.AdapterActivity(name="chat", runningPods=0, waitingPods=1),
            api.AdapterActivity(name="sql", runningPods=1, waitingPods=0),
        ]


# -- llama_operator_adapter_pods ----------------------------------------------------------

UID = "uid-adapter-activity"


@pytest.fixture
def _forget() -> Iterator[None]:
    yield
    operator_metrics.forget(UID)


def adapter_gauge(name: str) -> list[tuple[dict[str, str], float]]:
    """This endpoint's llama_operator_adapter_pods samples, in the order rendered."""
    text = operator_metrics.render().decode()
    return [
        (dict(sample.labels), sample.value)
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llama_operator_adapter_pods" and sample.labels.get("name") == name
    ]


def record(status: dict[str, Any]) -> None:
    operator_metrics.record_endpoint(uid=UID, namespace="ai", name="lora", spec={}, status=status)


def sample(adapter: str, state: str, value: float) -> tuple[dict[str, str], float]:
    labels = {"namespace": "ai", "name": "lora", "adapter": adapter, "state": state}
    return labels, value


@pytest.mark.usefixtures("_forget")
class TestGauge:
    def test_loaded_running_and_waiting(self) -> None:
        record(
            {
                "adapters": [
                    {"name": "sql", "served": True, "loadedPods": 2},
                    {"name": "chat", "served": True, "loadedPods": 1},
                    {"name": "nc", "served": False},  # loads at start: no loaded figure
                ],
                "serving": {
                    "pods": 2,
                    "adapters": [
                        {"name": "chat", "runningPods": 0, "waitingPods": 1},
                        {"name": "sql", "runningPods": 2, "waitingPods": 0},
                    ],
                },
            }
        )
        assert adapter_gauge("lora") == [
            sample("sql", "loaded", 2.0),
            sample("chat", "loaded", 1.0),
            sample("chat", "running", 0.0),
            sample("chat", "waiting", 1.0),
            sample("sql", "running", 2.0),
            sample("sql", "waiting", 0.0),
        ]
        text = operator_metrics.render().decode()
        assert (
            'llama_operator_adapter_pods{adapter="sql",name="lora",namespace="ai",'
            'state="running"} 2.0\n'
        ) in text

    def test_a_count_left_out_is_zero_and_a_bad_one_absent(self) -> None:
        record(
            {
                "adapters": [{"name": "sql", "loadedPods": "2"}, "junk", {"loadedPods": 1}],
                "serving": {"adapters": [{"name": "sql", "runningPods": 1}, {"name": 3}]},
            }
        )
        assert adapter_gauge("lora") == [sample("sql", "running", 1.0), sample("sql", "waiting", 0)]

    def test_no_adapters_no_samples_and_forget_drops_them(self) -> None:
        record({"serving": {"pods": 1}})
        assert adapter_gauge("lora") == []
        record({"serving": {"adapters": [{"name": "sql", "waitingPods": 3}]}})
        assert adapter_gauge("lora") == [sample("sql", "running", 0), sample("sql", "waiting", 3)]
        operator_metrics.forget(UID)
        assert adapter_gauge("lora") == []

    def test_the_help_says_where_each_state_comes_from(self) -> None:
        text = operator_metrics.render().decode()
        help_line = next(
            line for line in text.splitlines() if line.startswith("# HELP llama_operator_adapter_")
        )
        assert "status.adapters[].loadedPods" in help_line
        assert "status.serving.adapters" in help_line
        assert "vllm:lora_requests_info" in help_line
