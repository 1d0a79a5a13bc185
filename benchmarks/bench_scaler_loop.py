"""Scaler-loop benchmark: how fast the live autoscaler reacts, and what a scrape tick costs.

Four tables, each beside references measured in the same run: the live loop's reaction
(1), and the scrape tick's cost, timeout and limits (2-4).

1. Reaction of the live loop. The real operator (``kopf.operator`` with our handlers,
   the ``autoscale`` daemon among them) runs in a child process against kmock
   (``tests/contract/kube.py``) served by this process, exactly as
   ``bench_reconcile.py`` runs it: its ``Child``, ``Emulator`` (which records every
   request with its arrival time) and ``cluster_and_operator`` are imported from there.
   Why a child process rather than in-process like the contract tests: in-process, the
   daemon would share one event loop and one GIL with kmock (which serves the
   operator's own watches and patches) and with the fake pods' server threads, so the
   latencies measured here would include queueing behind the measuring harness. All
   reaction times are taken in this process only (the moment the queue is raised and
   the moment a request reaches the emulator, both ``time.monotonic``); only the
   "reconcile starts" split uses the child's timestamps, which share the clock
   (CLOCK_MONOTONIC is system-wide on Linux).

   One LlamaDeployment (Llama 3.1 8B on vLLM, ``license: {accept: true}``, replicas 1,
   ``autoscaling: {intervalSeconds: 1, targetQueueLength: 8, minReplicas: 1,
   maxReplicas: 4, scaleDownDelaySeconds: 600}``; the resync timer is set to 600 s so
   only change handlers reconcile). Two fake vLLM pods (``tests/podserver.py`` on
   127.0.0.1, serving ``tests/fixtures/metrics/vllm.prom``; the bench records when each
   scrape arrives) sit behind an EndpointSlice of ``chat-primary``, as in
   ``tests/contract/test_autoscaling.py``. Each repetition waits for a scrape (a tick),
   sleeps a phase offset, then at T raises both pods' waiting requests from 0 to 10
   (load 20, target 8: 3 replicas) and waits for the operator's PATCH of
   ``llamadeployments/chat/scale`` and then for its apply of the Deployment with 3
   replicas. The offsets are stratified, (i + 0.5) / N of the interval for repetition
   i, so the N repetitions sample the whole tick phase deterministically instead of
   relying on luck. Between repetitions the pods go idle, the bench waits for an idle
   scrape of both, and scales back to 1 through ``/scale`` itself (as ``kubectl
   scale`` would; the 600 s window keeps the autoscaler from scaling down on its
   own). One warm-up repetition is run first and shown apart.

   Reference: the interval itself. A change can wait up to one interval for the next
   tick, then the tick's scrape, decision and PATCH, so the expected bound is one
   interval plus the tick's wall time (the operator's own
   ``llama_operator_autoscaler_tick_seconds`` histogram, read from the child at the
   end). For context only, as DOCUMENTED DEFAULTS, NOT MEASUREMENTS: the HPA
   controller's sync period (``--horizontal-pod-autoscaler-sync-period``, 15 s) and
   KEDA's ``pollingInterval`` (30 s); both add their metrics pipeline's delay
   (Prometheus scrape interval, adapter cache) on top. Also shown: the child's CPU and
   API requests per idle tick (2 pods, nothing to change).

2. Scrape-loop cost per 100 pods, in this process. 100 FakePods (vLLM text, each pod
   waiting 8 and running 16, so ``decide`` takes the steady path with the running
   floor) are served by a second child process of this script, so that
   ``time.process_time`` here counts the scraper alone, not the pods' HTTP servers.
   EndpointSlice-shaped dicts (the shape of the ``llama_endpointslices`` index) go
   through ``autoscaling_loop.ready_endpoints``, then ``autoscaling_loop.scrape`` with a fresh
   ``aiohttp.ClientSession`` per tick (as the daemon does) and ``autoscaling.decide``:
   CPU seconds and wall time per tick. References in the same run: the same 100 pods
   scraped one after the other with a blocking ``urllib.request`` loop doing the same
   parsing (a naive single-threaded scraper), and the parse alone (prometheus_client's
   parser on the 100 texts, no HTTP), both as ``scrape`` does it (``engine_metrics.read``:
   one parse of only the lines it reads) and with a full parse per pod. Everything is
   run on the fixture (vLLM 0.34.0's shape, 8.7 KB, 94 lines) and on a padded text: the
   fixture plus 13 synthetic histogram families of 20 buckets, the latency and
   token-count histograms a vLLM V1 engine exposes, as an ASSUMPTION about the size of
   a real page (about 36 KB), not a recorded one.

3. One slow pod (``FakePod.delay = 5`` s) among the 100 (fixture text): ticks timed
   with the per-pod timeout of ``autoscaling_loop.timeout_for(interval)`` for intervals 1 s and
   5 s; the slow pod must come back "not scraped", the 99 others scraped.

4. Where that stops holding: tick wall time and pods not scraped for 100 and 200 pods,
   fixture and padded text. The parse runs on the event loop, outside the per-pod
   timeout but delaying every other pod's request meanwhile, and one session's
   connection pool holds 100 connections (aiohttp's default), so with more pods the
   rest wait for a connection, inside their timeout.

No wall time is asserted. The script exits 1 only if the loop is broken: no /scale
PATCH (or Deployment apply) arrives, the PATCH sets the wrong replicas, the autoscaler
patches /scale when nothing changed, a pod serving the small fixture is not scraped, or
the slow pod is scraped despite the timeout. Pods missed in table 4, or with the padded
text, are reported, not failed: whether they are missed depends on the machine's speed.

Run: ``.venv/bin/python benchmarks/bench_scaler_loop.py`` (about 90 s on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import pathlib
import socket
import statistics
import string
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

# tests/ (podserver) and tests/contract/ (kube; bench_reconcile adds it too).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "contract"))

import aiohttp
import kube
from prometheus_client.parser import text_string_to_metric_families

import bench_reconcile
import podserver
from llama_operator import api
from llama_operator.operations import autoscaling
from llama_operator.runtime import autoscaling_loop
from llama_operator.serving import engine_metrics

ROOT = bench_reconcile.ROOT
T = TypeVar("T")

# Part 1: the live loop.
REPS = 10
INTERVAL = 1  # spec.autoscaling.intervalSeconds
TARGET = 8
WAITING = 10  # per pod when raised: 2 pods x 10 = 20 waiting, target 8 -> 3 replicas
SCALED = 3
IDLE_TICKS = 5
RESYNC = 600.0  # no timer reconcile during the run
HPA_SYNC_PERIOD = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
KEDA_POLLING_INTERVAL = 30.0  # ScaledObject spec.pollingInterval
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# Part 2: the scrape cost.
PODS = 100
# text -> (concurrent ticks, sequential ticks, parse repeats); the padded text costs more.
REPEATS = {"fixture": (20, 5, 20), "padded": (5, 2, 5)}
SCALE_PODS = 200  # beyond aiohttp's default connection pool (100)
SCALE_TICKS = 2
SLOW_DELAY = 5.0
SLOW_TICKS = {1: 3, 5: 2}  # interval -> ticks timed with one slow pod
POD_WAITING = 8
POD_RUNNING = 16
PAD_HISTOGRAMS = (
    "e2e_request_latency_seconds",
    "request_queue_time_seconds",
    "request_inference_time_seconds",
    "request_prefill_time_seconds",
    "request_decode_time_seconds",
    "time_per_output_token_seconds",
    "inter_token_latency_seconds",
    "request_prompt_tokens",
    "request_generation_tokens",
    "request_max_num_generation_tokens",
    "request_params_n",
    "request_params_max_tokens",
    "iteration_tokens_total",
)
PAD_BUCKETS = 20

table = bench_reconcile.table
quantile = bench_reconcile.quantile


class LoopBrokenError(Exception):
    """The loop did not do what it must (the script exits 1)."""


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def sec(seconds: float) -> str:
    return f"{seconds:.3f} s"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; LoopBrokenError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise LoopBrokenError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)


# --------------------------------------------------------------------------- part 1


class TimedPod(podserver.FakePod):
    """A FakePod that remembers when each scrape arrived (``scrapes`` is its count)."""

    def __init__(self, engine: str = "vllm") -> None:
        self.scrape_times: list[float] = []
        super().__init__(engine)

    @property  # type: ignore[override]
    def scrapes(self) -> int:
        return len(self.scrape_times)

    @scrapes.setter
    def scrapes(self, value: int) -> None:
        # The handler does ``pod.scrapes += 1`` first thing: that is the arrival.
        if value > len(self.scrape_times):
            self.scrape_times.append(time.monotonic())

    def scraped_after(self, moment: float) -> float | None:
        return next((t for t in self.scrape_times if t > moment), None)


def llama_spec() -> dict[str, Any]:
    return {
        "model": {"id": MODEL},
        "engine": "vllm",
        "replicas": 1,
        "license": {"accept": True},
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "targetQueueLength": TARGET,
            "intervalSeconds": INTERVAL,
            "scaleDownDelaySeconds": 600,
        },
    }


def endpoint_slice(index: int, pod: podserver.FakePod) -> dict[str, Any]:
    """One pod behind chat-primary, as the EndpointSlice controller would publish it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"chat-primary-{index:05d}",
            "namespace": kube.NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": "chat-primary",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app.kubernetes.io/managed-by": "llama-operator",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": pod.port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": f"chat-primary-abc-{index}"},
            }
        ],
    }


