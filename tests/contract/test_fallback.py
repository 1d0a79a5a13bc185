"""Fallback end to end: real Kopf, real handlers, kmock (issue 7).

Two kinds of fallback. Failover moves the entry Service ``chat`` to a fallback model's
pods (``chat-fallback-N``) while the primary cannot serve, and back once it has been
healthy for ``spec.failover.holdDown``. Re-planning moves the primary itself: onto the
next pool of ``spec.placement.pools`` when its pods stay unschedulable (no free GPUs),
or to a plan with more memory headroom after an OOM kill.

There is no scheduler, kubelet or Deployment controller: the tests create the primary's
Pod objects with the status a scheduler or kubelet would write (PodScheduled False /
Unschedulable, a container OOM-killed), and report a Deployment's pods Ready
(``report_ready``) or gone the way the Deployment controller would. The operator reads
the primary's pods only while its Deployment reports fewer ready pods than it asks for,
so the primary is kept below its replica count wherever the pods must be read.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
import yaml
from kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LLAMA,
    NAMESPACE,
    PODS,
    POOLS_YAML,
    SERVICES,
    TIMEOUT,
    ApplyingEmulator,
    condition_of,
    container_args,
    create,
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

from llama_operator.runtime import operator_metrics

PRIMARY_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SMALL = "meta-llama/Llama-3.2-1B-Instruct"
ENTRY_PATH = f"/api/v1/namespaces/{NAMESPACE}/services/chat"
ON_PRIMARY = {"llamaops.dev/deployment": "chat", "llamaops.dev/variant": "primary"}
ON_FALLBACK = {"llamaops.dev/fallback-of": "chat", "llamaops.dev/variant": "fallback-0"}
GPU = "nvidia.com/gpu"
SCHEDULER_SAYS = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."

BUNDLED_POOLS = {p["name"]: p for p in yaml.safe_load(POOLS_YAML.read_text())["pools"]}
# An operator config whose second pool differs from l4 in every way a pod shows it: a
# spot node group behind a taint of its own, with 16 GB GPUs (Llama 3.1 8B even at fp8
# needs two of them). It costs more per replica than l4, so l4 is planned first.
SPOT_POOL = {
    "name": "a2-spot",
    "gpuProduct": "NVIDIA-A2",
    "gpuMemoryGiB": 14.6,
    "computeCapability": "8.6",
    "gpusPerNode": 4,
    "costPerGPUHour": 0.6,
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A2", "cloud.example.com/capacity": "spot"},
    "tolerations": [
        {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
        {"key": "cloud.example.com/capacity", "operator": "Equal", "value": "spot"},
    ],
}
SPOT_CONFIG = yaml.safe_dump({"pools": [BUNDLED_POOLS["l4"], SPOT_POOL]})
POOLS = {**BUNDLED_POOLS, SPOT_POOL["name"]: SPOT_POOL}


def iso(seconds_from_now: float = 0.0) -> str:
    """An RFC 3339 time in whole seconds, as the API server writes them."""
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def primary_pod(
    name: str, pod_status: dict[str, Any], *, pool: str, node: str | None = None
) -> dict[str, Any]:
    """A pod of the primary's ReplicaSet for a template on ``pool`` (its node selector),
    as the scheduler (``node``: where it was bound) or kubelet left it."""
    pod_spec: dict[str, Any] = {"nodeSelector": dict(POOLS[pool]["nodeSelector"])}
    if node is not None:
        pod_spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"llamaops.dev/deployment": "chat", "llamaops.dev/variant": "primary"},
        },
        "spec": pod_spec,
        "status": pod_status,
    }


def unschedulable(name: str, since: float, pool: str) -> dict[str, Any]:
    """A Pending pod the scheduler found no node with free GPUs for, ``since`` seconds ago."""
    return primary_pod(
        name,
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": SCHEDULER_SAYS,
                    "lastTransitionTime": iso(-since),
                }
            ],
        },
        pool=pool,
    )


def oom_killed(name: str) -> dict[str, Any]:
    """A pod on l4 whose engine was OOM-killed just now and waits to be restarted."""
    return primary_pod(
        name,
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "engine",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": iso()}
                    },
                }
            ],
        },
        pool="l4",
        node="gpu-l4-1",
    )


async def delete(cluster: ApplyingEmulator, resource: str, name: str) -> None:
    """What the Deployment controller does to a pod of a replaced template."""
    group_version, plural = resource.rsplit("/", 1)
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    async with cluster.delete(f"{base}/namespaces/{NAMESPACE}/{plural}/{name}") as response:
        assert response.status < 300, await response.text()


async def report_unready(cluster: ApplyingEmulator, name: str) -> None:
    """The Deployment controller's report once the last pod failed its readiness probe."""
    generation = obj(cluster, DEPLOYMENTS, name)["metadata"].get("generation")
    await patch(
        cluster,
        DEPLOYMENTS,
        name,
        {
            "status": {
                "replicas": 1,
                "readyReplicas": 0,
                "updatedReplicas": 1,
                "observedGeneration": generation,
            }
        },
        subresource="status",
    )


