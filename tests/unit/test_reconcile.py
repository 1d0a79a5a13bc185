"""reconcile.py with a recording client: what gets written, and when nothing does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator import api, builders, config, facts, hub, reconcile


class RecordingClient:
    """Stands in for k8s.Client: records applies, returns what a server would store."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.secret_reads: list[tuple[str, str, str]] = []

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.applied.append(dict(obj))
        return dict(obj)

    def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
        self.secret_reads.append((namespace, name, key))
        return "hf_secret_value"


SETTINGS = config.OperatorConfig(pools=config.default_pools())


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "chat", "namespace": "ai", "uid": "u1", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


SPEC = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}


def run(
    b: dict[str, Any],
    *,
    live: dict[tuple[str, str], dict[str, Any]] | None = None,
    client: RecordingClient | None = None,
    fetch: reconcile.HubFetch | None = None,
    settings: config.OperatorConfig = SETTINGS,
) -> tuple[reconcile.Outcome, RecordingClient]:
    client = client or RecordingClient()
    outcome = reconcile.reconcile(
        body=b,
        settings=settings,
        client=client,  # type: ignore[arg-type]
        lookup=lambda kind, ns, name: (live or {}).get((kind, name)),
        gpu_nodes=[],
        fetch=fetch,
        now="2026-01-01T00:00:00Z",
    )
    return outcome, client


class TestReconcile:
    def test_first_reconcile_applies_every_child_and_reports_the_plan(self) -> None:
        outcome, client = run(body(SPEC))
        assert [o["metadata"]["name"] for o in client.applied] == [
            "chat-primary",
            "chat",
            "chat-primary",
        ]
        assert outcome.status_patch["plan"]["engine"] == "vllm"
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
            "NoGPUPools",
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
            }
        }
        outcome, _ = run(body(spec), client=client, fetch=fetch)
        assert client.secret_reads == []  # catalog model: no Hub, no Secret read
        deployment = client.applied[0]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        token = next(e for e in env if e["name"] == "HF_TOKEN")
        assert token == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
        }
        assert "hf_secret_value" not in repr(client.applied)
        assert "hf_secret_value" not in repr(outcome)

    def test_not_yet_active_fields_are_listed(self) -> None:
        spec = {
            **SPEC,
            "fallbacks": [{"model": {"id": "meta-llama/Llama-3.2-1B-Instruct"}}],
            "license": {"accept": True},
        }
        assert reconcile.not_yet_active(spec) == ["fallbacks", "license"]
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
            body({"model": {"id": "meta-llama/Llama-3.3-70B-Instruct"}}, status=previous)
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
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: live.get((kind, name)),
            gpu_nodes=[],
            fetch=None,
            now="2026-01-01T00:00:00Z",
            generations=generations,
        )
        return client

    def test_a_deployment_edited_by_someone_else_is_reapplied(self) -> None:
        generations = {"Deployment/chat-primary": 3}
        client = self.reconcile_with(self.live_after_first_apply(5), generations)
        assert [o["metadata"]["name"] for o in client.applied] == ["chat-primary"]

    def test_a_lagging_watch_is_not_mistaken_for_an_edit(self) -> None:
        client = self.reconcile_with(self.live_after_first_apply(2), {"Deployment/chat-primary": 3})
        assert client.applied == []

    def test_first_sight_takes_the_live_generation_as_ours(self) -> None:
        generations: dict[str, int] = {}
        client = self.reconcile_with(self.live_after_first_apply(7), generations)
        assert client.applied == []
        assert generations == {"Deployment/chat-primary": 7}