def is_scale_patch(record: bench_reconcile.Record) -> bool:
    request = record.request
    return (
        record.by_operator
        and str(request.method.value) == "PATCH"
        and request.resource is not None
        and request.resource.plural == "llamadeployments"
        and request.subresource == "scale"
    )


def scale_patches(cluster: bench_reconcile.Emulator, since: float) -> list[bench_reconcile.Record]:
    return [r for r in cluster.records if r.start >= since and is_scale_patch(r)]


def deployment_writes(
    cluster: bench_reconcile.Emulator, since: float, replicas: int
) -> list[bench_reconcile.Record]:
    """The operator's writes of chat-primary that set ``spec.replicas`` to ``replicas``."""
    found = []
    for record in cluster.records:
        request = record.request
        if (
            record.start < since
            or not record.by_operator
            or str(request.method.value) not in bench_reconcile.WRITE_METHODS
            or request.resource is None
            or request.resource.plural != "deployments"
            or request.name != "chat-primary"
        ):
            continue
        data = request.data
        if isinstance(data, Mapping) and (data.get("spec") or {}).get("replicas") == replicas:
            found.append(record)
    return found


@dataclasses.dataclass(frozen=True)
class Rep:
    offset: float  # T - the scrape before it
    raised: float  # T
    first_scrape: float  # the first scrape after T (either pod)
    scale: float  # the /scale PATCH's arrival
    reconcile: float | None  # the child's reconcile start after it
    deployment: float  # the Deployment apply's arrival

    @property
    def reaction(self) -> float:
        return self.scale - self.raised


