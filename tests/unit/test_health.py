"""health.of: the primary's health from its ready count and the pods the API returns.

The pods are written the way the API server reports them: a Pending pod the scheduler
could not place, a container in CrashLoopBackOff, one OOM-killed (now or in its
previous run), and one whose engine exited with the CUDA out-of-memory error in its
termination message (``terminationMessagePolicy: FallbackToLogsOnError``).
"""

from __future__ import annotations

import datetime
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator.operations import health
from llama_operator.planning import engine_profiles

NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
NO_NODE = (
    "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, "
    "3 Insufficient nvidia.com/gpu. preemption: 0/5 nodes are available: "
    "5 No preemption victims found for incoming pod."
)
CUDA_OOM = (
    '  File "/usr/local/lib/python3.12/dist-packages/torch/nn/modules/linear.py", line 125\n'
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 has a "
    "total capacity of 22.05 GiB of which 1.02 GiB is free."
)


def epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod(
    name: str,
    *,
    phase: str = "Running",
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "team-a"}
    if deleting:
        meta["deletionTimestamp"] = "2025-06-15T10:20:00Z"
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            "containerStatuses": containers or [],
        },
    }


def pending(name: str, since: str, message: str = NO_GPU) -> dict[str, Any]:
    """A pod the scheduler could not place (``FailedScheduling``)."""
    return pod(
        name,
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": since,
            }
        ],
    )


def running(*, ready: bool = True, restarts: int = 0, **last: Any) -> dict[str, Any]:
    """The engine container, running; ``last`` is its previous run's ``terminated``."""
    container: dict[str, Any] = {
        "name": "engine",
        "image": "vllm/vllm-openai:v0.11.0",
        "ready": ready,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2025-06-15T10:05:00Z"}},
        "lastState": {"terminated": last} if last else {},
    }
    return container


def crash_looping(**last: Any) -> dict[str, Any]:
    return {
        "name": "engine",
        "ready": False,
        "started": False,
        "restartCount": 4,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 1m20s restarting failed container=engine",
            }
        },
        "lastState": {"terminated": last} if last else {},
    }


def oom_killed(finished: str = "2025-06-15T10:04:00Z") -> dict[str, Any]:
    return {
        "exitCode": 137,
        "reason": "OOMKilled",
        "startedAt": "2025-06-15T10:01:00Z",
        "finishedAt": finished,
    }


def exited(message: str, finished: str = "2025-06-15T10:04:00Z") -> dict[str, Any]:
    return {
        "exitCode": 1,
        "reason": "Error",
        "message": message,
        "startedAt": "2025-06-15T10:01:00Z",
        "finishedAt": finished,
    }


class TestUnschedulable:
    def test_a_pending_pod_the_scheduler_could_not_place(self) -> None:
        got = health.of(
            desired=1, ready=0, pods=[pending("chat-primary-7d9-x1", "2025-06-15T10:00:00Z")]
        )
        assert got == health.Health(
            desired=1,
            ready=0,
            unschedulable_since=epoch("2025-06-15T10:00:00Z"),
            unschedulable=NO_GPU,
        )
        assert not got.healthy

    def test_the_earliest_transition_wins_with_its_message(self) -> None:
        pods = [
            pending("chat-primary-7d9-x2", "2025-06-15T10:03:00Z", NO_GPU),
            pending("chat-primary-7d9-x1", "2025-06-15T10:01:30Z", NO_NODE),
            pending("chat-primary-7d9-x3", "2025-06-15T10:02:00Z", NO_GPU),
        ]
        got = health.of(desired=3, ready=0, pods=pods)
        assert got.unschedulable_since == epoch("2025-06-15T10:01:30Z")
        assert got.unschedulable == NO_NODE
        # The order the API lists the pods in does not matter.
        assert health.of(desired=3, ready=0, pods=pods[::-1]) == got

    def test_a_deleting_pod_is_ignored(self) -> None:
        gone = pending("chat-primary-old-a", "2025-06-15T09:00:00Z")
        gone["metadata"]["deletionTimestamp"] = "2025-06-15T10:20:00Z"
        fresh = pending("chat-primary-new-b", "2025-06-15T10:00:00Z")
        got = health.of(desired=1, ready=0, pods=[gone, fresh])
        assert got.unschedulable_since == epoch("2025-06-15T10:00:00Z")
        assert health.of(desired=1, ready=0, pods=[gone]) == health.Health(desired=1, ready=0)

    @pytest.mark.parametrize(
        "condition",
        [
            # Scheduled: nothing to say.
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2025-06-15T10:00:00Z",
            },
            # Waiting on a scheduling gate, not on capacity.
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "lastTransitionTime": "2025-06-15T10:00:00Z",
            },
            # Another condition that is False for a reason of the same name.
            {
                "type": "Ready",
                "status": "False",
                "reason": "Unschedulable",
                "lastTransitionTime": "2025-06-15T10:00:00Z",
            },
            # No time to count the grace period from.
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "lastTransitionTime": "yesterday",
            },
        ],
    )
    def test_what_is_not_unschedulable(self, condition: dict[str, Any]) -> None:
        got = health.of(
            desired=1, ready=0, pods=[pod("p", phase="Pending", conditions=[condition])]
        )
        assert (got.unschedulable_since, got.unschedulable) == (None, None)

    def test_scheduled_pods_beside_an_unschedulable_one(self) -> None:
        pods = [
            pod("chat-primary-a", containers=[running()]),
            pending("chat-primary-b", "2025-06-15T10:00:00Z"),
        ]
        got = health.of(desired=2, ready=1, pods=pods)
        assert got.ready == 1
        assert got.unschedulable == NO_GPU
        assert got.failing is None
        assert not got.healthy


