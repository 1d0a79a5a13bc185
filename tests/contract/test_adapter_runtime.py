"""Adapters changed without a restart, and canaried by weight, end to end: real Kopf, real
handlers, kmock, and a fake vLLM pod with vLLM's adapter endpoints.

With ``spec.adapterUpdates.mode: Runtime`` the fake vLLM 0.34.0 pod behind the
EndpointSlice of ``<name>-primary`` (tests/podserver.py: /v1/models,
/v1/load_lora_adapter, /v1/unload_lora_adapter with vLLM's checks, guarded by the API key
as vLLM guards /v1) gets the plan's adapters from the operator: one listed at creation is
loaded, one added later is hot-added, one removed is unloaded, one the engine refuses is
reported, and the Deployment's pod template never changes. The planted API key is the
engine's, and the conftest checks it never leaks. With the default ``mode: Rollout`` an
added adapter is a pod change: it goes to a canary, which takes traffic by weight, while
the primary keeps serving the adapters it had. Every wait is for the state asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    LLAMA,
    PLANTED_API_KEY,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    endpoint_slice,
    events,
    eventually,
    exists,
    llama,
    obj,
    patch,
    report_ready,
    status_of,
    wait_condition,
)
from prometheus_client.parser import text_string_to_metric_families

import podserver
from llama_operator.runtime import operator_metrics

LLAMA_31 = "meta-llama/Llama-3.1-8B-Instruct"
SQL = {"name": "sql", "path": "/models/sql", "rank": 16, "targetModules": ["q_proj", "v_proj"]}
CHAT = {"name": "chat", "path": "/models/chat", "rank": 8, "targetModules": ["q_proj"]}
BROKEN = {"name": "broken", "path": "/models/broken", "rank": 8, "targetModules": ["q_proj"]}
REVISION = "llamaops.dev/revision"


def spec(*adapters: dict[str, Any], mode: str = "Runtime") -> dict[str, Any]:
    return {
        "model": {"id": LLAMA_31},
        "license": {"accept": True},
        "replicas": 1,
        "adapterUpdates": {"mode": mode},
        "adapters": list(adapters),
    }


@pytest.fixture
def vllm_pod() -> Iterator[podserver.FakePod]:
    with podserver.FakePod(
        runtime_lora=True, api_key=PLANTED_API_KEY, served_model=LLAMA_31
    ) as pod:
        yield pod


def adapter_status(cluster: ApplyingEmulator) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in status_of(cluster).get("adapters") or []}


def loaded_on(cluster: ApplyingEmulator, *names: str) -> bool:
    """status.adapters lists exactly ``names``, each loaded on the one ready pod."""
    shown = adapter_status(cluster)
    return sorted(shown) == sorted(names) and all(
        shown[name].get("loadedPods") == 1 for name in names
    )


def adapter_gauges(name: str) -> dict[tuple[str, str], float]:
    """llama_operator_adapter_pods of one LlamaDeployment, by (adapter, state)."""
    return {
        (sample.labels["adapter"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(operator_metrics.render().decode())
        for sample in family.samples
        if sample.name == "llama_operator_adapter_pods" and sample.labels.get("name") == name
    }


def template(cluster: ApplyingEmulator) -> tuple[str, dict[str, Any]]:
    primary = obj(cluster, DEPLOYMENTS, "chat-primary")
    return primary["metadata"]["annotations"][REVISION], primary["spec"]["template"]


async def test_adapters_are_loaded_hot_added_unloaded_and_refusals_reported(
    operator: ApplyingEmulator, vllm_pod: podserver.FakePod
) -> None:
    await create(
        operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, vllm_pod.port)
    )
    await create(operator, LLAMA, llama(spec=spec(SQL)))

    # Loaded into the running pod: the engine started with room for adapters, none of them
    # on its command line.
    ready = await wait_condition(operator, "AdaptersReady", status="True")
    assert ready["reason"] == "AllLoaded"
    assert ready["message"] == "every adapter is loaded on all 1 ready pod(s): sql"
    assert vllm_pod.adapters == {"sql": "/models/sql"}
    assert adapter_status(operator)["sql"]["loadedPods"] == 1
    args = container_args(obj(operator, DEPLOYMENTS, "chat-primary"))
    assert "--enable-lora" in args
    assert "--lora-modules" not in args
    env = obj(operator, DEPLOYMENTS, "chat-primary")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "true"} in env["env"]
    plan = status_of(operator)["plan"]
    assert plan["lora"]["runtime"] is True
    # The operator's gauge says the same, for dashboards and alerts.
    assert adapter_gauges("chat") == {("sql", "loaded"): 1.0}
    before = template(operator)

    # Loading is a state a change passes through, not a fault: no Warning for it.
    assert not [e for e in events(operator) if e.get("reason") == "AdapterLoading"]

    # Hot-added: the pod gets it, the template stays.
    await patch(operator, LLAMA, "chat", {"spec": {"adapters": [SQL, CHAT]}})
    await eventually(lambda: loaded_on(operator, "sql", "chat"), message="chat hot-added")
    assert vllm_pod.adapters == {"sql": "/models/sql", "chat": "/models/chat"}
    assert template(operator) == before
    assert not exists(operator, DEPLOYMENTS, "chat-canary")
    assert [a["name"] for a in status_of(operator)["plan"]["adapters"]] == ["sql", "chat"]

    # Removed: unloaded, the template still the same.
    await patch(operator, LLAMA, "chat", {"spec": {"adapters": [CHAT]}})
    await eventually(lambda: loaded_on(operator, "chat"), message="sql unloaded")
    assert vllm_pod.adapters == {"chat": "/models/chat"}
    assert ("/v1/unload_lora_adapter", {"lora_name": "sql"}) in vllm_pod.admin_calls
    assert template(operator) == before

    # One the engine refuses: reported with the engine's words; the others keep serving.
    vllm_pod.refuse["broken"] = "No adapter found for /models/broken"
    await patch(operator, LLAMA, "chat", {"spec": {"adapters": [CHAT, BROKEN]}})
    failed = await wait_condition(operator, "AdaptersReady", status="False")
    assert failed["reason"] == "AdapterLoadFailed"
    assert "broken" in failed["message"]
    assert "No adapter found" in failed["message"]
    assert vllm_pod.adapters == {"chat": "/models/chat"}
    assert adapter_status(operator)["broken"]["loadedPods"] == 0
    assert template(operator) == before

    # Fixed (the engine takes it now): the next resync loads it.
    del vllm_pod.refuse["broken"]
    await wait_condition(operator, "AdaptersReady", status="True")
    assert vllm_pod.adapters == {"chat": "/models/chat", "broken": "/models/broken"}


async def test_a_pod_that_refuses_the_key_is_reported_not_loaded(
    operator: ApplyingEmulator,
) -> None:
    # An engine guarded by another key: every call is refused, and status says so without
    # the key in it (the conftest checks the planted key never leaks).
    with podserver.FakePod(runtime_lora=True, api_key="sk-another-key-entirely") as pod:
        await create(
            operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port)
        )
        await create(operator, LLAMA, llama(spec=spec(SQL)))
        refused = await wait_condition(operator, "AdaptersReady", status="False")
        assert refused["reason"] == "AdapterLoadFailed"
        assert "HTTP 401: the API key was refused" in refused["message"]
        assert pod.adapters == {}
        # A refusal is a fault: one Warning Event says so.
        warnings = await eventually(
            lambda: [e for e in events(operator) if e.get("reason") == "AdapterLoadFailed"],
            message="the Warning",
        )
        assert warnings[0]["type"] == "Warning"


async def test_in_rollout_mode_an_added_adapter_is_canaried_by_weight(
    operator: ApplyingEmulator,
) -> None:
    body = spec(SQL, mode="Rollout")
    body["rollout"] = {"steps": [{"weight": 10, "pause": "1h"}]}
    await create(operator, LLAMA, llama(spec=body))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"), message="primary")
    await report_ready(operator, "chat-primary", 1)
    await eventually(lambda: status_of(operator).get("phase") == "Ready", message="Ready")
    assert "sql=/models/sql" in container_args(obj(operator, DEPLOYMENTS, "chat-primary"))

    await patch(operator, LLAMA, "chat", {"spec": {"adapters": [SQL, CHAT]}})
    canary = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-canary"), message="canary")
    # The canary serves the new list; the primary keeps the old one while it is judged.
    assert "chat=/models/chat" in container_args(canary)
    assert "chat=/models/chat" not in container_args(obj(operator, DEPLOYMENTS, "chat-primary"))
    await report_ready(operator, "chat-canary", 1)
    state = await eventually(
        lambda: (r := status_of(operator).get("rollout")) and r.get("weight") == 10 and r,
        message="the canary at its first weight",
    )
    assert state["phase"] in ("Progressing", "Paused")


async def test_in_runtime_mode_a_new_version_is_canaried_while_the_primary_keeps_the_old(
    operator: ApplyingEmulator, vllm_pod: podserver.FakePod
) -> None:
    body = spec(SQL)
    body["rollout"] = {"steps": [{"weight": 10, "pause": "1h"}]}
    await create(
        operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, vllm_pod.port)
    )
    await create(operator, LLAMA, llama(spec=body))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"), message="primary")
    await report_ready(operator, "chat-primary", 1)
    await wait_condition(operator, "AdaptersReady", status="True")
    assert vllm_pod.adapters == {"sql": "/models/sql"}

    # sql from another path: a new version. It goes to a canary (the adapters' revision is
    # in the template), which gets the new version; the primary keeps the old one.
    with podserver.FakePod(runtime_lora=True, api_key=PLANTED_API_KEY) as canary_pod:
        sql_v2 = {**SQL, "path": "/models/sql-v2"}
        await patch(operator, LLAMA, "chat", {"spec": {"adapters": [sql_v2]}})
        canary = await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-canary"), message="canary"
        )
        annotations = canary["spec"]["template"]["metadata"]["annotations"]
        assert "llamaops.dev/adapters-revision" in annotations
        await report_ready(operator, "chat-canary", 1)
        await create(
            operator, ENDPOINTSLICES, endpoint_slice("chat-canary", "canary", 0, canary_pod.port)
        )
        ready = await eventually(
            lambda: (
                (c := condition_of(operator, "AdaptersReady"))
                and "all 2 ready pod(s)" in c["message"]
                and c
            ),
            message="both variants hold their versions",
        )
        assert ready["status"] == "True"
        assert canary_pod.adapters == {"sql": "/models/sql-v2"}
        assert vllm_pod.adapters == {"sql": "/models/sql"}
        assert status_of(operator)["rollout"]["weight"] == 10
