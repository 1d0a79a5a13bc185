"""Rollout benchmark: how fast a bad canary is rolled back and a good one promoted.

Measured in analysis intervals (``spec.rollout.analysis.interval``, "I" below), each
beside a reference computed or measured in the same run.

Setup. The real operator (``kopf.operator`` with our handlers) runs in a child process
against kmock (``tests/contract/kube.py``) served by this process, exactly as
``bench_reconcile.py`` and ``bench_scaler_loop.py`` run it (its ``Child`` and
``wait_ready`` are imported from there), with ``LLAMA_OPERATOR_RESYNC_SECONDS`` 0.25:
the analysis judges at most once per reconcile, so the resync (R) must be shorter than
the interval. One LlamaDeployment (Llama 3.1 8B on vLLM, replicas 2) is driven as
``tests/contract/test_rollouts.py`` drives it: there is no Deployment controller, so the
bench reports a Deployment's pods Ready (``kube.report_ready``) the way the controller
would; two fake vLLM pods (``tests/podserver.py`` on 127.0.0.1) sit behind the
EndpointSlices of ``chat-primary`` and ``chat-canary``; each rollout is started by a
change of ``spec.engineArgs`` (a new pod template) with the policy of the part at hand
(``minRequests 10``, ``maxErrorRate 0.05``). The bench records every API request with
its arrival time and, through the emulator, every change of ``status.rollout``; all
times are taken in this process (``time.monotonic``). Before each change the bench
reports the primary rolled out and waits for one reconcile: a change that reaches a
reconcile whose view of the primary still has an unobserved generation is applied to the
primary directly, without a canary (the rollout treats such a primary as not serving).

Traffic. By default each fake pod finishes a steady 50 requests a second (in 20 ms
steps, from a thread), so an analysis window mixes the requests from before and after a
change as a real engine's counters would. ``--traffic per-scrape`` uses the contract
tests' model instead (``FakePod.rate`` 20: every scrape finishes 20 requests at once), in
which a window's requests all land at its end and every change is fully visible at the
next judgement: an optimistic detector.

1. Detection. Steps 25% and 50% with pauses of 30 s (never reached: the canary is held
   in traffic). For (I, failureLimit) in (1 s, 1), (2 s, 1), (1 s, 2): the canary is
   reported Ready with a healthy pod, the bench waits until it is in traffic
   (``status.rollout.phase`` Progressing) and has passed one judgement, then at T0,
   an offset after the scrape of that judgement, sets the canary pod's error rate to 0.5.
   The offsets are stratified, (i + 0.5) / N of the interval for repetition i, so the N
   repetitions sample the whole phase. "Traffic back on stable" is the operator's
   server-side apply of Service ``chat`` whose selector names the variant ``primary``
   again (the canary's pods leave the entry Service then); the DELETE of Deployment
   ``chat-canary`` follows in the same reconcile. Both are reported, T1 - T0 in seconds
   and in intervals, with the judgements (canary scrapes) it took. One warm-up
   repetition is run first and shown apart. Reference, COMPUTED, not measured: an
   interval detector that aborts after failureLimit failed windows waits up to FL x I
   for them (on average (FL - 0.5) x I over the phase); ours judges only inside a
   reconcile, so each window can stretch by up to one resync period: the bound shown is
   FL x (I + R), R the timer period measured in the run.

2. A crash. Same setup (I 1 s, failureLimit 1), canary in traffic and passed once.
   (a) Seen only through metrics: at T0 the canary engine goes down as a crash-looping
   container does: its /metrics stops answering (503) and it finishes no requests, its
   endpoint turns not ready, its Deployment reports 0 ready. The bench watches for
   three intervals whether the analysis rolls it back. (b) The crash path: then a canary
   Pod whose engine container is in CrashLoopBackOff after an OOMKill appears (as in
   ``test_a_crashing_canary_fails_at_once``); T1 - T0 to traffic back on stable, in
   seconds, intervals and resync periods. Reference: part 1's computed bound for
   failureLimit 1, I + R: what waiting for the analysis would cost.

3. Promotion. Steps 25% / 2 s and 50% / 2 s, I 1 s, a healthy canary: from the moment the
   bench reports it Ready, to the primary's promotion apply (its template becomes the
   canary's; status Promoting), and, after the bench reports the primary's pods updated
   and ready as soon as that apply arrives, to status Completed and the canary's DELETE.
   Also each step's hold (from the step's start to the next step, or Promoting).
   Reference: the sum of the step pauses, the policy's minimum time in traffic. (The
   operator counts pauses on timestamps in whole seconds, so a step can pass up to 1 s
   before its pause is over; the script says when it saw that.)

No wall time is asserted. The script exits 1 only if a rollout does not do what it must:
a bad canary is never rolled back (or for another reason), a crashed canary is not
rolled back by the crash path, a healthy canary is not promoted, a template change
bypasses the canary, or a canary never gets into traffic. What the metrics-only crash
leads to is reported, not failed.

Run: ``.venv/bin/python benchmarks/bench_rollout.py`` (about 90 s on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import itertools
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

# tests/ (podserver) and tests/contract/ (kube; bench_reconcile adds it too).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "contract"))

import kmock
import kube

import bench_reconcile
import podserver
from llama_operator import api

T = TypeVar("T")

NAME = "chat"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
RESYNC = 0.25  # LLAMA_OPERATOR_RESYNC_SECONDS in the child: shorter than every interval
RATE = 50.0  # requests a second each fake pod finishes (steady traffic)
TRAFFIC_STEP = 0.02  # seconds between two traffic steps
PER_SCRAPE = 20.0  # --traffic per-scrape: requests finished per scrape (as the tests)
MIN_REQUESTS = 10
MAX_ERROR_RATE = 0.05
BAD_ERROR_RATE = 0.5
# Part 1: the canary stays at its first step (30 s) while it is measured.
HOLD_STEPS = ({"weight": 25, "pause": "30s"}, {"weight": 50, "pause": "30s"})
DETECT = ((1.0, 1), (2.0, 1), (1.0, 2))  # (interval in seconds, failureLimit)
DETECT_REPS = 5
# Part 2.
CRASH_INTERVAL = 1.0
CRASH_REPS = 3
CRASH_WATCH = 3  # intervals the metrics-only crash is watched for
# Part 3.
PROMOTE_STEPS = ({"weight": 25, "pause": "2s"}, {"weight": 50, "pause": "2s"})
PROMOTE_INTERVAL = 1.0
PROMOTE_REPS = 3

CANARY_SLICE = f"{NAME}-canary-00000"
ENTRY_PATH = f"/api/v1/namespaces/{kube.NAMESPACE}/services/{NAME}"
VARIANT = "llamaops.dev/variant"
REVISION = "llamaops.dev/revision"

table = bench_reconcile.table
Record = bench_reconcile.Record


class BenchFailedError(Exception):
    """A rollout did not do what it must (the script exits 1)."""


def sec(seconds: float) -> str:
    return f"{seconds:.2f} s"


def pair(values: Sequence[float], unit: float = 1.0, suffix: str = " s") -> str:
    """``p50 / max`` of ``values`` divided by ``unit``."""
    return f"{statistics.median(values) / unit:.2f} / {max(values) / unit:.2f}{suffix}"


async def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; BenchFailedError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchFailedError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)


# --------------------------------------------------------------------------- fake pods


class TimedPod(podserver.FakePod):
    """A fake vLLM pod that remembers when each scrape arrived and can go down."""

    def __init__(self) -> None:
        super().__init__("vllm")
        self.scrape_times: list[float] = []
        self.down = False  # crashed: finishes nothing, answers 503

    def __enter__(self) -> TimedPod:
        super().__enter__()
        return self

    def advance(self, requests: float | None = None) -> None:
        # The server calls advance() with no argument first thing on GET /metrics.
        if requests is None:
            self.scrape_times.append(time.monotonic())
        if not self.down:
            super().advance(requests)

    def flow(self, requests: float) -> None:
        """Requests finished between two scrapes (steady traffic)."""
        with self.lock:
            self.advance(requests)

    def last_scrape(self, before: float) -> float | None:
        return max((t for t in self.scrape_times if t <= before), default=None)

    def scrapes_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.scrape_times if start < t <= end)


@contextlib.contextmanager
def steady_traffic(pods: Sequence[TimedPod], rate: float) -> Iterator[None]:
    """Each pod finishes ``rate`` requests a second, in TRAFFIC_STEP steps, from a thread."""
    stop = threading.Event()

    def run() -> None:
        last = time.monotonic()
        while not stop.wait(TRAFFIC_STEP):
            now = time.monotonic()
            for pod in pods:
                pod.flow(rate * (now - last))
            last = now

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------- the API side


@dataclasses.dataclass(frozen=True)
class Seen:
    """status.rollout as stored after a write that changed it."""

    t: float  # when the write was served
    phase: str | None
    step: int | None
    reason: str | None
    revision: str | None  # canaryRevision
    runs: tuple[tuple[str, str], ...]  # analysis runs: (time, result)
    raw: dict[str, Any]


class RolloutEmulator(bench_reconcile.Emulator):
    """bench_reconcile's recording emulator, plus every change of status.rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []
        self._last = ""

    def _observe(self, request: kmock.Request, now: float) -> None:
        super()._observe(request, now)
        if (
            str(request.method.value) not in bench_reconcile.WRITE_METHODS
            or request.resource is None
            or request.resource.plural != "llamadeployments"
            or not kube.exists(self, kube.LLAMA, NAME)
        ):
            return
        state = dict(kube.status_of(self).get("rollout") or {})
        key = json.dumps(
            {k: v for k, v in state.items() if k not in ("message", "lastTransitionTime")},
            sort_keys=True,
        )
        if key == self._last:
            return
        self._last = key
        self.seen.append(
            Seen(
                t=now,
                phase=state.get("phase"),
                step=state.get("step"),
                reason=state.get("reason"),
                revision=state.get("canaryRevision"),
                runs=tuple((str(r.get("time")), str(r.get("result"))) for r in state["analysis"])
                if state.get("analysis")
                else (),
                raw=copy.deepcopy(state),
            )
        )


