"""Canary rollouts end to end: real Kopf, real handlers, kmock, fake engine pods.

The serving "pods" are ``tests/podserver.py`` servers on 127.0.0.1 whose /metrics are
vLLM- or TGI-shaped pages with finished-request counters and latency histograms that
grow on every scrape, at the error rate and latency the test sets. They are made
visible as a real cluster would: EndpointSlices of ``<name>-primary`` and
``<name>-canary`` list each pod's address and port. There is no Deployment
controller: the test reports a Deployment's pods Ready (``report_ready``) the way the
controller would once their readiness probes pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from kube import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    HTTPROUTES,
    LLAMA,
    PODS,
    SERVICES,
    ApplyingEmulator,
    condition_of,
    create,
    endpoint_slice,
    events,
    eventually,
    exists,
    llama,
    obj,
    patch,
    report_ready,
    status_of,
    wait_condition,
    writes,
)

import podserver
from gateway import validate_httproute

PRIMARY_PATH = "/apis/apps/v1/namespaces/ai/deployments/chat-primary"
REVISION = "llamaops.dev/revision"


def spec(engine: str = "vllm", **extra: Any) -> dict[str, Any]:
    return {
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": engine,
        "replicas": 2,
        "license": {"accept": True},
        "rollout": {
            "steps": [{"weight": 25, "pause": "1s"}, {"weight": 50, "pause": "1s"}],
            "analysis": {
                "interval": "1s",
                "minRequests": 10,
                "maxErrorRate": 0.05,
                "maxP95LatencySeconds": 5,
            },
        },
        **extra,
    }


@pytest.fixture
def stable() -> Iterator[podserver.FakePod]:
    with podserver.FakePod() as pod:
        pod.rate = 20
        yield pod


@pytest.fixture
def canary_pod() -> Iterator[podserver.FakePod]:
    with podserver.FakePod() as pod:
        pod.rate = 20
        yield pod


def revision(cluster: ApplyingEmulator, name: str) -> str:
    return str(obj(cluster, DEPLOYMENTS, name)["metadata"]["annotations"][REVISION])


def rollout(cluster: ApplyingEmulator) -> dict[str, Any]:
    return dict(status_of(cluster).get("rollout") or {})


async def serving(cluster: ApplyingEmulator, body: dict[str, Any], pod: podserver.FakePod) -> str:
    """Create the LlamaDeployment, report its primary Ready with one scraped pod behind it;
    returns the stable revision."""
    await create(cluster, LLAMA, llama(spec=body))
    await eventually(lambda: obj(cluster, DEPLOYMENTS, "chat-primary"), message="primary")
    await report_ready(cluster, "chat-primary", 2)
    await create(cluster, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port))
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", message="Ready")
    return revision(cluster, "chat-primary")


async def change_template(cluster: ApplyingEmulator) -> None:
    """A change that restarts the serving pods: an extra engine argument."""
    await patch(cluster, LLAMA, "chat", {"spec": {"engineArgs": ["--enable-prefix-caching"]}})


async def canary_serves(cluster: ApplyingEmulator, pod: podserver.FakePod) -> str:
    """Wait for the canary, report it Ready with one pod; returns its revision."""
    await eventually(lambda: obj(cluster, DEPLOYMENTS, "chat-canary"), message="canary")
    await eventually(lambda: rollout(cluster).get("phase") == "Starting", message="Starting")
    await report_ready(cluster, "chat-canary", 1)
    await create(cluster, ENDPOINTSLICES, endpoint_slice("chat-canary", "canary", 0, pod.port))
    return revision(cluster, "chat-canary")


def entry_selector(cluster: ApplyingEmulator) -> dict[str, str]:
    """The selector last applied to the entry Service. (A Service's selector is an atomic
    map: server-side apply replaces it whole, where kmock's naive merge would keep keys.)"""
    applied = [
        r.data
        for r in writes(cluster)
        if r.url.path == "/api/v1/namespaces/ai/services/chat"
        and "apply-patch" in r.headers.get("Content-Type", "")
    ]
    return dict(applied[-1]["spec"]["selector"])


def primary_writes(cluster: ApplyingEmulator, since: int) -> list[Any]:
    return [r for r in writes(cluster, since) if r.url.path == PRIMARY_PATH]


def assert_template_untouched(cluster: ApplyingEmulator, since: int, allowed: str | None) -> None:
    """Every write to the stable Deployment since ``since`` left its pod template alone: a
    merge patch of spec.replicas, or (only with ``allowed``) the promotion's apply of
    exactly the canary's revision."""
    for request in primary_writes(cluster, since):
        body = request.data
        content_type = request.headers.get("Content-Type", "")
        if "merge-patch" in content_type:
            # (The emulator adds the metadata it assigns to the recorded body.)
            sent = {key: value for key, value in body.items() if key != "metadata"}
            assert sent == {"spec": {"replicas": body["spec"]["replicas"]}}, body
            continue
        assert "apply-patch" in content_type, content_type
        assert allowed is not None, f"the stable template was re-applied: {json.dumps(body)}"
        assert body["metadata"]["annotations"][REVISION] == allowed


class TestServiceSplit:
    async def test_a_healthy_canary_walks_the_steps_and_is_promoted(
        self, operator: ApplyingEmulator, stable: podserver.FakePod, canary_pod: podserver.FakePod
    ) -> None:
        stable_revision = await serving(operator, spec(), stable)
        since = len(list(operator))
        await change_template(operator)
        new = await canary_serves(operator, canary_pod)
        assert new != stable_revision
        # The canary is in traffic: the entry Service selects both variants' pods, and the
        # stable shrinks to what the weight leaves it (25% of 2 replicas: 1 and 1).
        await eventually(
            lambda: entry_selector(operator) == {"llamaops.dev/deployment": "chat"},
            message="entry selects both",
        )
        await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-primary")["spec"]["replicas"] == 1
        )
        assert_template_untouched(operator, since, allowed=None)
        await eventually(lambda: rollout(operator).get("phase") == "Promoting", message="Promoting")
        state = rollout(operator)
        assert state["stableRevision"] == stable_revision
        assert state["canaryRevision"] == new
        passed = [run for run in state["analysis"] if run["result"] == "Passed"]
        assert {run["step"] for run in passed} == {0, 1}  # judged at every step
        assert passed[0]["canary"]["requests"] >= 10
        assert passed[0]["canary"]["errorRate"] == 0
        assert passed[0]["stable"]["requests"] >= 10
        # Promotion: the primary takes the canary's template and all replicas; the canary
        # still serves until every primary pod runs it.
        await eventually(lambda: revision(operator, "chat-primary") == new, message="promoted")
        await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-primary")["spec"]["replicas"] == 2,
            message="every replica on the primary",
        )
        assert exists(operator, DEPLOYMENTS, "chat-canary")
        assert_template_untouched(operator, since, allowed=new)
        await report_ready(operator, "chat-primary", 2)
        await eventually(lambda: rollout(operator).get("phase") == "Completed", message="done")
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"))
        # The canary's children go, the entry Service returns and status follows, each
        # landing on its own: wait for each.
        await eventually(lambda: not exists(operator, SERVICES, "chat-canary"))
        await eventually(
            lambda: (
                entry_selector(operator)
                == {"llamaops.dev/deployment": "chat", "llamaops.dev/variant": "primary"}
            ),
            message="the entry Service on the primary",
        )
        await eventually(lambda: status_of(operator)["phase"] == "Ready", message="Ready")
        rollout_condition = await wait_condition(operator, "Rollout", reason="Completed")
        assert (rollout_condition["status"], rollout_condition["reason"]) == ("False", "Completed")
        wanted = {"RolloutStarted", "CanaryReady", "StepPassed", "Promoting", "Promoted"}
        # (Events are posted after the status patch of the same reconcile.)
        await eventually(
            lambda: wanted <= {e["reason"] for e in events(operator)}, message="Events"
        )
        for name in ("chat", "chat-primary"):
            kubernetes_validate.validate(obj(operator, SERVICES, name), "1.30", strict=True)

    async def test_a_failing_canary_is_rolled_back_and_not_retried(
        self, operator: ApplyingEmulator, stable: podserver.FakePod, canary_pod: podserver.FakePod
    ) -> None:
        await serving(operator, spec(), stable)
        since = len(list(operator))
        await change_template(operator)
        canary_pod.error_rate = 0.5
        new = await canary_serves(operator, canary_pod)
        await eventually(lambda: rollout(operator).get("phase") == "RolledBack", message="abort")
        state = rollout(operator)
        assert state["reason"] == "AnalysisFailed"
        assert state["canaryRevision"] == new
        failed = state["analysis"][-1]
        assert failed["result"] == "Failed"
        assert failed["canary"]["errorRate"] == pytest.approx(0.5, abs=0.05)
        assert failed["stable"]["errorRate"] == 0
        rolled = await wait_condition(operator, "RolledBack", status="True")
        assert rolled["status"] == "True"
        assert "error rate 0.5" in rolled["message"]
        assert "0.05" in rolled["message"]
        (event,) = await eventually(
            lambda: [e for e in events(operator) if e["reason"] == "RolledBack"], message="Event"
        )
        assert event["type"] == "Warning"
        assert "error rate 0.5" in event["message"]
        # Traffic is back on stable: canary gone, entry Service on the primary only, the
        # primary back to every replica, and its template never touched.
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"))
        await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-primary")["spec"]["replicas"] == 2
        )
        await eventually(
            lambda: entry_selector(operator)["llamaops.dev/variant"] == "primary",
            message="the entry Service on the primary",
        )
        await eventually(lambda: status_of(operator)["phase"] == "Degraded", message="Degraded")
        # Not retried while the spec stays the same: resyncs come and go, no new canary.
        await asyncio.sleep(2.0)  # four resyncs
        assert not exists(operator, DEPLOYMENTS, "chat-canary")
        assert_template_untouched(operator, since, allowed=None)

    async def test_a_crashing_canary_fails_at_once(
        self, operator: ApplyingEmulator, stable: podserver.FakePod
    ) -> None:
        await serving(operator, spec(), stable)
        await change_template(operator)
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-canary"), message="canary")
        new = revision(operator, "chat-canary")
        await eventually(lambda: rollout(operator).get("phase") == "Starting", message="Starting")

        def crashed(name: str, pod_revision: str) -> dict[str, Any]:
            labels = {
                "llamaops.dev/deployment": "chat",
                "llamaops.dev/variant": "canary",
                REVISION: pod_revision,
            }
            return {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "ai", "labels": labels},
                "status": {
                    "containerStatuses": [
                        {
                            "name": "engine",
                            "restartCount": 1,
                            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                        }
                    ]
                },
            }

        # A crashed pod of an older canary template is not this canary's failure.
        await create(operator, PODS, crashed("chat-canary-old-x1", "0123456789abcdef"))
        await asyncio.sleep(1.0)  # two resyncs
        assert rollout(operator)["phase"] == "Starting"
        await create(operator, PODS, crashed("chat-canary-7d9f-x2", new))
        await eventually(lambda: rollout(operator).get("reason") == "CanaryFailed", message="fail")
        rolled = await wait_condition(operator, "RolledBack", status="True")
        assert "OOMKilled" in rolled["message"]
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"))


