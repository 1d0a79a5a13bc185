"""Licence compliance end to end: real Kopf, real handlers, kmock, and a fixture Hub.

The Hub is ``tests/hubserver.py`` on 127.0.0.1, reached by the real ``huggingface_hub``
client through ``HF_ENDPOINT``: model cards (licence, base models, gating) and the
auth-check route. Gated access is re-checked quickly here (operator config
``hub.accessRetrySeconds``) so "access granted later" is seen within a test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LLAMA,
    POOLS_YAML,
    SECRETS,
    SERVICES,
    ApplyingEmulator,
    condition_of,
    create,
    events,
    eventually,
    exists,
    llama,
    obj,
    patch,
    secret,
    settled,
    status_of,
    wait_condition,
)

import hubserver
from llama_operator.serving import builders

LLAMA_31 = "meta-llama/Llama-3.1-8B-Instruct"
AUP_31 = "https://llama.meta.com/llama3_1/use-policy"
NOTICE_31 = (
    "Llama 3.1 is licensed under the Llama 3.1 Community License, "
    "Copyright © Meta Platforms, Inc. All Rights Reserved.\nBuilt with Llama\n"
)
TOKEN = "hf_contract_planted_token_4f9c2e"
QUICK_RECHECK = (
    POOLS_YAML.read_text() + "\nhub: {accessRetrySeconds: 0.2, accessMaxRetrySeconds: 0.2}\n"
)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[hubserver.HubFixture]:
    with hubserver.serving(monkeypatch) as running:
        yield running


async def token_secret(cluster: ApplyingEmulator) -> None:
    await create(cluster, SECRETS, secret("hf", {"token": TOKEN}))


def gated_spec(*, accept: bool = True) -> dict[str, Any]:
    return {
        "model": {"id": LLAMA_31, "tokenSecretRef": {"name": "hf", "key": "token"}},
        "license": {"accept": accept},
    }


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


def everything_written(cluster: ApplyingEmulator) -> str:
    """Every request body the API saw: objects, status patches, Events."""
    return "\n".join(json.dumps(r.data, ensure_ascii=False, default=str) for r in list(cluster))


class TestAcceptance:
    async def test_not_accepted_no_deployment_then_accepting_starts_serving(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama(spec={"model": {"id": LLAMA_31}, "replicas": 1}))
        accepted = await wait_condition(operator, "LicenseAccepted", reason="NotAccepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "NotAccepted")
        assert AUP_31 in accepted["message"]
        assert "spec.license.accept: true" in accepted["message"]
        warning = await eventually(
            lambda: [e for e in events(operator) if e["reason"] == "NotAccepted"]
        )
        assert warning[0]["type"] == "Warning"
        assert AUP_31 in warning[0]["message"]
        assert "spec.license.accept" in warning[0]["message"]
        # The licence ConfigMap and the Services exist; serving pods do not.
        await eventually(lambda: exists(operator, CONFIGMAPS, "chat-license"))
        await eventually(lambda: exists(operator, SERVICES, "chat"))
        await asyncio.sleep(1.0)  # several resyncs: still no serving pods
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        status = status_of(operator)
        assert status["phase"] == "Pending"
        assert status["license"]["id"] == "llama3.1"
        assert status["license"]["accepted"] is False
        assert len([e for e in events(operator) if e["reason"] == "NotAccepted"]) == 1

        await patch(operator, LLAMA, "chat", {"spec": {"license": {"accept": True}}})
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        pod = pod_spec(deployment)
        (volume,) = [v for v in pod["volumes"] if v["name"] == "licenses"]
        assert volume["configMap"]["name"] == "chat-license"
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "licenses"]
        assert (mount["mountPath"], mount["readOnly"]) == ("/licenses", True)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["llamaops.dev/license"] == "llama3.1"
        assert annotations["llamaops.dev/aup-url"] == AUP_31
        await eventually(lambda: condition_of(operator, "LicenseAccepted")["status"] == "True")
        await eventually(lambda: status_of(operator)["license"]["accepted"] is True)

    async def test_configmap_carries_the_exact_notice_and_services_are_annotated(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        config_map = await eventually(lambda: obj(operator, CONFIGMAPS, "chat-license"))
        assert config_map["data"]["NOTICE"] == NOTICE_31
        assert config_map["data"]["AUP_URL"] == AUP_31 + "\n"
        assert config_map["data"]["LICENSE_URL"].startswith("https://github.com/meta-llama/")
        assert "Obligations:" in config_map["data"]["README"]
        (owner,) = config_map["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-chat"
        for name in ("chat", "chat-primary"):
            service = await eventually(lambda n=name: obj(operator, SERVICES, n))
            assert service["metadata"]["annotations"]["llamaops.dev/license"] == "llama3.1"
            assert service["metadata"]["annotations"]["llamaops.dev/aup-url"] == AUP_31
        status = await eventually(lambda: status_of(operator).get("license"))
        assert status["notice"] + "\nBuilt with Llama\n" == NOTICE_31
        assert status["aupURL"] == AUP_31
        assert status["attribution"] == "Built with Llama"

    async def test_revoking_acceptance_while_serving_is_refused_and_reported(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())
        before = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: status_of(operator).get("license", {}).get("accepted"))
        await settled()  # the operator's own writes so far are done: count from here
        since = len(list(operator))
        await patch(operator, LLAMA, "chat", {"spec": {"license": {"accept": False}}})
        revoked = await eventually(
            lambda: (
                (c := condition_of(operator, "LicenseAccepted"))["reason"] == "AcceptanceRevoked"
                and c
            )
        )
        assert revoked["status"] == "False"
        assert "refused" in revoked["message"]
        await eventually(lambda: any(e["reason"] == "AcceptanceRevoked" for e in events(operator)))
        await asyncio.sleep(1.0)
        after = obj(operator, DEPLOYMENTS, "chat-primary")
        hash_key = builders.HASH_ANNOTATION
        assert (
            after["metadata"]["annotations"][hash_key]
            == (before["metadata"]["annotations"][hash_key])
        )
        touched = [
            r
            for r in list(operator)[since:]
            if str(r.method.value) in ("PATCH", "PUT", "DELETE") and "/deployments/" in r.url.path
        ]
        assert touched == []  # not deleted, not scaled, not changed


@pytest.mark.operator_config(QUICK_RECHECK)
class TestGatedAccess:
    async def test_no_grant_no_deployment_then_a_grant_starts_serving(
        self, operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
    ) -> None:
        fake_hub.valid_tokens.add(TOKEN)  # a real token, not (yet) granted the gated repo
        await token_secret(operator)
        await create(operator, LLAMA, llama(spec=gated_spec()))
        accessible = await wait_condition(operator, "ModelAccessible", reason="NotGranted")
        assert (accessible["status"], accessible["reason"]) == ("False", "NotGranted")
        assert f"{fake_hub.url}/{LLAMA_31}" in accessible["message"]
        await eventually(lambda: any(e["reason"] == "NotGranted" for e in events(operator)))
        await asyncio.sleep(1.0)
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        assert status_of(operator)["phase"] == "Pending"

        fake_hub.grant(LLAMA_31, TOKEN)  # access granted on the Hub, nothing edited here
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: condition_of(operator, "ModelAccessible")["reason"] == "Granted")
        checks = [r for r in fake_hub.seen() if r.path.endswith("/auth-check")]
        assert len(checks) >= 2
        assert all(r.had_authorization for r in checks)

    async def test_a_bad_token_is_reported_and_serves_nothing(
        self, operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
    ) -> None:
        await token_secret(operator)  # the fixture Hub does not know this token
        await create(operator, LLAMA, llama(spec=gated_spec()))
        accessible = await wait_condition(operator, "ModelAccessible", reason="BadToken")
        assert (accessible["status"], accessible["reason"]) == ("False", "BadToken")
        assert "spec.model.tokenSecretRef" in accessible["message"]
        await asyncio.sleep(0.5)
        assert not exists(operator, DEPLOYMENTS, "chat-primary")

    async def test_gated_without_a_token_names_the_field(
        self, operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
    ) -> None:
        await create(operator, LLAMA, llama())  # accepted, but no tokenSecretRef
        accessible = await wait_condition(operator, "ModelAccessible", reason="TokenRequired")
        assert (accessible["status"], accessible["reason"]) == ("False", "TokenRequired")
        assert "spec.model.tokenSecretRef" in accessible["message"]
        assert not exists(operator, DEPLOYMENTS, "chat-primary")

    async def test_the_token_is_never_in_status_events_objects_or_logs(
        self,
        operator: ApplyingEmulator,
        fake_hub: hubserver.HubFixture,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake_hub.valid_tokens.add(TOKEN)
        await token_secret(operator)
        await create(operator, LLAMA, llama(spec=gated_spec()))
        await eventually(
            lambda: condition_of(operator, "ModelAccessible")["reason"] == "NotGranted"
        )
        fake_hub.grant(LLAMA_31, TOKEN)
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))
        written = everything_written(operator)
        assert TOKEN not in written.replace(base64.b64encode(TOKEN.encode()).decode(), "")
        assert base64.b64encode(TOKEN.encode()).decode() not in json.dumps(status_of(operator))
        assert TOKEN not in caplog.text
        assert TOKEN not in json.dumps(fake_hub.seen())


class TestDetectionFromTheHub:
    async def test_a_fine_tune_is_held_under_its_base_licence(
        self, operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
    ) -> None:
        spec = {
            "model": {
                "id": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                "parameters": "8.03B",
                "layers": 32,
                "attentionHeads": 32,
                "kvHeads": 8,
                "headDim": 128,
                "maxContext": 131072,
            }
        }
        await create(operator, LLAMA, llama(spec=spec))
        found = await eventually(lambda: status_of(operator).get("license"))
        assert (found["id"], found["source"]) == ("llama3.1", "base-model")
        assert "meta-llama/Llama-3.1-8B" in found["detail"]
        assert "'mit'" in found["detail"]  # what its own card claims
        accepted = await wait_condition(operator, "LicenseAccepted", reason="NotAccepted")
        assert accepted["reason"] == "NotAccepted"
        await asyncio.sleep(0.5)
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        cards = [r.path for r in fake_hub.seen() if r.path.startswith("/api/models/")]
        assert "/api/models/deepseek-ai/DeepSeek-R1-Distill-Llama-8B/revision/main" in cards

    async def test_a_research_only_licence_serves_with_a_warning(
        self, operator: ApplyingEmulator, fake_hub: hubserver.HubFixture
    ) -> None:
        spec = {
            "model": {
                "id": "mistralai/Mistral-Large-Instruct-2407",
                "parameters": "123B",
                "layers": 88,
                "attentionHeads": 96,
                "kvHeads": 8,
                "headDim": 128,
                "maxContext": 32768,
                "tokenSecretRef": {"name": "hf", "key": "token"},
            },
            "placement": {"quantization": "auto", "optimize": "cost"},
        }
        fake_hub.grant("mistralai/Mistral-Large-Instruct-2407", TOKEN)
        await token_secret(operator)
        await create(operator, LLAMA, llama(spec=spec))
        restricted = await wait_condition(operator, "LicenseRestricted", reason="RestrictedLicense")
        assert (restricted["status"], restricted["reason"]) == ("True", "RestrictedLicense")
        assert "research use only" in restricted["message"]
        assert status_of(operator)["license"]["id"] == "mrl"
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: any(e["reason"] == "RestrictedLicense" for e in events(operator)))
