"""reconcile.py in a rollout: what is applied, held, patched and deleted in each mode.

A recording client stands in for the API; the live children are what a previous
reconcile applied, with the Deployment status a controller would report.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from test_reconcile import SETTINGS, RecordingClient, applied_by_us, body

from llama_operator import api, reconcile
from llama_operator.clients import k8s
from llama_operator.operations import canary_analysis
from llama_operator.serving import builders

SPEC: dict[str, Any] = {
    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
    "license": {"accept": True},
    "replicas": 4,
    "rollout": {"steps": [{"weight": 25, "pause": "1m"}], "analysis": {"minRequests": 0}},
}
CHANGED = {**SPEC, "engineArgs": ["--enable-prefix-caching"]}
NOW = "2026-01-01T00:00:00Z"


class Client(RecordingClient):
    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.deleted: list[tuple[str, str]] = []
        self.pods = pods or []
        self.pod_lists = 0

    def merge_patch(self, **kwargs: Any) -> dict[str, Any]:
        self.patches.append((kwargs["kind"], kwargs["name"], kwargs["body"]))
        return {"metadata": {"generation": 7}, "spec": kwargs["body"]["spec"]}

    def delete(self, *, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        self.deleted.append((kind, name))
        return True

    def list_pods(self, *, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        self.pod_lists += 1
        return self.pods


def ready(obj: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """A live child as the Deployment controller leaves it: all pods ready and current."""
    live = copy.deepcopy(dict(obj))
    live["metadata"]["generation"] = 1
    live["status"] = {
        "replicas": replicas,
        "readyReplicas": replicas,
        "updatedReplicas": replicas,
        "observedGeneration": 1,
    }
    return live


def serving(spec: dict[str, Any]) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    """The live children and status of an endpoint that serves ``spec``, all Ready."""
    client = Client()
    first = reconcile.reconcile(
        body=body(spec),
        settings=SETTINGS,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: None,
        ),
        clock=reconcile.Clock(now=NOW),
    )
    live = {
        (obj["kind"], obj["metadata"]["name"]): ready(obj, spec["replicas"])
        for obj in client.applied
    }
    return live, dict(first.status_patch)


def run(
    spec: dict[str, Any],
    live: dict[tuple[str, str], Any],
    status: dict[str, Any],
    *,
    client: Client | None = None,
    now: str = NOW,
    measure: reconcile.Measure | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[reconcile.Outcome, Client]:
    client = client or Client()
    b = body(spec, status)
    if annotations:
        b["metadata"]["annotations"] = annotations
    outcome = reconcile.reconcile(
        body=b,
        settings=SETTINGS,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: live.get((kind, name)),
        ),
        clock=reconcile.Clock(now=now),
        readers=reconcile.Readers(measure=measure),
        # The children in ``live`` were applied by this process (a restart is tested apart).
        memory=reconcile.Memory(generations=applied_by_us(live)),
    )
    return outcome, client


def merged(status: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(status)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def applied_names(client: Client) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in client.applied]


class TestStart:
    def test_a_template_change_on_a_serving_endpoint_starts_a_canary(self) -> None:
        live, status = serving(SPEC)
        outcome, client = run(CHANGED, live, status)
        # Neither the stable Deployment, nor its licence, nor its Service: only the canary's.
        assert "Deployment/chat-primary" not in applied_names(client)
        assert "ConfigMap/chat-license" not in applied_names(client)
        assert {
            "Deployment/chat-canary",
            "Service/chat-canary",
            "ConfigMap/chat-canary-license",
        } <= set(applied_names(client))
        (canary,) = [
            o
            for o in client.applied
            if o["metadata"]["name"] == "chat-canary" and o["kind"] == "Deployment"
        ]
        assert canary["spec"]["replicas"] == 1  # 25% of 4
        rollout = outcome.status_patch["rollout"]
        assert rollout["phase"] == "Starting"
        assert rollout["canaryRevision"] == builders.revision_of(canary)
        assert rollout["stableRevision"] == builders.revision_of(live["Deployment", "chat-primary"])
        assert rollout["canaryPlan"]["engine"] == "vllm"
        # status.plan keeps describing the stable primary: no plan in the patch.
        assert "plan" not in outcome.status_patch
        assert [e.reason for e in outcome.events if e.reason.startswith("Rollout")] == [
            "RolloutStarted"
        ]
        assert client.patches == []  # the stable keeps all replicas until the canary serves

    def test_a_rolling_strategy_applies_the_change_to_the_primary(self) -> None:
        rolling = {**SPEC, "rollout": {"strategy": "Rolling"}}
        live, status = serving(rolling)
        _, client = run({**rolling, "engineArgs": ["--x"]}, live, status)
        assert "Deployment/chat-primary" in applied_names(client)
        assert "Deployment/chat-canary" not in applied_names(client)

    def test_an_endpoint_without_ready_pods_is_fixed_directly(self) -> None:
        live, status = serving(SPEC)
        live["Deployment", "chat-primary"]["status"]["readyReplicas"] = 0
        outcome, client = run(CHANGED, live, status)
        assert "Deployment/chat-primary" in applied_names(client)
        assert "rollout" not in outcome.status_patch

    def test_an_unchanged_spec_writes_nothing(self) -> None:
        live, status = serving(SPEC)
        settled, _ = run(SPEC, live, status)  # Pending -> Ready
        status = merged(status, settled.status_patch)
        outcome, client = run(SPEC, live, status)
        # (The licence ConfigMap and the NetworkPolicy, never watched, are re-applied on a
        # process's first sight.)
        unwatched = ("ConfigMap", "NetworkPolicy")
        assert [o for o in client.applied if o["kind"] not in unwatched] == []
        assert outcome.refreshed == ["ConfigMap/chat-license", "NetworkPolicy/chat"]
        assert outcome.status_patch == {}


def step(
    spec: dict[str, Any], live: dict[tuple[str, str], Any], status: dict[str, Any], **kwargs: Any
) -> tuple[reconcile.Outcome, Client, dict[str, Any]]:
    """One reconcile; the live children and status take what it wrote."""
    outcome, client = run(spec, live, status, **kwargs)
    for obj in client.applied:
        key = (obj["kind"], obj["metadata"]["name"])
        replicas = obj.get("spec", {}).get("replicas", 1)
        live[key] = ready(obj, replicas) if obj["kind"] == "Deployment" else copy.deepcopy(obj)
    for kind, name, patch in client.patches:
        live[kind, name]["spec"].update(patch["spec"])
    for kind, name in client.deleted:
        live.pop((kind, name), None)
    return outcome, client, merged(status, outcome.status_patch)


PASSED = canary_analysis.Judgement(
    result="Passed",
    canary=api.AnalysisNumbers(pods=1, requests=40, errorRate=0.0),
    stable=api.AnalysisNumbers(pods=3, requests=120, errorRate=0.0),
    breaches=(),
    message="40 requests; error rate 0 <= max 0.02 (stable 0)",
)


class TestWholeRollout:
    def test_canary_then_promotion_then_cleanup(self) -> None:
        live, status = serving(SPEC)
        stable_template = copy.deepcopy(live["Deployment", "chat-primary"]["spec"]["template"])
        _, _, status = step(CHANGED, live, status)
        # The canary is Ready: in traffic, the entry Service selects both, the stable shrinks.
        outcome, client, status = step(CHANGED, live, status, now="2026-01-01T00:00:10Z")
        assert status["rollout"]["phase"] == "Progressing"
        assert client.patches == [("Deployment", "chat-primary", {"spec": {"replicas": 3}})]
        (entry,) = [
            o for o in client.applied if o["kind"] == "Service" and o["metadata"]["name"] == "chat"
        ]
        assert entry["spec"]["selector"] == {builders.DEPLOYMENT_LABEL: "chat"}
        assert live["Deployment", "chat-primary"]["spec"]["template"] == stable_template
        # A judgement is asked for only while the canary is in traffic.
        asked: list[reconcile.MeasureRequest] = []

        def measure(request: reconcile.MeasureRequest) -> canary_analysis.Judgement:
            asked.append(request)
            return PASSED

        outcome, client, status = step(
            CHANGED, live, status, now="2026-01-01T00:01:20Z", measure=measure
        )
        assert [r.revision for r in asked] == [status["rollout"]["canaryRevision"]]
        assert status["rollout"]["phase"] == "Promoting"
        assert status["rollout"]["analysis"][-1]["result"] == "Passed"
        promoted = live["Deployment", "chat-primary"]
        assert builders.revision_of(promoted) == status["rollout"]["canaryRevision"]
        assert promoted["spec"]["replicas"] == 4
        assert "plan" in outcome.status_patch or status["plan"]
        # The primary reports every pod updated: Completed, the canary's children deleted.
        outcome, client, status = step(CHANGED, live, status, now="2026-01-01T00:01:40Z")
        assert status["rollout"]["phase"] == "Completed"
        assert set(client.deleted) == {
            ("Deployment", "chat-canary"),
            ("Service", "chat-canary"),
            ("ConfigMap", "chat-canary-license"),
        }
        (entry,) = [
            o for o in client.applied if o["kind"] == "Service" and o["metadata"]["name"] == "chat"
        ]
        assert entry["spec"]["selector"][builders.VARIANT_LABEL] == "primary"
        assert "Removed" in [e.reason for e in outcome.events]

    def test_abort_annotation_rolls_back_and_is_consumed(self) -> None:
        live, status = serving(SPEC)
        _, _, status = step(CHANGED, live, status)
        outcome, client, status = step(
            CHANGED,
            live,
            status,
            annotations={"llamaops.dev/rollout": "abort"},
            now="2026-01-01T00:00:05Z",
        )
        assert outcome.consume_action
        assert status["rollout"]["phase"] == "RolledBack"
        assert status["phase"] == "Degraded"
        assert ("Deployment", "chat-canary") in client.deleted
        # Held on later reconciles: nothing of the new spec reaches the primary.
        outcome, client, status = step(CHANGED, live, status, now="2026-01-01T00:00:30Z")
        assert "Deployment/chat-primary" not in applied_names(client)
        assert "Deployment/chat-canary" not in applied_names(client)

    def test_an_unknown_action_is_reported_and_removed(self) -> None:
        live, status = serving(SPEC)
        outcome, _ = run(CHANGED, live, status, annotations={"llamaops.dev/rollout": "pronto"})
        assert outcome.consume_action
        (warning,) = [e for e in outcome.events if e.reason == "UnknownRolloutAction"]
        assert "'pronto'" in warning.message

    def test_a_crashed_canary_pod_rolls_back_at_once(self) -> None:
        live, status = serving(SPEC)
        _, _, status = step(CHANGED, live, status)
        crashed = {
            "metadata": {"name": "chat-canary-x"},
            "status": {
                "containerStatuses": [
                    {
                        "name": "engine",
                        "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                ]
            },
        }
        client = Client(pods=[crashed])
        _, client, status = step(CHANGED, live, status, client=client)
        assert client.pod_lists == 1
        assert status["rollout"]["reason"] == "CanaryFailed"
        assert "CrashLoopBackOff" in status["rollout"]["message"]


class NoGatewayAPI(Client):
    """An API server without the Gateway API: every HTTPRoute apply is a 404."""

    def __init__(self) -> None:
        super().__init__()
        self.route_attempts = 0

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "HTTPRoute":
            self.route_attempts += 1
            raise k8s.APIError(404, "NotFound", "the server could not find the requested resource")
        return super().apply(obj)


class TestRefusedRoute:
    def test_retried_on_change_or_after_the_refresh_period_not_every_resync(self) -> None:
        routed = {**SPEC, "traffic": {"gatewayRef": {"name": "inference"}}}
        client, unwatched = NoGatewayAPI(), {}

        def once(status: dict[str, Any], clock: float) -> dict[str, Any]:
            outcome = reconcile.reconcile(
                body=body(routed, status),
                settings=SETTINGS,
                cluster=reconcile.Cluster(
                    client=client,  # type: ignore[arg-type]
                    lookup=lambda kind, ns, name: None,
                ),
                clock=reconcile.Clock(now=NOW, monotonic=lambda: clock),
                memory=reconcile.Memory(unwatched=unwatched),
            )
            return merged(status, outcome.status_patch)

        status = once({}, 1000.0)
        assert client.route_attempts == 1
        traffic = [c for c in status["conditions"] if c["type"] == "Traffic"]
        assert [(c["status"], c["reason"]) for c in traffic] == [
            ("False", "GatewayAPINotInstalled")
        ]
        status = once(status, 1015.0)  # a resync later: not tried, still reported
        assert client.route_attempts == 1
        assert [c["reason"] for c in status["conditions"] if c["type"] == "Traffic"] == [
            "GatewayAPINotInstalled"
        ]
        once(status, 1000.0 + reconcile.REAPPLY_SECONDS)  # the refresh period: tried again
        assert client.route_attempts == 2
