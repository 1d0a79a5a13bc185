"""Reconcile benchmark: API traffic, throughput and memory of the real operator, in one run.

Setup. The Kubernetes API is kmock (``tests/contract/kube.py``: ``ApplyingEmulator``)
served on 127.0.0.1 by this process; the operator is the real Kopf operator
(``kopf.operator`` with our handlers) in a child process of this same script, logged in
through its own kubeconfig, so the child's memory and CPU are the operator's alone. The
emulator records every request; those of the operator are told apart by User-Agent
(``kopf/...``: Kopf's watches, finalizer/annotation/status patches and Events;
``OpenAPI-Generator/...``: our ``k8s.Client``, i.e. server-side applies and Secret reads).
Our own creates (``kmock/...``) and the reference probe (``bench-rtt``) are not counted.
Two operator runs, each with a fresh child and a fresh emulator:

A. resync 0.5 s (``LLAMA_OPERATOR_RESYNC_SECONDS`` in the child's environment, so it is
   set before ``llama_operator.runtime.handlers`` is imported: Kopf binds timer intervals then).
   One LlamaDeployment is created, its Deployment reported Ready (as the Deployment
   controller would) and left to settle (its first reconcile races the
   first timer ticks here, hence the second "first" column); then the requests made
   during ``NOOP_TICKS`` timer ticks of the unchanged object are counted, from the start
   of one tick to the start of the tick ``NOOP_TICKS`` later. Ticks are seen by wrapping
   ``handlers._reconcile`` in the child (looked up by name at call time). Any request in
   a no-op tick is a regression: the script then exits 1.

B. resync 600 s, longer than the whole run: no timer fires (the "_reconcile calls" row
   would show ``timer=``), so only change handlers are measured.
   1. First reconcile: one LlamaDeployment ("probe") is created; every operator request
      from its create until the operator has been quiet for ``QUIET_SECONDS`` is listed:
      reads, writes, each write named (server-side apply of which kind, which fields a
      patch sets, per the [a], [b] legend; which Event).
   2. Throughput: ``BULK`` LlamaDeployments, models cycled over ``MODELS`` (catalog
      entries, all plannable on the bundled pools), are created at once
      (``asyncio.gather`` of API creates). Wall time runs from the first create to the
      moment every one has ``status.plan`` and its Deployment and both Services; "time to
      planned" is per object, from the moment its create was served to the write that
      completed it (both timed in the emulator). Requests are counted until quiet.
   3. Memory: ``ru_maxrss`` (and VmRSS) of the child after imports, once the operator is
      up and watching with no objects (the baseline), and after the bulk run (the peak).

Reference, beside B.2: the API traffic alone. The child times ``RTT_SAMPLES`` sequential
GETs of one LlamaDeployment through the same ``k8s.Client`` stack, once with the
emulator nearly empty and once after the bulk run, when it holds every object. The
reference wall is the bulk run's request count times that round trip: the same number
of requests, one at a time, with no operator logic. The operator overlaps requests (Kopf
is async; handlers run on 16 threads) but also plans and renders, so a wall near the
reference says the run is bound by the API server, well above it says the time goes into
the operator. The CPU row says the same from the other side: the share of the wall each
process was busy. Both sides are measured on this machine in the same minute, so a slow
or noisy machine moves both. (A read-before-write variant of the operator was not used
as the reference: it would time a strawman we do not ship.)

How to read it. Request counts and memory are the portable numbers; times are this
machine's, and no wall time is asserted. kmock is not an API server: it scans every
stored object on each get and keeps every version, so its per-request cost grows during
the run (see the empty/loaded round trip). One kmock cost is removed: it matches each
request against its reactions by scanning its whole request log, which is quadratic in
requests (200 objects then take minutes, all of it in kmock); the bench's ``Emulator``
cuts kmock's log to the requests in flight and keeps its own.

Run: ``.venv/bin/python benchmarks/bench_reconcile.py`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import pathlib
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
IS_CHILD = __name__ == "__main__" and sys.argv[1:2] == ["--child"]

# The parent (API server) and the child (operator) import only what they use, so the
# child's RSS is the operator's: no kmock, no emulator.
if TYPE_CHECKING or not IS_CHILD:
    sys.path.insert(0, str(ROOT / "tests" / "contract"))
    import aiohttp.web
    import kmock
    import kube
if TYPE_CHECKING or IS_CHILD:
    import kopf

    from llama_operator.clients import k8s
    from llama_operator.runtime import handlers

NAMESPACE = "ai"
BULK = 200
NOOP_TICKS = 6
QUIET_SECONDS = 1.0
RTT_SAMPLES = 300
RESYNC_NOOP = 0.5
RESYNC_BULK = 600.0
BULK_TIMEOUT = 150.0
MODELS = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "meta-llama/Llama-2-13b-hf",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RTT_AGENT = "bench-rtt"


# --------------------------------------------------------------------------- child


def _emit(lock: threading.Lock, **fields: Any) -> None:
    with lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def _usage() -> dict[str, float]:
    """Peak (ru_maxrss, KiB on Linux) and current (VmRSS) resident size in MiB; CPU time."""
    current = 0.0
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "peak_mib": usage.ru_maxrss / 1024,
        "current_mib": current,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def _round_trips(samples: int, name: str) -> dict[str, float]:
    """Sequential GETs of one object through our client stack, in seconds each."""
    client = k8s.Client.from_environment()
    client.api.user_agent = RTT_AGENT
    fetch = {
        "api_version": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "namespace": NAMESPACE,
        "name": name,
    }
    client.get(**fetch)  # connect once, outside the timing
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        client.get(**fetch)
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "mean": statistics.fmean(times)}


def _wrap_reconcile(lock: threading.Lock) -> None:
    original = handlers._reconcile

    def counting(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, kwargs: Mapping[str, Any]
    ) -> None:
        started = time.monotonic()
        try:
            original(body, patch, memo, kwargs)
        finally:
            _emit(
                lock,
                event="reconcile",
                name=body["metadata"]["name"],
                # Change handlers get a reason (create/update/resume); timers do not.
                cause=str(kwargs.get("reason") or "timer"),
                t=started,
                seconds=time.monotonic() - started,
            )

    handlers._reconcile = counting


def _wrap_apply(lock: threading.Lock) -> None:
    """Time each server-side apply as our client sees it (queueing included)."""
    original = k8s.Client.apply

    def timed(self: k8s.Client, obj: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return original(self, obj)
        finally:
            _emit(lock, event="apply", t=started, seconds=time.monotonic() - started)

    k8s.Client.apply = timed  # type: ignore[method-assign]


async def _child() -> None:
    lock = threading.Lock()
    _emit(lock, event="usage", label="imported", **_usage())
    _wrap_reconcile(lock)
    _wrap_apply(lock)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "stop")

    threading.Thread(target=read_stdin, daemon=True).start()
    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop))
    operator.add_done_callback(lambda _: commands.put_nowait("stop"))
    while True:
        command, *args = (await commands.get()).split()
        if command == "stop":
            break
        if command == "usage":
            _emit(lock, event="usage", label=args[0], **_usage())
        elif command == "rtt":
            result = await asyncio.to_thread(_round_trips, int(args[0]), args[1])
            _emit(lock, event="rtt", **result)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(operator, timeout=15)
    _emit(lock, event="stopped", **_usage())


# --------------------------------------------------------------------------- parent


@dataclasses.dataclass
class Record:
    """One request as the emulator saw it: when it arrived and when it was handled."""

    start: float
    request: kmock.Request
    end: float | None = None

    @property
    def agent(self) -> str:
        return str(self.request.headers.get("User-Agent", ""))

    @property
    def by_operator(self) -> bool:
        return not self.agent.startswith(("kmock/", RTT_AGENT))


# The API server's side: only the parent defines it (the child has no kmock to subclass).
if TYPE_CHECKING or not IS_CHILD:

    class Emulator(kube.ApplyingEmulator):
        """Records every request with its timing, and when each LlamaDeployment is done."""

        def __init__(self) -> None:
            super().__init__()
            self.records: list[Record] = []
            self.created: dict[str, float] = {}  # name -> when its create was served
            self.done: dict[str, float] = {}  # name -> when it had plan and 3 children
            self.in_flight: set[int] = set()

        async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
            record = Record(time.monotonic(), request)
            self.records.append(record)
            # kmock matches each request against its reactions by scanning its whole
            # request log, once per reaction: quadratic in requests, so a long run would
            # measure kmock. Its log is cut to the requests being served (they must stay:
            # matching looks for them by identity); ours, ``records``, keeps everything.
            self.in_flight.add(id(request))
            self._requests[:] = [r for r in self._requests if id(r) in self.in_flight]
            try:
                return await super()._handle(request)
            finally:
                self.in_flight.discard(id(request))
                record.end = time.monotonic()
                self._observe(request, record.end)

        def _observe(self, request: kmock.Request, now: float) -> None:
            if str(request.method.value) not in WRITE_METHODS or request.resource is None:
                return
            plural = request.resource.plural
            name = request.name or (request.data or {}).get("metadata", {}).get("name")
            if plural == "llamadeployments" and request.name is None and name:
                self.created.setdefault(name, now)
            if plural not in ("llamadeployments", "deployments", "services") or not name:
                return
            for owner in {name, name.removesuffix("-primary")}:
                if owner in self.created and owner not in self.done and self._is_done(owner):
                    self.done[owner] = now

        def _is_done(self, name: str) -> bool:
            status = kube.obj(self, kube.LLAMA, name).get("status") or {}
            return bool(status.get("plan")) and all(
                kube.exists(self, resource, child)
                for resource, child in (
                    (kube.DEPLOYMENTS, f"{name}-primary"),
                    (kube.SERVICES, name),
                    (kube.SERVICES, f"{name}-primary"),
                )
            )


class Kind(NamedTuple):
    """What a request did: ``verb`` read|write, a ``label``, and the fields a patch set."""

    verb: str
    label: str
    detail: str = ""


def classify(request: kmock.Request) -> Kind:
    method = str(request.method.value)
    plural = str(request.resource.plural if request.resource else request.url.path)
    if method not in WRITE_METHODS:
        action = request.action.name.lower() if request.action is not None else "get"
        return Kind("read", f"{method} {plural} ({action})")
    content_type = str(request.headers.get("Content-Type", ""))
    data = request.data
    if "apply-patch" in content_type:
        return Kind("write", f"PATCH {plural}, server-side apply")
    if plural == "events" and isinstance(data, Mapping):
        return Kind("write", f"{method} events: {data.get('type')} {data.get('reason')}")
    kind = {"merge-patch+json": "merge patch", "json-patch+json": "JSON patch"}.get(
        content_type.rsplit("/", 1)[-1], content_type
    )
    target = plural + (f"/{request.subresource}" if request.subresource else "")
    return Kind("write", f"{method} {target}, {kind}", _fields(data))


def _fields(data: Any) -> str:
    """What a patch sets, e.g. ``metadata.finalizers; status: phase, plan``."""
    if isinstance(data, list):  # JSON patch: its operations
        return "; ".join(
            f"{op.get('op')} {op.get('path')}"
            for op in data
            # The emulator appends this to every JSON patch (see kube.ApplyingEmulator).
            if isinstance(op, Mapping) and op.get("path") != "/metadata/resourceVersion"
        )
    if not isinstance(data, Mapping):
        return "?"
    parts: list[str] = []
    for top, value in sorted(data.items()):
        if top == "metadata" and isinstance(value, Mapping):
            for key, inner in sorted(value.items()):
                if key == "resourceVersion":
                    continue  # the emulator adds it to every write
                if isinstance(inner, Mapping):
                    parts.append(f"metadata.{key}: {', '.join(sorted(inner))}")
                else:
                    parts.append(f"metadata.{key}")
        elif isinstance(value, Mapping):
            parts.append(f"{top}: {', '.join(sorted(value))}")
        else:
            parts.append(top)
    return "; ".join(parts)


def operator_requests(
    records: Sequence[Record], since: float, until: float = float("inf")
) -> list[kmock.Request]:
    return [r.request for r in records if r.by_operator and since <= r.start <= until]


def breakdown(requests: Iterable[kmock.Request]) -> collections.Counter[Kind]:
    return collections.Counter(classify(request) for request in requests)


class Child:
    """The operator in a child process, driven over stdin/stdout (JSON lines)."""

    def __init__(self, process: asyncio.subprocess.Process, log: pathlib.Path) -> None:
        self.process = process
        self.log = log
        self.reconciles: list[dict[str, Any]] = []
        self.applies: list[dict[str, Any]] = []
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, workdir: pathlib.Path, server_url: str, resync: float) -> Child:
        kubeconfig = workdir / "kubeconfig"
        kube.write_kubeconfig(kubeconfig, server_url)
        operator_config = workdir / "config.yaml"
        operator_config.write_text(kube.POOLS_YAML.read_text())
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(kubeconfig),
            LLAMA_OPERATOR_CONFIG=str(operator_config),
            LLAMA_OPERATOR_RESYNC_SECONDS=str(resync),
            HF_HUB_CACHE=str(kube.FIXTURES / "hf-cache"),
            HF_HUB_OFFLINE="1",
        )
        log = workdir / "operator.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=str(ROOT),
            )
        return cls(process, log)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            if message["event"] == "reconcile":
                self.reconciles.append(message)
            elif message["event"] == "apply":
                self.applies.append(message)
            else:
                await self.replies.put(message)

    async def ask(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def stop(self) -> dict[str, Any] | None:
        try:
            reply = await self.ask("stop", timeout=20)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            reply = None
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.reader.cancel()
        return reply

    def warnings(self) -> list[str]:
        """Warning/error lines of the child's log (Kopf logs to stderr from WARNING up)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if line.strip()]


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_ready(cluster: Emulator, child: Child) -> None:
    """Until Kopf watches everything the handlers need (indexes, then our resource)."""
    needed = {"llamadeployments", "deployments", "services", "nodes"}

    def watching() -> bool:
        if child.process.returncode is not None:
            raise RuntimeError(f"operator exited early:\n{child.log.read_text()[-3000:]}")
        seen = {
            r.request.resource.plural
            for r in cluster.records
            if r.request.action == kmock.action.WATCH and r.request.resource is not None
        }
        return needed <= seen

    await wait_for(watching, 30, "the operator's watches")
    await asyncio.sleep(0.3)