async def repetition(
    cluster: bench_reconcile.Emulator,
    child: bench_reconcile.Child,
    pods: Sequence[TimedPod],
    offset: float,
) -> Rep:
    seen = pods[0].scrapes
    await until(lambda: pods[0].scrapes > seen, 10 * INTERVAL, "a tick")
    last = pods[0].scrape_times[-1]
    await asyncio.sleep(max(0.0, last + offset - time.monotonic()))
    raised = time.monotonic()
    for pod in pods:
        pod.waiting = WAITING
    scale = (await until(lambda: scale_patches(cluster, raised), 10 * INTERVAL + 10, "/scale"))[0]
    replicas = (scale.request.data or {}).get("spec", {}).get("replicas")
    if replicas != SCALED:
        raise LoopBrokenError(f"the /scale PATCH set replicas {replicas!r}, expected {SCALED}")
    deployment = (
        await until(
            lambda: deployment_writes(cluster, scale.start, SCALED), 30, "the Deployment apply"
        )
    )[0]
    first_scrape = min(t for pod in pods if (t := pod.scraped_after(raised)) is not None)
    with contextlib.suppress(LoopBrokenError):  # the child reports a reconcile when it has finished
        await until(lambda: any(m["t"] >= scale.start for m in child.reconciles), 5, "")
    reconcile = min(
        (m["t"] for m in child.reconciles if scale.start <= m["t"] <= deployment.start),
        default=None,
    )

    # Back to idle and 1 replica: first an idle scrape of every pod (so no tick still
    # holds the raised load), then /scale as kubectl scale would.
    for pod in pods:
        pod.waiting = 0
    idle = time.monotonic()
    await until(lambda: all(p.scraped_after(idle) for p in pods), 10 * INTERVAL, "idle scrape")
    reset = time.monotonic()
    await kube.patch(cluster, kube.LLAMA, "chat", {"spec": {"replicas": 1}}, subresource="scale")
    await until(lambda: deployment_writes(cluster, reset, 1), 30, "the Deployment back at 1")
    return Rep(offset, raised, first_scrape, scale.start, reconcile, deployment.start)


