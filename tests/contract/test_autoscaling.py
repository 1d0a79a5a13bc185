"""The built-in autoscaler end to end: real Kopf, real handlers, kmock, fake serving pods.

The serving "pods" are ``tests/podserver.py`` HTTP servers on 127.0.0.1 answering
``/metrics`` with vLLM- or TGI-shaped text whose queue the test sets. They are made
visible to the operator as a real cluster would: an EndpointSlice of the
``<name>-primary`` Service (carrying the Service's labels, as the EndpointSlice
controller mirrors them) lists each pod's address and port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kube import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    HPAS,
    LLAMA,
    SCALEDOBJECTS,
    ApplyingEmulator,
    condition_of,
    create,
    events,
    eventually,
    exists,
    llama,
    obj,
    patch,
    path,
    status_of,
    wait_condition,
)
from prometheus_client import parser

import podserver
from llama_operator.runtime import operator_metrics

WINDOW = 3  # seconds: short, so scaling down is seen within a test


def spec(
    engine_name: str = "vllm", *, engine: str = "builtin", **autoscaling: Any
) -> dict[str, Any]:
    return {
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": engine_name,
        "replicas": 1,
        "license": {"accept": True},
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "targetQueueLength": 8,
            "intervalSeconds": 1,
            "scaleDownDelaySeconds": WINDOW,
            "engine": engine,
            **autoscaling,
        },
    }


def endpoint_slice(index: int, pod: podserver.FakePod, *, ready: bool = True) -> dict[str, Any]:
    """One pod behind chat-primary, as the EndpointSlice controller would publish it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"chat-primary-{index:05d}",
            "namespace": "ai",
            "labels": {
                "kubernetes.io/service-name": "chat-primary",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app.kubernetes.io/managed-by": "llama-operator",
                "llamaops.dev/deployment": "chat",
                "llamaops.dev/variant": "primary",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": pod.port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": f"chat-primary-abc-{index}"},
            }
        ],
    }


@pytest.fixture
def pods() -> Iterator[list[podserver.FakePod]]:
    with podserver.FakePod() as one, podserver.FakePod() as two:
        yield [one, two]


def replicas_of(cluster: ApplyingEmulator, resource: str, name: str) -> int:
    return int(obj(cluster, resource, name)["spec"]["replicas"])


async def serving(cluster: ApplyingEmulator, pods: list[podserver.FakePod]) -> None:
    for index, pod in enumerate(pods):
        await create(cluster, ENDPOINTSLICES, endpoint_slice(index, pod))


def scaler_gauges(name: str = "chat") -> dict[str, float]:
    """The built-in autoscaler's gauges of ``name`` on the operator's /metrics: set by each
    evaluation once it has acted, gone once its daemon has exited."""
    return {
        sample.name: sample.value
        for family in parser.text_string_to_metric_families(operator_metrics.render().decode())
        if family.name.startswith("llama_operator_autoscaler_")
        for sample in family.samples
        if sample.labels.get("name") == name
    }


def autoscaling_status(cluster: ApplyingEmulator) -> dict[str, Any]:
    return dict(status_of(cluster).get("autoscaling") or {})