def entry_applies(cluster: ApplyingEmulator, since: int = 0) -> list[Any]:
    return [
        r
        for r in writes(cluster, since)
        if r.url.path == ENTRY_PATH and "apply-patch" in r.headers.get("Content-Type", "")
    ]


def entry_selector(cluster: ApplyingEmulator) -> dict[str, str]:
    """The selector last applied to the entry Service. (A Service's selector is an atomic
    map: server-side apply replaces it whole, where kmock's naive merge would keep keys.)"""
    return dict(entry_applies(cluster)[-1].data["spec"]["selector"])


def with_reason(cluster: ApplyingEmulator, reason: str) -> list[dict[str, Any]]:
    return [e for e in events(cluster) if e["reason"] == reason]


def failovers(event: str) -> float:
    """The operator's failover count of ``event`` so far (``fallback_started``), counted when
    its reconcile ends, before its Events are posted (the whole process: take a difference)."""
    value = operator_metrics.REGISTRY.get_sample_value(
        "llama_operator_failovers_total", {"event": event}
    )
    return float(value or 0.0)


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


def gpus(deployment: dict[str, Any]) -> str:
    return str(pod_spec(deployment)["containers"][0]["resources"]["limits"][GPU])


def arg(deployment: dict[str, Any], flag: str) -> str | None:
    args = container_args(deployment)
    return args[args.index(flag) + 1] if flag in args else None


def failover_spec(replicas: int = 1, hold_down: str = "3s", **extra: Any) -> dict[str, Any]:
    fallback: dict[str, Any] = {"model": {"id": SMALL}, "replicas": replicas}
    fallback["license"] = {"accept": True}  # Llama 3.2's licence, not the primary's
    return {
        "model": {"id": PRIMARY_MODEL},
        "replicas": 1,
        "license": {"accept": True},
        "fallbacks": [fallback],
        "failover": {"holdDown": hold_down},
        **extra,
    }


async def primary_serving(cluster: ApplyingEmulator, body: dict[str, Any]) -> None:
    """Create the LlamaDeployment and report its primary Ready (the entry Service on it)."""
    await create(cluster, LLAMA, llama(spec=body))
    await eventually(lambda: obj(cluster, DEPLOYMENTS, "chat-primary"), message="primary")
    await report_ready(cluster, "chat-primary", 1)
    await eventually(lambda: status_of(cluster).get("phase") == "Ready", message="Ready")
    await eventually(lambda: entry_selector(cluster) == ON_PRIMARY, message="entry on primary")