@pytest.fixture
def tgi_pods() -> Iterator[tuple[podserver.FakePod, podserver.FakePod]]:
    with podserver.FakePod("tgi", rate=20) as stable, podserver.FakePod("tgi", rate=20) as canary:
        yield stable, canary


class TestGateway:
    async def test_the_httproute_carries_exact_weights_and_returns_to_the_primary(
        self, operator: ApplyingEmulator, tgi_pods: tuple[podserver.FakePod, podserver.FakePod]
    ) -> None:
        stable, canary_pod = tgi_pods
        body = spec(
            "tgi",
            traffic={
                "gatewayRef": {"name": "inference", "namespace": "gateways"},
                "hostnames": ["chat.example.com"],
            },
        )
        await serving(operator, body, stable)
        route = await eventually(lambda: obj(operator, HTTPROUTES, "chat"), message="route")
        validate_httproute(route)
        assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
            ("chat-primary", 100)
        ]
        since = len(list(operator))
        await change_template(operator)
        await canary_serves(operator, canary_pod)

        def weights() -> list[tuple[str, int]]:
            rules = obj(operator, HTTPROUTES, "chat")["spec"]["rules"]
            return [(b["name"], b["weight"]) for b in rules[0]["backendRefs"]]

        await eventually(lambda: weights() == [("chat-primary", 75), ("chat-canary", 25)])
        validate_httproute(obj(operator, HTTPROUTES, "chat"))
        # The entry Service stays on the stable pods: the route alone splits traffic.
        assert entry_selector(operator)["llamaops.dev/variant"] == "primary"
        # (status is written after the route, at the end of the same reconcile)
        await eventually(lambda: rollout(operator)["effectiveWeight"] == 25)
        await eventually(lambda: weights() == [("chat-primary", 50), ("chat-canary", 50)])
        await eventually(lambda: rollout(operator).get("phase") == "Promoting")
        assert_template_untouched(operator, since, allowed=rollout(operator)["canaryRevision"])
        await report_ready(operator, "chat-primary", 2)
        await eventually(lambda: rollout(operator).get("phase") == "Completed")
        await eventually(lambda: weights() == [("chat-primary", 100)], message="back to primary")
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"))
        kubernetes_validate.validate(obj(operator, SERVICES, "chat"), "1.30", strict=True)
        assert (await wait_condition(operator, "Traffic", status="True"))["status"] == "True"
        # Without the Gateway reference the route goes away.
        await patch(operator, LLAMA, "chat", {"spec": {"traffic": None}})
        await eventually(lambda: not exists(operator, HTTPROUTES, "chat"), message="route gone")


