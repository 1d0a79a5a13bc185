"""reconcile.py with a recording client: what gets written, and when nothing does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from llama_operator import api, reconcile
from llama_operator.clients import hub
from llama_operator.licensing import gating
from llama_operator.planning import config, facts
from llama_operator.serving import builders


class RecordingClient:
    """Stands in for k8s.Client: records applies, returns what a server would store."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.secret_reads: list[tuple[str, str, str]] = []
        self.pod_lists: list[dict[str, str]] = []

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.applied.append(dict(obj))
        return dict(obj)

    def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
        self.secret_reads.append((namespace, name, key))
        return "hf_secret_value"

    def list_pods(self, *, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        # The primary's pods are read while its Deployment reports fewer ready than asked
        # (failover and re-planning); none here, as while pods are still being created.
        self.pod_lists.append(dict(labels))
        return []


# API keys optional: these tests are about the other gates and children; the API-key
# gate, the operator's default, has its own (test_reconcile_security.py).
SETTINGS = config.OperatorConfig(
    pools=config.default_pools(),
    security=config.Security(defaultAuthMode="optional"),
)


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "chat", "namespace": "ai", "uid": "u1", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


SPEC = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "license": {"accept": True}}
NOW = 1000.0  # the injected monotonic clock


def remembered(live: dict[tuple[str, str], dict[str, Any]] | None) -> dict[str, Any]:
    """What the operator remembers of the unwatched children (ConfigMaps) in ``live``."""
    return {
        f"{kind}/{name}": (obj["metadata"]["annotations"][builders.HASH_ANNOTATION], NOW)
        for (kind, name), obj in (live or {}).items()
        if kind in reconcile.UNWATCHED_KINDS
    }


def applied_by_us(live: dict[tuple[str, str], dict[str, Any]] | None) -> dict[str, int]:
    """The generations this process recorded for the watched children in ``live``: what
    it remembers after applying them itself (so not a restart's first sight)."""
    return {
        f"{kind}/{name}": int((obj.get("metadata") or {}).get("generation") or 0)
        for (kind, name), obj in (live or {}).items()
        if kind not in reconcile.UNWATCHED_KINDS
    }


def run(
    b: dict[str, Any],
    *,
    live: dict[tuple[str, str], dict[str, Any]] | None = None,
    client: RecordingClient | None = None,
    fetch: reconcile.HubFetch | None = None,
    settings: config.OperatorConfig = SETTINGS,
    card: reconcile.CardFetch | None = None,
    access: reconcile.AccessCheck | None = None,
    unwatched: dict[str, Any] | None = None,
    generations: dict[str, int] | None = None,
    clock: float = NOW,
) -> tuple[reconcile.Outcome, RecordingClient]:
    client = client or RecordingClient()
    outcome = reconcile.reconcile(
        body=b,
        settings=settings,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: (live or {}).get((kind, name)),
        ),
        clock=reconcile.Clock(now="2026-01-01T00:00:00Z", monotonic=lambda: clock),
        readers=reconcile.Readers(fetch=fetch, card=card, access=access),
        memory=reconcile.Memory(
            unwatched=remembered(live) if unwatched is None else unwatched,
            generations=applied_by_us(live) if generations is None else generations,
        ),
    )
    return outcome, client