class TestPoolFallback:
    @pytest.mark.parametrize(
        ("pools", "gpus_after"),
        [
            pytest.param(["l4", "a10g"], "1", id="bundled-l4-to-a10g"),
            pytest.param(
                ["l4", "a2-spot"],
                "2",
                id="tainted-16GB-pool",
                marks=pytest.mark.operator_config(SPOT_CONFIG),
            ),
        ],
    )
    async def test_unschedulable_primary_is_replanned_onto_the_next_pool(
        self, operator: ApplyingEmulator, pools: list[str], gpus_after: str
    ) -> None:
        first, second = pools
        body = {
            "model": {"id": PRIMARY_MODEL},
            "replicas": 1,
            "license": {"accept": True},
            # 8-bit: one L4 or A10G holds Llama 3.1 8B at fp8 (at 16-bit it needs two L4s).
            "placement": {"pools": pools, "optimize": "balanced"},
            "failover": {"gracePeriod": "1s"},
        }
        await create(operator, LLAMA, llama(spec=body))
        before = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        assert pod_spec(before)["nodeSelector"] == POOLS[first]["nodeSelector"]
        assert gpus(before) == "1"
        await eventually(lambda: status_of(operator).get("plan", {}).get("pool") == first)
        # The scheduler finds no node with a free GPU: the primary's pod stays Pending (its
        # Deployment, just created, reports no ready replica).
        await create(operator, PODS, unschedulable("chat-primary-5d8f-x1", since=5, pool=first))

        await eventually(
            lambda: status_of(operator)["plan"]["pool"] == second, message="re-planned"
        )
        after = await eventually(
            lambda: (
                pod_spec(d := obj(operator, DEPLOYMENTS, "chat-primary"))["nodeSelector"]
                == POOLS[second]["nodeSelector"]
                and d
            ),
            message=f"the primary on {second}",
        )
        pod = pod_spec(after)
        assert pod["nodeSelector"] == POOLS[second]["nodeSelector"]
        assert pod["tolerations"] == POOLS[second]["tolerations"]
        assert gpus(after) == gpus_after
        assert arg(after, "--tensor-parallel-size") == gpus_after
        plan = status_of(operator)["plan"]
        assert (plan["gpuProduct"], plan["tensorParallel"]) == (
            POOLS[second]["gpuProduct"],
            int(gpus_after),
        )
        # Applied in place, not through a canary: the primary had no ready pod to protect.
        assert not exists(operator, DEPLOYMENTS, "chat-canary")

        state = status_of(operator)
        (excluded,) = state["recovery"]["excludedPools"]
        assert (excluded["pool"], excluded["reason"]) == (first, "Unschedulable")
        assert excluded["message"] == SCHEDULER_SAYS
        (change,) = state["planHistory"]
        assert (change["reason"], change["fromPool"], change["toPool"]) == (
            "Unschedulable",
            first,
            second,
        )
        assert f"pods unschedulable on pool {first} for more than 1s" in change["message"]
        assert SCHEDULER_SAYS in change["message"]
        (replanned,) = await eventually(lambda: with_reason(operator, "Replanned"))
        assert replanned["type"] == "Warning"
        assert f"now on pool {second}" in replanned["message"]

        # The Deployment controller replaces the pod of the old template. The new pool gets
        # a grace period of its own: the pod pending since before the move costs it none.
        await delete(operator, PODS, "chat-primary-5d8f-x1")
        await asyncio.sleep(2.0)  # two grace periods, four resyncs
        state = status_of(operator)
        assert state["plan"]["pool"] == second
        assert [x["pool"] for x in state["recovery"]["excludedPools"]] == [first]
        assert len(state["planHistory"]) == 1

    async def test_the_new_pool_is_not_excluded_while_its_pod_loads(
        self, operator: ApplyingEmulator
    ) -> None:
        body = {
            "model": {"id": PRIMARY_MODEL},
            "replicas": 1,
            "license": {"accept": True},
            "placement": {"pools": ["l4", "a10g"]},
            "failover": {"gracePeriod": "1s"},
        }
        await create(operator, LLAMA, llama(spec=body))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await create(operator, PODS, unschedulable("chat-primary-5d8f-x1", since=5, pool="l4"))
        await eventually(lambda: status_of(operator)["plan"]["pool"] == "a10g")
        # With the default rollout policy (maxSurge 1, maxUnavailable 0) the Deployment
        # controller keeps the old ReplicaSet's pending pod until the new pod is available.
        # The new pod found an A10G node and loads the model (not ready yet).
        loading = primary_pod(
            "chat-primary-7c9e-x2",
            {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso()}
                ],
                "containerStatuses": [
                    {
                        "name": "engine",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": iso()}},
                    }
                ],
            },
            pool="a10g",
            node="gpu-a10g-1",
        )
        await create(operator, PODS, loading)
        await asyncio.sleep(2.5)  # longer than the grace period after the re-planning
        state = status_of(operator)
        assert [x["pool"] for x in state["recovery"]["excludedPools"]] == ["l4"]
        assert condition_of(operator, "Planned")["status"] == "True"