class TestRolling:
    async def test_rolling_updates_the_primary_in_place(
        self, operator: ApplyingEmulator, stable: podserver.FakePod
    ) -> None:
        body = spec()
        body["rollout"] = {"strategy": "Rolling", "maxSurge": 0, "maxUnavailable": 1}
        old = await serving(operator, body, stable)
        await change_template(operator)
        await eventually(lambda: revision(operator, "chat-primary") != old, message="rolled")
        strategy = obj(operator, DEPLOYMENTS, "chat-primary")["spec"]["strategy"]
        assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
        assert not exists(operator, DEPLOYMENTS, "chat-canary")
        assert "rollout" not in status_of(operator)

    async def test_a_failing_canary_behind_the_route_is_rolled_back(
        self, operator: ApplyingEmulator, tgi_pods: tuple[podserver.FakePod, podserver.FakePod]
    ) -> None:
        stable, canary_pod = tgi_pods
        body = spec("tgi", traffic={"gatewayRef": {"name": "inference"}})
        await serving(operator, body, stable)
        since = len(list(operator))
        await change_template(operator)
        canary_pod.latency = 30.0  # TGI's p95 end-to-end latency far above the 5 s allowed
        await canary_serves(operator, canary_pod)

        def backends() -> list[tuple[str, int]]:
            rules = obj(operator, HTTPROUTES, "chat")["spec"]["rules"]
            return [(b["name"], b["weight"]) for b in rules[0]["backendRefs"]]

        await eventually(lambda: backends() == [("chat-primary", 75), ("chat-canary", 25)])
        await eventually(lambda: rollout(operator).get("phase") == "RolledBack")
        assert rollout(operator)["reason"] == "AnalysisFailed"
        rolled = await wait_condition(operator, "RolledBack", status="True")
        assert "p95 latency" in rolled["message"]
        await eventually(lambda: backends() == [("chat-primary", 100)], message="route back")
        validate_httproute(obj(operator, HTTPROUTES, "chat"))
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"))
        assert_template_untouched(operator, since, allowed=None)