def first_seen(
    cluster: RolloutEmulator, since: float, check: Callable[[Seen], bool]
) -> Seen | None:
    return next((s for s in cluster.seen if s.t >= since and check(s)), None)


def first_request(
    cluster: RolloutEmulator, since: float, check: Callable[[kmock.Request], bool]
) -> Record | None:
    """The operator's first request since ``since`` that ``check`` accepts."""
    records = cluster.records
    index = len(records)
    while index > 0 and records[index - 1].start >= since:  # newest last: scan back to since
        index -= 1
    return next((r for r in records[index:] if r.by_operator and check(r.request)), None)


def content_type(request: kmock.Request) -> str:
    return str(request.headers.get("Content-Type", ""))


def entry_on_primary(request: kmock.Request) -> bool:
    """The apply of the entry Service with a selector of the primary's pods only."""
    if request.url.path != ENTRY_PATH or "apply-patch" not in content_type(request):
        return False
    data = request.data if isinstance(request.data, Mapping) else {}
    return bool((data.get("spec") or {}).get("selector", {}).get(VARIANT) == "primary")


def canary_deleted(request: kmock.Request) -> bool:
    return str(request.method.value) == "DELETE" and request.url.path == kube.path(
        kube.DEPLOYMENTS, f"{NAME}-canary"
    )


