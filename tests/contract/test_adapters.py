"""LoRA adapters end to end: real Kopf, real handlers, kmock, and the fixture Hub.

The adapters' ``adapter_config.json`` and cards come from ``tests/hubserver.py`` on
127.0.0.1 (``tests/fixtures/hub/adapters``), through the real ``huggingface_hub`` client.
A LlamaDeployment with adapters gets the engine's LoRA flags in its pod template,
``status.adapters`` and the ``AdaptersReady`` condition; an adapter whose card declares
another licence than the base model's is held back until accepted while the base and the
other adapters serve; the NOTICE in the licence ConfigMap names the adapters served.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LLAMA,
    SECRETS,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
    events,
    eventually,
    llama,
    obj,
    patch,
    secret,
    status_of,
    wait_condition,
)

import hubserver

LLAMA_31 = "meta-llama/Llama-3.1-8B-Instruct"
TOKEN = "hf_contract_adapter_token_7d1e0b"
SQL = {"name": "sql", "id": "example-org/llama31-sql-lora"}
SUPPORT = {"name": "support", "id": "example-org/llama31-support-lora"}
NON_COMMERCIAL = {"name": "nc", "id": "example-org/llama31-nc-lora"}


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[hubserver.HubFixture]:
    with hubserver.serving(monkeypatch) as running:
        # The base model is gated: the token is granted it (and, as the model's token, is
        # what the adapters are read with too).
        running.grant(LLAMA_31, TOKEN)
        yield running


def spec(*adapters: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {"id": LLAMA_31, "tokenSecretRef": {"name": "hf", "key": "token"}},
        "license": {"accept": True},
        "replicas": 1,
        "adapters": list(adapters),
    }


async def started(operator: ApplyingEmulator, *adapters: dict[str, Any]) -> None:
    await create(operator, SECRETS, secret("hf", {"token": TOKEN}))
    await create(operator, LLAMA, llama(spec=spec(*adapters)))


def served_args(operator: ApplyingEmulator) -> str:
    return " ".join(container_args(obj(operator, DEPLOYMENTS, "chat-primary")))


def adapter_status(operator: ApplyingEmulator) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in status_of(operator).get("adapters") or []}


async def test_two_adapters_are_served_reported_and_named_in_the_notice(
    operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
) -> None:
    await started(operator, SQL, SUPPORT)
    ready = await wait_condition(operator, "AdaptersReady", status="True")
    assert ready["reason"] == "AllServed"
    assert "sql, support" in ready["message"]

    reported = await eventually(lambda: adapter_status(operator) or None)
    assert reported["sql"]["served"] is True
    assert reported["sql"]["rank"] == 16
    assert reported["sql"]["targetModules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert reported["sql"]["baseModel"] == LLAMA_31
    assert reported["sql"]["license"] == "llama3.1"
    assert reported["sql"]["source"] == "example-org/llama31-sql-lora@main"
    # Its config names a local path; its card names the served model.
    assert reported["support"]["served"] is True
    assert reported["support"]["rank"] == 8

    # The engine serves both (vLLM multi-LoRA; the exact flags are serving.engines').
    args = await eventually(lambda: served_args(operator))
    assert "--enable-lora" in args
    assert "example-org/llama31-sql-lora" in args
    assert "example-org/llama31-support-lora" in args

    notice = await eventually(
        lambda: (
            obj(operator, CONFIGMAPS, "chat-license")["data"]["NOTICE"]
            if "llama31-sql-lora" in obj(operator, CONFIGMAPS, "chat-license")["data"]["NOTICE"]
            else None
        )
    )
    assert "example-org/llama31-support-lora" in notice
    assert LLAMA_31 in notice


async def test_another_licence_is_held_until_accepted_and_the_base_keeps_serving(
    operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
) -> None:
    await started(operator, SQL, NON_COMMERCIAL)
    held = await wait_condition(operator, "AdaptersReady", status="False")
    assert held["reason"] == "LicenseNotAccepted"
    assert "spec.adapters[1] (nc)" in held["message"]
    assert "cc-by-nc-4.0" in held["message"]
    assert "spec.adapters[1].license.accept: true" in held["message"]
    warning = await eventually(
        lambda: [e for e in events(operator) if e["reason"] == "LicenseNotAccepted"]
    )
    assert warning[0]["type"] == "Warning"

    # The base model and the other adapter serve meanwhile.
    args = await eventually(lambda: served_args(operator))
    assert "example-org/llama31-sql-lora" in args
    assert "example-org/llama31-nc-lora" not in args
    reported = await eventually(lambda: adapter_status(operator) or None)
    assert (reported["sql"]["served"], reported["nc"]["served"]) == (True, False)
    assert reported["nc"]["reason"] == "LicenseNotAccepted"
    assert reported["nc"]["license"] == "cc-by-nc-4.0"

    accepted = {**NON_COMMERCIAL, "license": {"accept": True}}
    await patch(operator, LLAMA, "chat", {"spec": {"adapters": [SQL, accepted]}})
    await wait_condition(operator, "AdaptersReady", status="True", reason="AllServed")
    await eventually(lambda: "example-org/llama31-nc-lora" in served_args(operator))
    await eventually(lambda: adapter_status(operator)["nc"]["served"] is True)
    recovered = await eventually(
        lambda: [
            e for e in events(operator) if e["reason"] == "AllServed" and e["type"] == "Normal"
        ]
    )
    assert "nc" in recovered[0]["message"]


async def test_an_adapter_of_another_base_or_missing_never_blocks_the_rest(
    operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
) -> None:
    small = {"name": "small", "id": "example-org/llama32-3b-lora"}
    gone = {"name": "gone", "id": "example-org/no-such-lora"}
    await started(operator, small, SQL, gone)
    held = await wait_condition(operator, "AdaptersReady", status="False")
    assert held["reason"] == "BaseModelMismatch"
    assert "spec.adapters[2] (gone)" in held["message"]
    reported = await eventually(lambda: adapter_status(operator) or None)
    assert reported["small"]["reason"] == "BaseModelMismatch"
    assert reported["gone"]["reason"] == "AdapterUnavailable"
    assert reported["sql"]["served"] is True
    args = await eventually(lambda: served_args(operator))
    assert "example-org/llama31-sql-lora" in args
    assert "example-org/llama32-3b-lora" not in args
    assert condition_of(operator, "Planned")["status"] == "True"