class TestManualControls:
    async def test_a_step_without_pause_waits_for_the_promote_annotation(
        self, operator: ApplyingEmulator, stable: podserver.FakePod, canary_pod: podserver.FakePod
    ) -> None:
        body = spec()
        body["rollout"]["steps"] = [{"weight": 50}]  # no pause: a person decides
        await serving(operator, body, stable)
        await change_template(operator)
        new = await canary_serves(operator, canary_pod)
        await eventually(
            lambda: rollout(operator).get("reason") == "WaitingForPromote", message="waiting"
        )
        await asyncio.sleep(1.5)  # judgements pass, the step still waits
        assert rollout(operator)["phase"] == "Paused"
        assert condition_of(operator, "Rollout")["reason"] == "WaitingForPromote"
        await patch(
            operator,
            LLAMA,
            "chat",
            {"metadata": {"annotations": {"llamaops.dev/rollout": "promote"}}},
        )
        await eventually(lambda: revision(operator, "chat-primary") == new, message="promoted")
        # Acted on once, then removed, so it cannot act again on a later rollout.
        await eventually(
            lambda: (
                "llamaops.dev/rollout"
                not in (obj(operator, LLAMA, "chat")["metadata"].get("annotations") or {})
            ),
            message="annotation removed",
        )
        (promoting,) = await eventually(
            lambda: [e for e in events(operator) if e["reason"] == "Promoting"]
        )
        assert "promoted by the llamaops.dev/rollout annotation" in promoting["message"]

    async def test_pausing_holds_the_step_and_resuming_goes_on(
        self, operator: ApplyingEmulator, stable: podserver.FakePod, canary_pod: podserver.FakePod
    ) -> None:
        body = spec()
        body["rollout"]["paused"] = True
        await serving(operator, body, stable)
        await change_template(operator)
        await canary_serves(operator, canary_pod)
        await eventually(lambda: rollout(operator).get("reason") == "Paused", message="paused")
        await asyncio.sleep(2.5)  # longer than the 1 s pause: still at the first step

        # ...though judged healthy (a judgement needs two scrapes an interval apart, which a
        # loaded machine may not fit into the sleep: wait for it, then look at the step).
        def judged() -> dict[str, Any]:
            state = rollout(operator)
            return state if any(r["result"] == "Passed" for r in state["analysis"]) else {}

        state = await eventually(judged, message="a judgement passed")
        assert (state["phase"], state["step"]) == ("Paused", 0)
        assert any(run["result"] == "Passed" for run in state["analysis"])
        await patch(operator, LLAMA, "chat", {"spec": {"rollout": {"paused": False}}})
        await eventually(lambda: rollout(operator).get("phase") == "Promoting")