def promotion_apply(revision: str) -> Callable[[kmock.Request], bool]:
    """The apply of the primary Deployment with the canary's revision."""

    def check(request: kmock.Request) -> bool:
        if request.url.path != kube.path(kube.DEPLOYMENTS, f"{NAME}-primary"):
            return False
        if "apply-patch" not in content_type(request) or not isinstance(request.data, Mapping):
            return False
        annotations = (request.data.get("metadata") or {}).get("annotations") or {}
        return bool(annotations.get(REVISION) == revision)

    return check


def rollout_state(cluster: RolloutEmulator) -> dict[str, Any]:
    return dict(kube.status_of(cluster).get("rollout") or {})


def revision_of(cluster: RolloutEmulator, deployment: str) -> str:
    return str(kube.obj(cluster, kube.DEPLOYMENTS, deployment)["metadata"]["annotations"][REVISION])


def policy(steps: Sequence[Mapping[str, Any]], interval: float, limit: int) -> dict[str, Any]:
    return {
        "steps": [dict(step) for step in steps],
        "analysis": {
            "interval": f"{interval:g}s",
            "minRequests": MIN_REQUESTS,
            "maxErrorRate": MAX_ERROR_RATE,
            "failureLimit": limit,
        },
    }


def slice_with(port: int, *, ready: bool) -> dict[str, Any]:
    body: dict[str, Any] = kube.endpoint_slice(f"{NAME}-canary", "canary", 0, port)
    body["endpoints"][0]["conditions"]["ready"] = ready
    return body


