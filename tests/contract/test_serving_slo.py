"""Live serving figures and the SLO, end to end: the real operator reads fake vLLM pods.

A fake vLLM 0.34.0 pod (tests/podserver.py) behind the EndpointSlice of
``<name>-primary`` finishes requests on every scrape; this file's ``TokenPod`` adds the
engine's generated-tokens counter to its page, as vLLM exposes it (the counter
``vllm:generation_tokens``, "Number of generation tokens processed.",
vllm/v1/metrics/loggers.py, 0.24.0 to 0.34.0; ``_total`` on the page, labelled like
``vllm:request_success`` without finished_reason). The operator's reconciles scrape it
every fifth of ``spec.slo.window``: ``status.serving`` shows the window's figures (the
columns of ``kubectl get llama -o wide`` read them), a breached objective turns
``SLOMet`` False with one ``ObjectiveMissed`` Warning, and recovery turns it True. Every
wait is for the state asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    LLAMA,
    ApplyingEmulator,
    create,
    endpoint_slice,
    events,
    eventually,
    llama,
    obj,
    report_ready,
    status_of,
    wait_condition,
)
from prometheus_client.parser import text_string_to_metric_families

import podserver
from llama_operator.api import crd
from llama_operator.runtime import operator_metrics

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# A short window, so the test sees it slide: scraped every 0.8 s (a fifth of it; the
# contract tests resync every 0.5 s).
SLO = {"window": "4s", "maxErrorRate": 0.05, "maxP95LatencySeconds": 2}
SPEC = {
    "model": {"id": MODEL},
    "replicas": 1,
    "license": {"accept": True},
    "placement": {"pools": ["l4"]},  # priced: $0.8 per GPU-hour (data/pools.yaml)
    "slo": SLO,
}
TOKENS_PER_REQUEST = 50


class TokenPod(podserver.FakePod):
    """A fake vLLM pod that also counts the tokens its requests generated."""

    def __init__(self) -> None:
        super().__init__(rate=10, latency=1.0)
        self.tokens = 0.0

    def advance(self, requests: float | None = None) -> None:
        super().advance(requests)
        total = self.rate if requests is None else requests
        self.tokens += max(total, 0) * TOKENS_PER_REQUEST

    def text(self) -> str:
        series = 'engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"'
        return super().text() + (
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
            "# TYPE vllm:generation_tokens_total counter\n"
            f"vllm:generation_tokens_total{{{series}}} {self.tokens!r}\n"
        )


@pytest.fixture
def pod() -> Iterator[TokenPod]:
    with TokenPod() as one:
        yield one


def wide_columns(stored: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl get llama -o wide` shows in the serving columns: each column's
    JSONPath (simple dotted paths, and the SLOMet condition filter) on the stored object."""
    shown: dict[str, Any] = {}
    for column in crd.PRINTER_COLUMNS:
        path = str(column["jsonPath"])
        if path.startswith(".status.serving."):
            value: Any = stored.get("status", {}).get("serving", {})
            for key in path.removeprefix(".status.serving.").split("."):
                value = value.get(key) if isinstance(value, dict) else None
            shown[str(column["name"])] = value
        elif "SLOMet" in path:
            found = [
                c["status"]
                for c in stored.get("status", {}).get("conditions", [])
                if c["type"] == "SLOMet"
            ]
            shown[str(column["name"])] = found[0] if found else None
    return shown