class TestFailing:
    def test_crash_loop(self) -> None:
        got = health.of(
            desired=1,
            ready=0,
            pods=[
                pod("chat-primary-a", containers=[crash_looping(**exited("ValueError: bad flag"))])
            ],
        )
        assert got.failing == "pod chat-primary-a: container engine is in CrashLoopBackOff"
        assert got.out_of_memory is None

    @pytest.mark.parametrize("reason", ["RunContainerError", "CreateContainerError"])
    def test_a_container_that_cannot_run(self, reason: str) -> None:
        container = {"name": "engine", "ready": False, "state": {"waiting": {"reason": reason}}}
        got = health.of(desired=1, ready=0, pods=[pod("p", containers=[container])])
        assert got.failing == f"pod p: container engine is in {reason}"

    @pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", "ImagePullBackOff"])
    def test_starting_is_not_failing(self, reason: str) -> None:
        container = {"name": "engine", "ready": False, "state": {"waiting": {"reason": reason}}}
        assert (
            health.of(desired=1, ready=0, pods=[pod("p", containers=[container])]).failing is None
        )

    def test_oom_killed_now(self) -> None:
        container = {
            "name": "engine",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": oom_killed("2025-06-15T10:04:00Z")},
        }
        got = health.of(desired=1, ready=0, pods=[pod("chat-primary-a", containers=[container])])
        assert got.failing == "pod chat-primary-a: container engine was OOMKilled"
        assert got.out_of_memory == "pod chat-primary-a: container engine was OOMKilled"
        assert got.out_of_memory_at == epoch("2025-06-15T10:04:00Z")

    def test_oom_killed_in_the_last_run_and_restarting(self) -> None:
        # Restarted after the kill and loading the model again: not ready yet.
        container = running(ready=False, restarts=1, **oom_killed("2025-06-15T10:04:00Z"))
        got = health.of(desired=1, ready=0, pods=[pod("chat-primary-a", containers=[container])])
        assert got.failing == "pod chat-primary-a: container engine was OOMKilled"
        assert got.out_of_memory == "pod chat-primary-a: container engine was OOMKilled"
        assert got.out_of_memory_at == epoch("2025-06-15T10:04:00Z")

    def test_oom_killed_in_the_last_run_and_ready_again_is_not_failing(self) -> None:
        # lastState keeps the kill until the next restart, days later perhaps; a pod that
        # serves again is not failing (the kill still counts as out of memory, which
        # re-planning dedups by its time).
        container = running(ready=True, restarts=1, **oom_killed("2025-06-15T10:04:00Z"))
        got = health.of(desired=1, ready=1, pods=[pod("chat-primary-a", containers=[container])])
        assert got.failing is None
        assert got.healthy
        assert got.out_of_memory == "pod chat-primary-a: container engine was OOMKilled"
        assert got.out_of_memory_at == epoch("2025-06-15T10:04:00Z")

    def test_a_clean_pod_is_not_failing(self) -> None:
        got = health.of(desired=1, ready=1, pods=[pod("p", containers=[running()])])
        assert got == health.Health(desired=1, ready=1)
        assert got.healthy

    def test_the_first_failing_pod_is_described(self) -> None:
        pods = [
            pod("chat-primary-a", containers=[running()]),
            pod("chat-primary-b", containers=[crash_looping()]),
            pod("chat-primary-c", containers=[crash_looping()]),
        ]
        got = health.of(desired=3, ready=1, pods=pods)
        assert got.failing == "pod chat-primary-b: container engine is in CrashLoopBackOff"

    def test_a_deleting_failing_pod_is_ignored(self) -> None:
        got = health.of(
            desired=1,
            ready=1,
            pods=[
                pod("chat-primary-old", containers=[crash_looping(**oom_killed())], deleting=True),
                pod("chat-primary-new", containers=[running()]),
            ],
        )
        assert got == health.Health(desired=1, ready=1)


