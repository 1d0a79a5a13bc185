"""The monitors the alerts and the dashboard depend on: the PodMonitor labels every engine
series with its LlamaDeployment and variant from the very labels the builders put on the
serving pods, and the ServiceMonitor keeps the operator's per-endpoint namespace label.
The rules and the dashboard themselves are tested in tests/observability.
"""

from __future__ import annotations

import re

import chartkit

from llama_operator.serving import builders

MONITORS = chartkit.VALUE_SETS["monitors"]


def _meta_label(label: str) -> str:
    # Prometheus' Kubernetes discovery: __meta_kubernetes_pod_label_<name>, every
    # character that is not a letter, digit or underscore replaced by "_".
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def test_pod_monitor_labels_series_with_endpoint_and_variant() -> None:
    monitor = chartkit.find(chartkit.render(MONITORS), "PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    targets: dict[str, list[str]] = {}
    for relabeling in endpoint["relabelings"]:
        assert relabeling.get("action", "replace") == "replace"
        [source] = relabeling["sourceLabels"]
        targets.setdefault(relabeling["targetLabel"], []).append(source)
    assert targets == {
        "namespace": ["__meta_kubernetes_namespace"],
        "llama_deployment": [
            _meta_label(builders.DEPLOYMENT_LABEL),
            _meta_label(builders.FALLBACK_OF_LABEL),
        ],
        "variant": [_meta_label(builders.VARIANT_LABEL)],
    }
    # A pod carries one of the two deployment labels; the other, empty, must not
    # overwrite it: only a non-empty value matches.
    for relabeling in endpoint["relabelings"]:
        if relabeling["targetLabel"] == "llama_deployment":
            assert relabeling["regex"] == "(.+)"


def test_every_serving_pod_has_the_labels_the_pod_monitor_reads() -> None:
    for variant in (builders.PRIMARY, builders.CANARY, "fallback-0"):
        labels = builders.labels(name="chat", variant=variant)
        assert labels[builders.VARIANT_LABEL] == variant
        owner = labels.get(builders.DEPLOYMENT_LABEL) or labels.get(builders.FALLBACK_OF_LABEL)
        assert owner == "chat"
        assert labels["app.kubernetes.io/managed-by"] == "llama-operator"


def test_service_monitor_honours_the_operator_labels() -> None:
    monitor = chartkit.find(chartkit.render(MONITORS), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
