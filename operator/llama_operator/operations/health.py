"""Pod health: what is wrong with a pod, how the primary is doing, and whether a canary failed.

Pure: pods' status (and the Deployment's counts) in, typed records out. ``containers``
is the one reader of pod and container state: each container's waiting reason and
message, how its current and previous runs ended. Its callers judge from it with the
waiting reasons each treats as broken, named here: the primary's health (``of``) and the
canary's (``canary_failure``, which the rollout reads as ``rollout.pod_failure``).

The primary's ``Health``: failover (``failover``) and re-planning (``replanning``) decide
from it. The reconcile lists the primary's pods only when the Deployment does not report
every replica ready, or a fallback serves: a healthy endpoint costs no pod listing.

What is read from the primary's pods:
- **Unschedulable**: a pod whose ``PodScheduled`` condition is False with reason
  ``Unschedulable`` (the scheduler's ``FailedScheduling``: no node with free GPUs, or none
  matching the pool's selector); the earliest such transition is when it started.
- **Failing**: a container that crash-loops (or cannot start: ``CANNOT_RUN``), or was
  OOM-killed and is not ready again.
- **Out of memory**: OOMKilled, or a termination message (the engine's last log lines,
  ``terminationMessagePolicy: FallbackToLogsOnError``) saying the GPU ran out of memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.planning import engine_profiles


def default_memory_patterns() -> tuple[str, ...]:
    """Every engine profile's GPU out-of-memory log lines (``outOfMemoryLogs``), for pods
    whose engine release is not known: what vLLM, TGI and PyTorch print, each with its
    source in data/engines.yaml."""
    found: dict[str, None] = {}
    for engine in ("vllm", "tgi"):
        for profile in engine_profiles.profiles(engine):
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
        for container in containers(pod):
            found = _out_of_memory(container, patterns)
            # The latest wins: an older pod's kill from before the last re-planning
            # must not hide a new one's (re-planning dedups by this time).
            if found is not None and (oom is None or _later(found[1], oom_at)):
                oom, oom_at = found
            if failing is None:
                failing = _failing(container)
    return Health(
        desired=desired,
        ready=ready,
        unschedulable_since=since,
        unschedulable=said,
        failing=failing,
        out_of_memory=oom,
        out_of_memory_at=oom_at,
    )


# Waiting reasons of a container that cannot run: it crash-loops, or the runtime cannot
# create or start it. The primary is failing in these (failover's ``Failing``, as
# docs/concepts/fallbacks.md lists them).
CANNOT_RUN = frozenset({"CrashLoopBackOff", "RunContainerError", "CreateContainerError"})
# Waiting reasons of a container whose image or configuration cannot be had: the image
# does not pull or is misnamed, a Secret or ConfigMap it names is missing. A canary in one
# of these has failed (docs/concepts/rollouts.md, "Failure detection"); the primary's
# health counts them as starting, not failing.
NO_IMAGE_OR_CONFIG = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)


@dataclasses.dataclass(frozen=True)
class Ended:
    """How a run of a container ended (``state.terminated`` or ``lastState.terminated``)."""

    reason: str | None  # OOMKilled, Error, Completed, ...
    exit_code: int | None
    message: str  # the termination message: the engine's last log lines
    finished_at: float | None  # epoch

    @property
    def oom_killed(self) -> bool:
        return self.reason == "OOMKilled"


@dataclasses.dataclass(frozen=True)
class Container:
    """One container of a pod, as the pod's status reports it."""

    pod: str  # the pod's name
    name: str
    ready: bool
    restarts: int
    waiting: str | None  # state.waiting.reason: why it does not run now
    waiting_message: str
    ended: Ended | None  # state.terminated: its current run ended
    last: Ended | None  # lastState.terminated: how its previous run ended

    def oom_killed(self, *, last: bool = True) -> bool:
        """OOM-killed in its current run or (with ``last``) its previous one."""
        runs = (self.ended, self.last) if last else (self.ended,)
        return any(run is not None and run.oom_killed for run in runs)

    @property
    def where(self) -> str:
        """``pod <pod>: container <name>``, as every message about it begins."""
        return f"pod {self.pod}: container {self.name}"


