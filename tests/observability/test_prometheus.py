"""The dashboard's and the alerts' queries, run by a real Prometheus against fake engines.

Prometheus (Debian's binary, 127.0.0.1, a temporary TSDB) scrapes two fake serving pods
from ``tests/podserver.py`` through the chart's own PodMonitor relabelings (a vLLM pod of
``ai/chat`` and a TGI pod of ``ai/assist``'s fallback), and the operator's real registry
served on 127.0.0.1 as the chart's ServiceMonitor scrapes it. The pods finish requests at
a known rate with known outcomes, latency and tokens; the queries' answers are checked
against those numbers: tokens per second, cost per million tokens from the operator's
cost gauge, the p95 latency, the error ratio, and which alert expressions hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import obskit
import prometheus_client
import promserver
import pytest

import stopping
from llama_operator import api
from llama_operator.planning import config
from llama_operator.runtime import operator_metrics
from llama_operator.serving import scalers

CHAT = {"per_second": 4.0, "tokens_per_request": 50.0, "error_rate": 0.25, "latency": 3.0}
ASSIST = {"per_second": 3.0, "tokens_per_request": 100.0, "error_rate": 0.0, "latency": 0.6}
PRICE_PER_REPLICA_HOUR = 3.6
READY_REPLICAS = 2
CHAT_WAITING, CHAT_RUNNING = 5, 2
# A pod of <name>-primary, as its ReplicaSet names it: <deployment>-<hash>-<suffix>.
CHAT_POD = "chat-primary-5c9d7b8f6d-x2x7k"
# The target labels the Prometheus Operator adds to every PodMonitor target before the
# monitor's own relabelings: prometheus-operator pkg/prometheus/promcfg.go,
# generatePodMonitorConfig ("Relabel namespace and pod and service labels into proper
# labels": namespace, container, pod). The KEDA queries select the primary's pods by `pod`.
POD_MONITOR_STANDARD_LABELS = [
    {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
]
# Windows short enough to be covered by the seconds of data the test waits for: rate()
# over a window the data does not fill would extrapolate it.
WINDOW = "5s"
SCRAPES_IN_WINDOW = 8


@pytest.fixture(scope="module")
def operator_endpoint() -> Iterator[str]:
    server, thread = prometheus_client.start_http_server(
        0, addr="127.0.0.1", registry=operator_metrics.REGISTRY
    )
    operator_metrics.record_endpoint(
        uid="uid-chat",
        namespace="ai",
        name="chat",
        spec={"slo": {"maxP95LatencySeconds": 2.5, "minTokensPerSecond": 1000}},
        status={
            "plan": {"costPerHour": PRICE_PER_REPLICA_HOUR},
            "readyReplicas": READY_REPLICAS,
            "failover": {"active": "primary"},
        },
    )
    operator_metrics.record_endpoint(
        uid="uid-assist",
        namespace="ai",
        name="assist",
        spec={"slo": {}},
        status={"readyReplicas": 1, "failover": {"active": "fallback-0"}},
    )
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        operator_metrics.forget("uid-chat")
        operator_metrics.forget("uid-assist")
        stopping.stop_server(server, thread, name="operator metrics")


@pytest.fixture(scope="module")
def prometheus(
    operator_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[promserver.Prometheus]:
    directory = tmp_path_factory.mktemp("prometheus")
    [podmonitor] = obskit.render(
        "--set", "metrics.podMonitor.enabled=true", "--show-only", "templates/podmonitor.yaml"
    )
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    with (
        promserver.TimedPod("vllm", waiting=CHAT_WAITING, running=CHAT_RUNNING, **CHAT) as chat,
        promserver.TimedPod("tgi", waiting=3, **ASSIST) as assist,
    ):
        # What Kubernetes service discovery gives the PodMonitor for these pods: their
        # namespace and labels (serving/builders/identity.py).
        pods = {
            f"127.0.0.1:{chat.port}": {
                "__meta_kubernetes_namespace": "ai",
                "__meta_kubernetes_pod_name": CHAT_POD,
                "__meta_kubernetes_pod_label_llamaops_dev_deployment": "chat",
                "__meta_kubernetes_pod_label_llamaops_dev_variant": "primary",
            },
            f"127.0.0.1:{assist.port}": {
                "__meta_kubernetes_namespace": "ai",
                "__meta_kubernetes_pod_name": "assist-fallback-0-7c9f6d8b5b-q8w4z",
                "__meta_kubernetes_pod_label_llamaops_dev_fallback_of": "assist",
                "__meta_kubernetes_pod_label_llamaops_dev_variant": "fallback-0",
            },
        }
        with promserver.running(
            directory,
            lambda server: server.config(
                pods=pods,
                operator=operator_endpoint,
                relabelings=[*endpoint["relabelings"], *POD_MONITOR_STANDARD_LABELS],
            ),
        ) as server:
            # Every target scraped often enough that the windows hold only real data.
            server.wait(
                lambda: (
                    server.values(
                        f"min(count_over_time(up[1m])) >= {SCRAPES_IN_WINDOW * 2} and min(up) == 1"
                    )
                    != {}
                ),
                "every target scraped and up",
            )
            yield server


@pytest.fixture(scope="module")
def at(prometheus: promserver.Prometheus) -> float:
    """One evaluation time for every query, so their answers agree with each other."""
    return time.time() - 1


def dashboard_query(title: str, index: int = 0) -> str:
    [panel] = [panel for panel in obskit.dashboard()["panels"] if panel["title"] == title]
    return obskit.as_promql(panel["targets"][index]["expr"], {"$__rate_interval": WINDOW})


def test_relabelings_name_the_endpoint_and_variant(
    prometheus: promserver.Prometheus, at: float
) -> None:
    found = prometheus.query('up{job="serving"}', at)
    assert {(s["metric"]["llama_deployment"], s["metric"]["variant"]) for s in found} == {
        ("chat", "primary"),
        ("assist", "fallback-0"),
    }
    assert {s["metric"]["namespace"] for s in found} == {"ai"}


def test_tokens_per_second_and_cost_per_million_tokens(
    prometheus: promserver.Prometheus, at: float
) -> None:
    tokens = prometheus.values(dashboard_query("Generated tokens per second"), at)
    assert tokens[("chat", "ai", "primary")] == pytest.approx(200.0, rel=0.05)
    assert tokens[("assist", "ai", "fallback-0")] == pytest.approx(300.0, rel=0.05)
    cost = prometheus.values(dashboard_query("Cost per million tokens"), at)
    # Only chat has a price: 3.6 $/replica-hour x 2 ready replicas = 7.2 $/h.
    assert list(cost) == [("chat", "ai")]
    per_hour = PRICE_PER_REPLICA_HOUR * READY_REPLICAS
    expected = per_hour / (tokens[("chat", "ai", "primary")] * 3600 / 1e6)
    assert cost[("chat", "ai")] == pytest.approx(expected)
    assert cost[("chat", "ai")] == pytest.approx(10.0, rel=0.05)  # 7.2 $/h at 0.72 M tokens/h


def test_requests_latency_and_errors(prometheus: promserver.Prometheus, at: float) -> None:
    requests = prometheus.values(dashboard_query("Requests per second"), at)
    assert requests[("chat", "ai", "primary")] == pytest.approx(4.0, rel=0.05)
    # Every new request took 3 s, in vLLM's (2.5, 5] bucket: p95 interpolates to 4.875 s.
    p95 = prometheus.values(dashboard_query("End-to-end latency", 1), at)
    assert p95[("chat", "ai", "primary")] == pytest.approx(4.875)
    errors = prometheus.values(dashboard_query("Errors by kind"), at)
    assert errors[("error", "chat", "ai", "primary")] == pytest.approx(1.0, rel=0.05)


def alert_expr(name: str) -> str:
    rule = obskit.prometheus_rule(**{"observability.alerts.slo.window": WINDOW})
    expr: str = obskit.alerts(rule)[name]["expr"]
    return expr


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        # chat: p95 4.875 s over its 2.5 s objective; assist has the default 2 s and 0.6 s.
        ("LlamaDeploymentLatencyHigh", {("chat", "ai"): 4.875}),
        # chat: a quarter of its requests fail, over the default 1 %; assist: none.
        ("LlamaDeploymentErrorRateHigh", {("chat", "ai"): 0.25}),
        ("LlamaDeploymentOnFallback", {("assist", "ai"): 1.0}),
    ],
)
def test_alert_expressions(
    prometheus: promserver.Prometheus, at: float, alert: str, expected: dict[Any, float]
) -> None:
    found = prometheus.values(alert_expr(alert), at)
    assert found == pytest.approx(expected)


def test_throughput_floor(prometheus: promserver.Prometheus, at: float) -> None:
    # chat generates ~200 tokens/s against a floor of 1000; assist has no floor.
    found = prometheus.values(alert_expr("LlamaDeploymentThroughputLow"), at)
    assert list(found) == [("chat", "ai")]
    assert found[("chat", "ai")] == pytest.approx(200.0, rel=0.05)


def test_operator_gauges_keep_the_endpoint_namespace(
    prometheus: promserver.Prometheus, at: float
) -> None:
    objectives = prometheus.values("llama_operator_slo_objective", at)
    labels = set(objectives)
    assert any("ai" in key and "chat" in key and "p95_latency_seconds" in key for key in labels)
    assert prometheus.values('llama_operator_build_info{namespace="llama-operator"}', at)


def test_dashboard_queries_all_run(prometheus: promserver.Prometheus, at: float) -> None:
    for panel in obskit.dashboard()["panels"]:
        for target in panel["targets"]:
            expr = obskit.as_promql(target["expr"], {"$__rate_interval": WINDOW})
            prometheus.query(expr, at)  # asserts the API answered "success"


@pytest.mark.parametrize(
    ("engine", "name", "metric", "expected"),
    [
        # The primary's queue, and the queue plus the running batch (one pod of chat).
        ("vllm", "chat", "queue", CHAT_WAITING),
        ("vllm", "chat", "inflight", CHAT_WAITING + CHAT_RUNNING),
        # assist's only pod is a fallback's: the primary-only queries find nothing, so a
        # fallback's queue never scales the primary (KEDA then errors: ignoreNullValues).
        ("tgi", "assist", "queue", None),
    ],
)
def test_keda_default_queries_read_the_primary_pods(
    prometheus: promserver.Prometheus,
    at: float,
    engine: api.Engine,
    name: str,
    metric: api.AutoscalingMetric,
    expected: float | None,
) -> None:
    """The ScaledObject's query, as serving.scalers renders it from the operator config's
    defaults, answers the sum over the primary's pods as Prometheus scrapes them."""
    scaled = scalers.scaled_object(
        name=name,
        namespace="ai",
        uid="uid",
        autoscaling=api.Autoscaling.model_validate({"engine": "keda", "metric": metric}),
        engine=engine,
        settings=config.OperatorConfig(),
    )
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["name"] == metric]
    found = prometheus.query(trigger["metadata"]["query"], at)
    if expected is None:
        assert found == []
    else:
        [sample] = found
        assert float(sample["value"][1]) == expected
