"""Errors end in status, through the real Kopf runner (issue 15, items 3 and 8).

- A name no Service could have (kmock, like an API server whose CRD predates the CEL rule
  on metadata.name, accepts it): ``Planned`` False, reason ``InvalidName``, and no child.
- An apply the API server refuses: ``Reconciled`` False naming the child and what the API
  server said, written through Kopf's patch although the handler raised (Kopf applies a
  failed handler's patch), one Warning Event over the retries, no traceback; once the
  apply is accepted again, ``Reconciled`` True and a Normal Event.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LLAMA,
    SERVICES,
    ApplyingEmulator,
    condition_of,
    create,
    events,
    eventually,
    exists,
    llama,
    path,
    status_of,
    writes,
)

from llama_operator import api

REFUSAL = (
    'Service "chat-primary" is invalid: spec.ports[0].appProtocol: Invalid value: "http": '
    "refused by a test"
)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.exc_info is not None or "Traceback" in record.getMessage()
    ]


def applies(cluster: ApplyingEmulator, resource: str, name: str) -> int:
    return sum(
        1
        for request in writes(cluster)
        if str(request.method.value) == "PATCH" and request.url.path == path(resource, name)
    )


class TestInvalidName:
    @pytest.mark.parametrize("name", ["a.b.c", "x" * 60])
    async def test_a_name_no_service_could_have_gets_a_condition_and_no_child(
        self, operator: ApplyingEmulator, caplog: pytest.LogCaptureFixture, name: str
    ) -> None:
        await create(operator, LLAMA, llama(name))
        planned = await eventually(lambda: condition_of(operator, "Planned", name))
        assert (planned["status"], planned["reason"]) == ("False", "InvalidName")
        assert planned["message"].startswith("metadata.name")
        assert f"at most {api.MAX_NAME_LENGTH} characters" in planned["message"]
        assert "create it again" in planned["message"]
        assert status_of(operator, name)["phase"] == "Failed"
        await asyncio.sleep(1.5)  # several resyncs: still no child, one Warning
        children = [
            request.url.path
            for request in writes(operator)
            # The test's own creates (the API-key Secret, the LlamaDeployment), the
            # operator's status patches and Events are not children.
            if "/llamadeployments" not in request.url.path
            and not request.url.path.endswith(("/events", "/secrets"))
        ]
        assert children == []
        for resource, child in (
            (DEPLOYMENTS, f"{name}-primary"),
            (SERVICES, name),
            (CONFIGMAPS, f"{name}-license"),
        ):
            assert not exists(operator, resource, child)
        warnings = [e for e in events(operator) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["InvalidName"]
        assert tracebacks(caplog) == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


class TestReconcileErrors:
    async def test_a_refused_apply_is_reported_retried_and_healed(
        self, operator: ApplyingEmulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        operator.refuse(SERVICES, "chat-primary", status=422, reason="Invalid", message=REFUSAL)
        await create(operator, LLAMA, llama())
        reconciled = await eventually(
            lambda: (c := condition_of(operator, "Reconciled"))["status"] == "False" and c,
            message="Reconciled=False",
        )
        assert reconciled["reason"] == "APIError"
        assert reconciled["message"].startswith(
            "apply Service/chat-primary: the API server answered 422 Invalid: "
            'Service "chat-primary" is invalid'
        )
        # Kopf retries: several refused applies, and still one Warning.
        await eventually(
            lambda: applies(operator, SERVICES, "chat-primary") >= 4,
            message="four refused applies",
        )
        warnings = [e for e in events(operator) if e["type"] == "Warning"]
        assert [(e["reason"], e["message"]) for e in warnings] == [
            ("APIError", reconciled["message"])
        ]
        # No traceback: one line per retry, naming the child.
        assert tracebacks(caplog) == []
        retried = [r.getMessage() for r in caplog.records if "failed temporarily" in r.getMessage()]
        assert len(retried) >= 2
        assert all("apply Service/chat-primary" in line for line in retried)

        operator.allow(SERVICES, "chat-primary")
        healed = await eventually(
            lambda: (c := condition_of(operator, "Reconciled"))["status"] == "True" and c,
            message="Reconciled=True",
        )
        assert healed["reason"] == "Succeeded"
        assert exists(operator, SERVICES, "chat-primary")
        assert status_of(operator)["plan"]["engine"] == "vllm"
        recovered = await eventually(
            lambda: [e for e in events(operator) if e["reason"] == "Succeeded"],
            message="the Normal Event",
        )
        assert [e["type"] for e in recovered] == ["Normal"]
        warnings = [e for e in events(operator) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["APIError"]