def containers(pod: Mapping[str, Any], *, init: bool = False) -> tuple[Container, ...]:
    """Every container of ``pod`` (with ``init``, its init containers first) as its status
    reports it; what is wrong with each is for the caller to judge."""
    name = str((pod.get("metadata") or {}).get("name", "?"))
    status = pod.get("status") or {}
    statuses = [
        *((status.get("initContainerStatuses") or []) if init else []),
        *(status.get("containerStatuses") or []),
    ]
    return tuple(_container(name, container) for container in statuses)


def _container(pod: str, container: Mapping[str, Any]) -> Container:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    return Container(
        pod=pod,
        name=str(container.get("name")),
        ready=container.get("ready") is True,
        restarts=_int(container.get("restartCount")) or 0,
        waiting=None if reason is None else str(reason),
        waiting_message=str(waiting.get("message") or ""),
        ended=_ended(state.get("terminated")),
        last=_ended((container.get("lastState") or {}).get("terminated")),
    )


def _ended(terminated: Mapping[str, Any] | None) -> Ended | None:
    if not terminated:
        return None
    reason = terminated.get("reason")
    return Ended(
        reason=None if reason is None else str(reason),
        exit_code=_int(terminated.get("exitCode")),
        message=str(terminated.get("message") or ""),
        finished_at=_epoch(terminated.get("finishedAt")),
    )


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _failing(container: Container) -> str | None:
    # lastState keeps a kill until the next restart, days later perhaps: it counts only
    # while the container does not serve again.
    if container.oom_killed(last=not container.ready):
        return f"{container.where} was OOMKilled"
    if container.waiting in CANNOT_RUN:
        return f"{container.where} is in {container.waiting}"
    return None


def _out_of_memory(
    container: Container, patterns: Sequence[str]
) -> tuple[str, float | None] | None:
    for ended in (container.ended, container.last):
        if ended is None:
            continue
        if ended.oom_killed:
            return f"{container.where} was OOMKilled", ended.finished_at
        message = ended.message.lower()
        hit = next((p for p in patterns if p in message), None)
        if hit is not None:
            return (
                f"{container.where} exited for lack of GPU memory ({hit!r} in its last log lines)",
                ended.finished_at,
            )
    return None


# Container states that mean a canary pod cannot serve, whatever its readiness says now:
# the primary's (``CANNOT_RUN``) and, unlike the primary's, an image or config that
# cannot be had, since the new spec named them.
_BROKEN_WAITING = CANNOT_RUN | NO_IMAGE_OR_CONFIG


def canary_failure(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The first canary pod that crashed, was OOM-killed or cannot start, described.

    A canary is new: any restart of its engine is a failure (a stable pod may restart
    for reasons of its own; a canary that does during its first minutes will again).
    """
    for pod in pods:
        for container in containers(pod, init=True):
            if container.oom_killed():
                return (
                    f"{container.where} was OOMKilled (out of memory): the new spec does not "
                    "fit what it was planned on"
                )
            if container.waiting in _BROKEN_WAITING:
                detail = container.waiting_message
                return f"{container.where} is in {container.waiting}" + (
                    f" ({detail[:200]})" if detail else ""
                )
            last, restarts = container.last, container.restarts
            if last is not None and restarts > 0 and last.exit_code not in (None, 0):
                return (
                    f"{container.where} exited with code {last.exit_code}"
                    f" ({last.reason or 'Error'}) and restarted {restarts} time(s)"
                )
    return None


def _later(at: float | None, than: float | None) -> bool:
    return at is not None and (than is None or at > than)


_epoch = api.epoch
_DEFAULT_PATTERNS = default_memory_patterns()