async def exhaust_pools(cluster: ApplyingEmulator) -> None:
    """A primary on pools [l4, a10g] with a warm fallback serving for it: its pods find
    no free GPU on l4, then none on a10g either."""
    body = failover_spec(hold_down="1s", placement={"pools": ["l4", "a10g"]})
    body["failover"]["gracePeriod"] = "1s"
    await create(cluster, LLAMA, llama(spec=body))
    await eventually(lambda: obj(cluster, DEPLOYMENTS, "chat-fallback-0"), message="fallback")
    await report_ready(cluster, "chat-fallback-0", 1)
    await eventually(lambda: entry_selector(cluster) == ON_FALLBACK, message="failover")
    await create(cluster, PODS, unschedulable("chat-primary-5d8f-x1", since=5, pool="l4"))
    await eventually(lambda: status_of(cluster)["plan"]["pool"] == "a10g", message="a10g")
    await delete(cluster, PODS, "chat-primary-5d8f-x1")  # replaced by the a10g template's
    await create(cluster, PODS, unschedulable("chat-primary-7c9e-x2", since=0, pool="a10g"))
    await eventually(
        lambda: len(status_of(cluster)["recovery"]["excludedPools"]) == 2, message="a10g out"
    )


class TestEveryPoolExcluded:
    async def test_it_is_reported_and_the_fallback_keeps_serving(
        self, operator: ApplyingEmulator
    ) -> None:
        await exhaust_pools(operator)
        planned = await wait_condition(operator, "Planned", status="False", reason="NoFeasiblePlan")
        assert planned["reason"] == "NoFeasiblePlan"
        assert "every GPU pool the spec allows was excluded" in planned["message"]
        assert "pool l4 excluded since" in planned["message"]
        assert "pool a10g excluded since" in planned["message"]
        assert "spec.failover.retryPoolsAfter" in planned["message"]
        state = status_of(operator)
        assert state["phase"] == "Degraded"
        assert state["plan"]["pool"] == "a10g"  # the last plan, as status reports it
        last = state["planHistory"][-1]
        assert (last["reason"], last["fromPool"], last.get("toPool")) == (
            "Unschedulable",
            "a10g",
            None,
        )
        # (Events are posted after the status patch of the same reconcile.)
        (_, replanned) = await eventually(
            lambda: (e := with_reason(operator, "Replanned"))[1:] and e
        )
        assert "no plan fits any more" in replanned["message"]
        assert entry_selector(operator) == ON_FALLBACK
        assert state["activeModel"] == SMALL

    async def test_the_primary_keeps_its_last_plan(self, operator: ApplyingEmulator) -> None:
        await exhaust_pools(operator)
        await eventually(lambda: condition_of(operator, "Planned")["status"] == "False")
        await asyncio.sleep(1.0)  # two resyncs
        deployment = obj(operator, DEPLOYMENTS, "chat-primary")
        assert pod_spec(deployment)["nodeSelector"] == POOLS["a10g"]["nodeSelector"]

    async def test_failover_goes_on(self, operator: ApplyingEmulator) -> None:
        await exhaust_pools(operator)
        await eventually(lambda: condition_of(operator, "Planned")["status"] == "False")
        await asyncio.sleep(1.0)  # two resyncs
        available = condition_of(operator, "Available")
        assert (available["status"], available["reason"]) == ("True", "FallbackAvailable")
        # GPUs free up: the pending pod is scheduled and gets ready.
        await delete(operator, PODS, "chat-primary-7c9e-x2")
        await report_ready(operator, "chat-primary", 1)
        await eventually(lambda: entry_selector(operator) == ON_PRIMARY, message="fail-back")