class TestOutOfMemory:
    def test_a_cuda_out_of_memory_exit(self) -> None:
        container = crash_looping(**exited(CUDA_OOM, "2025-06-15T10:04:30Z"))
        got = health.of(desired=1, ready=0, pods=[pod("chat-primary-a", containers=[container])])
        assert got.out_of_memory == (
            "pod chat-primary-a: container engine exited for lack of GPU memory "
            "('cuda out of memory' in its last log lines)"
        )
        assert got.out_of_memory_at == epoch("2025-06-15T10:04:30Z")
        assert got.failing == "pod chat-primary-a: container engine is in CrashLoopBackOff"

    @pytest.mark.parametrize(
        ("message", "hit"),
        [
            (
                "ValueError: No available memory for the cache blocks. Try increasing "
                "`gpu_memory_utilization` when initializing the engine.",
                "no available memory for the cache blocks",
            ),
            (
                # vllm/v1/core/kv_cache_planning.py (0.34.0): the context does not fit.
                "ValueError: To serve at least one request with the model's max seq len "
                "(131072), (16.0 GiB KV cache is needed, which is larger than the available "
                "KV cache memory (3.79 GiB).",
                "which is larger than the available kv cache memory",
            ),
            ("RuntimeError: CUDA error: out of memory", "cuda error: out of memory"),
            ("torch.OutOfMemoryError: tried to allocate 2 GiB", "outofmemoryerror"),
            (
                # TGI v3.3.7, server/text_generation_server/models/flash_causal_lm.py (warmup)
                "Not enough memory to handle 4096 prefill tokens. You need to decrease "
                "`--max-batch-prefill-tokens`",
                "not enough memory to handle",
            ),
        ],
    )
    def test_what_the_engines_print(self, message: str, hit: str) -> None:
        container = running(ready=False, restarts=2, **exited(message))
        got = health.of(desired=1, ready=0, pods=[pod("p", containers=[container])])
        assert got.out_of_memory == (
            f"pod p: container engine exited for lack of GPU memory ({hit!r} in its last log lines)"
        )
        assert got.out_of_memory_at == epoch("2025-06-15T10:04:00Z")

    def test_another_error_is_not_out_of_memory(self) -> None:
        container = crash_looping(
            **exited("OSError: You are trying to access a gated repo. 401 Client Error")
        )
        got = health.of(desired=1, ready=0, pods=[pod("p", containers=[container])])
        assert got.out_of_memory is None
        assert got.out_of_memory_at is None
        assert got.failing is not None

    def test_without_a_finish_time(self) -> None:
        ended = {"exitCode": 137, "reason": "OOMKilled"}
        container = {"name": "engine", "ready": False, "state": {"terminated": ended}}
        got = health.of(desired=1, ready=0, pods=[pod("p", containers=[container])])
        assert got.out_of_memory == "pod p: container engine was OOMKilled"
        assert got.out_of_memory_at is None

    def test_the_latest_out_of_memory_wins(self) -> None:
        # An old pod that was OOM-killed before the last re-planning still runs (a
        # rolling update keeps it until its replacement is ready) and is listed first;
        # the new pod's kill is the one re-planning must see.
        old = pod(
            "chat-primary-old-a",
            containers=[running(ready=True, restarts=1, **oom_killed("2025-06-15T09:00:00Z"))],
        )
        new = pod(
            "chat-primary-new-b",
            containers=[crash_looping(**oom_killed("2025-06-15T10:30:00Z"))],
        )
        for pods in ([old, new], [new, old]):
            got = health.of(desired=1, ready=1, pods=pods)
            assert got.out_of_memory == "pod chat-primary-new-b: container engine was OOMKilled"
            assert got.out_of_memory_at == epoch("2025-06-15T10:30:00Z")


class TestHealthy:
    @pytest.mark.parametrize(
        ("kwargs", "healthy"),
        [
            ({"desired": 2, "ready": 2}, True),
            ({"desired": 2, "ready": 3}, True),  # a surge pod during a rolling update
            ({"desired": 2, "ready": 1}, False),
            ({"desired": 1, "ready": 0}, False),
            # Scaled to zero: nothing serves, so it is not healthy to fail back to.
            ({"desired": 0, "ready": 0}, False),
            ({"desired": 0, "ready": 1}, True),
            ({"desired": 1, "ready": 1, "failing": "pod p: CrashLoopBackOff"}, False),
            ({"desired": 1, "ready": 1, "unschedulable_since": 1.0}, False),
            # Out of memory alone is re-planning's business, not failover's.
            ({"desired": 1, "ready": 1, "out_of_memory": "OOMKilled"}, True),
        ],
    )
    def test_examples(self, kwargs: dict[str, Any], healthy: bool) -> None:
        assert health.Health(**kwargs).healthy is healthy

    @hypothesis.given(st.integers(0, 20), st.integers(0, 20), st.booleans(), st.booleans())
    def test_healthy_means_every_replica_ready_and_nothing_wrong(
        self, desired: int, ready: int, failing: bool, unschedulable: bool
    ) -> None:
        got = health.Health(
            desired=desired,
            ready=ready,
            failing="x" if failing else None,
            unschedulable_since=1.0 if unschedulable else None,
        )
        if got.healthy:
            assert ready >= 1
            assert ready >= desired
            assert not failing
            assert not unschedulable


