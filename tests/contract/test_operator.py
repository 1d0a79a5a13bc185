"""The operator loop end to end: real Kopf, real handlers, kmock as the API server."""

from __future__ import annotations

from typing import Any

from kube import (
    DEPLOYMENTS,
    LLAMA,
    NETWORKPOLICIES,
    SERVICES,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    events,
    eventually,
    exists,
    llama,
    obj,
    patch,
    settled,
    status_of,
    wait_condition,
    writes,
)

from llama_operator.runtime import handlers
from llama_operator.serving import builders


class TestCreate:
    async def test_creates_children_with_owner_references_and_writes_plan(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())

        deployment = await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-primary"), message="Deployment"
        )
        entry = await eventually(lambda: obj(operator, SERVICES, "chat"), message="Service")
        variant = await eventually(lambda: obj(operator, SERVICES, "chat-primary"))
        for child in (deployment, entry, variant):
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner == {
                "apiVersion": "llamaops.dev/v1alpha1",
                "kind": "LlamaDeployment",
                "name": "chat",
                "uid": "uid-chat",
                "controller": True,
                "blockOwnerDeletion": True,
            }
            assert child["metadata"]["labels"]["llamaops.dev/deployment"] == "chat"
        assert "meta-llama/Llama-3.1-8B-Instruct" in container_args(deployment)

        plan = await eventually(lambda: status_of(operator).get("plan"), message="status.plan")
        assert plan["engine"] == "vllm"
        assert plan["gpusPerReplica"] == plan["tensorParallel"] >= 1
        assert plan["reason"]
        planned = await wait_condition(operator, "Planned", status="True")
        assert planned["status"] == "True"
        assert planned["observedGeneration"] == 1
        status = status_of(operator)
        assert status["selector"] == "llamaops.dev/deployment=chat,llamaops.dev/variant=primary"
        assert status["phase"] == "Pending"  # no pods yet: nothing runs the Deployment here

    async def test_applies_server_side_under_one_field_manager(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        await eventually(lambda: exists(operator, SERVICES, "chat-primary"))
        await eventually(lambda: exists(operator, NETWORKPOLICIES, "chat"))
        wanted = {
            "/api/v1/namespaces/ai/configmaps/chat-license",
            "/apis/apps/v1/namespaces/ai/deployments/chat-primary",
            "/api/v1/namespaces/ai/services/chat",
            "/api/v1/namespaces/ai/services/chat-primary",
            "/apis/networking.k8s.io/v1/namespaces/ai/networkpolicies/chat",
        }

        def applied() -> list[Any]:
            found = [
                r for r in list(operator) if "apply-patch" in r.headers.get("Content-Type", "")
            ]
            return found if wanted <= {r.url.path for r in found} else []

        # Every child applied (in whatever order), then: those, and nothing else.
        applies = await eventually(applied, message="an apply of every child")
        assert {r.url.path for r in applies} == wanted
        assert {r.params["fieldManager"] for r in applies} == {"llama-operator"}
        assert {r.params["force"] for r in applies} == {"true"}


class TestIdempotency:
    async def test_second_reconcile_of_unchanged_object_writes_nothing(
        self, operator: ApplyingEmulator, monkeypatch: Any
    ) -> None:
        await create(operator, LLAMA, llama())
        await eventually(lambda: status_of(operator).get("plan"))
        await eventually(lambda: exists(operator, SERVICES, "chat-primary"))
        # Let our own writes settle before counting: the first reconcile's Events posted
        # (after its status patch), then a reconcile that applies nothing.
        await eventually(
            lambda: {"Planned", "Applied"} <= {e["reason"] for e in events(operator)},
            message="the first reconcile's Events",
        )
        await settled()
        before = len(list(operator))
        ticks = 0
        original = handlers._reconcile

        def counting(*args: Any, **kwargs: Any) -> None:
            nonlocal ticks
            ticks += 1
            original(*args, **kwargs)

        monkeypatch.setattr(handlers, "_reconcile", counting)
        await eventually(lambda: ticks >= 3, message="three timer reconciles")
        found = [(r.method.value, r.url.path, r.data) for r in writes(operator, before)]
        assert found == []


class TestUpdate:
    async def test_changing_the_model_updates_the_deployment(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        first = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        old_hash = first["metadata"]["annotations"][builders.HASH_ANNOTATION]

        await patch(
            operator,
            LLAMA,
            "chat",
            {
                "metadata": {"generation": 2},
                "spec": {"model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}},
            },
        )
        updated = await eventually(
            lambda: (
                (d := obj(operator, DEPLOYMENTS, "chat-primary"))
                and "meta-llama/Llama-3.2-3B-Instruct" in container_args(d)
                and d
            ),
            message="Deployment with the new model",
        )
        assert updated["metadata"]["annotations"][builders.HASH_ANNOTATION] != old_hash
        await eventually(
            lambda: condition_of(operator, "Planned")["observedGeneration"] == 2,
            message="Planned condition for generation 2",
        )


class TestDrift:
    async def test_an_outside_edit_of_the_deployment_is_reverted(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        ours = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: status_of(operator).get("plan"))
        await settled()  # the edit comes after the operator's own writes, as drift does
        template = ours["spec"]["template"]
        edited = {**template["spec"]["containers"][0], "args": ["--evil"]}
        await patch(
            operator,
            DEPLOYMENTS,
            "chat-primary",
            {"spec": {"template": {"spec": {"containers": [edited]}}}},
        )
        restored = await eventually(
            lambda: (
                (d := obj(operator, DEPLOYMENTS, "chat-primary"))
                and container_args(d) == container_args(ours)
                and d
            ),
            message="our args back on the Deployment",
        )
        assert restored["metadata"]["generation"] > ours["metadata"]["generation"] + 1
