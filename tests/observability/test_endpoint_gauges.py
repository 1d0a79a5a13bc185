"""operator_metrics.record_endpoint: the per-endpoint gauges the alerts and the dashboard
read, from a LlamaDeployment's raw spec and status, and their removal by ``forget``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import parser

from llama_operator.runtime import operator_metrics

ENDPOINT_FAMILIES = (
    "llama_operator_slo_objective",
    "llama_operator_endpoint_on_fallback",
    "llama_operator_endpoint_cost_per_hour",
    "llama_operator_slo_met",
    "llama_operator_endpoint_canary_weight",
    "llama_operator_endpoint_rolled_back",
    "llama_operator_endpoint_replicas",
)


def samples(name: str = "chat") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """This test's endpoint's samples of the per-endpoint families."""
    text = operator_metrics.render().decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "name"))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ENDPOINT_FAMILIES and s.labels.get("name") == name
    }


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    yield
    operator_metrics.forget("uid-chat")


def record(spec: dict[str, Any], status: dict[str, Any]) -> None:
    operator_metrics.record_endpoint(
        uid="uid-chat", namespace="ai", name="chat", spec=spec, status=status
    )


NS = ("namespace", "ai")


def test_no_slo_no_objectives_and_primary() -> None:
    record({}, {})
    assert samples() == {
        ("llama_operator_endpoint_on_fallback", (NS,)): 0.0,
        ("llama_operator_endpoint_canary_weight", (NS,)): 0.0,
        ("llama_operator_endpoint_rolled_back", (NS,)): 0.0,
    }


def test_slo_defaults_apply_when_slo_is_set() -> None:
    record({"slo": {}}, {})
    found = samples()
    assert found[("llama_operator_slo_objective", (NS, ("objective", "p95_latency_seconds")))] == 2
    assert found[("llama_operator_slo_objective", (NS, ("objective", "error_rate")))] == 0.01
    objectives = {key for key in found if key[0] == "llama_operator_slo_objective"}
    assert len(objectives) == 2  # TTFT and the tokens/s floor have no default


def test_slo_values_win() -> None:
    record(
        {
            "slo": {
                "maxP95LatencySeconds": 5,
                "maxP95TimeToFirstTokenSeconds": 0.5,
                "maxErrorRate": 0.02,
                "minTokensPerSecond": 300,
                "window": "10m",
            }
        },
        {},
    )
    found = samples()

    def objective(name: str) -> float:
        return found[("llama_operator_slo_objective", (NS, ("objective", name)))]

    assert objective("p95_latency_seconds") == 5
    assert objective("p95_time_to_first_token_seconds") == 0.5
    assert objective("error_rate") == 0.02
    assert objective("min_tokens_per_second") == 300


def test_fallback_cost_slo_met_canary_and_replicas() -> None:
    record(
        {},
        {
            "failover": {"active": "fallback-0"},
            "plan": {"costPerHour": 2.5},
            "replicas": 3,
            "readyReplicas": 2,
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "SLOMet", "status": "False", "reason": "ObjectiveMissed"},
            ],
            "rollout": {"phase": "Progressing", "weight": 10, "effectiveWeight": 25.0},
        },
    )
    found = samples()
    assert found[("llama_operator_endpoint_on_fallback", (NS,))] == 1
    assert found[("llama_operator_endpoint_cost_per_hour", (NS,))] == 5.0
    assert found[("llama_operator_slo_met", (NS,))] == 0
    assert found[("llama_operator_endpoint_canary_weight", (NS,))] == 25.0
    assert found[("llama_operator_endpoint_replicas", (NS, ("state", "desired")))] == 3
    assert found[("llama_operator_endpoint_replicas", (NS, ("state", "ready")))] == 2


@pytest.mark.parametrize(
    ("condition", "expected"),
    [("True", 1.0), ("False", 0.0), ("Unknown", None)],
)
def test_slo_met_absent_when_unknown(condition: str, expected: float | None) -> None:
    record({"slo": {}}, {"conditions": [{"type": "SLOMet", "status": condition}]})
    assert samples().get(("llama_operator_slo_met", (NS,))) == expected


def test_no_price_no_cost_and_rolled_back() -> None:
    record(
        {},
        {
            "plan": {"costPerHour": None},
            "readyReplicas": 2,
            "rollout": {"phase": "RolledBack", "weight": 10},
        },
    )
    found = samples()
    assert ("llama_operator_endpoint_cost_per_hour", (NS,)) not in found
    assert found[("llama_operator_endpoint_rolled_back", (NS,))] == 1
    # Not in progress: no traffic on a canary.
    assert found[("llama_operator_endpoint_canary_weight", (NS,))] == 0


def test_intended_weight_when_the_effective_one_is_unknown() -> None:
    record({}, {"rollout": {"phase": "Paused", "weight": 50}})
    assert samples()[("llama_operator_endpoint_canary_weight", (NS,))] == 50


def test_a_malformed_status_reads_as_absent() -> None:
    record(
        {"slo": {"maxErrorRate": "lots"}},
        {"plan": "x", "readyReplicas": "two", "failover": None, "conditions": "bad"},
    )
    found = samples()
    assert found[("llama_operator_slo_objective", (NS, ("objective", "error_rate")))] == 0.01
    assert found[("llama_operator_endpoint_on_fallback", (NS,))] == 0
    assert ("llama_operator_endpoint_cost_per_hour", (NS,)) not in found


def test_a_later_record_replaces_and_forget_removes() -> None:
    record({"slo": {}}, {"failover": {"active": "fallback-1"}})
    record({}, {})
    found = samples()
    assert found[("llama_operator_endpoint_on_fallback", (NS,))] == 0
    assert not any(key[0] == "llama_operator_slo_objective" for key in found)
    operator_metrics.forget("uid-chat")
    assert samples() == {}


def test_cost_with_no_ready_replica_is_zero() -> None:
    record({}, {"plan": {"costPerHour": 4.0}})
    assert samples()[("llama_operator_endpoint_cost_per_hour", (NS,))] == 0
