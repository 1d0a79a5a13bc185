"""The chart's PrometheusRule: rendered only where it can be, valid for the real promtool,
and every alert unit-tested with synthetic series (``alert_cases.py``) by ``promtool test
rules``, firing and not firing. Each alert names its LlamaDeployment and links its runbook
section in docs/operations/observability.md.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import alert_cases
import obskit
import pytest
import yaml

from llama_operator.planning import engine_profiles


@pytest.fixture(scope="module")
def rule() -> dict[str, Any]:
    return obskit.prometheus_rule()


@pytest.fixture(scope="module")
def rule_file(rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(obskit.rule_groups(rule)), encoding="utf-8")
    return path


def test_promtool_checks_the_rules(rule_file: pathlib.Path) -> None:
    result = obskit.check_rules(rule_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "api_versions",
    [
        ["monitoring.coreos.com/v1/PrometheusRule"],
        # The form of the issue's `helm template` line; a live cluster gives Helm both.
        ["monitoring.coreos.com/v1"],
    ],
)
def test_rendered_where_the_prometheus_operator_api_exists(api_versions: list[str]) -> None:
    flags = [arg for version in api_versions for arg in ("--api-versions", version)]
    objects = obskit.render("--set", "observability.enabled=true", *flags)
    assert [obj["kind"] for obj in objects].count("PrometheusRule") == 1


def test_not_rendered_without_the_api_nor_by_default() -> None:
    without_api = obskit.render("--set", "observability.enabled=true")
    assert "PrometheusRule" not in [obj["kind"] for obj in without_api]
    default = obskit.render("--api-versions", obskit.PROMETHEUS_RULE_API)
    assert "PrometheusRule" not in [obj["kind"] for obj in default]
    off = obskit.render(
        "--set",
        "observability.enabled=true",
        "--set",
        "observability.alerts.enabled=false",
        "--api-versions",
        obskit.PROMETHEUS_RULE_API,
    )
    assert "PrometheusRule" not in [obj["kind"] for obj in off]


def test_values_reach_the_rules() -> None:
    rule = obskit.prometheus_rule(
        **{
            "observability.alerts.kvCache.usage": 0.8,
            "observability.alerts.slo.window": "10m",
            "observability.alerts.ruleLabels": {"team": "ml"},
            "observability.alerts.labels": {"release": "prometheus"},
            "observability.alerts.runbookURL": "https://docs.example.com/observability",
        }
    )
    found = obskit.alerts(rule)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert "> 0.8" in found["LlamaKVCacheSaturated"]["expr"]
    assert "[10m]" in found["LlamaDeploymentLatencyHigh"]["expr"]
    for alert in found.values():
        assert alert["labels"]["team"] == "ml"
        assert alert["annotations"]["runbook_url"].startswith(
            "https://docs.example.com/observability#"
        )


def test_every_alert_has_severity_summary_description_and_runbook(
    rule: dict[str, Any],
) -> None:
    doc = obskit.DOC.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", doc, flags=re.MULTILINE)
    }
    for name, alert in obskit.alerts(rule).items():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        page, anchor = annotations["runbook_url"].split("#")
        assert page == "docs/operations/observability.md"
        assert anchor in anchors, f"{name}: no section #{anchor} in {obskit.DOC.name}"
        # It names the LlamaDeployment; the operator's own alerts name its namespace.
        if name.startswith("LlamaOperator"):
            assert (
                "namespace" in annotations["summary"]
                or obskit.RELEASE_NAMESPACE in (annotations["summary"])
            ), name
        else:
            assert "{{ $labels.namespace }}/{{ $labels." in annotations["summary"], name


def test_error_ratio_counts_the_profiles_server_failures(rule: dict[str, Any]) -> None:
    expr = obskit.alerts(rule)["LlamaDeploymentErrorRateHigh"]["expr"]
    for engine in ("vllm", "tgi"):
        profile = engine_profiles.profiles(engine)[-1]
        failures = "|".join(profile.outcomes.serverFailures)
        assert f'{profile.outcomes.label}=~"{failures}"' in expr or (
            f'{profile.outcomes.label}="{failures}"' in expr
        ), engine


def test_every_alert_has_cases(rule: dict[str, Any]) -> None:
    rendered = set(obskit.alerts(rule))
    firing = {case.alert for case in alert_cases.CASES if case.fires}
    quiet = {case.alert for case in alert_cases.CASES if not case.fires}
    assert rendered - firing == set(), "alerts without a firing promtool test"
    assert rendered - quiet == set(), "alerts without a not-firing promtool test"
    assert {case.alert for case in alert_cases.CASES} <= rendered, "cases of no alert"


def _go_g3(value: float) -> str:
    # Go's %.3g for the values the cases use (no exponent, trailing zeros dropped), as
    # Python's .3g writes them too.
    return format(value, ".3g")


def _expand(template: str, labels: dict[str, str], value: float) -> str:
    """An annotation as Prometheus renders it for one alert (the templates the chart uses)."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), template)
    text = text.replace('{{ printf "%.3g" $value }}', _go_g3(value))
    assert "{{" not in text, f"an annotation template the tests cannot expand: {template}"
    return text


def _promtool_test(case: alert_cases.Case, alert: dict[str, Any]) -> dict[str, Any]:
    expected = []
    for labels, value in case.fires:
        all_labels = {**labels, **alert["labels"]}
        expected.append(
            {
                "exp_labels": all_labels,
                "exp_annotations": {
                    key: _expand(text, all_labels, value)
                    for key, text in alert["annotations"].items()
                },
            }
        )
    return {
        "name": f"{case.alert}: {case.shows}",
        "interval": "1m",
        "input_series": [
            {"series": series, "values": values} for series, values in case.series.items()
        ],
        "alert_rule_test": [
            {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": expected}
        ],
    }


def test_promtool_unit_tests(
    rule: dict[str, Any], rule_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    found = obskit.alerts(rule)
    tests = [_promtool_test(case, found[case.alert]) for case in alert_cases.CASES]
    path = tmp_path / "tests.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests}
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [obskit.tool("promtool"), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_queries_name_only_metrics_that_exist(rule: dict[str, Any]) -> None:
    known = obskit.known_names()
    for name, alert in obskit.alerts(rule).items():
        unknown = obskit.metric_names(alert["expr"]) - known
        assert not unknown, f"{name} reads metrics nobody exports: {sorted(unknown)}"