@dataclasses.dataclass
class LoopResult:
    warmup: Rep
    reps: list[Rep]
    stray_scale_patches: int
    idle_cpu_per_tick: float
    idle_requests: list[str]
    tick_period: float
    tick_seconds_mean: float | None
    ticks_counted: float | None
    scrapes: dict[str, float]
    warnings: list[str]


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


async def operator_metrics(port: int) -> dict[str, float]:
    """The child's own /metrics, flattened to "name{labels}" -> value."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    flat: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            flat[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return flat


async def run_loop(workdir: pathlib.Path) -> LoopResult:
    metrics_port = free_port()
    with (
        TimedPod() as first,
        TimedPod() as second,
        environment(
            LLAMA_OPERATOR_METRICS_ADDRESS="127.0.0.1",
            LLAMA_OPERATOR_METRICS_PORT=str(metrics_port),
        ),
    ):
        pods = [first, second]
        async with bench_reconcile.cluster_and_operator(workdir, RESYNC) as (cluster, child):
            await child.replies.get()  # the child's first line: its usage after imports
            await kube.create(cluster, kube.LLAMA, kube.llama("chat", spec=llama_spec()))
            await until(
                lambda: kube.exists(cluster, kube.DEPLOYMENTS, "chat-primary"), 30, "Deployment"
            )
            for index, pod in enumerate(pods):
                await kube.create(cluster, kube.ENDPOINTSLICES, endpoint_slice(index, pod))
            await until(lambda: all(p.scrapes for p in pods), 30, "the first scrapes")
            started = time.monotonic()
            warmup = await repetition(cluster, child, pods, 0.5 * INTERVAL)
            reps = [
                await repetition(cluster, child, pods, (i + 0.5) / REPS * INTERVAL)
                for i in range(REPS)
            ]
            stray = len(scale_patches(cluster, started)) - (REPS + 1)

            # Idle ticks: nothing changes, so the operator should only scrape. First let the
            # last repetition's writes (status, Kopf's annotations) land.
            with contextlib.suppress(TimeoutError):  # a loop that always writes: counted below
                await bench_reconcile.wait_quiet(cluster, 15)
            before = await child.ask("usage idle-start")
            ticks_before = pods[0].scrapes
            idle_start = time.monotonic()
            await until(
                lambda: pods[0].scrapes >= ticks_before + IDLE_TICKS,
                IDLE_TICKS * INTERVAL + 10,
                "idle ticks",
            )
            idle_end = time.monotonic()
            after = await child.ask("usage idle-end")
            idle_requests = bench_reconcile.operator_requests(cluster.records, idle_start, idle_end)
            flat = await operator_metrics(metrics_port)
            warnings = child.warnings()
    tick_sum = flat.get("llama_operator_autoscaler_tick_seconds_sum")
    tick_count = flat.get("llama_operator_autoscaler_tick_seconds_count")
    return LoopResult(
        warmup=warmup,
        reps=reps,
        stray_scale_patches=stray,
        idle_cpu_per_tick=(after["cpu_seconds"] - before["cpu_seconds"]) / IDLE_TICKS,
        idle_requests=[bench_reconcile.classify(r).label for r in idle_requests],
        tick_period=statistics.median(
            later - earlier for earlier, later in itertools.pairwise(pods[0].scrape_times)
        ),
        tick_seconds_mean=tick_sum / tick_count if tick_sum is not None and tick_count else None,
        ticks_counted=tick_count,
        scrapes={
            key.split("result=", 1)[1].rstrip("}"): value
            for key, value in flat.items()
            if key.startswith("llama_operator_autoscaler_scrapes_total{")
        },
        warnings=warnings,
    )


def loop_report(result: LoopResult) -> None:
    reps = result.reps

    def stats(label: str, values: Sequence[float]) -> list[str]:
        return [label, sec(statistics.median(values)), sec(max(values)), sec(min(values))]

    reconcile_known = [r for r in reps if r.reconcile is not None]
    splits: list[tuple[str, Callable[[Rep], float]]] = [
        ("reaction: queue raised (T) -> /scale PATCH at the API", lambda r: r.reaction),
        ("  T -> next tick's first scrape (the phase wait)", lambda r: r.first_scrape - r.raised),
        (
            "  first scrape -> /scale PATCH (scrape, decide, PATCH)",
            lambda r: r.scale - r.first_scrape,
        ),
        ("T -> Deployment apply with the new replicas", lambda r: r.deployment - r.raised),
        ("  /scale PATCH -> Deployment apply (the reconcile)", lambda r: r.deployment - r.scale),
    ]
    rows = [["", "p50", "max", "min"]]
    rows += [stats(label, [split(r) for r in reps]) for label, split in splits]
    if reconcile_known:
        rows += [
            stats(
                "    /scale PATCH -> reconcile starts (watch, Kopf)",
                [r.reconcile - r.scale for r in reconcile_known if r.reconcile is not None],
            ),
            stats(
                "    reconcile starts -> Deployment apply",
                [r.deployment - r.reconcile for r in reconcile_known if r.reconcile is not None],
            ),
        ]
    table(
        f"1. Live loop: {REPS} repetitions (phase offsets (i + 0.5)/{REPS} of the interval),"
        f" 2 fake vLLM pods, queue 0 -> {WAITING} per pod (1 -> {SCALED} replicas)",
        rows,
    )
    print(
        "  per repetition, offset after a tick -> reaction: "
        + ", ".join(f"{r.offset:.2f}->{r.reaction:.2f}" for r in reps)
    )
    print(
        f"  warm-up (not above): reaction {sec(result.warmup.reaction)}, T -> Deployment "
        f"{sec(result.warmup.deployment - result.warmup.raised)}"
    )

    tick = result.tick_seconds_mean
    bound = INTERVAL + tick if tick is not None else None
    within = sum(1 for r in reps if bound is not None and r.reaction <= bound)
    rows = [
        ["", "seconds"],
        ["spec.autoscaling.intervalSeconds", f"{INTERVAL:.3f}"],
        [
            "tick period, measured (median gap between one pod's scrapes)",
            f"{result.tick_period:.3f}",
        ],
        [
            "tick wall, mean (operator's tick histogram,"
            f" {result.ticks_counted or 0:.0f} ticks incl. idle)",
            f"{tick:.3f}" if tick is not None else "n/a",
        ],
        [
            "expected bound: interval + tick wall",
            f"{bound:.3f} ({within}/{len(reps)} reps within)" if bound is not None else "n/a",
        ],
        ["documented default, NOT measured: HPA sync period", f"{HPA_SYNC_PERIOD:.0f}"],
        ["documented default, NOT measured: KEDA pollingInterval", f"{KEDA_POLLING_INTERVAL:.0f}"],
    ]
    table("   Reference", rows)
    scrapes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(result.scrapes.items()))
    idle = len(result.idle_requests) / IDLE_TICKS
    print(
        f"  {IDLE_TICKS} idle ticks (2 pods, no change): operator CPU"
        f" {ms(result.idle_cpu_per_tick)}/tick, {idle:g} API requests/tick"
        + (f" ({'; '.join(result.idle_requests)})" if result.idle_requests else "")
        + f"; operator's scrape counter: {scrapes};"
        f" /scale PATCHes beyond the {REPS + 1} expected: {result.stray_scale_patches}"
    )


# --------------------------------------------------------------------------- part 2


def padded_template(template: str) -> str:
    """The fixture plus PAD_HISTOGRAMS, each with PAD_BUCKETS buckets (no ``$`` in it)."""
    labels = 'engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"'
    lines = [template.rstrip("\n")]
    for name in PAD_HISTOGRAMS:
        family = f"vllm:{name}"
        lines += [f"# HELP {family} Synthetic padding.", f"# TYPE {family} histogram"]
        for bucket in range(PAD_BUCKETS):
            le = f"{0.001 * 2**bucket:g}"
            lines.append(f'{family}_bucket{{{labels},le="{le}"}} {float(bucket * 7)}')
        lines.append(f'{family}_bucket{{{labels},le="+Inf"}} {float(PAD_BUCKETS * 7)}')
        lines.append(f"{family}_count{{{labels}}} {float(PAD_BUCKETS * 7)}")
        lines.append(f"{family}_sum{{{labels}}} 1234.5")
    return "\n".join(lines) + "\n"


def serve_pods(count: int) -> None:
    """Child mode: ``count`` FakePods, driven over stdin (delay I S | pad | stop)."""
    with contextlib.ExitStack() as stack:
        pods = [
            stack.enter_context(podserver.FakePod(waiting=POD_WAITING, running=POD_RUNNING))
            for _ in range(count)
        ]
        padded = string.Template(padded_template(pods[0].template.template))
        print(json.dumps({"ports": [pod.port for pod in pods]}), flush=True)
        for line in sys.stdin:
            command, *args = line.split() or ["?"]
            if command == "stop":
                break
            if command == "delay":
                pods[int(args[0])].delay = float(args[1])
            elif command == "pad":
                for pod in pods:
                    pod.template = padded
            print(json.dumps({"done": command}), flush=True)


class Pods:
    """The pod-server child, from the parent's side."""

    def __init__(self, process: asyncio.subprocess.Process, ports: list[int]) -> None:
        self.process = process
        self.ports = ports

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls, count: int, log: pathlib.Path) -> Any:
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--pods",
                str(count),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=str(ROOT),
            )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if not line:
                raise LoopBrokenError(f"the pod server did not start:\n{log.read_text()[-2000:]}")
            yield cls(process, json.loads(line)["ports"])
        finally:
            if process.returncode is None and process.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    process.stdin.write(b"stop\n")
                    await process.stdin.drain()
                    process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def command(self, text: str) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()
        await asyncio.wait_for(self.process.stdout.readline(), 30)

    def slices(self) -> list[dict[str, Any]]:
        """One EndpointSlice per pod (each has its own port), in the index's shape."""
        return [
            {
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": ["127.0.0.1"],
                        "conditions": {"ready": True},
                        "targetRef": {"name": f"chat-primary-{index:03d}"},
                    }
                ],
            }
            for index, port in enumerate(self.ports)
        ]