class TestNeedsPods:
    @pytest.mark.parametrize(
        ("deployment", "desired", "needed"),
        [
            (None, 2, False),  # not created yet: no pods to read
            ({"status": {"readyReplicas": 2}}, 2, False),
            ({"status": {"readyReplicas": 3}}, 2, False),
            ({"status": {"readyReplicas": 1}}, 2, True),
            ({"status": {}}, 1, True),  # readyReplicas is omitted when 0
            ({}, 1, True),
            ({"status": {"readyReplicas": None}}, 1, True),
            ({"status": {}}, 0, False),
        ],
    )
    def test_examples(self, deployment: dict[str, Any] | None, desired: int, needed: bool) -> None:
        assert health.needs_pods(deployment, desired) is needed


def test_no_pods_read() -> None:
    assert health.of(desired=3, ready=1) == health.Health(desired=3, ready=1)


def test_a_pod_without_status_or_name() -> None:
    assert health.of(desired=1, ready=0, pods=[{}, {"metadata": {}}]) == health.Health(1, 0)


def test_timestamps() -> None:
    assert health._epoch("2025-06-15T10:00:00Z") == epoch("2025-06-15T10:00:00+00:00")
    assert health._epoch("2025-06-15T10:00:00.5Z") == epoch("2025-06-15T10:00:00Z") + 0.5
    assert health._epoch(None) is None
    assert health._epoch("") is None
    assert health._epoch(1750000000) is None
    assert health._epoch("not a time") is None


class TestPodsOfAnEarlierPlan:
    def test_a_pending_pod_of_another_pool_does_not_count(self) -> None:
        l4 = {"nvidia.com/gpu.product": "NVIDIA-L4"}
        l40s = {"nvidia.com/gpu.product": "NVIDIA-L40S"}

        def pending(name: str, selector: dict[str, str], since: str) -> dict[str, object]:
            return {
                "metadata": {"name": name},
                "spec": {"nodeSelector": selector},
                "status": {
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available",
                            "lastTransitionTime": since,
                        }
                    ]
                },
            }

        old = pending("old", l4, "2026-01-01T00:00:00Z")  # the plan before the re-plan
        new = pending("new", l40s, "2026-01-01T00:10:00Z")
        found = health.of(desired=1, ready=0, pods=[old, new], node_selector=l40s)
        assert found.unschedulable_since == health._epoch("2026-01-01T00:10:00Z")
        alone = health.of(desired=1, ready=0, pods=[old], node_selector=l40s)
        assert alone.unschedulable_since is None
        # Without a plan to compare with, every pending pod counts.
        assert health.of(desired=1, ready=0, pods=[old]).unschedulable_since is not None


class TestMemoryPatternsFromTheProfile:
    """The log lines that mean GPU out of memory are the engine release's, from its source."""

    def test_the_profiles_patterns_are_used(self) -> None:
        exited_for = running(ready=False, restarts=1, **exited("Not enough memory to handle 9"))
        pods = [pod("p", containers=[exited_for])]
        tgi = engine_profiles.get("tgi").outOfMemoryLogs
        vllm = engine_profiles.get("vllm").outOfMemoryLogs
        assert health.of(desired=1, ready=0, pods=pods, memory_patterns=tgi).out_of_memory
        # vLLM never prints TGI's warm-up line: a vLLM pod is not judged by it.
        assert health.of(desired=1, ready=0, pods=pods, memory_patterns=vllm).out_of_memory is None

    def test_default_is_every_profiles(self) -> None:
        every = {
            pattern
            for engine in ("vllm", "tgi")
            for profile in engine_profiles.profiles(engine)  # type: ignore[arg-type]
            for pattern in profile.outOfMemoryLogs
        }
        assert set(health.default_memory_patterns()) == every

    def test_a_host_oom_message_alone_is_not_a_gpu_oom(self) -> None:
        # A generic "out of memory" (the kernel's, a host allocator's) says nothing about
        # the GPU: re-planning with GPU headroom would not help it.
        container = running(ready=False, restarts=1, **exited("MemoryError: out of memory"))
        assert (
            health.of(desired=1, ready=0, pods=[pod("p", containers=[container])]).out_of_memory
            is None
        )
