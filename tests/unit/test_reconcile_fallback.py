"""reconcile.py with fallbacks and re-planning: what is applied, where the entry Service
points, what status says. A recording client stands in for the API."""

from __future__ import annotations

import copy
from typing import Any

from test_reconcile import SETTINGS, applied_by_us, body
from test_reconcile_rollout import Client, merged, ready

from llama_operator import reconcile
from llama_operator.serving import builders

PRIMARY_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FALLBACK_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
SPEC: dict[str, Any] = {
    "model": {"id": PRIMARY_MODEL},
    "license": {"accept": True},
    "replicas": 2,
    "fallbacks": [{"model": {"id": FALLBACK_MODEL}, "license": {"accept": True}}],
    "failover": {"gracePeriod": "1m", "holdDown": "2m"},
}
T0 = "2026-01-01T00:00:00Z"


class Pods(Client):
    """A client whose pod listing returns ``pods``."""

    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        super().__init__(pods)


def run(
    spec: dict[str, Any],
    live: dict[tuple[str, str], Any],
    status: dict[str, Any],
    *,
    now: str = T0,
    client: Client | None = None,
    queue: reconcile.QueueRead | None = None,
) -> tuple[reconcile.Outcome, Client, dict[str, Any]]:
    client = client or Pods()
    outcome = reconcile.reconcile(
        body=body(spec, status),
        settings=SETTINGS,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, name: live.get((kind, name)),
        ),
        clock=reconcile.Clock(now=now),
        readers=reconcile.Readers(queue=queue),
        # The children in ``live`` were applied by this process (a restart is tested apart).
        memory=reconcile.Memory(generations=applied_by_us(live)),
    )
    for obj in client.applied:
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in live:
            live[key] = copy.deepcopy(obj)
    return outcome, client, merged(status, outcome.status_patch)


def entry(client: Client) -> dict[str, str]:
    (service,) = [
        o for o in client.applied if o["kind"] == "Service" and o["metadata"]["name"] == "chat"
    ]
    return dict(service["spec"]["selector"])


def settled(spec: dict[str, Any]) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    """Primary and fallback applied, the fallback Ready, the primary Ready."""
    live: dict[tuple[str, str], Any] = {}
    _, client, status = run(spec, live, {})
    for obj in client.applied:
        if obj["kind"] == "Deployment":
            live[obj["kind"], obj["metadata"]["name"]] = ready(obj, obj["spec"]["replicas"])
    _, _, status = run(spec, live, status)
    return live, status


class TestFallbackChildren:
    def test_a_fallback_gets_its_own_children_and_labels(self) -> None:
        live: dict[tuple[str, str], Any] = {}
        _outcome, client, status = run(SPEC, live, {})
        names = {f"{o['kind']}/{o['metadata']['name']}" for o in client.applied}
        assert {
            "Deployment/chat-fallback-0",
            "Service/chat-fallback-0",
            "ConfigMap/chat-fallback-0-license",
        } <= names
        (standby,) = [
            o
            for o in client.applied
            if o["metadata"]["name"] == "chat-fallback-0" and o["kind"] == "Deployment"
        ]
        labels = standby["spec"]["template"]["metadata"]["labels"]
        assert builders.DEPLOYMENT_LABEL not in labels
        assert labels[builders.FALLBACK_OF_LABEL] == "chat"
        assert standby["spec"]["replicas"] == 1
        (row,) = status["failover"]["fallbacks"]
        assert (row["model"], row["servable"]) == (FALLBACK_MODEL, True)

    def test_an_unaccepted_licence_is_reported_and_gets_no_pods(self) -> None:
        spec = {**SPEC, "fallbacks": [{"model": {"id": FALLBACK_MODEL}}]}  # Llama 3.2: not 3.1's
        _, client, status = run(spec, {}, {})
        assert not any(o["metadata"]["name"].startswith("chat-fallback") for o in client.applied)
        (row,) = status["failover"]["fallbacks"]
        assert row["servable"] is False
        assert "spec.fallbacks[0].license.accept" in row["reason"]

    def test_the_primary_licence_acceptance_covers_a_fallback_under_the_same_licence(
        self,
    ) -> None:
        spec = {**SPEC, "fallbacks": [{"model": {"id": "meta-llama/Llama-3.1-8B"}}]}
        _, _, status = run(spec, {}, {})
        assert status["failover"]["fallbacks"][0]["servable"] is True

    def test_the_primary_pins_stay_with_the_primary(self) -> None:
        spec = {**SPEC, "placement": {"tensorParallel": 2, "quantization": "fp8"}}
        _, client, _ = run(spec, {}, {})
        (standby,) = [
            o
            for o in client.applied
            if o["metadata"]["name"] == "chat-fallback-0" and o["kind"] == "Deployment"
        ]
        args = standby["spec"]["template"]["spec"]["containers"][0]["args"]
        assert (
            "--tensor-parallel-size" not in args
            or args[args.index("--tensor-parallel-size") + 1] == "1"
        )


