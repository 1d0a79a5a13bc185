"""Failover benchmark: how fast the entry point moves to a fallback model, and back.

Measured in resync periods (R, the operator's timer period measured in the run) and in
seconds, each beside a reference computed from the same run's R.

Setup. The real operator (``kopf.operator`` with our handlers) runs in a child process
against kmock (``tests/contract/kube.py``) served by this process, exactly as
``bench_rollout.py`` runs it (``bench_reconcile``'s ``Child`` and ``wait_ready``), with
``LLAMA_OPERATOR_RESYNC_SECONDS`` 0.25 and the bundled pool catalogue. One
LlamaDeployment (Llama 3.1 8B on vLLM, replicas 1) with one fallback (Llama 3.2 1B,
licence accepted) and ``spec.failover.holdDown`` 2 s is driven as
``tests/contract/test_fallback.py`` drives it: there is no Deployment controller, so the
bench reports a Deployment's pods Ready, or its last pod gone, the way the controller
would (a status patch). The operator reads its children from watches but reconciles on
its timer: a Deployment's status change is acted on at the next tick. Every API request
is recorded with its arrival time in this process (``time.monotonic``); the child's
reconciles are reported with their start time on the same clock.

1. Warm fallback (``replicas: 1``, reported Ready), 5 repetitions. At T0 the bench
   reports the primary's Deployment with 0 ready replicas (it lost its last ready pod);
   the T0s are spread over the timer phase, (i + 0.5) / N of a period after a tick.
   Failover time: T0 to the operator's server-side apply of Service ``chat`` whose
   selector names ``fallback-0`` (the entry point on the fallback's pods). Then the
   bench reports the primary Ready again at T2; fail-back time: T2 to the apply of
   ``chat`` back on the primary, minus the hold-down. Reported in seconds and in R.
2. Cold fallback (``replicas: 0``), 5 repetitions, T0 spread the same way: T0 to the
   apply of Deployment ``chat-fallback-0`` with one replica (the scale-up); the bench
   reports the fallback Ready a period or two later, at the same phase offset (a real
   first start loads the model for minutes, at a moment unrelated to the timer: not
   measured here), then that report to the entry point's switch. After the fail-back,
   the apply scaling the fallback back to 0.

Reference, COMPUTED, not measured. A controller that acts only on a timer of period R
sees a change U(0, R) after it happens: on average R / 2, at worst R, plus the
reconcile's own time (the median reconcile is measured and shown); an event-driven one
(a watch on the Deployment triggering the reconcile) would take about one reconcile. The
fail-back waits the hold-down, checked on the same timer: from the report to the switch
is the hold-down plus up to 2 R (one to see the primary ready, one for the check that
finds the hold-down over); ``primaryHealthySince`` is stamped to the millisecond, so
the hold-down is never cut short (the run that introduced this bench found it stamped
in whole seconds, up to 1 s early; fixed). KServe and KubeAI
have no model fallback (issue 7's survey: an InferenceService or a Model serves its own
model or nothing), so there is no number of theirs to put beside these.

No wall time is asserted. The script exits 1 only if the failover does not do what it
must: the entry point never moves to the ready fallback, it moves to a fallback before
the fallback has a ready pod, it fails back before the hold-down, a cold fallback is
not scaled up, or the FailedOver/FailedBack Events are missing.

Run: ``.venv/bin/python benchmarks/bench_failover.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

# tests/contract/ (kube; bench_reconcile adds it too).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "contract"))

import kmock
import kube

import bench_reconcile

T = TypeVar("T")

NAME = "chat"
PRIMARY_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FALLBACK_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
RESYNC = 0.25  # LLAMA_OPERATOR_RESYNC_SECONDS in the child
HOLD_DOWN = 2.0  # spec.failover.holdDown, seconds
WARM_REPS = 5
COLD_REPS = 5
STAMP = 0.0  # the operator's timestamps have milliseconds (api.stamp)

PRIMARY = f"{NAME}-primary"
FALLBACK = f"{NAME}-fallback-0"
ENTRY_PATH = kube.path(kube.SERVICES, NAME)
FALLBACK_PATH = kube.path(kube.DEPLOYMENTS, FALLBACK)
VARIANT = "llamaops.dev/variant"

table = bench_reconcile.table
Record = bench_reconcile.Record


class BenchFailedError(Exception):
    """The failover did not do what it must (the script exits 1)."""


def sec(seconds: float) -> str:
    return f"{seconds:.2f} s"


def pair(values: Sequence[float], unit: float = 1.0, suffix: str = " s") -> str:
    """``p50 / max`` of ``values`` divided by ``unit``."""
    return f"{statistics.median(values) / unit:.2f} / {max(values) / unit:.2f}{suffix}"


def spread(values: Sequence[float], unit: float = 1.0, suffix: str = " s") -> str:
    """``min / p50 / max`` of ``values`` divided by ``unit``."""
    low, mid, high = min(values) / unit, statistics.median(values) / unit, max(values) / unit
    return f"{low:+.2f} / {mid:+.2f} / {high:+.2f}{suffix}"


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


def content_type(request: kmock.Request) -> str:
    return str(request.headers.get("Content-Type", ""))


def first_request(
    cluster: bench_reconcile.Emulator, since: float, check: Callable[[kmock.Request], bool]
) -> Record | None:
    """The operator's first request since ``since`` that ``check`` accepts."""
    records = cluster.records
    index = len(records)
    while index > 0 and records[index - 1].start >= since:  # newest last: scan back to since
        index -= 1
    return next((r for r in records[index:] if r.by_operator and check(r.request)), None)