class TestSelfHealing:
    async def test_an_oom_killed_primary_is_replanned_with_more_headroom(
        self, operator: ApplyingEmulator
    ) -> None:
        body = {
            "model": {"id": PRIMARY_MODEL},
            "replicas": 1,
            "license": {"accept": True},
            # At 0.98 (capped to 0.96 so the CUDA context fits) one L4 holds the 16-bit
            # weights with four 4096-token sequences; at 0.9 it does not.
            "placement": {"pools": ["l4"], "gpuMemoryUtilization": 0.98},
        }
        await create(operator, LLAMA, llama(spec=body))
        before = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        old = await eventually(lambda: status_of(operator).get("plan"))
        assert (old["quantization"], old["tensorParallel"]) == ("none", 1)
        assert arg(before, "--max-model-len") == str(old["maxModelLen"])
        assert arg(before, "--quantization") is None
        # The engine was OOM-killed and waits in CrashLoopBackOff; the Deployment (just
        # created) reports no ready replica.
        await create(operator, PODS, oom_killed("chat-primary-5d8f-x1"))

        await eventually(
            lambda: status_of(operator).get("recovery", {}).get("headroom") == 1,
            message="headroom",
        )
        new = await eventually(lambda: (p := status_of(operator)["plan"]) != old and p)
        # With 2 GiB more left free, one L4 no longer holds the 16-bit weights with the KV
        # cache they need: the planner takes 8-bit, which the balanced policy allows, over a
        # second GPU (the memory it frees goes to the KV cache). Same pool, same GPU count.
        assert (new["pool"], new["tensorParallel"], new["quantization"]) == ("l4", 1, "fp8")
        assert new["weightsGiB"] < old["weightsGiB"]
        after = await eventually(
            lambda: (
                arg(d := obj(operator, DEPLOYMENTS, "chat-primary"), "--quantization") == "fp8"
                and d
            )
        )
        assert arg(after, "--max-model-len") == str(new["maxModelLen"])
        assert arg(after, "--tensor-parallel-size") == "1"
        assert gpus(after) == "1"
        assert not exists(operator, DEPLOYMENTS, "chat-canary")

        (change,) = status_of(operator)["planHistory"]
        assert (change["reason"], change["fromPool"], change["toPool"]) == (
            "OutOfMemory",
            "l4",
            "l4",
        )
        assert "container engine was OOMKilled" in change["message"]
        assert "2 GiB more headroom per GPU (step 1/3)" in change["message"]
        (replanned,) = await eventually(lambda: with_reason(operator, "Replanned"))
        assert replanned["type"] == "Warning"
        assert "OOMKilled" in replanned["message"]
        assert f"maxModelLen {new['maxModelLen']}" in replanned["message"]

        # The same kill counts once, however many resyncs still see it...
        await asyncio.sleep(1.5)
        assert status_of(operator)["recovery"]["headroom"] == 1
        # ...and a kill of the new plan's pod adds the next step.
        await create(operator, PODS, oom_killed("chat-primary-6c4b-x2"))
        await eventually(lambda: status_of(operator)["recovery"]["headroom"] == 2)
        history = await eventually(lambda: (h := status_of(operator)["planHistory"])[1:] and h)
        assert [c["reason"] for c in history] == ["OutOfMemory", "OutOfMemory"]
        assert "step 2/3" in history[1]["message"]
        third = await eventually(lambda: (p := status_of(operator)["plan"]) != new and p)
        assert third["maxModelLen"] < new["maxModelLen"]


