"""Secure by default, end to end: real Kopf, real handlers, kmock as the API server.

API keys are required unless a spec (or the operator config) says otherwise: without a
key no Deployment is created and the ``Authenticated`` condition names the field; with
one the engine reads it from the Secret and no key material is in the Deployment. Every
endpoint gets a NetworkPolicy that selects exactly its serving pods. (That no Secret
value reaches a log line, an Event, status or an object is checked after every contract
test, by ``conftest.assert_no_secret_leaks``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest
from kube import (
    API_KEY_SECRET,
    DEPLOYMENTS,
    LLAMA,
    NETWORKPOLICIES,
    PLANTED_API_KEY,
    SECRETS,
    SERVICES,
    ApplyingEmulator,
    assert_no_secret_leaks,
    condition_of,
    create,
    events,
    eventually,
    exists,
    llama,
    obj,
    secret,
    status_of,
    wait_condition,
)

from labelselector import matches

MODEL = {"id": "meta-llama/Llama-3.1-8B-Instruct"}
NO_KEY = {"model": MODEL, "license": {"accept": True}, "auth": {}}


def container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


class TestAPIKeyRequired:
    async def test_without_a_key_no_deployment_and_a_condition_naming_the_field(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama(spec=NO_KEY))
        found = await wait_condition(operator, "Authenticated", reason="APIKeyRequired")
        assert (found["status"], found["reason"]) == ("False", "APIKeyRequired")
        assert found["message"].startswith("spec.auth.apiKeySecretRef is required")
        assert "kubectl create secret generic" in found["message"]
        await asyncio.sleep(1.5)  # three resyncs: still nothing serves
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        # The rest is laid out (and guarded), so adding the key is all that is left.
        assert exists(operator, SERVICES, "chat")
        assert exists(operator, NETWORKPOLICIES, "chat")
        assert status_of(operator)["phase"] == "Pending"
        # Events are posted after the status patch: wait for the Warning, then see it alone.
        warnings = await eventually(
            lambda: [e for e in events(operator) if e["type"] == "Warning"], message="a Warning"
        )
        assert [e["reason"] for e in warnings] == ["APIKeyRequired"]

    async def test_a_missing_secret_holds_until_it_is_created(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {**NO_KEY, "auth": {"apiKeySecretRef": {"name": "later", "key": "k"}}}
        await create(operator, LLAMA, llama(spec=spec))
        found = await eventually(
            lambda: (
                condition_of(operator, "Authenticated")["reason"] == "SecretMissing"
                and condition_of(operator, "Authenticated")
            ),
            message="SecretMissing",
        )
        assert "Secret 'later' (key 'k')" in found["message"]
        assert not exists(operator, DEPLOYMENTS, "chat-primary")
        await create(operator, SECRETS, secret("later", {"k": "sk-planted-later-0b1c2d3e4f"}))
        deployment = await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-primary"), message="Deployment"
        )
        env = {item["name"]: item for item in container(deployment)["env"]}
        assert env["VLLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "later", "key": "k"}}
        await eventually(lambda: condition_of(operator, "Authenticated")["status"] == "True")

    async def test_optional_serves_without_a_key(self, operator: ApplyingEmulator) -> None:
        await create(operator, LLAMA, llama(spec={**NO_KEY, "auth": {"mode": "optional"}}))
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        names = {item["name"] for item in container(deployment)["env"]}
        assert "VLLM_API_KEY" not in names
        # The status patch lands after the Deployment's apply: wait for the condition itself.
        found = await eventually(
            lambda: (
                (c := condition_of(operator, "Authenticated"))["reason"] == "AuthOptional" and c
            ),
            message="Authenticated AuthOptional",
        )
        assert found["status"] == "False"


class TestWithAKey:
    async def test_the_engine_reads_the_key_from_the_secret_and_nothing_else_holds_it(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama())  # names the planted API_KEY_SECRET
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        engine = container(deployment)
        env = {item["name"]: item for item in engine["env"]}
        assert env["VLLM_API_KEY"] == {
            "name": "VLLM_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": "api-key"}},
        }
        assert not any(arg.startswith("--api-key") for arg in engine["args"])
        assert PLANTED_API_KEY not in json.dumps(deployment)
        found = await wait_condition(operator, "Authenticated", reason="APIKey")
        assert (found["status"], found["reason"]) == ("True", "APIKey")
        # The probes need no key: they use the engine's open /health.
        assert engine["readinessProbe"]["httpGet"]["path"] == "/health"

    async def test_tgi_gets_the_key_as_its_launcher_variable(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {"model": MODEL, "license": {"accept": True}, "engine": "tgi"}
        await create(operator, LLAMA, llama(spec=spec))
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        env = {item["name"]: item for item in container(deployment)["env"]}
        assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == API_KEY_SECRET
        assert PLANTED_API_KEY not in json.dumps(deployment)


class TestNetworkPolicy:
    async def test_present_and_selecting_exactly_the_serving_pods(
        self, operator: ApplyingEmulator
    ) -> None:
        with_fallback = {
            "model": MODEL,
            "license": {"accept": True},
            "fallbacks": [
                {"model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}, "license": {"accept": True}}
            ],
        }
        await create(operator, LLAMA, llama("chat", spec=with_fallback))
        await create(operator, LLAMA, llama("chat-2"))
        for name in ("chat-primary", "chat-fallback-0", "chat-2-primary"):
            await eventually(lambda name=name: exists(operator, DEPLOYMENTS, name), message=name)
        policy = await eventually(lambda: obj(operator, NETWORKPOLICIES, "chat"))
        assert kubernetes_validate.validate(
            policy, kubernetes_validate.latest_version(), strict=True
        )
        assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-chat"
        deployments = {
            key[2]: stored.raw
            for key, stored in list(operator.objects.items())
            if key[0] == DEPLOYMENTS and not stored.deleted
        }
        selector = policy["spec"]["podSelector"]
        chosen = {
            name
            for name, deployment in deployments.items()
            if matches(selector, deployment["spec"]["template"]["metadata"]["labels"])
        }
        assert chosen == {"chat-primary", "chat-fallback-0"}
        # Only the serving port, only from this namespace, the operator and monitoring.
        ingress = policy["spec"]["ingress"]
        assert all(rule["ports"] == [{"protocol": "TCP", "port": 8000}] for rule in ingress)
        assert ingress[0]["from"] == [{"podSelector": {}}]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        await eventually(lambda: status_of(operator).get("networkPolicy") == "chat")

    async def test_restricted_egress_and_switching_the_policy_off(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {
            "model": MODEL,
            "license": {"accept": True},
            "network": {"egress": {"restrict": True}},
        }
        await create(operator, LLAMA, llama(spec=spec))
        policy = await eventually(lambda: obj(operator, NETWORKPOLICIES, "chat"))
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert [rule.get("ports") for rule in policy["spec"]["egress"]] == [
            [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            [{"protocol": "TCP", "port": 443}],
        ]
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))
        async with operator.patch(
            "/apis/llamaops.dev/v1alpha1/namespaces/ai/llamadeployments/chat",
            json={"spec": {"network": {"policy": False}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status < 300
        await eventually(lambda: not exists(operator, NETWORKPOLICIES, "chat"), message="deleted")
        await eventually(lambda: status_of(operator).get("networkPolicy") is None)
        assert exists(operator, DEPLOYMENTS, "chat-primary")  # nothing else goes with it


class TestTheLeakCheck:
    async def test_it_finds_a_planted_value_in_a_log_line_or_an_api_write(
        self, operator: ApplyingEmulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        # The check after every contract test is only worth something if it can fail.
        assert_no_secret_leaks(operator, caplog)
        logging.getLogger("llama_operator.leak-check").debug("key=%s", PLANTED_API_KEY)
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_secret_leaks(operator, caplog)
        caplog.clear()


class TestEngineReleaseAndPodSecurity:
    """Through the real Kopf runner: status names the engine release and the Pod Security
    level, and TGI's root is said once, as a Warning, with the key still out of its log."""

    async def test_vllm_is_verified_and_restricted(self, operator: ApplyingEmulator) -> None:
        await create(operator, LLAMA, llama())
        profile = await wait_condition(operator, "EngineProfile", reason="Verified")
        assert (profile["status"], profile["reason"]) == ("True", "Verified")
        assert profile["message"].startswith("vLLM 0.34.0 (from the image tag)")
        security = await wait_condition(operator, "PodSecurity", reason="Restricted")
        assert (security["status"], security["reason"]) == ("True", "Restricted")
        assert status_of(operator)["plan"]["engineVersion"] == "0.34.0"

    async def test_tgi_runs_as_root_and_keeps_the_key_out_of_its_log(
        self, operator: ApplyingEmulator
    ) -> None:
        spec = {"model": MODEL, "engine": "tgi", "license": {"accept": True}}
        await create(operator, LLAMA, llama(spec=spec))
        security = await eventually(
            lambda: (c := condition_of(operator, "PodSecurity"))["reason"] == "RunsAsRoot" and c,
            message="PodSecurity RunsAsRoot",
        )
        assert security["status"] == "False"
        assert "pod-security.kubernetes.io/enforce=baseline" in security["message"]
        warned = await eventually(
            lambda: [e for e in events(operator) if e.get("reason") == "RunsAsRoot"],
            message="a RunsAsRoot Warning Event",
        )
        assert [e["type"] for e in warned] == ["Warning"]
        deployment = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        engine = container(deployment)
        assert engine["securityContext"]["runAsUser"] == 0
        env = {item["name"]: item for item in engine["env"]}
        # The launcher's Args dump (api_key included) is filtered out of its log
        # (tests/engines/test_tgi_log_filter.py), and the key comes only from the Secret.
        assert env["LOG_LEVEL"]["value"].startswith("text_generation_launcher=warn,")
        assert env["API_KEY"] == {
            "name": "API_KEY",
            "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": "api-key"}},
        }
        assert PLANTED_API_KEY not in json.dumps(deployment)