POLICY = autoscaling.Policy.of(api.Autoscaling(minReplicas=1, maxReplicas=1000))


@dataclasses.dataclass(frozen=True)
class Cost:
    cpu: list[float]
    wall: list[float]

    def cells(self) -> list[str]:
        return [
            ms(statistics.fmean(self.cpu)),
            ms(statistics.median(self.wall)),
            ms(max(self.wall)),
        ]


async def scrape_tick(
    slices: Sequence[Mapping[str, Any]], interval: float
) -> list[autoscaling.Sample]:
    """What the daemon does per tick, minus the API: find, scrape, decide."""
    endpoints = autoscaling_loop.ready_endpoints(slices)
    async with aiohttp.ClientSession() as session:
        samples = await autoscaling_loop.scrape(
            session,
            endpoints,
            engine="vllm",
            signal="queue",
            timeout=autoscaling_loop.timeout_for(interval),
        )
    autoscaling.decide(
        policy=POLICY,
        samples=samples,
        current=len(endpoints),
        state=autoscaling.State(),
        now=time.time(),
    )
    return samples


async def concurrent_cost(
    slices: Sequence[Mapping[str, Any]], ticks: int, interval: float = 5
) -> tuple[Cost, list[list[autoscaling.Sample]]]:
    cpu, wall, outcomes = [], [], []
    await scrape_tick(slices, interval)  # warm-up: first connections, imports
    for _ in range(ticks):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes.append(await scrape_tick(slices, interval))
        wall.append(time.perf_counter() - wall0)
        cpu.append(time.process_time() - cpu0)
    return Cost(cpu, wall), outcomes