def entry_on(variant: str) -> Callable[[kmock.Request], bool]:
    """The apply of the entry Service with a selector of ``variant``'s pods."""

    def check(request: kmock.Request) -> bool:
        if request.url.path != ENTRY_PATH or "apply-patch" not in content_type(request):
            return False
        data = request.data if isinstance(request.data, Mapping) else {}
        return bool((data.get("spec") or {}).get("selector", {}).get(VARIANT) == variant)

    return check


def fallback_scaled(replicas: int) -> Callable[[kmock.Request], bool]:
    """The apply of the fallback's Deployment with ``replicas``."""

    def check(request: kmock.Request) -> bool:
        if request.url.path != FALLBACK_PATH or "apply-patch" not in content_type(request):
            return False
        data = request.data if isinstance(request.data, Mapping) else {}
        return bool((data.get("spec") or {}).get("replicas") == replicas)

    return check


def event(reason: str) -> Callable[[kmock.Request], bool]:
    def check(request: kmock.Request) -> bool:
        data = request.data if isinstance(request.data, Mapping) else {}
        return (
            str(request.method.value) == "POST"
            and request.url.path.endswith("/events")
            and data.get("reason") == reason
        )

    return check


async def report(cluster: bench_reconcile.Emulator, name: str, replicas: int, ready: int) -> None:
    """What the Deployment controller reports: ``ready`` of ``replicas`` pods ready."""
    generation = kube.obj(cluster, kube.DEPLOYMENTS, name)["metadata"].get("generation")
    await kube.patch(
        cluster,
        kube.DEPLOYMENTS,
        name,
        {
            "status": {
                "replicas": replicas,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "observedGeneration": generation,
            }
        },
        subresource="status",
    )


def failover_state(cluster: bench_reconcile.Emulator) -> dict[str, Any]:
    return dict(kube.status_of(cluster, NAME).get("failover") or {})


def spec(replicas: int) -> dict[str, Any]:
    return {
        "model": {"id": PRIMARY_MODEL},
        "engine": "vllm",
        "replicas": 1,
        "license": {"accept": True},
        "fallbacks": [
            {
                "model": {"id": FALLBACK_MODEL},
                "replicas": replicas,
                "license": {"accept": True},  # Llama 3.2's licence, not the primary's
            }
        ],
        "failover": {"holdDown": f"{HOLD_DOWN:g}s"},
    }


# --------------------------------------------------------------------------- the harness


@dataclasses.dataclass
class Harness:
    cluster: bench_reconcile.Emulator
    child: bench_reconcile.Child

    def ticks(self, since: float = 0.0, before: float = float("inf")) -> list[float]:
        """Start times of the timer's reconciles in (since, before]."""
        return [
            float(m["t"])
            for m in self.child.reconciles
            if m["cause"] == "timer" and since < float(m["t"]) <= before
        ]

    def period(self) -> float:
        ticks = self.ticks()[-40:]
        if len(ticks) < 2:
            return RESYNC
        return statistics.median(b - a for a, b in itertools.pairwise(ticks))