def crashed_pod(index: int, labels: dict[str, str]) -> dict[str, Any]:
    """A canary pod whose engine was OOM-killed and now waits in CrashLoopBackOff.

    ``labels``: the canary Deployment's pod labels, its revision label among them (a crash
    counts against the canary revision it ran)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{NAME}-canary-7d9f-{index}",
            "namespace": kube.NAMESPACE,
            "labels": dict(labels),
        },
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


# --------------------------------------------------------------------------- the harness


@dataclasses.dataclass
class Harness:
    cluster: RolloutEmulator
    child: bench_reconcile.Child
    stable: TimedPod
    canary: TimedPod
    changes: int = 0


@dataclasses.dataclass(frozen=True)
class Started:
    revision: str
    changed: float  # the spec change (the new pod template)
    ready: float  # the bench reported the canary Ready
    progressing: float  # status.rollout.phase Progressing written


async def start_rollout(h: Harness, rollout: dict[str, Any]) -> Started:
    """From a settled endpoint (no canary): a new template, its canary Ready, in traffic."""
    cluster = h.cluster

    def settled() -> bool:
        primary = kube.obj(cluster, kube.DEPLOYMENTS, f"{NAME}-primary")
        return (
            not kube.exists(cluster, kube.DEPLOYMENTS, f"{NAME}-canary")
            and primary["spec"]["replicas"] == 2
            and rollout_state(cluster).get("phase") not in ("Starting", "Progressing", "Promoting")
        )

    await until(settled, 30, "the endpoint to settle")
    # The primary's replica count changed during the previous rollout: what the controller
    # reports once it has rolled that out (the primary serves on a settled template). The
    # change waits for a reconcile that started after the report: one that still saw the
    # primary's older generation as not observed would apply the change to the primary
    # directly, without a canary (see the README: a primary that is not current).
    await kube.report_ready(cluster, f"{NAME}-primary", 2)
    reported = time.monotonic()
    await until(
        lambda: any(float(m["t"]) > reported + 0.02 for m in h.child.reconciles),
        10,
        "a reconcile after the primary's report",
    )
    stable_revision = revision_of(cluster, f"{NAME}-primary")
    h.changes += 1
    changed = time.monotonic()
    await kube.patch(
        cluster,
        kube.LLAMA,
        NAME,
        {"spec": {"engineArgs": [f"--seed={h.changes}"], "rollout": rollout}},
    )

    def starting() -> str | None:
        if revision_of(cluster, f"{NAME}-primary") != stable_revision:
            raise BenchFailedError("the change was applied to the primary, without a canary")
        if not kube.exists(cluster, kube.DEPLOYMENTS, f"{NAME}-canary"):
            return None
        revision = revision_of(cluster, f"{NAME}-canary")
        state = rollout_state(cluster)
        ok = state.get("phase") == "Starting" and state.get("canaryRevision") == revision
        return revision if ok else None

    revision = await until(starting, 30, "the canary (Starting)")
    await kube.report_ready(cluster, f"{NAME}-canary", 1)
    ready = time.monotonic()
    seen = await until(
        lambda: first_seen(
            cluster, ready, lambda s: s.phase == "Progressing" and s.revision == revision
        ),
        30,
        "the canary in traffic (Progressing)",
    )
    return Started(revision, changed, ready, seen.t)


async def passed_once(h: Harness, started: Started, interval: float) -> float:
    """Until a Passed judgement is written; returns the canary scrape that made it."""
    passed = await until(
        lambda: first_seen(
            h.cluster,
            started.progressing,
            lambda s: s.revision == started.revision and any(r == "Passed" for _, r in s.runs),
        ),
        10 * interval + 10,
        "a passed judgement",
    )
    if passed.phase != "Progressing":
        raise BenchFailedError(f"the healthy canary is {passed.phase}: {passed.raw}")
    scrape = h.canary.last_scrape(passed.t)
    if scrape is None:
        raise BenchFailedError("a judgement without a canary scrape")
    return scrape


@dataclasses.dataclass(frozen=True)
class Outcome:
    """From T0 (the canary turned bad) to traffic back on stable."""

    t0: float
    entry: float  # the apply of Service chat on the primary only
    deleted: float  # the DELETE of Deployment chat-canary
    status: float  # status.rollout.phase RolledBack written
    reason: str | None
    judgements: int  # canary scrapes between T0 and the entry apply
    detail: str  # the failing run's canary numbers, or the rollback message

    @property
    def back(self) -> float:
        return self.entry - self.t0


async def rolled_back(
    h: Harness, started: Started, t0: float, timeout: float, what: str
) -> Outcome:
    cluster = h.cluster
    try:
        entry = await until(lambda: first_request(cluster, t0, entry_on_primary), timeout, what)
    except BenchFailedError as exc:
        raise BenchFailedError(f"{exc}; status.rollout: {rollout_state(cluster)}") from None
    deleted = await until(lambda: first_request(cluster, t0, canary_deleted), 10, "the DELETE")
    seen = await until(
        lambda: first_seen(
            cluster, t0, lambda s: s.phase == "RolledBack" and s.revision == started.revision
        ),
        10,
        "status RolledBack",
    )
    runs = seen.raw.get("analysis") or []
    detail = (
        json.dumps(runs[-1].get("canary"), sort_keys=True)
        if seen.reason == "AnalysisFailed" and runs
        else str(seen.raw.get("message", ""))[:120]
    )
    return Outcome(
        t0=t0,
        entry=entry.start,
        deleted=deleted.start,
        status=seen.t,
        reason=seen.reason,
        judgements=h.canary.scrapes_between(t0, entry.start),
        detail=detail,
    )


# --------------------------------------------------------------------------- part 1


@dataclasses.dataclass(frozen=True)
class Detection:
    interval: float
    limit: int
    offset: float  # T0 - the scrape of the last passed judgement
    outcome: Outcome
    progressing: float  # the canary in traffic (status Progressing written)


async def detect_once(h: Harness, interval: float, limit: int, phase: float) -> Detection:
    started = await start_rollout(h, policy(HOLD_STEPS, interval, limit))
    judged = await passed_once(h, started, interval)
    await asyncio.sleep(max(0.0, judged + phase * interval - time.monotonic()))
    with h.canary.lock:
        h.canary.error_rate = BAD_ERROR_RATE
        t0 = time.monotonic()
    try:
        outcome = await rolled_back(
            h, started, t0, limit * (interval + 1) * 3 + 10, "a bad canary to be rolled back"
        )
    finally:
        with h.canary.lock:
            h.canary.error_rate = 0.0
    if outcome.reason != "AnalysisFailed":
        raise BenchFailedError(f"the bad canary was rolled back for {outcome.reason}")
    return Detection(interval, limit, t0 - judged, outcome, started.progressing)


# --------------------------------------------------------------------------- part 2


@dataclasses.dataclass(frozen=True)
class Crash:
    metrics_only: Outcome | None  # a rollback while only the metrics showed the crash
    phase_after: str | None  # status.rollout.phase at the end of the watch
    runs_during: int  # analysis runs written during the watch
    canary_scrapes: int  # scrapes of the canary during the watch
    crash_path: Outcome


async def crash_once(h: Harness, index: int, phase: float) -> Crash:
    cluster = h.cluster
    started = await start_rollout(h, policy(HOLD_STEPS, CRASH_INTERVAL, 1))
    await passed_once(h, started, CRASH_INTERVAL)
    runs_before = len(rollout_state(cluster).get("analysis") or [])
    # (a) The engine crashes: no more requests, no /metrics, the endpoint turns not ready,
    # the Deployment reports no ready pod. No Pod status says why yet.
    down = time.monotonic()
    with h.canary.lock:
        h.canary.down, h.canary.status = True, 503
    await kube.patch(
        cluster, kube.ENDPOINTSLICES, CANARY_SLICE, slice_with(h.canary.port, ready=False)
    )
    await kube.patch(
        cluster,
        kube.DEPLOYMENTS,
        f"{NAME}-canary",
        {"status": {"readyReplicas": 0}},
        subresource="status",
    )
    await asyncio.sleep(max(0.0, down + CRASH_WATCH * CRASH_INTERVAL - time.monotonic()))
    metrics_only: Outcome | None = None
    if first_request(cluster, down, entry_on_primary) is not None:
        metrics_only = await rolled_back(h, started, down, 10, "the rollback")
    state = rollout_state(cluster)
    runs_during = len(state.get("analysis") or []) - runs_before
    scrapes = h.canary.scrapes_between(down, time.monotonic())
    # (b) The crash path: the Pod's status says the engine was OOM-killed and crash-loops.
    # T0 spread over the reconcile cadence: an offset after the latest reconcile's start.
    crash_path = metrics_only
    canary = kube.obj(cluster, kube.DEPLOYMENTS, f"{NAME}-canary")
    pod = crashed_pod(index, canary["spec"]["template"]["metadata"]["labels"])
    if metrics_only is None:
        latest = max(float(m["t"]) for m in h.child.reconciles)
        await asyncio.sleep(max(0.0, latest + phase * RESYNC - time.monotonic()))
        t0 = time.monotonic()
        await kube.create(cluster, kube.PODS, pod)
        crash_path = await rolled_back(h, started, t0, 30, "a crashed canary to be rolled back")
    assert crash_path is not None
    # Back to a healthy canary pod for what follows.
    if metrics_only is None:
        async with cluster.delete(kube.path(kube.PODS, pod["metadata"]["name"])) as response:
            if response.status >= 300:
                raise BenchFailedError(f"could not delete the crashed pod: {response.status}")
    with h.canary.lock:
        h.canary.down, h.canary.status = False, 200
    await kube.patch(
        cluster, kube.ENDPOINTSLICES, CANARY_SLICE, slice_with(h.canary.port, ready=True)
    )
    if metrics_only is None and crash_path.reason != "CanaryFailed":
        raise BenchFailedError(f"the crashed canary was rolled back for {crash_path.reason}")
    return Crash(
        metrics_only=metrics_only,
        phase_after=state.get("phase"),
        runs_during=runs_during,
        canary_scrapes=scrapes,
        crash_path=crash_path,
    )


# --------------------------------------------------------------------------- part 3


@dataclasses.dataclass(frozen=True)
class Promotion:
    ready: float  # the bench reported the canary Ready
    progressing: float  # step 1 starts (in traffic)
    steps: list[float]  # when each later step started, then Promoting
    apply: float  # the primary's apply with the canary's template
    reported: float  # the bench reported the primary's pods updated and ready
    completed: float  # status.rollout.phase Completed written
    deleted: float  # the canary's DELETE
    judgements: int  # canary scrapes between Ready and Promoting

    def holds(self) -> list[float]:
        starts = [self.progressing, *self.steps]
        return [later - earlier for earlier, later in itertools.pairwise(starts)]


async def promote_once(h: Harness) -> Promotion:
    cluster = h.cluster
    started = await start_rollout(h, policy(PROMOTE_STEPS, PROMOTE_INTERVAL, 1))

    def on(check: Callable[[Seen], bool]) -> Callable[[], Seen | None]:
        return lambda: first_seen(
            cluster, started.ready, lambda s: s.revision == started.revision and check(s)
        )

    def promoted() -> Record | None:
        state = rollout_state(cluster)
        if state.get("phase") in ("RolledBack", "Cancelled"):
            raise BenchFailedError(f"the healthy canary was not promoted: {state.get('message')}")
        return first_request(cluster, started.ready, promotion_apply(started.revision))

    timeout = 10 * len(PROMOTE_STEPS) * (PROMOTE_INTERVAL + 3) + 10
    apply = await until(promoted, timeout, "the promotion apply")
    await kube.report_ready(cluster, f"{NAME}-primary", 2)
    reported = time.monotonic()
    promoting = await until(on(lambda s: s.phase == "Promoting"), 10, "status Promoting")

    def at_step(index: int) -> Callable[[Seen], bool]:
        return lambda s: s.step == index

    steps = [
        (await until(on(at_step(i)), 10, f"step {i + 1}")).t for i in range(1, len(PROMOTE_STEPS))
    ]
    completed = await until(on(lambda s: s.phase == "Completed"), 30, "status Completed")
    deleted = await until(lambda: first_request(cluster, apply.start, canary_deleted), 10, "DELETE")
    state = rollout_state(cluster)
    passed = {run["step"] for run in state.get("analysis") or [] if run["result"] == "Passed"}
    if passed != set(range(len(PROMOTE_STEPS))):
        raise BenchFailedError(f"promoted without a passed judgement at every step: {state}")
    return Promotion(
        ready=started.ready,
        progressing=started.progressing,
        steps=[*steps, promoting.t],
        apply=apply.start,
        reported=reported,
        completed=completed.t,
        deleted=deleted.start,
        judgements=h.canary.scrapes_between(started.ready, promoting.t),
    )


# --------------------------------------------------------------------------- run


@dataclasses.dataclass
class Result:
    traffic: str
    warmup: Detection
    detections: list[Detection]
    promotions: list[Promotion]
    crashes: list[Crash]
    judgement_gaps: dict[tuple[float, int], list[float]]  # (I, FL) -> canary scrape gaps
    resync_period: float
    warnings: list[str]


@contextlib.asynccontextmanager
async def cluster_and_operator(workdir: pathlib.Path) -> AsyncIterator[Harness]:
    """bench_reconcile.cluster_and_operator with our emulator and the two fake pods."""
    emulator = RolloutEmulator()
    with (
        TimedPod() as stable,
        TimedPod() as canary,
        environment(LLAMA_OPERATOR_METRICS_ADDRESS="127.0.0.1", LLAMA_OPERATOR_METRICS_PORT="0"),
    ):
        async with emulator, kmock.Server(emulator) as server:
            kube.declare_resources(emulator)
            await kube.seed_api_key(emulator)  # the API key every kube.llama names
            child = await bench_reconcile.Child.start(workdir, str(server.url), RESYNC)
            try:
                await bench_reconcile.wait_ready(emulator, child)
                yield Harness(emulator, child, stable, canary)
            except BaseException:
                print(f"operator stderr (last lines):\n{child.log.read_text()[-3000:]}")
                raise
            finally:
                await child.stop()


def judgement_gaps(pod: TimedPod, windows: Sequence[tuple[float, float]]) -> list[float]:
    """Gaps between consecutive canary scrapes inside each (start, end) window."""
    gaps = []
    for start, end in windows:
        times = [t for t in pod.scrape_times if start <= t <= end]
        gaps += [later - earlier for earlier, later in itertools.pairwise(times)]
    return gaps


async def run(workdir: pathlib.Path, traffic: str) -> Result:
    async with cluster_and_operator(workdir) as h:
        cluster = h.cluster
        pods = [h.stable, h.canary]
        if traffic == "per-scrape":
            for pod in pods:
                pod.rate = PER_SCRAPE
        with steady_traffic(pods, RATE if traffic == "steady" else 0.0):
            spec = {
                "model": {"id": MODEL},
                "engine": "vllm",
                "replicas": 2,
                "license": {"accept": True},
                "rollout": policy(HOLD_STEPS, DETECT[0][0], DETECT[0][1]),
            }
            await kube.create(cluster, kube.LLAMA, kube.llama(NAME, spec=spec))
            await until(
                lambda: kube.exists(cluster, kube.DEPLOYMENTS, f"{NAME}-primary"), 30, "primary"
            )
            await kube.report_ready(cluster, f"{NAME}-primary", 2)
            primary_slice = kube.endpoint_slice(f"{NAME}-primary", "primary", 0, h.stable.port)
            await kube.create(cluster, kube.ENDPOINTSLICES, primary_slice)
            await kube.create(cluster, kube.ENDPOINTSLICES, slice_with(h.canary.port, ready=True))
            await until(lambda: kube.status_of(cluster).get("phase") == "Ready", 30, "Ready")

            warmup = await detect_once(h, *DETECT[0], 0.5)
            detections: list[Detection] = []
            for interval, limit in DETECT:
                for i in range(DETECT_REPS):
                    detections.append(
                        await detect_once(h, interval, limit, (i + 0.5) / DETECT_REPS)
                    )
            promotions = [await promote_once(h) for _ in range(PROMOTE_REPS)]
            crashes = [await crash_once(h, i, (i + 0.5) / CRASH_REPS) for i in range(CRASH_REPS)]
        gaps: dict[tuple[float, int], list[float]] = {}
        for d in detections:
            # The canary's scrapes while in traffic: the baseline, then one per judgement.
            windows = [(d.progressing, d.outcome.entry)]
            gaps.setdefault((d.interval, d.limit), []).extend(judgement_gaps(h.canary, windows))
        timer = [float(m["t"]) for m in h.child.reconciles if m["cause"] == "timer"]
        period = statistics.median(later - earlier for earlier, later in itertools.pairwise(timer))
        warnings = h.child.warnings()
    return Result(traffic, warmup, detections, promotions, crashes, gaps, period, warnings)


# --------------------------------------------------------------------------- report


def detection_report(result: Result) -> list[str]:
    resync = result.resync_period
    rows = [
        [
            "I",
            "failureLimit",
            "T0 -> entry Service on primary",
            "in intervals",
            "T0 -> canary DELETE",
            "judgements",
            "bound FL x (I + R)",
            "within",
        ],
        ["", "", "p50 / max", "p50 / max", "p50 / max", "per rep", "(computed)", ""],
    ]
    closing = []
    for interval, limit in DETECT:
        reps = [d for d in result.detections if (d.interval, d.limit) == (interval, limit)]
        backs = [d.outcome.back for d in reps]
        bound = limit * (interval + resync)
        within = sum(1 for b in backs if b <= bound)
        rows.append(
            [
                f"{interval:g} s",
                str(limit),
                pair(backs),
                pair(backs, interval, ""),
                pair([d.outcome.deleted - d.outcome.t0 for d in reps]),
                ",".join(str(d.outcome.judgements) for d in reps),
                sec(bound),
                f"{within}/{len(reps)}",
            ]
        )
        closing.append(
            f"{statistics.median(backs) / interval:.2f} / {max(backs) / interval:.2f} at I"
            f" {interval:g} s, FL {limit} (bound {bound / interval:.2f}; {within}/{len(reps)}"
            " within)"
        )
    traffic = (
        f"steady {RATE:g} req/s per pod"
        if result.traffic == "steady"
        else f"{PER_SCRAPE:g} requests per scrape"
    )
    table(
        f"1. Detection: the canary's error rate 0 -> {BAD_ERROR_RATE} (maxErrorRate"
        f" {MAX_ERROR_RATE}, minRequests {MIN_REQUESTS}; {traffic}) at T0, {DETECT_REPS} reps"
        " per row, T0 at (i + 0.5)/N of the interval after a passed judgement",
        rows,
    )
    for interval, limit in DETECT:
        reps = [d for d in result.detections if (d.interval, d.limit) == (interval, limit)]
        print(
            f"  I {interval:g} s, FL {limit}, T0 offset -> back on stable (judgements): "
            + ", ".join(
                f"{d.offset:.2f}->{d.outcome.back:.2f} ({d.outcome.judgements})" for d in reps
            )
        )
    w = result.warmup
    print(
        f"  warm-up (not above): I {w.interval:g} s, FL {w.limit}: back on stable"
        f" {sec(w.outcome.back)}; failing window's canary numbers: {w.outcome.detail}"
    )
    rows = [
        ["I", "FL", "mean over phase (FL-0.5) x I", "worst FL x I", "FL x (I + R)", "judged every"],
    ]
    for interval, limit in DETECT:
        gaps = result.judgement_gaps.get((interval, limit)) or [float("nan")]
        rows.append(
            [
                f"{interval:g} s",
                str(limit),
                sec((limit - 0.5) * interval),
                sec(limit * interval),
                sec(limit * (interval + resync)),
                f"{statistics.median(gaps):.2f} s (max {max(gaps):.2f})",
            ]
        )
    table(
        "   Reference, COMPUTED (not measured): an interval detector aborting after FL failed"
        f" windows; R = {resync:.2f} s, the timer period measured in this run (resync {RESYNC:g} s"
        " + reconcile); 'judged every': measured gaps between the canary's scrapes",
        rows,
    )
    if result.traffic == "steady":
        share = MAX_ERROR_RATE / BAD_ERROR_RATE
        print(
            f"  (steady traffic: a window fails only if more than {share:.0%} of its requests"
            f" came after T0, so a T0 in the last {share:.0%} of a window waits one more"
            " judgement)"
        )
    return closing


def crash_report(result: Result) -> str:
    rows = [
        ["", "(a) metrics only, watched", "", "", "", "(b) crash path: T0 ->", "", ""],
        [
            "rep",
            f"rolled back in {CRASH_WATCH * CRASH_INTERVAL:g} s",
            "runs",
            "scrapes",
            "phase after",
            "entry on primary",
            "canary DELETE",
            "reason",
        ],
    ]
    for index, crash in enumerate(result.crashes, 1):
        outcome = crash.crash_path
        rows.append(
            [
                str(index),
                "yes" if crash.metrics_only else "no",
                str(crash.runs_during),
                str(crash.canary_scrapes),
                str(crash.phase_after),
                sec(outcome.back),
                sec(outcome.deleted - outcome.t0),
                str(outcome.reason),
            ]
        )
    table(
        f"2. A crash, I {CRASH_INTERVAL:g} s, failureLimit 1, {CRASH_REPS} reps: (a) at T0 the"
        " canary engine stops (503, no requests, endpoint not ready, 0 ready) with no Pod status"
        " saying why: analysis runs written and canary scrapes meanwhile; (b) then its Pod shows"
        " CrashLoopBackOff after an OOMKill (T0 spread over the resync period)",
        rows,
    )
    caught = [c.crash_path.back for c in result.crashes if c.metrics_only is None]
    by_metrics = sum(1 for c in result.crashes if c.metrics_only is not None)
    if not caught:
        return f"a crash was rolled back by its metrics alone in {by_metrics}/{len(result.crashes)}"
    resync = result.resync_period
    bound = CRASH_INTERVAL + resync
    print(
        f"  (b) p50 / max: {pair(caught)} = {pair(caught, CRASH_INTERVAL, '')} intervals ="
        f" {pair(caught, resync, '')} resync periods (R {resync:.2f} s), no judgement needed;"
        f" reference, part 1's computed bound for FL 1: {sec(bound)}"
    )
    return (
        f"a crashed canary's Pod status puts traffic back on stable in p50"
        f" {statistics.median(caught):.2f} s ({statistics.median(caught) / CRASH_INTERVAL:.2f}"
        f" intervals, < one resync), while its metrics alone rolled it back in"
        f" {by_metrics}/{len(result.crashes)} reps"
    )


def promotion_report(result: Result) -> str:
    pauses = sum(api.parse_duration(str(step["pause"])) for step in PROMOTE_STEPS)
    reps = result.promotions
    rows = [["", "per rep", "p50 / max", "in intervals"]]

    def row(label: str, values: Sequence[float]) -> list[str]:
        return [
            label,
            ", ".join(f"{v:.2f}" for v in values),
            pair(values),
            pair(values, PROMOTE_INTERVAL, ""),
        ]

    rows.append(
        row("canary Ready -> in traffic (Progressing)", [p.progressing - p.ready for p in reps])
    )
    for index, step in enumerate(PROMOTE_STEPS):
        rows.append(
            row(
                f"  step {index + 1} ({step['weight']}%, pause {step['pause']}) held",
                [p.holds()[index] for p in reps],
            )
        )
    to_apply = [p.apply - p.ready for p in reps]
    rows += [
        row("canary Ready -> primary's promotion apply (Promoting)", to_apply),
        row(
            "  promotion apply -> bench reports the primary rolled out",
            [p.reported - p.apply for p in reps],
        ),
        row("  rolled out -> status Completed", [p.completed - p.reported for p in reps]),
        row("canary Ready -> Completed", [p.completed - p.ready for p in reps]),
        row("canary Ready -> canary DELETE", [p.deleted - p.ready for p in reps]),
        [
            "judgements (canary scrapes) before Promoting",
            ", ".join(str(p.judgements) for p in reps),
            "",
            "",
        ],
        [
            "reference: sum of the step pauses (the policy's minimum)",
            "",
            sec(pauses),
            f"{pauses / PROMOTE_INTERVAL:.2f}",
        ],
    ]
    steps = ", ".join(f"{s['weight']}%/{s['pause']}" for s in PROMOTE_STEPS)
    table(
        f"3. Promotion of a healthy canary, steps {steps},"
        f" I {PROMOTE_INTERVAL:g} s, {PROMOTE_REPS} reps",
        rows,
    )
    holds = [
        (hold, api.parse_duration(str(step["pause"])))
        for p in reps
        for hold, step in zip(p.holds(), PROMOTE_STEPS, strict=True)
    ]
    short = [hold for hold, pause in holds if hold < pause]
    early = sum(1 for p in reps if p.apply - p.ready < pauses)
    if short:
        print(
            f"  {len(short)} of {len(holds)} steps held less than their pause (shortest"
            f" {min(short):.2f} s), {early} of {len(reps)} promotions came before the sum of the"
            " pauses: the operator stamps stepStartedAt and its clock in whole seconds"
            " (RFC 3339, no fraction), so a pause is counted between whole seconds and can end"
            " up to 1 s early"
        )
    return (
        f"a healthy canary reaches its promotion apply in p50"
        f" {statistics.median(to_apply):.2f} s (max {max(to_apply):.2f}) vs {pauses:g} s of"
        f" pauses, the policy's minimum ({statistics.median(to_apply) / pauses - 1:+.0%};"
        f" {early}/{len(reps)} below it)"
    )


async def parent(traffic: str) -> int:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        try:
            result = await run(pathlib.Path(tmp), traffic)
        except BenchFailedError as exc:
            print(f"BROKEN: {exc}")
            return 1
    closing = detection_report(result)
    crash = crash_report(result)
    promotion = promotion_report(result)
    print(
        f"\n(whole run: {time.monotonic() - began:.0f} s; operator timer period R"
        f" {result.resync_period:.3f} s at resync {RESYNC:g} s)"
    )
    if result.warnings:
        print(f"\noperator stderr ({len(result.warnings)} lines, first 10):")
        for line in result.warnings[:10]:
            print(f"  {line[:200]}")
    print(
        "\nA bad canary is back on stable in p50 / max intervals "
        + ", ".join(closing)
        + f", vs the computed bound FL x (I + R) of an interval detector; {crash}; {promotion}."
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--traffic",
        choices=("steady", "per-scrape"),
        default="steady",
        help="steady requests a second (default), or the contract tests' requests per scrape",
    )
    args = parser.parse_args()
    return asyncio.run(parent(args.traffic))


if __name__ == "__main__":
    sys.exit(main())
