"""The API-key gate, the input limits and the NetworkPolicy in a whole reconcile.

Driven like test_reconcile.py (a recording client, live children from earlier applies),
with the operator's real defaults: API keys required, a NetworkPolicy per endpoint.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from test_reconcile import applied_by_us, body, remembered, settle
from test_reconcile_rollout import Client

from llama_operator import reconcile
from llama_operator.planning import config

SETTINGS = config.OperatorConfig(pools=config.default_pools())
MODEL = {"id": "meta-llama/Llama-3.1-8B-Instruct"}
KEYED = {
    "model": MODEL,
    "license": {"accept": True},
    "auth": {"apiKeySecretRef": {"name": "chat-api-key"}},
}
NO_KEY = {"model": MODEL, "license": {"accept": True}}
PLANTED = "sk-planted-0123456789"  # what a Secret value would look like; never seen here


def run(
    spec: dict[str, Any],
    *,
    status: dict[str, Any] | None = None,
    live: dict[tuple[str, str], dict[str, Any]] | None = None,
    present: bool = True,
    checks: list[tuple[str, str, str]] | None = None,
    settings: config.OperatorConfig = SETTINGS,
) -> tuple[reconcile.Outcome, Client]:
    client = Client()

    def key_check(ref: Any, namespace: str) -> bool:
        if checks is not None:
            checks.append((namespace, ref.name, ref.key))
        return present

    outcome = reconcile.reconcile(
        body=body(spec, status),
        settings=settings,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: (live or {}).get((kind, name)),
        ),
        clock=reconcile.Clock(now="2026-01-01T00:00:00Z", monotonic=lambda: 1000.0),
        readers=reconcile.Readers(api_key=key_check),
        memory=reconcile.Memory(unwatched=remembered(live), generations=applied_by_us(live)),
    )
    return outcome, client


def condition(outcome: reconcile.Outcome, type_: str) -> dict[str, Any]:
    (found,) = [c for c in outcome.status_patch["conditions"] if c["type"] == type_]
    return dict(found)


def applied(client: Client) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in client.applied]


def ready(live: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The primary's pods came up (as the Deployment controller would report)."""
    deployment = live["Deployment", "chat-primary"]
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "observedGeneration": 1,
    }


class TestRequiredWithoutAKey:
    def test_no_deployment_and_a_condition_naming_the_field(self) -> None:
        outcome, client = run(NO_KEY)
        assert "Deployment/chat-primary" not in applied(client)
        # What does not serve is still laid out, and guarded.
        assert "NetworkPolicy/chat" in applied(client)
        found = condition(outcome, "Authenticated")
        assert (found["status"], found["reason"]) == ("False", "APIKeyRequired")
        assert found["message"].startswith("spec.auth.apiKeySecretRef is required")
        assert outcome.phase == "Pending"
        ready_condition = condition(outcome, "Ready")
        assert "spec.auth.apiKeySecretRef" in ready_condition["message"]
        assert ("Warning", "APIKeyRequired") in [(e.type, e.reason) for e in outcome.events]

    def test_adding_the_key_later_starts_serving(self) -> None:
        first, _ = run(NO_KEY)
        status = dict(first.status_patch)
        outcome, client = run(KEYED, status=status)
        assert "Deployment/chat-primary" in applied(client)
        assert condition(outcome, "Authenticated")["status"] == "True"
        # Recovering from the warning is news too.
        assert ("Normal", "APIKey") in [(e.type, e.reason) for e in outcome.events]

    def test_a_serving_endpoint_that_loses_its_key_keeps_serving_unchanged(self) -> None:
        first, client = run(KEYED)
        status, live = settle(first, client)
        ready(live)
        before = copy.deepcopy(live["Deployment", "chat-primary"])
        outcome, again = run({**NO_KEY, "engineArgs": ["--x"]}, status=status, live=live)
        assert "Deployment/chat-primary" not in applied(again)
        assert again.deleted == []
        assert live["Deployment", "chat-primary"] == before
        assert outcome.status_patch["phase"] == "Degraded"
        assert condition(outcome, "Authenticated")["reason"] == "APIKeyRequired"

    def test_the_network_policy_is_applied_even_while_serving_is_held(self) -> None:
        # An endpoint from before API keys (0.5): held for its missing key, but who may
        # connect to it is never held back.
        first, client = run(KEYED)
        status, live = settle(first, client)
        ready(live)
        del live["NetworkPolicy", "chat"]
        status.pop("networkPolicy")
        outcome, again = run(NO_KEY, status=status, live=live)
        assert applied(again) == ["NetworkPolicy/chat"]
        assert outcome.status_patch["networkPolicy"] == "chat"
        assert outcome.status_patch["phase"] == "Degraded"

    def test_optional_serves_without_a_key_and_warns_no_one(self) -> None:
        outcome, client = run({**NO_KEY, "auth": {"mode": "optional"}})
        assert "Deployment/chat-primary" in applied(client)
        assert condition(outcome, "Authenticated")["reason"] == "AuthOptional"
        assert all(e.type == "Normal" for e in outcome.events)

    def test_the_operator_default_can_be_optional(self) -> None:
        settings = config.OperatorConfig(
            pools=config.default_pools(), security=config.Security(defaultAuthMode="optional")
        )
        _, client = run(NO_KEY, settings=settings)
        assert "Deployment/chat-primary" in applied(client)