async def settled(h: Harness, *, fallback_ready: int) -> None:
    """Until traffic is on the primary, the failover state says so, and a tick has passed
    since (so the next T0 starts from a steady endpoint)."""

    def steady() -> bool:
        state = failover_state(h.cluster)
        rows = state.get("fallbacks") or [{}]
        return (
            state.get("active") == "primary"
            and not state.get("started")
            and rows[0].get("readyReplicas") == fallback_ready
            and kube.status_of(h.cluster, NAME).get("phase") == "Ready"
        )

    await until(steady, 30, "the endpoint to settle on the primary")
    now = time.monotonic()
    await until(lambda: h.ticks(now), 10, "a tick after settling")


async def at_phase(h: Harness, phase: float) -> float:
    """Sleep until ``phase`` of a timer period after the latest tick; returns that time."""
    period = h.period()
    target = max(h.ticks()) + phase * period
    while target < time.monotonic() + 0.01:
        target += period
    await asyncio.sleep(target - time.monotonic())
    return time.monotonic()


@dataclasses.dataclass(frozen=True)
class Warm:
    t0: float  # the primary reported with 0 ready
    switch: float  # the entry Service's apply on fallback-0
    ticks: int  # timer ticks started in (T0, switch]
    reported: float  # the primary reported Ready again
    back: float  # the entry Service's apply on the primary

    @property
    def failover(self) -> float:
        return self.switch - self.t0

    @property
    def failback(self) -> float:
        return self.back - self.reported


async def warm_once(h: Harness, phase: float) -> Warm:
    cluster = h.cluster
    await settled(h, fallback_ready=1)
    t0 = await at_phase(h, phase)
    await report(cluster, PRIMARY, 1, 0)
    switch = await until(
        lambda: first_request(cluster, t0, entry_on("fallback-0")), 10, "the entry on fallback-0"
    )
    await until(lambda: first_request(cluster, t0, event("FailedOver")), 10, "Event FailedOver")
    await until(
        lambda: kube.status_of(cluster, NAME).get("activeModel") == FALLBACK_MODEL,
        10,
        "status.activeModel on the fallback",
    )
    reported = await at_phase(h, phase)  # the primary's new pod passes its probe
    await report(cluster, PRIMARY, 1, 1)
    back = await until(
        lambda: first_request(cluster, reported, entry_on("primary")),
        HOLD_DOWN + 10,
        "the entry back on the primary",
    )
    if back.start - reported < HOLD_DOWN - STAMP:
        raise BenchFailedError(
            f"failed back {back.start - reported:.2f} s after the primary was ready: before"
            f" the {HOLD_DOWN:g} s hold-down"
        )
    await until(lambda: first_request(cluster, reported, event("FailedBack")), 10, "FailedBack")
    return Warm(
        t0=t0,
        switch=switch.start,
        ticks=len(h.ticks(t0, switch.start)),
        reported=reported,
        back=back.start,
    )


@dataclasses.dataclass(frozen=True)
class Cold:
    t0: float  # the primary reported with 0 ready
    scale_up: float  # the fallback's apply with 1 replica
    ready: float  # the bench reported the fallback Ready
    switch: float  # the entry Service's apply on fallback-0
    reported: float  # the primary reported Ready again
    back: float  # the entry Service's apply on the primary
    scale_down: float  # the fallback's apply with 0 replicas


