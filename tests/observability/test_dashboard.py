"""The chart's Grafana dashboard: generated from one source, valid JSON in a ConfigMap the
sidecar picks up, and every query parses (promtool) and names only metrics that exist.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import obskit
import pytest
from hack import generate_dashboard


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return obskit.dashboard()


def test_file_is_what_the_generator_writes() -> None:
    assert generate_dashboard.OUTPUT.read_text(encoding="utf-8") == generate_dashboard.render(), (
        "the dashboard drifted: run make generate"
    )


def test_config_map_carries_the_dashboard_and_the_sidecar_label() -> None:
    objects = obskit.render(
        "--set",
        "observability.enabled=true",
        "--set",
        "observability.dashboard.labelName=grafana_dashboards",
        "--set-json",
        'observability.dashboard.annotations={"grafana_folder": "LLM"}',
        "--set",
        "observability.dashboard.namespace=monitoring",
        "--show-only",
        obskit.DASHBOARD_TEMPLATE,
    )
    [config_map] = objects
    assert config_map["metadata"]["labels"]["grafana_dashboards"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert json.loads(config_map["data"]["llama-deployments.json"]) == obskit.dashboard()


def test_not_rendered_unless_enabled() -> None:
    kinds = [obj["metadata"]["name"] for obj in obskit.render() if obj["kind"] == "ConfigMap"]
    assert not any(name.endswith("-dashboard") for name in kinds)
    off = obskit.render(
        "--set", "observability.enabled=true", "--set", "observability.dashboard.enabled=false"
    )
    assert not any(obj["metadata"]["name"].endswith("-dashboard") for obj in off)


def test_variables_and_panels(board: dict[str, Any]) -> None:
    names = [variable["name"] for variable in board["templating"]["list"]]
    assert names == ["datasource", "namespace", "llama_deployment", "variant"]
    titles = {panel["title"] for panel in board["panels"]}
    assert {
        "Requests per second",
        "End-to-end latency",
        "Time to first token",
        "Generated tokens per second",
        "Errors by kind",
        "Queue",
        "KV cache use",
        "Replicas and autoscaler",
        "Canary weight and rollouts",
        "Fallback and SLO",
        "Cost per million tokens",
        "LoRA adapters",
    } <= titles
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_parses(board: dict[str, Any], tmp_path: pathlib.Path) -> None:
    exprs = [obskit.as_promql(expr) for expr in obskit.dashboard_exprs(board)]
    result = obskit.parses(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_name_only_metrics_that_exist(board: dict[str, Any]) -> None:
    known = obskit.known_names()
    # Grafana's label_values(<series selector>, <label>): the selector is PromQL.
    variables = [
        re.fullmatch(r"label_values\((.*), *\w+\)", variable["definition"])[1]  # type: ignore[index]
        for variable in board["templating"]["list"]
        if variable["type"] == "query"
    ]
    for expr in [*obskit.dashboard_exprs(board), *variables]:
        unknown = obskit.metric_names(expr) - known
        assert not unknown, f"{expr} reads metrics nobody exports: {sorted(unknown)}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (namespace, le) (rate(vllm:e2e_request_latency_seconds_bucket{a="b"}[5m]) '
        "or rate(tgi_request_duration_bucket[$__rate_interval])) > on (namespace) "
        'label_replace(llama_operator_slo_objective{objective="x"}, "a", "$1", "name", "(.*)")'
        " * 3600 / 1e6"
    )
    assert obskit.metric_names(expr) == {
        "vllm:e2e_request_latency_seconds_bucket",
        "tgi_request_duration_bucket",
        "llama_operator_slo_objective",
    }
    assert obskit.metric_names('max by (namespace, name) (up{x!=""})') == {"up"}
