"""Bad input, readiness and discovery, through the real operator loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kube import (
    DEPLOYMENTS,
    LLAMA,
    NODES,
    SERVICES,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    events,
    eventually,
    exists,
    gpu_node,
    llama,
    obj,
    patch,
    settled,
    status_of,
    wait_condition,
    writes,
)

HUGE = {
    "model": {"id": "meta-llama/Llama-3.1-405B-Instruct"},
    "placement": {"optimize": "quality", "tensorParallel": 1},
}


class TestUnplannable:
    async def test_infeasible_pin_reports_planned_false_and_creates_nothing(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama(spec=HUGE))
        planned = await wait_condition(operator, "Planned", reason="NoFeasiblePlan")
        assert planned["status"] == "False"
        assert planned["reason"] == "NoFeasiblePlan"
        assert "spec.placement.tensorParallel" in planned["message"]
        assert "Would fit" in planned["message"]
        assert status_of(operator)["phase"] == "Failed"
        await asyncio.sleep(1.0)  # several resyncs: still nothing may be created
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        assert not exists(operator, SERVICES, "chat")
        # Events are posted after the status patch: wait for the Warning, then see it alone.
        warnings = await eventually(
            lambda: [e for e in events(operator) if e["type"] == "Warning"], message="a Warning"
        )
        assert [e["reason"] for e in warnings] == ["NoFeasiblePlan"]  # once, not every tick

    async def test_spec_that_bypassed_the_schema_names_the_field(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
            "placement": {"tensorParallel": 3},
        }
        await create(operator, LLAMA, llama(spec=spec))
        planned = await wait_condition(operator, "Planned", reason="InvalidSpec")
        assert planned["reason"] == "InvalidSpec"
        assert planned["message"].startswith("spec.placement.tensorParallel:")
        assert not exists(operator, DEPLOYMENTS, "chat-primary")

    async def test_unknown_model_offline_names_the_fields_to_set(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {"model": {"id": "example-org/not-in-any-cache"}}
        await create(operator, LLAMA, llama(spec=spec))
        planned = await wait_condition(operator, "Planned", reason="ModelFactsUnavailable")
        assert planned["reason"] == "ModelFactsUnavailable"
        assert "spec.model.parameters" in planned["message"]
        assert not exists(operator, DEPLOYMENTS, "chat-primary")


class TestBadEditKeepsServing:
    async def test_unplannable_edit_leaves_the_running_deployment_untouched(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        good_plan = await eventually(lambda: status_of(operator).get("plan"))
        # Once the operator's own writes are done, the Deployment as it stands is the mark.
        await settled()
        mark = len(list(operator))
        before = obj(operator, DEPLOYMENTS, "chat-primary")

        await patch(operator, LLAMA, "chat", {"metadata": {"generation": 2}, "spec": HUGE})
        planned = await eventually(
            lambda: (c := condition_of(operator, "Planned"))["status"] == "False" and c
        )
        assert "the last good plan keeps serving unchanged" in planned["message"]
        assert planned["observedGeneration"] == 2
        await asyncio.sleep(1.0)
        touched = [
            r
            for r in writes(operator, mark)
            if "/deployments/" in r.url.path or "/services/" in r.url.path
        ]
        assert touched == []
        assert obj(operator, DEPLOYMENTS, "chat-primary") == before
        status = await eventually(
            lambda: (s := status_of(operator)).get("phase") == "Degraded" and s,
            message="phase Degraded",
        )
        assert status["plan"] == good_plan
        assert status["phase"] == "Degraded"


class TestReadiness:
    async def test_ready_when_the_deployment_reports_ready_replicas(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: status_of(operator).get("phase") == "Pending")
        # What the Deployment controller would report once the engine's /health is OK.
        await patch(
            operator,
            DEPLOYMENTS,
            "chat-primary",
            {"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}},
            subresource="status",
        )
        status = await eventually(
            lambda: (s := status_of(operator)).get("phase") == "Ready" and s, message="Ready"
        )
        assert status["readyReplicas"] == status["replicas"] == 1
        await wait_condition(operator, "Ready", status="True")
        await wait_condition(operator, "Available", status="True")


DISCOVERY_CONFIG = "images: {vllm: 'vllm/vllm-openai:v0.11.0'}\n"  # no pools: discover


class TestDiscovery:
    @pytest.mark.operator_config(DISCOVERY_CONFIG)
    async def test_plans_on_pools_discovered_from_gpu_feature_discovery_labels(
        self, operator: ApplyingEmulator
    ) -> None:
        await create_node(operator, gpu_node("gpu-1", "NVIDIA-H100-80GB-HBM3", 8, 81559))
        await create(operator, LLAMA, llama())
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        plan = await eventually(lambda: status_of(operator).get("plan"))
        assert plan["pool"] == "nvidia-h100-80gb-hbm3"
        assert "costPerHour" not in plan  # discovered pools carry no price

    @pytest.mark.operator_config(DISCOVERY_CONFIG)
    async def test_no_pools_anywhere_is_a_clear_condition(self, operator: ApplyingEmulator) -> None:
        await create(operator, LLAMA, llama())
        planned = await wait_condition(operator, "Planned", reason="NoGPUPools")
        assert planned["reason"] == "NoGPUPools"
        assert not exists(operator, DEPLOYMENTS, "chat-primary")


class TestHubFacts:
    async def test_model_outside_the_catalog_is_sized_from_its_hub_config(
        self, operator: ApplyingEmulator
    ) -> None:
        # Served from the offline Hugging Face cache fixture through huggingface_hub.
        await create(operator, LLAMA, llama(spec={"model": {"id": "example-org/tiny-llama"}}))
        plan = await eventually(lambda: status_of(operator).get("plan"))
        assert "8.03B" in plan["reason"]
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        assert "example-org/tiny-llama" in container_args(deployment)


class TestEveryFieldIsActive:
    async def test_fallbacks_raise_no_warning_and_get_their_deployment(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
            "fallbacks": [
                {
                    "model": {"id": "meta-llama/Llama-3.2-1B-Instruct"},
                    "license": {"accept": True},  # Llama 3.2's licence, not the primary's
                }
            ],
            "license": {"accept": True},
        }
        await create(operator, LLAMA, llama(spec=spec))
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-fallback-0"))
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))
        status = await eventually(lambda: (s := status_of(operator)).get("activeModel") and s)
        assert "NotYetActive" not in {c["type"] for c in status["conditions"]}
        assert not any(e["reason"] == "FieldsNotActive" for e in events(operator))


async def create_node(cluster: ApplyingEmulator, node: dict[str, Any]) -> None:
    async with cluster.post("/api/v1/nodes", json=node) as response:
        assert response.status < 300
    assert exists_node(cluster, node["metadata"]["name"])


def exists_node(cluster: ApplyingEmulator, name: str) -> bool:
    return not cluster.objects[NODES, None, name].deleted