def sequential_cost(urls: Sequence[str], ticks: int) -> tuple[Cost, list[str]]:
    """The naive reference: one blocking request after the other, same parsing."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    cpu, wall, texts = [], [], []
    for _ in range(ticks):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        texts = []
        for url in urls:
            with opener.open(url, timeout=autoscaling_loop.SCRAPE_TIMEOUT_SECONDS) as response:
                text = response.read().decode()
            # The same parsing as the scrape: one parse of the lines the autoscaler reads.
            engine_metrics.read(text, engine="vllm", signal="queue")
            texts.append(text)
        wall.append(time.perf_counter() - wall0)
        cpu.append(time.process_time() - cpu0)
    return Cost(cpu, wall), texts


def parse_cost(texts: Sequence[str], repeats: int, *, as_scrape: bool) -> Cost:
    cpu, wall = [], []
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for text in texts:
            if as_scrape:
                # What the scrape does: one parse of only the lines the autoscaler reads.
                engine_metrics.read(text, engine="vllm", signal="queue")
            else:
                engine_metrics.samples(text)
        wall.append(time.perf_counter() - wall0)
        cpu.append(time.process_time() - cpu0)
    return Cost(cpu, wall)


@dataclasses.dataclass(frozen=True)
class Scale:
    pods: int
    text: str
    interval: int
    walls: list[float]
    not_scraped: list[int]


@dataclasses.dataclass
class CostResult:
    sizes: dict[str, tuple[int, int]]  # text -> (bytes, lines)
    costs: dict[str, dict[str, Cost]]  # text -> method -> cost
    missed: dict[str, int]  # text -> pods not scraped over its concurrent ticks
    slow: dict[int, list[tuple[float, list[autoscaling.Sample]]]]  # interval -> ticks
    scale: list[Scale]


def not_scraped(samples: Sequence[autoscaling.Sample]) -> int:
    return sum(1 for s in samples if s.value is None)


async def scale_row(pods: Pods, text: str, interval: int) -> Scale:
    walls, missed = [], []
    for _ in range(SCALE_TICKS):
        wall0 = time.perf_counter()
        samples = await scrape_tick(pods.slices(), interval)
        walls.append(time.perf_counter() - wall0)
        missed.append(not_scraped(samples))
    return Scale(len(pods.ports), text, interval, walls, missed)


async def run_costs(workdir: pathlib.Path) -> CostResult:
    sizes: dict[str, tuple[int, int]] = {}
    costs: dict[str, dict[str, Cost]] = {}
    missed: dict[str, int] = {}
    slow: dict[int, list[tuple[float, list[autoscaling.Sample]]]] = {}
    scale: list[Scale] = []
    async with Pods.serving(PODS, workdir / "pods.log") as pods:
        slices = pods.slices()
        urls = [e.url for e in autoscaling_loop.ready_endpoints(slices)]
        for text_kind, (ticks, sequential_ticks, repeats) in REPEATS.items():
            if text_kind == "padded":
                # The fixture's rows first, with one slow pod among fast ones: the per-pod
                # timeout's effect alone, before the parse cost of big pages adds to it.
                await pods.command(f"delay 0 {SLOW_DELAY}")
                for interval, slow_ticks in SLOW_TICKS.items():
                    slow[interval] = []
                    for _ in range(slow_ticks):
                        wall0 = time.perf_counter()
                        samples = await scrape_tick(slices, interval)
                        slow[interval].append((time.perf_counter() - wall0, samples))
                        if samples[0].value is not None:
                            raise LoopBrokenError("the slow pod was scraped despite the timeout")
                        if not_scraped(samples[1:]):
                            raise LoopBrokenError("a fast pod was not scraped beside a slow one")
                await pods.command("delay 0 0")
                scale.append(await scale_row(pods, "fixture", 1))
                await pods.command("pad")
                scale.append(await scale_row(pods, "padded", 1))
            concurrent, outcomes = await concurrent_cost(slices, ticks)
            missed[text_kind] = sum(not_scraped(samples) for samples in outcomes)
            # Small pages leave no excuse for a missed pod; big ones may starve on a slow
            # machine (reported, not failed: that depends on the machine's speed).
            if text_kind == "fixture" and missed[text_kind]:
                raise LoopBrokenError(f"{missed[text_kind]} fast pod scrapes failed")
            sequential, texts = sequential_cost(urls, sequential_ticks)
            sizes[text_kind] = (len(texts[0].encode()), texts[0].count("\n"))
            costs[text_kind] = {
                "concurrent": concurrent,
                "sequential": sequential,
                "parse2": parse_cost(texts, repeats, as_scrape=True),
                "parse1": parse_cost(texts, repeats, as_scrape=False),
            }
    async with Pods.serving(SCALE_PODS, workdir / "pods-scale.log") as pods:
        scale.append(await scale_row(pods, "fixture", 1))
        await pods.command("pad")
        scale.append(await scale_row(pods, "padded", 1))
        scale.append(await scale_row(pods, "padded", 5))
    return CostResult(sizes, costs, missed, slow, scale)


def cost_report(result: CostResult) -> None:
    labels = {
        "concurrent": "autoscaling_loop.scrape, aiohttp concurrent, session per tick, + decide",
        "sequential": "reference: blocking urllib.request, one pod after the other",
        "parse2": "parse only, as the scrape does (engine_metrics.read: the needed lines)",
        "parse1": "reference: parse only, the whole page (engine_metrics.samples)",
    }
    rows = [["", "CPU/tick", "wall p50", "wall max"]]
    for text_kind, costs in result.costs.items():
        size, lines = result.sizes[text_kind]
        ticks, sequential_ticks, repeats = REPEATS[text_kind]
        rows.append(
            [
                f"{text_kind} text ({size / 1024:.1f} KB, {lines} lines; {ticks} ticks,"
                f" {sequential_ticks} sequential, {repeats} parse repeats)"
            ]
        )
        rows += [[f"  {labels[method]}", *cost.cells()] for method, cost in costs.items()]
    table(
        f"2. Scrape tick cost for {PODS} pods (= per 100 pods), this process only (pods served"
        " by a child); CPU = time.process_time; per-pod timeout 2 s (intervalSeconds 5)",
        rows,
    )
    for text_kind, costs in result.costs.items():
        tick_cpu = statistics.fmean(costs["concurrent"].cpu)
        parse_cpu = statistics.fmean(costs["parse2"].cpu)
        print(
            f"  {text_kind}: parsing is {parse_cpu / tick_cpu:.0%} of the tick's CPU, each pod's "
            f"parse holds the event loop {ms(parse_cpu / PODS)} at a stretch; one tick of "
            f"{PODS} pods every 1 s / 5 s is {tick_cpu:.0%} / {tick_cpu / 5:.0%} of a core;"
            f" pods not scraped in those ticks: {result.missed[text_kind]}"
        )

    rows = [["intervalSeconds", "per-pod timeout", "tick wall p50", "max", "slow pod", "others"]]
    for interval, ticks in result.slow.items():
        walls = [wall for wall, _ in ticks]
        samples = ticks[-1][1]
        rows.append(
            [
                f"{interval} s",
                f"{autoscaling_loop.timeout_for(interval):.1f} s",
                sec(statistics.median(walls)),
                sec(max(walls)),
                "not scraped" if samples[0].value is None else "scraped",
                f"{len(samples) - 1 - not_scraped(samples[1:])}/{len(samples) - 1} scraped",
            ]
        )
    table(
        f"3. One slow pod (FakePod.delay = {SLOW_DELAY:g} s) among {PODS}, fixture text:"
        " the tick waits at most the per-pod timeout",
        rows,
    )

    rows = [["pods", "text", "intervalSeconds", "per-pod timeout", "tick wall", "not scraped"]]
    for row in result.scale:
        rows.append(
            [
                str(row.pods),
                row.text,
                f"{row.interval} s",
                f"{autoscaling_loop.timeout_for(row.interval):.1f} s",
                " / ".join(f"{wall:.2f}" for wall in row.walls) + " s",
                " / ".join(str(n) for n in row.not_scraped) + f" of {row.pods}",
            ]
        )
    table(
        f"4. Where it stops holding ({SCALE_TICKS} ticks each, no slow pod): the parse runs on"
        " the event loop, and aiohttp's default pool (100 connections) queues the rest",
        rows,
    )


# --------------------------------------------------------------------------- main


async def parent() -> int:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scaler-loop-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
            loop = await run_loop(workdir)
            costs = await run_costs(workdir)
        except LoopBrokenError as exc:
            print(f"BROKEN: {exc}")
            return 1
    loop_report(loop)
    cost_report(costs)
    print(f"\n(whole run: {time.monotonic() - began:.0f} s)")
    if loop.warnings:
        print(f"\noperator stderr ({len(loop.warnings)} lines, first 10):")
        for line in loop.warnings[:10]:
            print(f"  {line[:200]}")
    if loop.stray_scale_patches:
        print(f"\nBROKEN: {loop.stray_scale_patches} /scale PATCHes without a load change")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pods:
        serve_pods(args.pods)
        return 0
    return asyncio.run(parent())


if __name__ == "__main__":
    sys.exit(main())