class TestFailover:
    async def test_the_entry_service_moves_to_the_ready_fallback_and_back_after_hold_down(
        self, operator: ApplyingEmulator
    ) -> None:
        hold_down = 3.0
        await primary_serving(operator, failover_spec(hold_down=f"{hold_down:g}s"))
        fallback = await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-fallback-0"))
        assert fallback["spec"]["replicas"] == 1  # a warm standby
        assert SMALL in container_args(fallback)
        # Its pods never carry the primary's label: an entry Service that selects every
        # variant of chat (a canary in traffic) or the primary's pod listing never sees them.
        for labels in (
            fallback["spec"]["template"]["metadata"]["labels"],
            fallback["spec"]["selector"]["matchLabels"],
        ):
            assert "llamaops.dev/deployment" not in labels
            assert {k: labels[k] for k in ON_FALLBACK} == ON_FALLBACK
        await eventually(lambda: exists(operator, SERVICES, "chat-fallback-0"))
        await eventually(lambda: exists(operator, CONFIGMAPS, "chat-fallback-0-license"))
        await report_ready(operator, "chat-fallback-0", 1)
        await eventually(
            lambda: status_of(operator)["failover"]["fallbacks"][0]["readyReplicas"] == 1
        )
        serving = condition_of(operator, "FallbackActive")
        assert (serving["status"], serving["reason"]) == ("False", "PrimaryServing")
        assert status_of(operator)["activeModel"] == PRIMARY_MODEL

        # The primary loses its last ready pod.
        await report_unready(operator, "chat-primary")
        await eventually(lambda: entry_selector(operator) == ON_FALLBACK, message="failover")
        active = await eventually(
            lambda: (c := condition_of(operator, "FallbackActive"))["status"] == "True" and c
        )
        assert active["reason"] == "Unavailable"
        assert "traffic moved to fallback-0" in active["message"]
        state = status_of(operator)
        assert state["activeModel"] == SMALL
        assert (state["failover"]["active"], state["failover"]["reason"]) == (
            "fallback-0",
            "Unavailable",
        )
        assert state["phase"] == "Degraded"
        available = condition_of(operator, "Available")
        assert (available["status"], available["reason"]) == ("True", "FallbackAvailable")
        (failed_over,) = await eventually(lambda: with_reason(operator, "FailedOver"))
        assert failed_over["type"] == "Warning"
        assert "the primary has no ready replica" in failed_over["message"]
        assert SMALL in failed_over["message"]

        # The primary is ready again: traffic stays on the fallback for the hold-down.
        await report_ready(operator, "chat-primary", 1)
        ready_at = asyncio.get_running_loop().time()
        while entry_selector(operator) == ON_FALLBACK:
            # (Not before the hold-down is what is asserted; how long after, a loaded
            # machine decides.)
            elapsed = asyncio.get_running_loop().time() - ready_at
            assert elapsed < hold_down + TIMEOUT, "no fail-back"
            await asyncio.sleep(0.05)
        back_after = asyncio.get_running_loop().time() - ready_at
        # The operator stamps primaryHealthySince in whole seconds (and from the start of
        # the reconcile that saw the report), which can take up to 1 s off the hold-down:
        # anything shorter would be a fail-back before it.
        assert back_after >= hold_down - 1.2
        assert entry_selector(operator) == ON_PRIMARY
        (failed_back,) = await eventually(lambda: with_reason(operator, "FailedBack"))
        assert failed_back["type"] == "Normal"
        assert f"spec.failover.holdDown ({hold_down:g}s)" in failed_back["message"]
        await eventually(lambda: status_of(operator)["activeModel"] == PRIMARY_MODEL)
        await eventually(lambda: status_of(operator)["phase"] == "Ready")
        serving = await wait_condition(operator, "FallbackActive", reason="PrimaryServing")
        assert (serving["status"], serving["reason"]) == ("False", "PrimaryServing")
        assert obj(operator, DEPLOYMENTS, "chat-fallback-0")["spec"]["replicas"] == 1  # warm

    async def test_a_cold_fallback_starts_and_takes_traffic_only_once_ready(
        self, operator: ApplyingEmulator
    ) -> None:
        started_before = failovers("fallback_started")
        await primary_serving(operator, failover_spec(replicas=0, hold_down="1s"))
        # (A new primary has no ready replica either: the cold fallback may have been
        # started during its first start, and stopped once it was Ready. Count from here,
        # once every StartingFallback the operator has emitted so far has been posted.)
        cold = await eventually(
            lambda: (
                (d := obj(operator, DEPLOYMENTS, "chat-fallback-0"))["spec"]["replicas"] == 0 and d
            ),
            message="the cold fallback at zero",
        )
        assert cold["spec"]["replicas"] == 0
        await eventually(
            lambda: (
                len(with_reason(operator, "StartingFallback"))
                == failovers("fallback_started") - started_before
            ),
            message="every StartingFallback posted",
        )
        seen = len(with_reason(operator, "StartingFallback"))
        await report_unready(operator, "chat-primary")
        await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-fallback-0")["spec"]["replicas"] == 1,
            message="the cold fallback scaled up",
        )
        (starting,) = await eventually(lambda: with_reason(operator, "StartingFallback")[seen:])
        assert starting["type"] == "Normal"
        assert f"starting the cold fallback fallback-0 ({SMALL})" in starting["message"]
        # Loading: the entry point stays where it is (no endpoint is better than none).
        await asyncio.sleep(1.0)  # two resyncs
        assert entry_selector(operator) == ON_PRIMARY
        waiting = condition_of(operator, "FallbackActive")
        assert (waiting["status"], waiting["reason"]) == ("False", "NoFallbackReady")
        assert "no fallback is ready yet (fallback-0)" in waiting["message"]
        assert status_of(operator)["failover"]["started"] == [0]

        await report_ready(operator, "chat-fallback-0", 1)
        await eventually(lambda: entry_selector(operator) == ON_FALLBACK, message="failover")
        await eventually(lambda: status_of(operator).get("activeModel") == SMALL)

        # Back on the healthy primary, the fallback started for the failover goes cold again.
        await report_ready(operator, "chat-primary", 1)
        await eventually(lambda: entry_selector(operator) == ON_PRIMARY, message="fail-back")
        await eventually(
            lambda: obj(operator, DEPLOYMENTS, "chat-fallback-0")["spec"]["replicas"] == 0,
            message="scaled back to zero",
        )
        state = await eventually(
            lambda: (f := status_of(operator)["failover"])["active"] == "primary" and f
        )
        assert state["started"] == []
        assert state["fallbacks"][0]["replicas"] == 0

    async def test_a_fallback_whose_licence_is_not_accepted_is_reported_not_used(
        self, operator: ApplyingEmulator
    ) -> None:
        body = failover_spec()
        del body["fallbacks"][0]["license"]  # Llama 3.2: the primary's acceptance is 3.1's
        await create(operator, LLAMA, llama(spec=body))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"), message="primary")
        row = await eventually(lambda: status_of(operator)["failover"]["fallbacks"][0])
        assert row["name"] == "fallback-0"
        assert row["model"] == SMALL
        assert row["servable"] is False
        assert row["replicas"] == 0
        assert "spec.fallbacks[0].license.accept" in row["reason"]
        assert "Llama 3.2 Community License" in row["reason"]
        # The primary has no ready replica, and the only fallback may not serve: reported.
        waiting = await wait_condition(operator, "FallbackActive", reason="NoFallbackReady")
        assert (waiting["status"], waiting["reason"]) == ("False", "NoFallbackReady")
        assert "no fallback may serve (fallback-0:" in waiting["message"]
        await asyncio.sleep(1.0)  # two resyncs: still no pods, no Service, traffic unmoved
        for resource in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
            assert not exists(operator, resource, "chat-fallback-0")
        assert entry_selector(operator) == ON_PRIMARY
        assert status_of(operator)["activeModel"] == PRIMARY_MODEL

        # Accepting its licence lets it run.
        await patch(
            operator,
            LLAMA,
            "chat",
            {"spec": {"fallbacks": [{**body["fallbacks"][0], "license": {"accept": True}}]}},
        )
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-fallback-0"))
        await eventually(lambda: status_of(operator)["failover"]["fallbacks"][0]["servable"])

    async def test_removing_a_serving_fallback_returns_traffic_then_deletes_it(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama(spec=failover_spec()))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-fallback-0"))
        await report_ready(operator, "chat-fallback-0", 1)
        await eventually(lambda: entry_selector(operator) == ON_FALLBACK, message="failover")
        mark = len(list(operator))

        await patch(operator, LLAMA, "chat", {"spec": {"fallbacks": []}})
        await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-fallback-0"))
        await eventually(lambda: not exists(operator, SERVICES, "chat-fallback-0"))
        await eventually(lambda: not exists(operator, CONFIGMAPS, "chat-fallback-0-license"))
        # The entry Service was back on the primary before the fallback's pods went.
        sent = writes(operator, mark)
        deleted = next(
            i for i, r in enumerate(sent) if r.url.path.endswith("/deployments/chat-fallback-0")
        )
        assert str(sent[deleted].method.value) == "DELETE"
        back = [
            i
            for i, r in enumerate(sent)
            if r.url.path == ENTRY_PATH
            and "apply-patch" in r.headers.get("Content-Type", "")
            and r.data["spec"]["selector"] == ON_PRIMARY
        ]
        assert back
        assert back[0] < deleted
        (removed,) = await eventually(lambda: with_reason(operator, "Removed"))
        assert removed["message"] == (
            "Deployment/chat-fallback-0, Service/chat-fallback-0, ConfigMap/chat-fallback-0-license"
        )
        # Wait for the asserted status itself: failover, activeModel and the conditions
        # may land in different status patches (flaky under load otherwise).
        state = await eventually(
            lambda: (
                (s := status_of(operator)).get("failover") is None
                and s.get("activeModel") == PRIMARY_MODEL
                and "FallbackActive" not in {c["type"] for c in s.get("conditions") or []}
                and s
            ),
            message="back on the primary, no failover state",
        )
        assert state["activeModel"] == PRIMARY_MODEL