async def cold_once(h: Harness, phase: float) -> Cold:
    cluster = h.cluster
    await settled(h, fallback_ready=0)
    t0 = await at_phase(h, phase)
    await report(cluster, PRIMARY, 1, 0)
    scale_up = await until(
        lambda: first_request(cluster, t0, fallback_scaled(1)), 10, "the cold fallback's scale-up"
    )
    await until(lambda: first_request(cluster, t0, event("StartingFallback")), 10, "the Event")
    # Its pod loads the model (minutes in a real cluster): Ready at a moment unrelated to
    # the operator's timer, spread over the phase as T0 is.
    await asyncio.sleep(h.period())
    ready = await at_phase(h, phase)
    if first_request(cluster, t0, entry_on("fallback-0")) is not None:
        raise BenchFailedError("the entry point moved to the cold fallback before it was ready")
    await report(cluster, FALLBACK, 1, 1)
    switch = await until(
        lambda: first_request(cluster, ready, entry_on("fallback-0")), 10, "the switch"
    )
    if first_request(cluster, t0, entry_on("fallback-0")) is not switch:
        raise BenchFailedError("the entry point moved to the cold fallback before it was ready")
    await until(lambda: first_request(cluster, t0, event("FailedOver")), 10, "Event FailedOver")
    reported = await at_phase(h, phase)  # the primary's new pod passes its probe
    await report(cluster, PRIMARY, 1, 1)
    back = await until(
        lambda: first_request(cluster, reported, entry_on("primary")),
        HOLD_DOWN + 10,
        "the entry back on the primary",
    )
    if back.start - reported < HOLD_DOWN - STAMP:
        raise BenchFailedError("failed back before the hold-down")
    down = await until(
        lambda: first_request(cluster, reported, fallback_scaled(0)), 10, "the scale-down"
    )
    await report(cluster, FALLBACK, 0, 0)  # its pod is gone
    return Cold(
        t0=t0,
        scale_up=scale_up.start,
        ready=ready,
        switch=switch.start,
        reported=reported,
        back=back.start,
        scale_down=down.start,
    )


# --------------------------------------------------------------------------- run


@dataclasses.dataclass
class Result:
    warm: list[Warm]
    cold: list[Cold]
    period: float
    reconcile: float  # median duration of one timer reconcile
    warnings: list[str]


@contextlib.asynccontextmanager
async def cluster_and_operator(workdir: pathlib.Path) -> AsyncIterator[Harness]:
    emulator = bench_reconcile.Emulator()
    with environment(LLAMA_OPERATOR_METRICS_ADDRESS="127.0.0.1", LLAMA_OPERATOR_METRICS_PORT="0"):
        async with emulator, kmock.Server(emulator) as server:
            kube.declare_resources(emulator)
            await kube.seed_api_key(emulator)  # the API key every kube.llama names
            child = await bench_reconcile.Child.start(workdir, str(server.url), RESYNC)
            try:
                await bench_reconcile.wait_ready(emulator, child)
                yield Harness(emulator, child)
            except BaseException:
                print(f"operator stderr (last lines):\n{child.log.read_text()[-3000:]}")
                raise
            finally:
                await child.stop()


async def run(workdir: pathlib.Path) -> Result:
    async with cluster_and_operator(workdir) as h:
        cluster = h.cluster
        await kube.create(cluster, kube.LLAMA, kube.llama(NAME, spec=spec(1)))
        await until(lambda: kube.exists(cluster, kube.DEPLOYMENTS, PRIMARY), 30, "the primary")
        await report(cluster, PRIMARY, 1, 1)
        await until(lambda: kube.status_of(cluster, NAME).get("phase") == "Ready", 30, "Ready")
        await until(lambda: kube.exists(cluster, kube.DEPLOYMENTS, FALLBACK), 30, "the fallback")
        await report(cluster, FALLBACK, 1, 1)
        warm = [await warm_once(h, (i + 0.5) / WARM_REPS) for i in range(WARM_REPS)]

        # The same fallback, cold: scaled to 0 (its pod goes), started only for a failover.
        since = time.monotonic()
        await kube.patch(cluster, kube.LLAMA, NAME, {"spec": spec(0)})
        await until(lambda: first_request(cluster, since, fallback_scaled(0)), 10, "scaled to 0")
        await report(cluster, FALLBACK, 0, 0)
        cold = [await cold_once(h, (i + 0.5) / COLD_REPS) for i in range(COLD_REPS)]
        durations = [float(m["seconds"]) for m in h.child.reconciles if m["cause"] == "timer"]
        return Result(warm, cold, h.period(), statistics.median(durations), h.child.warnings())


# --------------------------------------------------------------------------- report


def three(low: float, mid: float, high: float, suffix: str = " s") -> str:
    return f"{low:+.2f} / {mid:+.2f} / {high:+.2f}{suffix}"


