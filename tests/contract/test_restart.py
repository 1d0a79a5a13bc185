"""What happens while the operator is down: real Kopf, stopped and started again, on kmock.

Each test runs the operator twice in one event loop (``running``), the second time as a
new process would: a fresh Kopf memo per object, so nothing is remembered of the first
run but what the API server holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import kopf
from kube import (
    DEPLOYMENTS,
    LLAMA,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    events,
    eventually,
    llama,
    obj,
    patch,
)

EVIL_IMAGE = "evil/image:latest"


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[None]:
    """The operator, from start to a clean stop (bounded: a hang fails the test)."""
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop))
    try:
        yield
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=20)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
        assert done, "the operator did not stop within 30 s"


def primary_container(cluster: ApplyingEmulator) -> dict[str, object]:
    return dict(
        obj(cluster, DEPLOYMENTS, "chat-primary")["spec"]["template"]["spec"]["containers"][0]
    )


class TestDriftWhileDown:
    async def test_a_hand_edit_made_while_the_operator_was_down_is_reverted(
        self, cluster: ApplyingEmulator
    ) -> None:
        async with running():
            await create(cluster, LLAMA, llama())
            await eventually(
                lambda: condition_of(cluster, "Planned")["status"] == "True", message="Planned"
            )
            good = await eventually(lambda: primary_container(cluster), message="Deployment")
        generation = obj(cluster, DEPLOYMENTS, "chat-primary")["metadata"]["generation"]

        # Operator stopped: someone swaps the image and adds an argument, as in issue 15.
        # The hash annotation is untouched, so memory of it cannot show the edit.
        edited = {
            **good,
            "image": EVIL_IMAGE,
            "args": [
                *container_args(obj(cluster, DEPLOYMENTS, "chat-primary")),
                "--trust-remote-code",
            ],
        }
        await patch(
            cluster,
            DEPLOYMENTS,
            "chat-primary",
            {"spec": {"template": {"spec": {"containers": [edited]}}}},
        )
        assert primary_container(cluster)["image"] == EVIL_IMAGE
        edited_generation = obj(cluster, DEPLOYMENTS, "chat-primary")["metadata"]["generation"]
        assert edited_generation > generation

        async with running():
            # Within one resync of the new process: our fields are back ...
            restored = await eventually(
                lambda: (c := primary_container(cluster))["image"] == good["image"] and c,
                message="the operator's image back on chat-primary",
            )
            assert restored["args"] == good["args"]
            # ... and a Warning says what was reverted.
            (drift,) = await eventually(
                lambda: [e for e in events(cluster) if e["reason"] == "DriftReverted"],
                message="DriftReverted Event",
            )
        assert drift["type"] == "Warning"
        assert "Deployment/chat-primary" in drift["message"]

    async def test_a_restart_without_edits_changes_nothing(self, cluster: ApplyingEmulator) -> None:
        async with running():
            await create(cluster, LLAMA, llama())
            await eventually(
                lambda: condition_of(cluster, "Planned")["status"] == "True", message="Planned"
            )
            await eventually(lambda: primary_container(cluster), message="Deployment")
        before = obj(cluster, DEPLOYMENTS, "chat-primary")

        async with running():
            # The restart's first reconcile applies each child once; wait until it has
            # (its Planned condition is rewritten by the same reconcile only if it changed,
            # so wait on the apply itself: the resourceVersion moves in kmock).
            await eventually(
                lambda: (
                    obj(cluster, DEPLOYMENTS, "chat-primary")["metadata"]["resourceVersion"]
                    != before["metadata"]["resourceVersion"]
                ),
                message="the first-sight apply",
            )
            after = obj(cluster, DEPLOYMENTS, "chat-primary")
            assert after["metadata"]["generation"] == before["metadata"]["generation"]
            assert after["spec"] == before["spec"]
            assert not [e for e in events(cluster) if e["reason"] == "DriftReverted"]