class TestBuiltin:
    async def test_a_rising_queue_scales_up_and_an_empty_one_down_after_the_window(
        self, operator: ApplyingEmulator, pods: list[podserver.FakePod]
    ) -> None:
        await create(operator, LLAMA, llama(spec=spec()))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await serving(operator, pods)
        await eventually(lambda: all(p.scrapes > 0 for p in pods), message="scrapes")
        # An evaluation of the idle pods has acted (its gauges are set once it has).
        await eventually(scaler_gauges, message="an evaluation")
        assert replicas_of(operator, LLAMA, "chat") == 1  # idle pods: no change

        for pod in pods:
            pod.waiting = 10  # 20 waiting over 2 pods, target 8 per replica: 3 replicas
        await eventually(lambda: replicas_of(operator, LLAMA, "chat") == 3, message="scale up")
        await eventually(
            lambda: replicas_of(operator, DEPLOYMENTS, "chat-primary") == 3,
            message="the Deployment follows spec.replicas",
        )
        (up,) = await eventually(
            lambda: [e for e in events(operator) if e["reason"] == "ScaledUp"], message="Event"
        )
        assert up["message"].startswith("1 -> 3 replicas (ScaleUp): load 20 over 2 ready pod(s)")

        for pod in pods:
            pod.waiting = 0
        # Within the window the replicas stay; only after it do they come down. The window
        # starts with the first evaluation that recommended 1 (status says when, in the
        # operator's clock), not when the test set the queues: under load that evaluation
        # may have started earlier, or much later.
        since = await eventually(
            lambda: (r := autoscaling_status(operator)["recommendations"])[-1][1] == 1 and r[-1][0],
            message="a recommendation of 1",
        )
        # (Less 10 ms: status rounds the time to the millisecond. No await between reading
        # the clock and the replicas, so a scale-down stored in between cannot be missed.)
        while time.time() < since + WINDOW - 0.01:
            assert replicas_of(operator, LLAMA, "chat") == 3
            await asyncio.sleep(0.1)
        await eventually(lambda: replicas_of(operator, LLAMA, "chat") == 1, message="down")
        await eventually(lambda: replicas_of(operator, DEPLOYMENTS, "chat-primary") == 1)

        # The decision is written to status after the /scale patch: wait for it.
        scaling = await eventually(
            lambda: (a := autoscaling_status(operator))["decisions"][1:] and a,
            message="two decisions",
        )
        decisions = scaling["decisions"]
        assert [(d["fromReplicas"], d["toReplicas"], d["reason"]) for d in decisions] == [
            (1, 3, "ScaleUp"),
            (3, 1, "ScaleDown"),
        ]
        assert f"highest over the last {WINDOW}s: 1" in decisions[-1]["message"]
        assert scaling["recommendations"]

    async def test_a_pod_that_cannot_be_scraped_never_lets_replicas_fall(
        self, operator: ApplyingEmulator, pods: list[podserver.FakePod]
    ) -> None:
        body = llama(spec=spec())
        body["spec"]["replicas"] = 3
        await create(operator, LLAMA, body)
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        pods[1].status = 500  # one pod answers errors; the other is idle
        await serving(operator, pods)
        # The window starts once the scaler evaluates both pods (not when they are listed).
        await eventually(lambda: all(p.scrapes > 0 for p in pods), message="scrapes")
        await asyncio.sleep(WINDOW + 2.0)
        assert replicas_of(operator, LLAMA, "chat") == 3
        assert status_of(operator).get("autoscaling", {}).get("decisions", []) == []
        pods[1].status = 200  # scrapeable again: idle, so down after the window
        await eventually(lambda: replicas_of(operator, LLAMA, "chat") == 1)

    async def test_tgi_queue_metric(
        self, operator: ApplyingEmulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with podserver.FakePod("tgi") as pod:
            await create(operator, LLAMA, llama(spec=spec("tgi")))
            await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
            await create(operator, ENDPOINTSLICES, endpoint_slice(0, pod))
            pod.waiting = 17  # 17 over target 8: 3 replicas
            await eventually(lambda: replicas_of(operator, LLAMA, "chat") == 3)

    async def test_turning_autoscaling_off_stops_the_scaler_and_kubectl_scale_works(
        self, operator: ApplyingEmulator, pods: list[podserver.FakePod]
    ) -> None:
        await create(operator, LLAMA, llama(spec=spec()))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await serving(operator, pods)
        await eventually(lambda: all(p.scrapes > 0 for p in pods))
        await eventually(scaler_gauges, message="the scaler evaluating")
        headers = {"Content-Type": "application/merge-patch+json"}
        async with operator.patch(
            path(LLAMA, "chat"), json={"spec": {"autoscaling": None}}, headers=headers
        ) as response:
            assert response.status < 300
        # The daemon notices and stops: its gauges go when it has exited (after its last tick).
        await eventually(lambda: not scaler_gauges(), message="the scaler stopped")
        seen = [p.scrapes for p in pods]
        # kubectl scale: a /scale patch, which the operator carries to the Deployment.
        async with operator.patch(
            path(LLAMA, "chat") + "/scale", json={"spec": {"replicas": 2}}, headers=headers
        ) as response:
            assert response.status < 300
        await eventually(lambda: replicas_of(operator, DEPLOYMENTS, "chat-primary") == 2)
        for pod in pods:
            pod.waiting = 100
        await asyncio.sleep(2.0)
        assert [p.scrapes for p in pods] == seen  # nobody scrapes any more
        assert replicas_of(operator, LLAMA, "chat") == 2


class TestExternalScalers:
    async def test_keda_then_hpa_then_builtin_leaves_exactly_one_scaler(
        self, operator: ApplyingEmulator
    ) -> None:
        await create(operator, LLAMA, llama(spec=spec(engine="keda")))
        scaled = await eventually(lambda: obj(operator, SCALEDOBJECTS, "chat"), message="KEDA")
        assert scaled["spec"]["scaleTargetRef"] == {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "name": "chat",
        }
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["query"].startswith("sum(vllm:num_requests_waiting{")
        assert trigger["metadata"]["threshold"] == "8"
        await eventually(
            lambda: (
                status_of(operator).get("externalScaler")
                == {"kind": "ScaledObject", "name": "chat"}
            )
        )
        condition = await wait_condition(operator, "Autoscaling", reason="ScaledObject")
        assert (condition["status"], condition["reason"]) == ("True", "ScaledObject")

        await patch(operator, LLAMA, "chat", {"spec": {"autoscaling": {"engine": "hpa"}}})
        hpa = await eventually(lambda: obj(operator, HPAS, "chat"), message="HPA")
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
        await eventually(lambda: not exists(operator, SCALEDOBJECTS, "chat"), message="deleted")
        await eventually(
            lambda: (
                status_of(operator).get("externalScaler")
                == {"kind": "HorizontalPodAutoscaler", "name": "chat"}
            )
        )

        await patch(operator, LLAMA, "chat", {"spec": {"autoscaling": {"engine": "builtin"}}})
        await eventually(lambda: not exists(operator, HPAS, "chat"), message="HPA deleted")
        await eventually(lambda: "externalScaler" not in status_of(operator))
        condition = await eventually(
            lambda: (c := condition_of(operator, "Autoscaling"))["reason"] == "Builtin" and c
        )
        assert "the operator scales on target 8 queue per replica" in condition["message"]

    async def test_a_cluster_without_keda_is_told_so(self, operator: ApplyingEmulator) -> None:
        del operator.resources[SCALEDOBJECTS]  # the API server does not serve the kind
        await create(operator, LLAMA, llama(spec=spec(engine="keda")))
        condition = await wait_condition(operator, "Autoscaling", reason="ScalerNotInstalled")
        assert (condition["status"], condition["reason"]) == ("False", "ScalerNotInstalled")
        assert "install KEDA" in condition["message"]
        # Everything else still serves.
        await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-primary"))

    async def test_kv_cache_on_tgi_names_the_field(self, operator: ApplyingEmulator) -> None:
        await create(
            operator, LLAMA, llama(spec=spec("tgi", metric="kvCache", targetQueueLength=0.8))
        )
        planned = await wait_condition(operator, "Planned", reason="InvalidSpec")
        assert planned["reason"] == "InvalidSpec"
        assert planned["message"].startswith("spec.autoscaling.metric: TGI exposes no KV-cache")