class TestReconcile:
    def test_first_reconcile_applies_every_child_and_reports_the_plan(self) -> None:
        outcome, client = run(body(SPEC))
        assert [(o["kind"], o["metadata"]["name"]) for o in client.applied] == [
            ("ConfigMap", "chat-license"),
            ("Deployment", "chat-primary"),
            ("Service", "chat"),
            ("Service", "chat-primary"),
            ("NetworkPolicy", "chat"),
        ]
        assert outcome.status_patch["plan"]["engine"] == "vllm"
        assert outcome.status_patch["networkPolicy"] == "chat"
        assert [e.reason for e in outcome.events] == ["Planned", "Applied"]

    def test_unchanged_children_and_status_mean_no_writes_and_no_events(self) -> None:
        first, client = run(body(SPEC))
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        settled = {**first.status_patch}
        second, again = run(body(SPEC, status=settled), live=live)
        assert again.applied == []
        assert second.status_patch == {}
        assert second.events == []

    def test_only_the_changed_child_is_reapplied(self) -> None:
        _, client = run(body(SPEC))
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        changed = {**SPEC, "replicas": 2}
        _, again = run(body(changed), live=live)
        assert [(o["kind"], o["metadata"]["name"]) for o in again.applied] == [
            ("Deployment", "chat-primary")
        ]

    def test_unplannable_spec_writes_no_children(self) -> None:
        spec = {
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
            "placement": {"pools": ["nope"]},
        }
        outcome, client = run(body(spec))
        assert client.applied == []
        planned = outcome.status_patch["conditions"][0]
        assert (planned["type"], planned["status"], planned["reason"]) == (
            "Planned",
            "False",
            "UnknownPool",
        )
        assert [e.type for e in outcome.events] == ["Warning"]

    def test_hub_is_asked_only_when_catalog_and_spec_fall_short(self) -> None:
        calls: list[str] = []

        def fetch(model: api.ModelSpec, namespace: str) -> facts.PartialFacts:
            calls.append(model.id)
            raise hub.HubError("offline")

        run(body(SPEC), fetch=fetch)
        assert calls == []
        described = {
            "model": {
                "id": "x/y",
                "parameters": "7B",
                "layers": 32,
                "attentionHeads": 32,
                "kvHeads": 8,
                "headDim": 128,
                "maxContext": 8192,
            }
        }
        run(body(described), fetch=fetch)
        assert calls == []
        outcome, _ = run(body({"model": {"id": "x/unknown"}}), fetch=fetch)
        assert calls == ["x/unknown"]
        message = outcome.status_patch["conditions"][0]["message"]
        assert "spec.model.parameters" in message
        assert "offline" in message

    def test_token_is_read_from_the_secret_only_for_a_hub_lookup(self) -> None:
        client = RecordingClient()
        fetch = reconcile.token_fetcher(client)  # type: ignore[arg-type]
        spec = {
            "model": {
                "id": "meta-llama/Llama-3.1-8B-Instruct",
                "tokenSecretRef": {"name": "hf", "key": "token"},
            },
            "license": {"accept": True},
        }
        outcome, _ = run(body(spec), client=client, fetch=fetch)
        assert client.secret_reads == []  # catalog model: no Hub, no Secret read
        (deployment,) = [o for o in client.applied if o["kind"] == "Deployment"]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        token = next(e for e in env if e["name"] == "HF_TOKEN")
        assert token == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
        }
        assert "hf_secret_value" not in repr(client.applied)
        assert "hf_secret_value" not in repr(outcome)

    def test_not_yet_active_fields_are_listed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Every field is acted on in this release; the machinery stays for the next one.
        spec = {**SPEC, "fallbacks": [{"model": {"id": "meta-llama/Llama-3.2-1B-Instruct"}}]}
        assert reconcile.not_yet_active(spec) == []
        monkeypatch.setattr(api, "NOT_YET_ACTIVE", ("fallbacks",))
        assert reconcile.not_yet_active(spec) == ["fallbacks"]
        outcome, _ = run(body(spec))
        assert any(e.reason == "FieldsNotActive" for e in outcome.events)

    def test_hash_annotation_drives_the_decision(self) -> None:
        _, client = run(body(SPEC))
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        stale = dict(live[("Service", "chat")])
        stale["metadata"] = {**stale["metadata"], "annotations": {builders.HASH_ANNOTATION: "x"}}
        live[("Service", "chat")] = stale
        _, again = run(body(SPEC), live=live)
        assert [o["metadata"]["name"] for o in again.applied] == ["chat"]


