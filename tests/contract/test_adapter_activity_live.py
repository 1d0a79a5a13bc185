"""Per-adapter activity end to end: the real operator reads a fake vLLM pod's
vllm:lora_requests_info into status.serving.adapters and llama_operator_adapter_pods.

The fake vLLM 0.34.0 pod (tests/podserver.py) behind the EndpointSlice of
``<name>-primary`` shows the gauge as vLLM writes it (vllm/v1/metrics/loggers.py: set to
the current time, labelled max_lora, running_lora_adapters and waiting_lora_adapters, the
names comma-joined), with an older label set still exported beside the current one, as
prometheus_client keeps every label set it was set with. The operator's reconciles scrape
it every fifth of ``spec.slo.window`` (4s: every 0.8 s); status.serving.adapters shows the
newest series, and the operator's gauge follows. Every wait is for the state asserted.
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
    eventually,
    llama,
    obj,
    report_ready,
    status_of,
)
from prometheus_client.parser import text_string_to_metric_families

import podserver
from llama_operator.runtime import operator_metrics

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SQL = {"name": "sql", "path": "/models/sql", "rank": 16, "targetModules": ["q_proj"]}
CHAT = {"name": "chat", "path": "/models/chat", "rank": 8, "targetModules": ["q_proj"]}
SPEC = {
    "model": {"id": MODEL},
    "replicas": 1,
    "license": {"accept": True},
    "adapters": [SQL, CHAT],
    "slo": {"window": "4s"},
}


@pytest.fixture
def pod() -> Iterator[podserver.FakePod]:
    with podserver.FakePod(rate=1) as one:
        # An older label set, still exported, and the current one (the larger time).
        one.lora_info = [("chat", "", 1_700_000_000.0), ("sql", "chat", 1_700_000_060.0)]
        yield one


def adapter_gauge(name: str) -> dict[tuple[str, str], float]:
    """llama_operator_adapter_pods of one LlamaDeployment: (adapter, state) -> pods."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(operator_metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "llama_operator_adapter_pods" and sample.labels["name"] == name:
                found[sample.labels["adapter"], sample.labels["state"]] = sample.value
    return found


def serving_adapters(operator: ApplyingEmulator) -> Any:
    return (status_of(operator).get("serving") or {}).get("adapters")


async def test_running_and_waiting_adapters_are_shown_and_counted(
    operator: ApplyingEmulator, pod: podserver.FakePod
) -> None:
    await create(operator, LLAMA, llama("chat", spec=SPEC))
    await eventually(lambda: status_of(operator).get("plan"), message="the plan")
    await create(operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
    await report_ready(operator, "chat-primary", 1)

    expected = [
        {"name": "chat", "runningPods": 0, "waitingPods": 1},
        {"name": "sql", "runningPods": 1, "waitingPods": 0},
    ]
    await eventually(
        lambda: serving_adapters(operator) == expected, message="status.serving.adapters"
    )
    # The adapters load at start (the default adapterUpdates): no loaded count.
    assert all("loadedPods" not in entry for entry in status_of(operator)["adapters"])
    # Recorded by the same reconcile that wrote the status.
    assert adapter_gauge("chat") == {
        ("chat", "running"): 0.0,
        ("chat", "waiting"): 1.0,
        ("sql", "running"): 1.0,
        ("sql", "waiting"): 0.0,
    }

    # A newer series says both run now: the status and the gauge follow.
    with pod.lock:
        pod.lora_info = [*pod.lora_info, ("sql,chat", "", 1_700_000_120.0)]
    both = [
        {"name": "chat", "runningPods": 1, "waitingPods": 0},
        {"name": "sql", "runningPods": 1, "waitingPods": 0},
    ]
    await eventually(lambda: serving_adapters(operator) == both, message="both running")
    await eventually(
        lambda: (
            adapter_gauge("chat")
            == {
                ("chat", "running"): 1.0,
                ("chat", "waiting"): 0.0,
                ("sql", "running"): 1.0,
                ("sql", "waiting"): 0.0,
            }
        ),
        message="the gauge with both running",
    )

    # Idle: the newest series names no adapter, and status.serving.adapters goes away.
    with pod.lock:
        pod.lora_info = [*pod.lora_info, ("", "", 1_700_000_180.0)]
    await eventually(
        lambda: status_of(operator).get("serving") and serving_adapters(operator) is None,
        message="no adapter activity",
    )
    await eventually(lambda: adapter_gauge("chat") == {}, message="the gauge emptied")
