"""runtime.autoscaling_loop: finding the ready pods, one tick against fake pods and a client."""

from __future__ import annotations

from typing import Any

import aiohttp

import podserver
from llama_operator.runtime import autoscaling_loop


class RecordingClient:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def merge_patch(self, **kwargs: Any) -> dict[str, Any]:
        self.patches.append(kwargs)
        return {}


def slice_of(port: int, *pods: tuple[str, bool | None]) -> dict[str, Any]:
    endpoints = []
    for name, ready in pods:
        conditions = {} if ready is None else {"ready": ready}
        endpoints.append(
            {"addresses": ["127.0.0.1"], "conditions": conditions, "targetRef": {"name": name}}
        )
    return {
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": endpoints,
    }


def body(*, replicas: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat", "namespace": "ai"},
        "spec": {
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
            "replicas": replicas,
            "autoscaling": {"minReplicas": 1, "maxReplicas": 8, "scaleDownDelaySeconds": 60},
        },
        "status": {"plan": {"engine": "vllm"}, **(status or {})},
    }


def test_ready_endpoints_skip_not_ready_pods_and_bracket_ipv6() -> None:
    found = autoscaling_loop.ready_endpoints(
        [
            slice_of(8000, ("a", True), ("b", False), ("c", None)),
            {**slice_of(8000, ("d", True)), "addressType": "IPv6"},
        ]
    )
    assert [(e.pod, e.url) for e in found] == [
        ("a", "http://127.0.0.1:8000/metrics"),
        ("c", "http://127.0.0.1:8000/metrics"),
        ("d", "http://[127.0.0.1]:8000/metrics"),
    ]


async def test_a_tick_scales_through_the_scale_subresource_and_records_the_decision() -> None:
    client = RecordingClient()
    with podserver.FakePod(waiting=20, running=16) as pod:
        async with aiohttp.ClientSession() as session:
            tick = await autoscaling_loop.tick(
                body=body(),
                slices=[slice_of(pod.port, ("chat-primary-x-1", True))],
                session=session,
                client=client,  # type: ignore[arg-type]
                now=1000.0,
                wall="2026-01-01T00:00:00Z",
            )
    assert tick is not None
    assert (tick.current, tick.decision.replicas) == (1, 3)
    scale, status = client.patches
    assert (scale["subresource"], scale["body"]) == ("scale", {"spec": {"replicas": 3}})
    written = status["body"]["status"]["autoscaling"]
    assert written["decisions"][-1]["toReplicas"] == 3
    assert written["capacity"] == 16.0
    assert [e.reason for e in tick.events] == ["ScaledUp"]


async def test_a_restarted_scaler_starts_a_new_window() -> None:
    # The stored window says 1 was recommended for a long time; after a restart that is
    # not proof of the gap since, so 4 idle replicas are not scaled down at once.
    stored = {"autoscaling": {"recommendations": [[0.0, 1]]}}
    client = RecordingClient()
    with podserver.FakePod(waiting=0, running=0) as pod:
        async with aiohttp.ClientSession() as session:
            fresh = await autoscaling_loop.tick(
                body=body(replicas=4, status=stored),
                slices=[slice_of(pod.port, ("p", True))],
                session=session,
                client=client,  # type: ignore[arg-type]
                now=10_000.0,
                wall="2026-01-01T00:00:00Z",
                resume=True,
            )
            carried = await autoscaling_loop.tick(
                body=body(replicas=4, status=stored),
                slices=[slice_of(pod.port, ("p", True))],
                session=session,
                client=client,  # type: ignore[arg-type]
                now=10_000.0,
                wall="2026-01-01T00:00:00Z",
            )
    assert fresh is not None
    assert carried is not None
    assert (fresh.decision.reason, fresh.decision.replicas) == ("Stabilizing", 4)
    assert carried.decision.replicas == 1  # without resume the stored window counts


class TestQueuePerPod:
    """The failover's overload trigger reads the primary's queue per ready pod."""

    def test_averages_the_ready_pods_that_answer(self) -> None:
        with podserver.FakePod(waiting=12) as one, podserver.FakePod(waiting=4) as two:
            slices = [slice_of(one.port, ("a", True)), slice_of(two.port, ("b", True))]
            assert autoscaling_loop.queue_per_pod(slices, engine="vllm") == 8.0

    def test_a_pod_that_fails_is_left_out_and_none_means_none(self) -> None:
        with podserver.FakePod(waiting=6) as one, podserver.FakePod(waiting=100) as broken:
            broken.status = 500
            slices = [slice_of(one.port, ("a", True)), slice_of(broken.port, ("b", True))]
            assert autoscaling_loop.queue_per_pod(slices, engine="vllm") == 6.0
            assert (
                autoscaling_loop.queue_per_pod([slice_of(broken.port, ("b", True))], engine="vllm")
                is None
            )
        assert autoscaling_loop.queue_per_pod([], engine="vllm") is None