async def wait_quiet(cluster: Emulator, timeout: float) -> float:
    """Until the operator sent nothing for QUIET_SECONDS; returns its last request's time."""

    def last() -> float:
        return max((r.start for r in cluster.records if r.by_operator), default=0.0)

    await wait_for(
        lambda: time.monotonic() - last() >= QUIET_SECONDS, timeout, "the operator to go quiet"
    )
    return last()


def spec_for(index: int) -> dict[str, Any]:
    return {
        "model": {"id": MODELS[index % len(MODELS)]},
        "replicas": 1,
        "license": {"accept": True},  # every bundled model is a Llama: serve after acceptance
    }


@contextlib.asynccontextmanager
async def cluster_and_operator(
    workdir: pathlib.Path, resync: float
) -> AsyncIterator[tuple[Emulator, Child]]:
    emulator = Emulator()
    async with emulator, kmock.Server(emulator) as server:
        kube.declare_resources(emulator)
        await kube.seed_api_key(emulator)  # the API key every kube.llama names
        child = await Child.start(workdir, str(server.url), resync)
        try:
            await wait_ready(emulator, child)
            yield emulator, child
        except BaseException:
            print(
                f"operator stderr (last lines):\n{child.log.read_text()[-3000:]}", file=sys.stderr
            )
            raise
        finally:
            await child.stop()