def endpoint_gauges(name: str) -> dict[str, float]:
    """The operator's per-endpoint gauges of one LlamaDeployment, as its /metrics shows them
    (objective thresholds keyed ``llama_operator_slo_objective/<objective>``)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(operator_metrics.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("llama_operator_") and sample.labels.get("name") == name:
                objective = sample.labels.get("objective")
                found[sample.name + (f"/{objective}" if objective else "")] = sample.value
    return found


def objective_missed(cluster: ApplyingEmulator) -> list[dict[str, Any]]:
    return [e for e in events(cluster) if e.get("reason") == "ObjectiveMissed"]


async def test_live_figures_a_breach_and_its_recovery(
    operator: ApplyingEmulator, pod: TokenPod
) -> None:
    await create(operator, LLAMA, llama("chat", spec=SPEC))
    plan = await eventually(lambda: status_of(operator).get("plan"), message="the plan")
    await create(operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
    await report_ready(operator, "chat-primary", 1)

    # Healthy traffic: the figures, and SLOMet True.
    met = await wait_condition(operator, "SLOMet", status="True")
    assert met["reason"] == "WithinObjectives"
    assert "p95 latency" in met["message"]
    assert "error rate 0 <= 0.05" in met["message"]
    serving = await eventually(
        lambda: (s := status_of(operator).get("serving")) and "costPerMillionTokens" in s and s,
        message="status.serving with its cost",
    )
    assert serving["pods"] == 1
    assert serving["requestsPerSecond"] > 0
    # Every request took 1 s: p95 inside vLLM's (0.8, 1.0] bucket.
    assert 0.8 < serving["p95LatencySeconds"] <= 1.0
    assert serving["errorRate"] == 0
    tokens_per_second = serving["generatedTokensPerSecond"]
    # (Both rounded to 4 significant digits in status.)
    assert tokens_per_second == pytest.approx(
        serving["requestsPerSecond"] * TOKENS_PER_REQUEST, rel=1e-3
    )
    # The plan's price per replica-hour x 1 ready replica over the tokens of an hour.
    expected = plan["costPerHour"] / (tokens_per_second * 3600) * 1e6
    assert serving["costPerMillionTokens"] == pytest.approx(expected, rel=1e-3)
    columns = wide_columns(obj(operator, LLAMA, "chat"))
    assert columns["P95"] == serving["p95LatencySeconds"]
    assert columns["$/MTok"] == serving["costPerMillionTokens"]
    assert columns["SLO"] == "True"
    assert objective_missed(operator) == []

    # Half the requests fail: the objective is missed, one Warning says by how much.
    pod.error_rate = 0.5
    missed = await wait_condition(operator, "SLOMet", status="False")
    assert missed["reason"] == "ObjectiveMissed"
    assert "error rate" in missed["message"]
    assert "> 0.05" in missed["message"]
    warnings = await eventually(lambda: objective_missed(operator), message="the Warning")
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["message"] == missed["message"]
    # The alerts' inputs: the objectives and the verdict, recorded by the same reconcile
    # before it wrote the condition.
    gauges = endpoint_gauges("chat")
    assert gauges["llama_operator_slo_met"] == 0
    assert gauges["llama_operator_slo_objective/error_rate"] == 0.05
    assert gauges["llama_operator_slo_objective/p95_latency_seconds"] == 2
    assert gauges["llama_operator_endpoint_on_fallback"] == 0
    assert gauges["llama_operator_endpoint_cost_per_hour"] == pytest.approx(plan["costPerHour"])

    # Recovery: once the failures leave the window, SLOMet is True again.
    pod.error_rate = 0.0
    await wait_condition(operator, "SLOMet", status="True")
    recovered = await eventually(
        lambda: [e for e in events(operator) if e.get("reason") == "WithinObjectives"],
        message="the recovery Event",
    )
    assert recovered[0]["type"] == "Normal"
    # One Warning for the one breach, however many windows measured it.
    assert len(objective_missed(operator)) == 1


async def test_without_an_slo_the_figures_show_and_no_condition(
    operator: ApplyingEmulator, pod: TokenPod
) -> None:
    spec = {key: value for key, value in SPEC.items() if key != "slo"}
    # The pod is behind the Service from the start: the first scrape (the default window
    # of 5m is scraped every minute) already reads it.
    await create(operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port))
    await create(operator, LLAMA, llama("chat", spec=spec))
    serving = await eventually(
        lambda: (s := status_of(operator).get("serving")) and s.get("pods") == 1 and s,
        message="status.serving",
    )
    assert "observedAt" in serving
    conditions = [c["type"] for c in status_of(operator).get("conditions") or []]
    assert "SLOMet" not in conditions