class TestTheKeySecret:
    def test_a_missing_secret_holds_serving(self) -> None:
        outcome, client = run(KEYED, present=False)
        assert "Deployment/chat-primary" not in applied(client)
        found = condition(outcome, "Authenticated")
        assert found["reason"] == "SecretMissing"
        assert "'chat-api-key' (key 'api-key')" in found["message"]

    def test_the_key_reaches_the_engine_by_reference_only(self) -> None:
        _, client = run(KEYED)
        (deployment,) = [o for o in client.applied if o["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        assert env["VLLM_API_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "chat-api-key", "key": "api-key"}
        }
        assert PLANTED not in json.dumps(client.applied)

    def test_the_secret_is_asked_about_only_when_pods_would_change(self) -> None:
        checks: list[tuple[str, str, str]] = []
        first, client = run(KEYED, checks=checks)
        assert checks == [("ai", "chat-api-key", "api-key")]
        status, live = settle(first, client)
        ready(live)
        checks.clear()
        run(KEYED, status=status, live=live, checks=checks)
        assert checks == []  # an endpoint serving unchanged costs no Secret read
        run({**KEYED, "engineArgs": ["--x"]}, status=status, live=live, checks=checks)
        assert checks == [("ai", "chat-api-key", "api-key")]

    def test_fallbacks_get_the_same_key(self) -> None:
        spec = {
            **KEYED,
            "fallbacks": [
                {"model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}, "license": {"accept": True}}
            ],
        }
        checks: list[tuple[str, str, str]] = []
        _, client = run(spec, checks=checks)
        # The primary and the fallback name one Secret: it is asked about once.
        assert checks == [("ai", "chat-api-key", "api-key")]
        (fallback,) = [
            o
            for o in client.applied
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "chat-fallback-0"
        ]
        (container,) = fallback["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "chat-api-key"


class TestLimits:
    def test_more_tokens_than_the_plan_is_an_invalid_spec(self) -> None:
        outcome, client = run({**KEYED, "limits": {"maxTokensPerRequest": 1_000_000}})
        assert client.applied == []
        found = condition(outcome, "Planned")
        assert (found["status"], found["reason"]) == ("False", "InvalidSpec")
        assert found["message"].startswith("spec.limits.maxTokensPerRequest: 1000000 is more")

    def test_a_fallback_holds_the_primarys_limit_to_its_own_context(self) -> None:
        spec = {
            **KEYED,
            "placement": {"maxModelLen": 16384},
            "limits": {"maxTokensPerRequest": 16384},
            "fallbacks": [
                {"model": {"id": "meta-llama/Llama-2-7b-chat-hf"}, "license": {"accept": True}}
            ],
        }
        outcome, client = run(spec)
        assert outcome.status_patch["failover"]["fallbacks"][0]["servable"] is True
        contexts = {
            o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["args"]
            for o in client.applied
            if o["kind"] == "Deployment"
        }
        # Llama 2 has a 4096-token context: the primary's 16384 is held to it, not refused.
        assert {
            name: args[args.index("--max-model-len") + 1] for name, args in contexts.items()
        } == {
            "chat-primary": "16384",
            "chat-fallback-0": "4096",
        }


class TestNetworkPolicy:
    def test_applied_and_recorded(self) -> None:
        outcome, client = run(KEYED)
        assert applied(client)[-1] == "NetworkPolicy/chat"
        assert outcome.status_patch["networkPolicy"] == "chat"

    def test_switched_off_it_is_deleted_once(self) -> None:
        first, client = run(KEYED)
        status, live = settle(first, client)
        off = {**KEYED, "network": {"policy": False}}
        outcome, again = run(off, status=status, live=live)
        assert again.deleted == [("NetworkPolicy", "chat")]
        assert "NetworkPolicy/chat" not in applied(again)
        assert outcome.status_patch["networkPolicy"] is None
        status = {**status, "networkPolicy": None}
        _, third = run(off, status=status, live=live)
        assert third.deleted == []

    def test_an_unchanged_policy_is_not_reapplied(self) -> None:
        first, client = run(KEYED)
        status, live = settle(first, client)
        ready(live)
        _, again = run(KEYED, status=status, live=live)
        assert "NetworkPolicy/chat" not in applied(again)

    def test_a_changed_allow_list_is_applied(self) -> None:
        first, client = run(KEYED)
        status, live = settle(first, client)
        ready(live)
        narrowed = {
            **KEYED,
            "network": {"allowFrom": [{"podSelector": {"matchLabels": {"app": "ui"}}}]},
        }
        outcome, again = run(narrowed, status=status, live=live)
        assert applied(again) == ["NetworkPolicy/chat"]  # no pod restarts for it
        assert outcome.written == ["NetworkPolicy/chat"]
