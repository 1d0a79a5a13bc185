"""Contradictions a spec carries are said in status, end to end: real Kopf, real handlers,
kmock as the API server (issue 15, item 5).

- spec.engineArgs that override a planned flag: ``EngineArgs`` False, ``OverridesPlan``,
  and the pods run with the user's value; a flag the operator owns (the port): ``EngineArgs``
  False, ``Refused``, and no serving Deployment.
- A fallback no pool can serve: ``FallbacksPlanned`` False, ``FallbackNotPlanned``, naming
  its index; the primary is built and serves regardless.
Each test waits for the condition it asserts, which the status patch after the applies
carries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kube import (
    DEPLOYMENTS,
    LLAMA,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    events,
    eventually,
    exists,
    llama,
    obj,
)

MODEL = {"id": "meta-llama/Llama-3.1-8B-Instruct"}
HUGE = "meta-llama/Llama-3.1-405B-Instruct"


def reason_of(cluster: ApplyingEmulator, type_: str, reason: str) -> dict[str, Any] | None:
    """The condition once it has ``reason`` (None before)."""
    found = condition_of(cluster, type_)
    return found if found["reason"] == reason else None


async def test_an_engine_arg_overriding_the_plan_is_a_warning_condition(
    operator: ApplyingEmulator,
) -> None:
    spec = {"model": MODEL, "license": {"accept": True}, "engineArgs": ["--max-model-len=4096"]}
    await create(operator, LLAMA, llama(spec=spec))
    found = await eventually(
        lambda: reason_of(operator, "EngineArgs", "OverridesPlan"), message="OverridesPlan"
    )
    assert found["status"] == "False"
    assert found["message"].startswith(
        "spec.engineArgs override planned flags, and the pods run with these values: "
        "--max-model-len 4096 (planned "
    )
    assert "instead set spec.placement.maxModelLen" in found["message"]
    # The user's value wins: it is last on the command line.
    deployment = obj(operator, DEPLOYMENTS, "chat-primary")
    assert container_args(deployment)[-1] == "--max-model-len=4096"
    await eventually(
        lambda: (
            "OverridesPlan" in [e["reason"] for e in events(operator) if e["type"] == "Warning"]
        ),
        message="the OverridesPlan Warning",
    )


async def test_an_engine_arg_the_operator_owns_holds_serving(operator: ApplyingEmulator) -> None:
    spec = {"model": MODEL, "license": {"accept": True}, "engineArgs": ["--port", "9000"]}
    await create(operator, LLAMA, llama(spec=spec))
    found = await eventually(
        lambda: reason_of(operator, "EngineArgs", "Refused"), message="EngineArgs Refused"
    )
    assert found["status"] == "False"
    assert "--port 9000 (the Service and the probes use port 8000; remove it)" in found["message"]
    await asyncio.sleep(1.5)  # three resyncs: still nothing serves
    assert not exists(operator, DEPLOYMENTS, "chat-primary")
    warnings = [e["reason"] for e in events(operator) if e["type"] == "Warning"]
    assert "Refused" in warnings


async def test_an_unplaceable_fallback_is_a_warning_condition(operator: ApplyingEmulator) -> None:
    spec = {
        "model": MODEL,
        "license": {"accept": True},
        "placement": {"pools": ["l4"]},
        "fallbacks": [{"model": {"id": HUGE}, "license": {"accept": True}}],
    }
    await create(operator, LLAMA, llama(spec=spec))
    found = await eventually(
        lambda: reason_of(operator, "FallbacksPlanned", "FallbackNotPlanned"),
        message="FallbacksPlanned FallbackNotPlanned",
    )
    assert found["status"] == "False"
    assert found["message"].startswith(f"spec.fallbacks[0] ({HUGE}) cannot be placed: ")
    assert "remove it from spec.fallbacks" in found["message"]
    # What serves is built as if the fallback were not there; the fallback gets nothing.
    assert exists(operator, DEPLOYMENTS, "chat-primary")
    assert not exists(operator, DEPLOYMENTS, "chat-fallback-0")
    await eventually(
        lambda: (
            "FallbackNotPlanned"
            in [e["reason"] for e in events(operator) if e["type"] == "Warning"]
        ),
        message="the FallbackNotPlanned Warning",
    )