@dataclasses.dataclass
class NoopResult:
    first: list[kmock.Request]
    ticks: int
    requests: list[kmock.Request]
    per_tick: list[int]
    causes: collections.Counter[str]
    warnings: list[str]


async def run_noop(workdir: pathlib.Path) -> NoopResult:
    async with cluster_and_operator(workdir, RESYNC_NOOP) as (cluster, child):
        created = time.monotonic()
        await kube.create(cluster, kube.LLAMA, kube.llama("idle", spec=spec_for(0)))
        await wait_for(lambda: "idle" in cluster.done, 30, "the first reconcile")
        # What the Deployment controller reports once the pods pass their readiness probe:
        # a settled endpoint. (While a primary has fewer ready pods than it asks for, each
        # reconcile reads its pods, for failover and re-planning: not a no-op.)
        await wait_for(
            lambda: kube.exists(cluster, kube.DEPLOYMENTS, "idle-primary"), 30, "the Deployment"
        )
        replicas = kube.obj(cluster, kube.DEPLOYMENTS, "idle-primary")["spec"]["replicas"]
        await kube.report_ready(cluster, "idle-primary", replicas)
        # Quiet means no request for QUIET_SECONDS: timers tick meanwhile, so a tick that
        # wrote something would show up here too (in the "first reconcile" column), and
        # ticks that always write never let it be quiet: count on, they are reported below.
        try:
            settled = await wait_quiet(cluster, 5)
        except TimeoutError:
            settled = time.monotonic()
        first = operator_requests(cluster.records, created, settled)

        def timer_starts() -> list[float]:
            return [m["t"] for m in child.reconciles if m["cause"] == "timer"]

        # Count from the start of a tick to the start of the tick NOOP_TICKS later: every
        # request a tick causes (its status patch, its Events) lands in between.
        seen = len(timer_starts())
        await wait_for(lambda: len(timer_starts()) > seen + NOOP_TICKS, 30, "timer ticks")
        starts = timer_starts()[seen : seen + NOOP_TICKS + 1]
        requests = operator_requests(cluster.records, starts[0], starts[-1])
        per_tick = [
            len(operator_requests(cluster.records, begin, end))
            for begin, end in itertools.pairwise(starts)
        ]
        causes = collections.Counter(
            str(m["cause"]) for m in child.reconciles if starts[0] <= m["t"] < starts[-1]
        )
        warnings = child.warnings()
    return NoopResult(first, NOOP_TICKS, requests, per_tick, causes, warnings)