def warm_report(result: Result) -> str:
    r, rec = result.period, result.reconcile
    failovers = [w.failover for w in result.warm]
    failbacks = [w.failback - HOLD_DOWN for w in result.warm]
    rows = [
        ["", "per rep (s)", "min / p50 / max", "min / p50 / max in R"],
        [
            "T0 (primary 0 ready) -> entry Service on fallback-0",
            ", ".join(f"{v:.2f}" for v in failovers),
            spread(failovers),
            spread(failovers, r, " R"),
        ],
        ["  timer ticks started in between", ", ".join(str(w.ticks) for w in result.warm), "", ""],
        [
            f"primary Ready -> entry back on primary, minus holdDown {HOLD_DOWN:g} s",
            ", ".join(f"{v:+.2f}" for v in failbacks),
            spread(failbacks),
            spread(failbacks, r, " R"),
        ],
        [
            "reference, COMPUTED (min / mean / max): failover, timer of period R",
            "",
            three(rec, r / 2 + rec, r + rec),
            three(rec / r, 0.5 + rec / r, 1 + rec / r, " R"),
        ],
        [
            "reference, COMPUTED (min / mean / max): fail-back after the hold-down",
            "",
            three(-STAMP + rec, r - STAMP / 2 + rec, 2 * r + rec),
            three((-STAMP + rec) / r, 1 - STAMP / 2 / r + rec / r, 2 + rec / r, " R"),
        ],
    ]
    table(
        f"1. Warm fallback (replicas 1, Ready), {len(result.warm)} reps, T0 at (i + 0.5)/N of"
        f" the timer period after a tick; R = {r:.3f} s (resync {RESYNC:g} s + reconcile,"
        f" median reconcile {result.reconcile * 1000:.0f} ms)",
        rows,
    )
    return (
        f"the entry point is on the ready warm fallback in p50 / max {pair(failovers, r, ' R')}"
        f" ({pair(failovers)}) after the primary lost its last ready pod, and back on the"
        f" primary {spread(failbacks)} (min / p50 / max) after the {HOLD_DOWN:g} s hold-down"
    )


def cold_report(result: Result) -> str:
    r = result.period
    reps = result.cold

    def row(label: str, values: Sequence[float]) -> list[str]:
        per_rep = ", ".join(f"{v:+.2f}" for v in values)
        return [label, per_rep, spread(values), spread(values, r, " R")]

    up = [c.scale_up - c.t0 for c in reps]
    switch = [c.switch - c.ready for c in reps]
    rows = [
        ["", "per rep (s)", "min / p50 / max", "min / p50 / max in R"],
        row("T0 (primary 0 ready) -> fallback's scale-up apply (0 -> 1)", up),
        row("fallback reported Ready -> entry Service on fallback-0", switch),
        row(
            f"primary Ready -> entry back on primary, minus holdDown {HOLD_DOWN:g} s",
            [c.back - c.reported - HOLD_DOWN for c in reps],
        ),
        row(
            "entry back on primary -> fallback's scale-down apply (1 -> 0)",
            [c.scale_down - c.back for c in reps],
        ),
    ]
    table(
        f"2. Cold fallback (replicas 0), {len(reps)} reps, T0 spread as in 1; the bench reports"
        " the fallback Ready one to two periods after its scale-up apply, at the same phase"
        " offset (a real start loads the model first: minutes, not measured)",
        rows,
    )
    return (
        f"a cold fallback is scaled up in p50 / max {pair(up, r, ' R')} and takes traffic"
        f" {pair(switch, r, ' R')} after it is ready"
    )


async def parent() -> int:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        try:
            result = await run(pathlib.Path(tmp))
        except BenchFailedError as exc:
            print(f"BROKEN: {exc}")
            return 1
    warm = warm_report(result)
    cold = cold_report(result)
    print(
        "\n  Reference: KServe and KubeAI have no model fallback (issue 7's survey: an"
        " InferenceService or a Model serves its own model or nothing), so no number of theirs"
        " is shown; none is invented."
    )
    print(
        f"\n(whole run: {time.monotonic() - began:.0f} s; operator timer period R"
        f" {result.period:.3f} s at resync {RESYNC:g} s)"
    )
    if result.warnings:
        print(f"\noperator stderr ({len(result.warnings)} lines, first 10):")
        for line in result.warnings[:10]:
            print(f"  {line[:200]}")
    print(
        f"\nFailover: {warm}; {cold}. A timer-driven controller needs R / 2 on average and R"
        " at worst (computed), plus one reconcile; a fail-back waits the whole hold-down and"
        " at most 2 R more."
    )
    return 0


def main() -> int:
    return asyncio.run(parent())


if __name__ == "__main__":
    sys.exit(main())
