"""Observed KV capacity, end to end: the real operator reads what fake vLLM pods report.

A fake vLLM 0.34.0 pod (tests/podserver.py) serves ``vllm:cache_config_info`` with the
blocks a test gives it, behind the EndpointSlice of ``<name>-primary``. Once the test
reports the primary Deployment ready, the operator's reconcile reads it: the figure lands
in ``status.plan.observed``, the ``KVCacheCapacity`` condition compares it with the plan,
a shortfall posts a Warning and is recorded in the calibration ConfigMap of the operator's
namespace, and the next LlamaDeployment of the same model on the same GPU is planned with
it. Every wait is for the state asserted (``eventually`` / ``wait_condition``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    LLAMA,
    POOLS_YAML,
    ApplyingEmulator,
    create,
    endpoint_slice,
    events,
    eventually,
    llama,
    obj,
    report_ready,
    settled,
    status_of,
    wait_condition,
)

import podserver

HOME = "llama-operator"  # the operator's namespace, where the chart puts the ConfigMap
CALIBRATION = "llama-operator-calibration"
CONFIG = POOLS_YAML.read_text() + (
    f"\ncalibration:\n  namespace: {HOME}\n  configMap: {CALIBRATION}\n"
)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SPEC = {
    "model": {"id": MODEL},
    "replicas": 1,
    "license": {"accept": True},
    "placement": {"pools": ["l4"]},
}
KEY = "meta-llama--Llama-3.1-8B-Instruct_vllm-0.34.0_NVIDIA-L4"


@pytest.fixture
def pod() -> Iterator[podserver.FakePod]:
    with podserver.FakePod() as one:
        yield one


def calibration(cluster: ApplyingEmulator) -> dict[str, Any]:
    """The calibration ConfigMap's data (KeyError while it does not exist)."""
    stored = cluster.objects[CONFIGMAPS, HOME, CALIBRATION]
    return dict(stored.raw.get("data") or {})


async def planned(cluster: ApplyingEmulator, name: str) -> dict[str, Any]:
    """status.plan of ``name`` once it is there."""
    plan: dict[str, Any] = await eventually(
        lambda: status_of(cluster, name).get("plan"), message=f"the plan of {name}"
    )
    return plan


async def serve(
    cluster: ApplyingEmulator, pod: podserver.FakePod, plan: dict[str, Any], ratio: float
) -> int:
    """The fake pod allocates ``ratio`` of the planned KV cache (whole blocks of 64) and
    becomes the ready pod of chat-primary; the tokens it reports."""
    pod.max_model_len = plan["maxModelLen"]
    pod.num_gpu_blocks = math.floor(plan["kvCacheTokens"] * ratio / podserver.VLLM_BLOCK_SIZE)
    tokens, _ = podserver.vllm_kv_tokens(pod.num_gpu_blocks, pod.max_model_len)
    await create(cluster, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port))
    await eventually(lambda: obj(cluster, DEPLOYMENTS, "chat-primary"))
    await report_ready(cluster, "chat-primary", 1)
    return tokens


@pytest.mark.operator_config(CONFIG)
async def test_a_shortfall_warns_records_and_changes_the_next_plan(
    operator: ApplyingEmulator, pod: podserver.FakePod
) -> None:
    await create(operator, LLAMA, llama("chat", spec=SPEC))
    first = await planned(operator, "chat")
    assert first["kvCacheTokens"] > 0, first  # the planner's promise (planner.py)
    assert "kvCorrection" not in first
    tokens = await serve(operator, pod, first, ratio=0.9)

    found = await wait_condition(operator, "KVCacheCapacity", reason="BelowPlan")
    assert found["status"] == "False"
    observed = status_of(operator)["plan"]["observed"]
    ratio = tokens / first["kvCacheTokens"]
    assert observed["kvCacheTokens"] == tokens
    assert observed["gpuBlocks"] == pod.num_gpu_blocks
    assert observed["blockSize"] == podserver.VLLM_BLOCK_SIZE
    assert observed["pods"] == ["chat-primary-abc-0"]
    assert observed["plannedKVCacheTokens"] == first["kvCacheTokens"]
    assert observed["ratio"] == round(ratio, 3)
    assert observed["correction"] == math.floor(ratio * 1000) / 1000
    assert observed["recordedIn"] == f"{HOME}/{CALIBRATION}, key {KEY}"
    assert f"{tokens:,} KV-cache tokens" in found["message"]
    assert f"below the planned {first['kvCacheTokens']:,}" in found["message"]

    # The Warning, once, with the condition's message.
    warnings = await eventually(
        lambda: [e for e in events(operator) if e.get("reason") == "BelowPlan"],
        message="the BelowPlan Warning",
    )
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["message"] == found["message"]

    # The correction, where a user sees and resets it: one key, a small JSON value.
    record = json.loads(calibration(operator)[KEY])
    assert record == {
        "model": MODEL,
        "engine": "vllm",
        "engineVersion": "0.34.0",
        "gpuProduct": "NVIDIA-L4",
        "ratio": observed["correction"],
        "plannedTokens": first["kvCacheTokens"],
        "appliedCorrection": None,
        "observedTokens": tokens,
        "observedAt": observed["observedAt"],
        "from": "ai/chat",
    }

    # A second LlamaDeployment of the same model on the same pool is planned with it...
    await create(operator, LLAMA, llama("second", spec=SPEC))
    second = await planned(operator, "second")
    assert second["kvCorrection"] == observed["correction"]
    assert second["kvCacheTokens"] < first["kvCacheTokens"]
    assert second["kvCacheTokens"] <= tokens  # never promising more than was observed
    # ...while the first keeps its plan: a correction changes the next plan only.
    await settled()
    kept = status_of(operator)["plan"]
    assert kept["kvCacheTokens"] == first["kvCacheTokens"]
    assert "kvCorrection" not in kept
    assert len([e for e in events(operator) if e.get("reason") == "BelowPlan"]) == 1


@pytest.mark.operator_config(CONFIG)
async def test_as_planned_is_read_once_per_set_of_pods(
    operator: ApplyingEmulator, pod: podserver.FakePod
) -> None:
    await create(operator, LLAMA, llama("chat", spec=SPEC))
    first = await planned(operator, "chat")
    tokens = await serve(operator, pod, first, ratio=1.05)

    found = await wait_condition(operator, "KVCacheCapacity", status="True")
    assert found["reason"] == "AsPlanned"
    observed = status_of(operator)["plan"]["observed"]
    assert observed["kvCacheTokens"] == tokens
    assert "correction" not in observed
    # Nothing to record: the ConfigMap is never created.
    with pytest.raises(KeyError):
        calibration(operator)

    # An engine sizes its KV cache once: the same ready pod is not read again, however
    # many reconciles follow (counted from one that ran after the observation landed).
    await settled()
    scrapes = pod.scrapes
    await settled()
    await settled()
    assert pod.scrapes == scrapes
