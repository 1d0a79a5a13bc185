"""What happens while the operator is down: real Kopf, stopped and started again, on kmock.

Each test runs the operator twice in one event loop (the ``start_operator`` fixture), the
second time as a new process would: a fresh Kopf memo per object, so nothing is remembered
of the first run but what the API server holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

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


Start = Callable[[], contextlib.AbstractAsyncContextManager[None]]


def primary_container(cluster: ApplyingEmulator) -> dict[str, object]:
    return dict(
        obj(cluster, DEPLOYMENTS, "chat-primary")["spec"]["template"]["spec"]["containers"][0]
    )


class TestDriftWhileDown:
    async def test_a_hand_edit_made_while_the_operator_was_down_is_reverted(
        self, cluster: ApplyingEmulator, start_operator: Start
    ) -> None:
        async with start_operator():
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

        async with start_operator():
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

    async def test_a_restart_without_edits_changes_nothing(
        self, cluster: ApplyingEmulator, start_operator: Start
    ) -> None:
        async with start_operator():
            await create(cluster, LLAMA, llama())
            await eventually(
                lambda: condition_of(cluster, "Planned")["status"] == "True", message="Planned"
            )
            await eventually(lambda: primary_container(cluster), message="Deployment")
        before = obj(cluster, DEPLOYMENTS, "chat-primary")

        async with start_operator():
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