class TestPlanStickiness:
    def settled(self, spec: dict[str, Any]) -> dict[str, Any]:
        outcome, _ = run(body(spec))
        return dict(outcome.status_patch)

    def test_cheaper_pool_later_does_not_move_a_running_endpoint(self) -> None:
        previous = self.settled(SPEC)
        assert previous["plan"]["pool"] == "l4"
        cheaper = config.default_pools()[0].model_copy(
            update={"name": "l4-spot", "costPerGPUHour": 0.1}
        )
        settings = config.OperatorConfig(pools=(*config.default_pools(), cheaper))
        outcome, _ = run(body(SPEC, status=previous), settings=settings)
        assert "plan" not in outcome.status_patch  # unchanged: still l4

    def test_scaling_keeps_the_plan(self) -> None:
        previous = self.settled(SPEC)
        outcome, _ = run(body({**SPEC, "replicas": 3}, status=previous))
        assert "plan" not in outcome.status_patch

    def test_changing_the_model_plans_again(self) -> None:
        previous = self.settled(SPEC)
        outcome, _ = run(
            body({**SPEC, "model": {"id": "meta-llama/Llama-3.3-70B-Instruct"}}, status=previous)
        )
        assert outcome.status_patch["plan"]["gpusPerReplica"] >= 2
        assert outcome.status_patch["plan"]["inputsHash"] != previous["plan"]["inputsHash"]

    def test_a_vanished_pool_plans_again(self) -> None:
        previous = self.settled(SPEC)
        settings = config.OperatorConfig(
            pools=tuple(p for p in config.default_pools() if p.name != "l4")
        )
        outcome, _ = run(body(SPEC, status=previous), settings=settings)
        assert outcome.status_patch["plan"]["pool"] != "l4"


class Server(RecordingClient):
    """Answers an apply as an API server holding ``live`` would: the same generation when
    nothing changes, one more for the objects named in ``edited`` (their live spec had
    been edited, and the apply put it back)."""

    def __init__(
        self, live: dict[tuple[str, str], dict[str, Any]], edited: frozenset[str] = frozenset()
    ) -> None:
        super().__init__()
        self.live = live
        self.edited = edited

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        result = super().apply(obj)
        before = self.live.get((obj["kind"], obj["metadata"]["name"]))
        generation = ((before or {}).get("metadata") or {}).get("generation")
        if isinstance(generation, int):
            bump = obj["metadata"]["name"] in self.edited
            result["metadata"] = {**obj["metadata"], "generation": generation + bump}
        return result


class TestDrift:
    def live_after_first_apply(self, generation: int) -> dict[tuple[str, str], dict[str, Any]]:
        _, client = run(body(SPEC))
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        deployment = dict(live[("Deployment", "chat-primary")])
        deployment["metadata"] = {**deployment["metadata"], "generation": generation}
        live[("Deployment", "chat-primary")] = deployment
        return live

    def reconcile_with(
        self, live: dict[tuple[str, str], dict[str, Any]], generations: dict[str, int]
    ) -> RecordingClient:
        client = RecordingClient()
        reconcile.reconcile(
            body=body(SPEC),
            settings=SETTINGS,
            cluster=reconcile.Cluster(
                client=client,  # type: ignore[arg-type]
                lookup=lambda kind, ns, name: live.get((kind, name)),
            ),
            clock=reconcile.Clock(now="2026-01-01T00:00:00Z", monotonic=lambda: NOW),
            memory=reconcile.Memory(generations=generations, unwatched=remembered(live)),
        )
        return client

    def test_a_deployment_edited_by_someone_else_is_reapplied(self) -> None:
        live = self.live_after_first_apply(5)
        generations = {**applied_by_us(live), "Deployment/chat-primary": 3}
        client = self.reconcile_with(live, generations)
        assert [o["metadata"]["name"] for o in client.applied] == ["chat-primary"]

    def test_a_lagging_watch_is_not_mistaken_for_an_edit(self) -> None:
        live = self.live_after_first_apply(2)
        client = self.reconcile_with(live, {**applied_by_us(live), "Deployment/chat-primary": 3})
        assert client.applied == []

    def test_after_a_restart_each_watched_child_is_applied_once_quietly(self) -> None:
        # Issue 15: an edit made while no operator ran left the hash annotation as it was;
        # the first reconcile of a new process cannot tell from memory, so it applies. The
        # apply (RecordingClient returns what it was given: generation 7) changed nothing.
        live = self.live_after_first_apply(7)
        generations: dict[str, int] = {}
        outcome, client = run(body(SPEC), live=live, generations=generations, client=Server(live))
        assert sorted((o["kind"], o["metadata"]["name"]) for o in client.applied) == [
            ("Deployment", "chat-primary"),
            ("Service", "chat"),
            ("Service", "chat-primary"),
        ]
        assert generations == {
            "Deployment/chat-primary": 7,
            "Service/chat": 0,
            "Service/chat-primary": 0,
        }
        assert outcome.written == []  # a refresh, not a change
        assert [e.reason for e in outcome.events if e.type == "Warning"] == []
        # ... and once recorded, the next reconcile applies nothing.
        _, again = run(body(SPEC), live=live, generations=generations)
        assert again.applied == []

    def test_an_edit_made_while_the_operator_was_down_is_reverted_and_reported(self) -> None:
        live = self.live_after_first_apply(4)
        # The server's answer to our apply: the spec it holds changed back, generation 5.
        client = Server(live, edited=frozenset({"chat-primary"}))
        outcome, _ = run(body(SPEC), live=live, generations={}, client=client)
        (drift,) = [e for e in outcome.events if e.reason == "DriftReverted"]
        assert drift.type == "Warning"
        assert drift.message.startswith("Deployment/chat-primary: changed outside the operator")


