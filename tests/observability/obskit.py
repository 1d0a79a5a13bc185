"""Shared by the observability tests: the chart's rules and dashboard, promtool, and the
metric names that exist.

The rules come from ``helm template`` of the chart with ``observability.enabled=true``
(the real helm, through ``hack/generate_chart.py``'s runner, as the chart tests use it);
the dashboard from the chart's file, which ``hack/generate_dashboard.py`` writes. The
metric names that may appear in a query: the operator's, from its real registry; the
engines', from the engine profiles; kube-state-metrics', a short cited list; and
Prometheus' own ``up``. promtool and prometheus are Debian's ``prometheus`` package:
missing, a test fails and says to run ``make setup`` (never skips).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import yaml
from hack import generate_chart, generate_dashboard

from llama_operator.planning import engine_profiles
from llama_operator.runtime import operator_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
RULE_TEMPLATE = "templates/prometheusrule.yaml"
DASHBOARD_TEMPLATE = "templates/dashboard.yaml"
DOC = ROOT / "docs" / "operations" / "observability.md"
RELEASE_NAMESPACE = generate_chart.NAMESPACE
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"

# kube-state-metrics series the alerts read, with the labels they use: its
# docs/metrics/workload/pod-metrics.md (kubernetes/kube-state-metrics, commit 96a6db8):
# kube_pod_labels (pod, namespace, label_<POD_LABEL> for the labels allowed by
# --metric-labels-allowlist), kube_pod_container_status_waiting_reason and
# kube_pod_container_status_last_terminated_reason (container, pod, namespace, reason),
# kube_pod_container_status_restarts_total (container, pod, namespace; a counter).
KUBE_STATE_METRICS = frozenset(
    {
        "kube_pod_labels",
        "kube_pod_container_status_waiting_reason",
        "kube_pod_container_status_last_terminated_reason",
        "kube_pod_container_status_restarts_total",
    }
)
# Prometheus' own per-target series.
PROMETHEUS = frozenset({"up"})
HISTOGRAM_SIGNALS = ("e2eLatency", "timeToFirstToken")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run make setup (it installs Debian's prometheus package; "
            "as non-root: sudo apt-get install --no-install-recommends prometheus)",
            pytrace=False,
        )
    return path


def helm_path() -> pathlib.Path:
    path: pathlib.Path = generate_chart.DEFAULT_HELM
    if not path.exists():
        pytest.fail(f"helm not found at {path}: run make setup", pytrace=False)
    return path


def render(*args: str) -> list[dict[str, Any]]:
    """The chart's objects for ``helm template`` with ``args``."""
    text = generate_chart.helm_template(CHART, args, helm_path=helm_path())
    return [doc for doc in yaml.safe_load_all(text) if doc]


def prometheus_rule(**values: Any) -> dict[str, Any]:
    """The rendered PrometheusRule, with observability on and ``values`` (dotted key ->
    value, typed as given: ``--set-json``)."""
    pairs = {"observability.enabled": True, **values}
    flags = [
        arg for key, value in pairs.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]
    [rule] = render(*flags, "--api-versions", PROMETHEUS_RULE_API, "--show-only", RULE_TEMPLATE)
    return rule


def rule_groups(rule: dict[str, Any]) -> dict[str, Any]:
    """A PrometheusRule's spec as a Prometheus rule file."""
    return {"groups": rule["spec"]["groups"]}


def alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        item["alert"]: item
        for group in rule["spec"]["groups"]
        for item in group["rules"]
        if "alert" in item
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(generate_dashboard.OUTPUT.read_text(encoding="utf-8"))
    return loaded


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


# What a Grafana variable stands for when a dashboard query runs outside Grafana.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$namespace": ".*",
    "$llama_deployment": ".*",
    "$variant": ".*",
}


def as_promql(expr: str, variables: dict[str, str] | None = None) -> str:
    """A dashboard query with its Grafana variables filled in."""
    for name, value in {**GRAFANA_VARIABLES, **(variables or {})}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("$1", ""), expr
    return expr


def check_rules(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def parses(exprs: Sequence[str], directory: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on ``exprs``, each as a recording rule (its parser, no server)."""
    rules = [{"record": f"check:expr_{index}", "expr": expr} for index, expr in enumerate(exprs)]
    path = directory / "exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    return check_rules(path)


# --- metric names ---------------------------------------------------------------------

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Strings, label matchers, ranges and grouping label lists are dropped first; what is
    left is a name unless a ``(`` follows it (a function or aggregation) or it is a keyword.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            found.add(name)
    return found


def _registry_names() -> Iterator[str]:
    for family in operator_metrics.REGISTRY.collect():
        match family.type:
            case "counter":
                yield from (f"{family.name}_total", f"{family.name}_created")
            case "histogram":
                yield from (f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created"))
            case "info":
                yield f"{family.name}_info"
            case _:
                yield family.name


def operator_names() -> frozenset[str]:
    """Every series name the operator's registry exposes (even with no sample yet)."""
    return frozenset(_registry_names())


def engine_names() -> frozenset[str]:
    """Every metric name of every engine profile; histograms with their series' suffixes."""
    found: set[str] = set()
    for engine in ("vllm", "tgi"):
        for profile in engine_profiles.profiles(engine):
            for signal, metrics in profile.metrics.items():
                for name in metrics:
                    found.add(name)
                    if signal in HISTOGRAM_SIGNALS:
                        found.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return frozenset(found)


def known_names() -> frozenset[str]:
    return operator_names() | engine_names() | KUBE_STATE_METRICS | PROMETHEUS
