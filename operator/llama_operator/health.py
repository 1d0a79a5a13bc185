"""How the primary is doing, from its Deployment and (when it is not all well) its pods.

Pure: the Deployment's counts and the pods' status in, a ``Health`` out. Failover
(``failover``) and re-planning (``recovery``) decide from it. The reconcile lists the
primary's pods only when the Deployment does not report every replica ready, or a
fallback serves: a healthy endpoint costs no pod listing.

What is read from pods:
- **Unschedulable**: a pod whose ``PodScheduled`` condition is False with reason
  ``Unschedulable`` (the scheduler's ``FailedScheduling``: no node with free GPUs, or none
  matching the pool's selector); the earliest such transition is when it started.
- **Failing**: a container that crash-loops (or cannot start), or was OOM-killed and is
  not ready again (``rollout.pod_failure`` reads similar states for canaries).
- **Out of memory**: OOMKilled, or a termination message (the engine's last log lines,
  ``terminationMessagePolicy: FallbackToLogsOnError``) saying the GPU ran out of memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api, profiles


def default_memory_patterns() -> tuple[str, ...]:
    """Every engine profile's GPU out-of-memory log lines (``outOfMemoryLogs``), for pods
    whose engine release is not known: what vLLM, TGI and PyTorch print, each with its
    source in data/engines.yaml."""
    found: dict[str, None] = {}
    for engine in ("vllm", "tgi"):
        for profile in profiles.profiles(engine):
            found.update(dict.fromkeys(profile.outOfMemoryLogs))
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Health:
    """The primary as the failover and re-planning see it."""

    desired: int  # spec.replicas the primary should run
    ready: int  # its ready pods
    unschedulable_since: float | None = None  # the earliest Unschedulable pod, epoch
    unschedulable: str | None = None  # what the scheduler said about it
    failing: str | None = None  # a crash loop or OOM kill, described
    out_of_memory: str | None = None  # an OOM kill or a GPU-memory exit, described
    out_of_memory_at: float | None = None  # when that container ended, epoch

    @property
    def healthy(self) -> bool:
        """Every desired replica ready, none failing, none waiting for a node."""
        return (
            self.ready >= max(1, self.desired)
            and self.failing is None
            and self.unschedulable_since is None
        )


def needs_pods(deployment: Mapping[str, Any] | None, desired: int) -> bool:
    """Whether the pods must be read: the Deployment does not report all replicas ready."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    return int(status.get("readyReplicas") or 0) < desired


def of(
    *,
    desired: int,
    ready: int,
    pods: Sequence[Mapping[str, Any]] = (),
    node_selector: Mapping[str, str] | None = None,
    memory_patterns: Sequence[str] | None = None,
) -> Health:
    """The primary's health from its ready count and (when read) its pods.

    ``memory_patterns``: the lower-cased log lines that mean the GPU ran out of memory, from
    the engine release's profile (``Profile.outOfMemoryLogs``); None: every profile's.

    ``node_selector``: the current plan's pool. A pending pod that asks for other nodes
    was made from an earlier plan (it goes once the Deployment rolls to the current one)
    and does not count as unschedulable: it must not cost the new pool its grace period.
    """
    since: float | None = None
    said: str | None = None
    failing: str | None = None
    oom: str | None = None
    oom_at: float | None = None
    patterns = tuple(memory_patterns) if memory_patterns is not None else _DEFAULT_PATTERNS
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue  # going away: says nothing about the pods that will serve
        name = meta.get("name", "?")
        status = pod.get("status") or {}
        asks = (pod.get("spec") or {}).get("nodeSelector") or {}
        current = node_selector is None or all(
            asks.get(key) == value for key, value in node_selector.items()
        )
        for condition in (status.get("conditions") or []) if current else []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                at = _epoch(condition.get("lastTransitionTime"))
                if at is not None and (since is None or at < since):
                    since, said = at, str(condition.get("message") or "")
        for container in status.get("containerStatuses") or []:
            found = _out_of_memory(name, container, patterns)
            # The latest wins: an older pod's kill from before the last re-planning
            # must not hide a new one's (re-planning dedups by this time).
            if found is not None and (oom is None or _later(found[1], oom_at)):
                oom, oom_at = found
            if failing is None:
                failing = _failing(name, container)
    return Health(
        desired=desired,
        ready=ready,
        unschedulable_since=since,
        unschedulable=said,
        failing=failing,
        out_of_memory=oom,
        out_of_memory_at=oom_at,
    )


_BROKEN = frozenset({"CrashLoopBackOff", "RunContainerError", "CreateContainerError"})


def _failing(pod: str, container: Mapping[str, Any]) -> str | None:
    state = container.get("state") or {}
    # lastState keeps a kill until the next restart, days later perhaps: it counts only
    # while the container does not serve again.
    last = (
        {}
        if container.get("ready") is True
        else (container.get("lastState") or {}).get("terminated") or {}
    )
    terminated = state.get("terminated") or {}
    for ended in (terminated, last):
        if ended.get("reason") == "OOMKilled":
            return f"pod {pod}: container {container.get('name')} was OOMKilled"
    waiting = (state.get("waiting") or {}).get("reason")
    if waiting in _BROKEN:
        return f"pod {pod}: container {container.get('name')} is in {waiting}"
    return None


def _out_of_memory(
    pod: str, container: Mapping[str, Any], patterns: Sequence[str]
) -> tuple[str, float | None] | None:
    state = container.get("state") or {}
    for ended in (
        state.get("terminated") or {},
        (container.get("lastState") or {}).get("terminated") or {},
    ):
        if not ended:
            continue
        at = _epoch(ended.get("finishedAt"))
        if ended.get("reason") == "OOMKilled":
            return f"pod {pod}: container {container.get('name')} was OOMKilled", at
        message = str(ended.get("message") or "").lower()
        hit = next((p for p in patterns if p in message), None)
        if hit is not None:
            return (
                f"pod {pod}: container {container.get('name')} exited for lack of GPU "
                f"memory ({hit!r} in its last log lines)",
                at,
            )
    return None


def _later(at: float | None, than: float | None) -> bool:
    return at is not None and (than is None or at > than)


_epoch = api.epoch
_DEFAULT_PATTERNS = default_memory_patterns()