class TestFailover:
    def test_no_ready_primary_moves_the_entry_service_to_the_ready_fallback(self) -> None:
        live, status = settled(SPEC)
        assert status["activeModel"] == PRIMARY_MODEL
        live["Deployment", "chat-primary"]["status"]["readyReplicas"] = 0
        outcome, client, status = run(SPEC, live, status, now="2026-01-01T00:01:00Z")
        assert entry(client) == {
            builders.FALLBACK_OF_LABEL: "chat",
            builders.VARIANT_LABEL: "fallback-0",
        }
        assert status["activeModel"] == FALLBACK_MODEL
        assert status["phase"] == "Degraded"
        conditions = {c["type"]: c for c in status["conditions"]}
        assert (conditions["FallbackActive"]["status"], conditions["FallbackActive"]["reason"]) == (
            "True",
            "Unavailable",
        )
        assert conditions["Available"]["reason"] == "FallbackAvailable"
        assert "FailedOver" in [e.reason for e in outcome.events]

    def test_overload_moves_traffic_after_the_grace_period(self) -> None:
        spec = {**SPEC, "failover": {**SPEC["failover"], "overloadQueuePerReplica": 10}}
        live, status = settled(spec)
        busy: reconcile.QueueRead = lambda ns, name, plan: 40.0  # noqa: E731
        _, _, status = run(spec, live, status, now="2026-01-01T00:01:00Z", queue=busy)
        assert status["activeModel"] == PRIMARY_MODEL  # not yet: within the grace period
        assert status["failover"]["overloadedSince"] == "2026-01-01T00:01:00Z"
        _outcome, _client, status = run(spec, live, status, now="2026-01-01T00:02:00Z", queue=busy)
        assert status["activeModel"] == FALLBACK_MODEL
        assert status["failover"]["reason"] == "Overloaded"


def unschedulable(since: str, node_selector: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat-primary-x"},
        "spec": {"nodeSelector": node_selector},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    "lastTransitionTime": since,
                }
            ],
        },
    }


class TestReplanning:
    def test_every_pool_excluded_keeps_the_last_plan_and_says_what_is_missing(self) -> None:
        spec = {**SPEC, "placement": {"pools": ["l4"]}}
        live, status = settled(spec)
        before = copy.deepcopy(live["Deployment", "chat-primary"])
        live["Deployment", "chat-primary"]["status"]["readyReplicas"] = 0
        pool = before["spec"]["template"]["spec"]["nodeSelector"]
        client = Pods([unschedulable("2026-01-01T00:00:00Z", pool)])
        outcome, client, status = run(spec, live, status, now="2026-01-01T00:05:00Z", client=client)
        planned = {c["type"]: c for c in status["conditions"]}["Planned"]
        assert (planned["status"], planned["reason"]) == ("False", "NoFeasiblePlan")
        assert "pool l4 excluded" in planned["message"]
        assert [x["pool"] for x in status["recovery"]["excludedPools"]] == ["l4"]
        assert status["planHistory"][-1]["reason"] == "Unschedulable"
        assert status["planHistory"][-1].get("toPool") is None
        # The last plan stands: the primary is not re-applied, and traffic fails over.
        assert not any(o["metadata"]["name"] == "chat-primary" for o in client.applied)
        assert live["Deployment", "chat-primary"]["spec"] == before["spec"]
        assert status["activeModel"] == FALLBACK_MODEL
        assert "Replanned" in [e.reason for e in outcome.events]