@dataclasses.dataclass
class BulkResult:
    first: list[kmock.Request]
    first_seconds: float
    wall: float
    to_planned: list[float]
    requests: list[kmock.Request]
    reconciles: collections.Counter[str]
    reconcile_seconds: list[float]
    apply_seconds: list[float]
    usage: dict[str, dict[str, float]]
    server_cpu: float
    rtt_empty: dict[str, float]
    rtt_loaded: dict[str, float]
    stored_objects: int
    warnings: list[str]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_bulk(workdir: pathlib.Path) -> BulkResult:
    async with cluster_and_operator(workdir, RESYNC_BULK) as (cluster, child):
        usage = {"imported": await child.replies.get()}
        usage["idle"] = await child.ask("usage idle")

        # 1. The first reconcile of one object, alone.
        created = time.monotonic()
        await kube.create(cluster, kube.LLAMA, kube.llama("probe", spec=spec_for(0)))
        await wait_for(lambda: "probe" in cluster.done, 30, "the probe's first reconcile")
        first_seconds = cluster.done["probe"] - cluster.created["probe"]
        settled = await wait_quiet(cluster, 30)
        first = operator_requests(cluster.records, created, settled)
        rtt_empty = await child.ask(f"rtt {RTT_SAMPLES} probe")

        # 2. BULK objects at once.
        names = [f"bulk-{i:03d}" for i in range(BULK)]
        reconciles_before = len(child.reconciles)
        usage["start"] = await child.ask("usage start")
        server_cpu = _cpu_seconds()
        started = time.monotonic()
        await asyncio.gather(
            *(
                kube.create(cluster, kube.LLAMA, kube.llama(name, spec=spec_for(i)))
                for i, name in enumerate(names)
            )
        )
        await wait_for(
            lambda: all(name in cluster.done for name in names), BULK_TIMEOUT, "every object"
        )
        wall = max(cluster.done[name] for name in names) - started
        settled = await wait_quiet(cluster, 60)
        server_cpu = _cpu_seconds() - server_cpu
        usage["after"] = await child.ask("usage after")
        to_planned = [cluster.done[name] - cluster.created[name] for name in names]
        requests = operator_requests(cluster.records, started, settled)
        rtt_loaded = await child.ask(f"rtt {RTT_SAMPLES} probe")
        bulk_reconciles = child.reconciles[reconciles_before:]
        stored = len(cluster.objects)
        warnings = child.warnings()
    return BulkResult(
        first=first,
        first_seconds=first_seconds,
        wall=wall,
        to_planned=to_planned,
        requests=requests,
        reconciles=collections.Counter(str(m["cause"]) for m in bulk_reconciles),
        reconcile_seconds=[float(m["seconds"]) for m in bulk_reconciles],
        apply_seconds=[float(m["seconds"]) for m in child.applies if m["t"] >= started],
        usage=usage,
        server_cpu=server_cpu,
        rtt_empty=rtt_empty,
        rtt_loaded=rtt_loaded,
        stored_objects=stored,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- report


def table(title: str, rows: Sequence[Sequence[str]]) -> None:
    """Print rows as columns: the first left-aligned, the others right-aligned."""
    print(f"\n{title}")
    columns = max(len(row) for row in rows)
    padded = [list(row) + [""] * (columns - len(row)) for row in rows]
    widths = [max(len(row[i]) for row in padded) for i in range(columns)]
    for row in padded:
        cells = [
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  " + "  ".join(cells).rstrip())


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def request_table(noop: NoopResult, bulk: BulkResult) -> None:
    columns: list[tuple[Sequence[kmock.Request], int]] = [
        (bulk.first, 1),
        (noop.first, 1),
        (noop.requests, noop.ticks),
        (bulk.requests, BULK),
    ]
    counts = [(breakdown(requests), n) for requests, n in columns]
    kinds = sorted(set().union(*(c for c, _ in counts)))

    def cells(selected: Iterable[Kind]) -> list[str]:
        chosen = set(selected)
        return [_count(sum(v for k, v in c.items() if k in chosen) / n) for c, n in counts]

    rows: list[list[str]] = [
        ["", "first", "first", "no-op", f"{BULK} at once"],
        ["request", "(resync 600 s)", f"(resync {RESYNC_NOOP} s)", "per tick", "per object"],
    ]
    legend: list[str] = []
    for verb in ("read", "write"):
        of_verb = [k for k in kinds if k.verb == verb]
        rows.append([f"{verb}s", *cells(of_verb)])
        for kind in of_verb:
            label = f"  {kind.label}"
            if kind.detail:
                mark = chr(ord("a") + len(legend))
                legend.append(f"[{mark}] {kind.detail}")
                label += f" [{mark}]"
            rows.append([label, *cells([kind])])
    rows.append(["total", *cells(kinds)])
    table(
        "1. API requests made by the operator (first reconcile: from create until 1 s quiet;"
        f" no-op: {noop.ticks} timer ticks of an unchanged object)",
        rows,
    )
    for line in legend:
        print(f"  {line}")


def throughput_table(bulk: BulkResult) -> None:
    total = len(bulk.requests)
    rtt = (bulk.rtt_empty["median"], bulk.rtt_loaded["median"])
    usage = bulk.usage
    operator_cpu = usage["after"]["cpu_seconds"] - usage["start"]["cpu_seconds"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.1f}"

    rows = [
        ["", "operator", "reference"],
        [
            f"wall: {BULK} created at once -> all planned + children",
            f"{bulk.wall:.2f} s",
            f"{total * rtt[0]:.2f} / {total * rtt[1]:.2f} s",
        ],
        [
            "throughput",
            f"{BULK / bulk.wall:.1f} obj/s",
            f"{BULK / (total * rtt[0]):.1f} / {BULK / (total * rtt[1]):.1f} obj/s",
        ],
        ["requests in the run", str(total), str(total)],
        ["time to planned, per object: p50", f"{quantile(bulk.to_planned, 0.5):.2f} s", ""],
        ["                              p95", f"{quantile(bulk.to_planned, 0.95):.2f} s", ""],
        ["                              max", f"{max(bulk.to_planned):.2f} s", ""],
        ["time to planned, one object alone (the probe)", f"{ms(bulk.first_seconds)} ms", ""],
        [
            "one request, p50: apply under load / GET alone",
            f"{ms(quantile(bulk.apply_seconds, 0.5))} ms",
            f"{ms(rtt[0])} / {ms(rtt[1])} ms",
        ],
        ["server-side apply under load, p90", f"{ms(quantile(bulk.apply_seconds, 0.9))} ms", ""],
        [
            "_reconcile duration p50 / max (16 threads)",
            f"{ms(quantile(bulk.reconcile_seconds, 0.5))} / {ms(max(bulk.reconcile_seconds))} ms",
            "",
        ],
        [
            "_reconcile calls, by cause",
            " ".join(f"{k}={v}" for k, v in sorted(bulk.reconciles.items())),
            "",
        ],
        [
            "CPU during the run (share of wall): operator / API",
            f"{operator_cpu:.2f} s ({operator_cpu / bulk.wall:.0%})",
            f"{bulk.server_cpu:.2f} s ({bulk.server_cpu / bulk.wall:.0%})",
        ],
        ["operator CPU per object", f"{ms(operator_cpu / BULK)} ms", ""],
        ["objects stored in the emulator afterwards", str(bulk.stored_objects), ""],
    ]
    table(
        f"2. Throughput, {BULK} objects. Reference: the run's requests sent one at a time"
        " (GET round trip with the emulator empty / loaded)",
        rows,
    )


def memory_table(bulk: BulkResult) -> None:
    usage = bulk.usage
    rows = [["operator process (child)", "ru_maxrss", "VmRSS"]]
    for label, text in (
        ("imported", "after imports, before the operator starts"),
        ("idle", "operator up and watching, no objects (baseline)"),
        ("after", f"after {BULK + 1} objects reconciled (peak)"),
    ):
        rows.append(
            [
                text,
                f"{usage[label]['peak_mib']:.1f} MiB",
                f"{usage[label]['current_mib']:.1f} MiB",
            ]
        )
    growth = usage["after"]["peak_mib"] - usage["idle"]["peak_mib"]
    rows.append(["growth per object (peak - baseline)", f"{growth * 1024 / (BULK + 1):.0f} KiB"])
    table("3. Memory of the operator alone (the API server is the parent process)", rows)


def report(noop: NoopResult, bulk: BulkResult) -> None:
    request_table(noop, bulk)
    print(
        f"  no-op requests per tick: {' '.join(map(str, noop.per_tick))}; _reconcile calls in "
        f"those ticks: {' '.join(f'{k}={v}' for k, v in sorted(noop.causes.items()))}"
    )
    throughput_table(bulk)
    memory_table(bulk)
    for name, warnings in (("no-op run", noop.warnings), ("bulk run", bulk.warnings)):
        if warnings:
            print(f"\noperator stderr, {name} ({len(warnings)} lines, first 10):")
            for line in warnings[:10]:
                print(f"  {line[:200]}")


async def parent() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        workdir = pathlib.Path(tmp)
        (workdir / "noop").mkdir()
        (workdir / "bulk").mkdir()
        noop = await run_noop(workdir / "noop")
        bulk = await run_bulk(workdir / "bulk")
    report(noop, bulk)
    if noop.requests:
        print(f"\nREGRESSION: {len(noop.requests)} requests during {noop.ticks} no-op reconciles")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child())
        return 0
    return asyncio.run(parent())


if __name__ == "__main__":
    sys.exit(main())