def cards(table: dict[str, hub.Card], calls: list[str] | None = None) -> reconcile.CardFetch:
    """A card fetch answering from ``table`` (HubError for anything else)."""

    def fetch(repo_id: str, revision: str, model: api.ModelSpec, namespace: str) -> hub.Card:
        if calls is not None:
            calls.append(repo_id)
        if repo_id not in table:
            raise hub.HubError(f"{repo_id}: not reachable")
        return table[repo_id]

    return fetch


def answering(reason: gating.AccessReason, calls: list[str] | None = None) -> reconcile.AccessCheck:
    def check(model: api.ModelSpec, namespace: str) -> gating.AccessAnswer:
        if calls is not None:
            calls.append(model.id)
        return gating.AccessAnswer(reason, f"{reason} for {model.id}")

    return check


def condition(outcome: reconcile.Outcome, type_: str) -> dict[str, Any]:
    (found,) = [c for c in outcome.status_patch["conditions"] if c["type"] == type_]
    return dict(found)


def kinds(client: RecordingClient) -> list[str]:
    return [o["kind"] for o in client.applied]


def settle(
    outcome: reconcile.Outcome, client: RecordingClient
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """Status and live children after a reconcile (as the API and the watches would hold)."""
    live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
    return dict(outcome.status_patch), live


NOT_ACCEPTED = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
TOKEN = {"name": "hf", "key": "token"}


class TestLicenceGate:
    def test_not_accepted_creates_no_serving_pods_and_says_why(self) -> None:
        outcome, client = run(body(NOT_ACCEPTED))
        # No Deployment; the NetworkPolicy guards the Services all the same.
        assert kinds(client) == ["ConfigMap", "Service", "Service", "NetworkPolicy"]
        accepted = condition(outcome, "LicenseAccepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "NotAccepted")
        assert "https://llama.meta.com/llama3_1/use-policy" in accepted["message"]
        assert "spec.license.accept: true" in accepted["message"]
        (warning,) = [e for e in outcome.events if e.reason == "NotAccepted"]
        assert warning.type == "Warning"
        assert warning.message == accepted["message"]
        assert outcome.phase == "Pending"
        ready = condition(outcome, "Ready")
        assert ready["message"].startswith("no serving pods: ")
        assert outcome.status_patch["license"]["accepted"] is False
        assert outcome.status_patch["license"]["id"] == "llama3.1"

    def test_the_warning_is_not_repeated_every_tick(self) -> None:
        first, client = run(body(NOT_ACCEPTED))
        status, live = settle(first, client)
        second, again = run(body(NOT_ACCEPTED, status=status), live=live)
        assert second.events == []
        assert again.applied == []
        assert second.status_patch == {}

    def test_accepting_later_starts_serving_with_no_other_edit(self) -> None:
        first, client = run(body(NOT_ACCEPTED))
        status, live = settle(first, client)
        accepted = {**NOT_ACCEPTED, "license": {"accept": True}}
        second, again = run(body(accepted, status=status), live=live)
        assert kinds(again) == ["Deployment"]
        assert condition(second, "LicenseAccepted")["reason"] == "Accepted"
        (event,) = [e for e in second.events if e.reason == "Accepted"]
        assert event.type == "Normal"
        assert second.status_patch["license"]["accepted"] is True

    def test_revoking_acceptance_while_serving_is_refused(self) -> None:
        first, client = run(body(SPEC))
        status, live = settle(first, client)
        revoked = {**SPEC, "license": {"accept": False}}
        outcome, again = run(body(revoked, status=status), live=live)
        assert again.applied == []  # nothing torn down, nothing changed
        c = condition(outcome, "LicenseAccepted")
        assert (c["status"], c["reason"]) == ("False", "AcceptanceRevoked")
        assert [e.reason for e in outcome.events if e.type == "Warning"] == ["AcceptanceRevoked"]
        assert "license" not in outcome.status_patch  # still serving under the acceptance
        # An edit made while acceptance is withdrawn is held back, not applied.
        scaled = {**revoked, "replicas": 3}
        status = {**status, **outcome.status_patch}
        _, again = run(body(scaled, status=status), live=live)
        assert "Deployment" not in kinds(again)

    def test_a_new_licence_on_a_running_deployment_holds_the_change_back(self) -> None:
        first, client = run(body(SPEC))
        status, live = settle(first, client)
        llama4 = {"model": {"id": "meta-llama/Llama-4-Scout-17B-16E-Instruct"}}
        outcome, again = run(body(llama4, status=status), live=live)
        assert "Deployment" not in kinds(again)  # the Llama 3.1 pods keep serving
        assert outcome.phase == "Degraded"
        assert "held back" in condition(outcome, "Ready")["message"]
        assert condition(outcome, "LicenseAccepted")["reason"] == "NotAccepted"
        assert condition(outcome, "LicenseRestricted")["reason"] == "EUMultimodalRestriction"

    def test_unknown_override_holds_serving(self) -> None:
        spec = {**NOT_ACCEPTED, "license": {"id": "llama9", "accept": True}}
        outcome, client = run(body(spec))
        assert "Deployment" not in kinds(client)
        c = condition(outcome, "LicenseAccepted")
        assert (c["status"], c["reason"]) == ("False", "UnknownLicenseId")

    def test_restricted_licence_warns_but_serves(self) -> None:
        spec = {**NOT_ACCEPTED, "license": {"id": "mrl"}}
        outcome, client = run(body(spec))
        assert "Deployment" in kinds(client)
        c = condition(outcome, "LicenseRestricted")
        assert (c["status"], c["reason"]) == ("True", "RestrictedLicense")
        assert any(e.reason == "RestrictedLicense" and e.type == "Warning" for e in outcome.events)


class TestDetectionThroughTheHub:
    def test_a_fine_tune_inherits_its_base_licence_through_the_chain(self) -> None:
        table = {
            "example-org/chat-tune": hub.Card("apache-2.0", None, ("example-org/mid",), False),
            "example-org/mid": hub.Card("llama3.2", None, ("example-org/root",), False),
        }
        calls: list[str] = []
        spec = {
            "model": {
                "id": "example-org/chat-tune",
                "parameters": "3.2B",
                "layers": 28,
                "attentionHeads": 24,
                "kvHeads": 8,
                "headDim": 128,
                "maxContext": 8192,
            }
        }
        outcome, client = run(body(spec), card=cards(table, calls))
        found = outcome.status_patch["license"]
        assert (found["id"], found["source"]) == ("llama3.2", "base-model")
        assert calls == ["example-org/chat-tune", "example-org/mid", "example-org/root"]
        assert "Deployment" not in kinds(client)  # a Llama licence: acceptance needed

    def test_an_unreachable_hub_falls_back_to_the_catalog(self) -> None:
        outcome, _ = run(body(SPEC), card=cards({}))
        assert outcome.status_patch["license"]["source"] == "catalog"
        c = condition(outcome, "ModelAccessible")
        assert (c["status"], c["reason"]) == ("Unknown", "NotChecked")

    def test_a_gated_repository_without_a_token_is_held(self) -> None:
        table = {"meta-llama/Llama-3.1-8B-Instruct": hub.Card("llama3.1", None, (), True)}
        outcome, client = run(body(SPEC), card=cards(table))
        assert "Deployment" not in kinds(client)
        c = condition(outcome, "ModelAccessible")
        assert (c["status"], c["reason"]) == ("False", "TokenRequired")
        assert "spec.model.tokenSecretRef" in c["message"]


GATED_SPEC: dict[str, Any] = {**SPEC, "model": {**SPEC["model"], "tokenSecretRef": TOKEN}}  # type: ignore[dict-item]


class TestAccessGate:
    spec = GATED_SPEC

    @pytest.mark.parametrize("reason", ["NotGranted", "BadToken", "NotFound", "SecretMissing"])
    def test_no_access_creates_no_serving_pods(self, reason: gating.AccessReason) -> None:
        outcome, client = run(body(self.spec), access=answering(reason))
        assert "Deployment" not in kinds(client)
        c = condition(outcome, "ModelAccessible")
        assert (c["status"], c["reason"], c["message"]) == (
            "False",
            reason,
            f"{reason} for meta-llama/Llama-3.1-8B-Instruct",
        )
        assert any(e.type == "Warning" and e.reason == reason for e in outcome.events)

    def test_access_granted_later_starts_serving(self) -> None:
        first, client = run(body(self.spec), access=answering("NotGranted"))
        status, live = settle(first, client)
        second, again = run(body(self.spec, status=status), live=live, access=answering("Granted"))
        assert kinds(again) == ["Deployment"]
        assert condition(second, "ModelAccessible")["reason"] == "Granted"
        assert any(e.type == "Normal" and e.reason == "Granted" for e in second.events)

    def test_an_unreachable_hub_does_not_hold_serving(self) -> None:
        outcome, client = run(body(self.spec), access=answering("Unreachable"))
        assert "Deployment" in kinds(client)
        assert condition(outcome, "ModelAccessible")["status"] == "Unknown"

    def test_the_hub_is_asked_only_when_pods_would_be_created_or_changed(self) -> None:
        calls: list[str] = []
        first, client = run(body(self.spec), access=answering("Granted", calls))
        assert calls == ["meta-llama/Llama-3.1-8B-Instruct"]
        status, live = settle(first, client)
        run(body(self.spec, status=status), live=live, access=answering("Granted", calls))
        assert len(calls) == 1  # serving and unchanged: no check, no Secret read
        not_accepted = {**self.spec, "license": {"accept": False}}
        run(body(not_accepted), access=answering("Granted", calls))
        assert len(calls) == 1  # the licence gate is closed: no reason to ask

    def test_the_checker_reads_the_secret_and_never_reports_the_token(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[str | None] = []

        def fake_access(**kwargs: Any) -> hub.Access:
            seen.append(kwargs["token"])
            return hub.Access(False, "NotGranted", "not granted: see https://hub/x")

        monkeypatch.setattr(hub, "access", fake_access)
        client = RecordingClient()
        check = reconcile.access_checker(client, SETTINGS)  # type: ignore[arg-type]
        outcome, _ = run(body(self.spec), client=client, access=check)
        assert seen == ["hf_secret_value"]
        assert client.secret_reads == [("ai", "hf", "token")]
        assert "hf_secret_value" not in repr(outcome)
        assert "hf_secret_value" not in repr(client.applied)

    def test_a_missing_secret_is_named(self) -> None:
        class NoSecret(RecordingClient):
            def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
                return None

        client = NoSecret()
        check = reconcile.access_checker(client, SETTINGS)  # type: ignore[arg-type]
        outcome, _ = run(body(self.spec), client=client, access=check)
        c = condition(outcome, "ModelAccessible")
        assert c["reason"] == "SecretMissing"
        assert "'hf' (key 'token')" in c["message"]
        assert "namespace ai" in c["message"]


class TestUnwatchedConfigMap:
    def test_reapplied_when_changed_and_after_the_refresh_period(self) -> None:
        first, client = run(body(SPEC))
        status, live = settle(first, client)
        memory = remembered(live)
        _, again = run(body(SPEC, status=status), live=live, unwatched=memory)
        assert again.applied == []
        later = NOW + reconcile.REAPPLY_SECONDS
        refreshed, again = run(body(SPEC, status=status), live=live, unwatched=memory, clock=later)
        # Restores one deleted or edited by hand (both kinds are not watched).
        assert kinds(again) == ["ConfigMap", "NetworkPolicy"]
        assert refreshed.written == []  # not a change: the metrics show no churn
        assert refreshed.refreshed == ["ConfigMap/chat-license", "NetworkPolicy/chat"]
        assert refreshed.events == []  # a routine refresh is not news
        other = {**SPEC, "license": {"accept": True, "id": "llama3.3"}}
        changed, again = run(body(other, status=status), live=live, unwatched=memory, clock=later)
        assert "ConfigMap" in kinds(again)
        (applied,) = [e for e in changed.events if e.reason == "Applied"]
        assert "ConfigMap/chat-license" in applied.message


class TestHeldWhileServing:
    def test_a_held_model_change_leaves_the_licence_files_of_the_running_pods_alone(
        self,
    ) -> None:
        first, client = run(body(SPEC))
        status, live = settle(first, client)
        llama4 = {"model": {"id": "meta-llama/Llama-4-Scout-17B-16E-Instruct"}}
        outcome, again = run(body(llama4, status=status), live=live)
        # The ConfigMap still says Llama 3.1, which is what the pods serve; nothing is written.
        assert again.applied == []
        assert outcome.phase == "Degraded"
        # status keeps describing what runs; the conditions say what is held and why.
        assert "license" not in outcome.status_patch
        assert "plan" not in outcome.status_patch
        accepted = condition(outcome, "LicenseAccepted")
        assert accepted["reason"] == "NotAccepted"
        assert "Llama 4" in accepted["message"]
        assert not [e for e in outcome.events if e.reason == "Planned"]

    def test_before_anything_serves_the_licence_files_are_written(self) -> None:
        _, client = run(body(NOT_ACCEPTED))
        (config_map,) = [o for o in client.applied if o["kind"] == "ConfigMap"]
        assert config_map["data"]["LICENSE_ID"] == "llama3.1\n"


class TestConfigMapAcrossRestarts:
    def test_after_a_restart_the_configmap_is_applied_quietly(self) -> None:
        first, client = run(body(SPEC))
        status, live = settle(first, client)
        # A new process: nothing remembered, but status.license says it was applied before.
        outcome, again = run(body(SPEC, status=status), live=live, unwatched={})
        assert kinds(again) == ["ConfigMap", "NetworkPolicy"]
        assert outcome.written == []
        assert outcome.refreshed == ["ConfigMap/chat-license", "NetworkPolicy/chat"]
        assert outcome.events == []

    def test_a_new_deployment_announces_its_configmap(self) -> None:
        outcome, _ = run(body(SPEC))
        assert "ConfigMap/chat-license" in outcome.written
        (applied,) = [e for e in outcome.events if e.reason == "Applied"]
        assert applied.message.startswith("ConfigMap/chat-license, Deployment/chat-primary")
