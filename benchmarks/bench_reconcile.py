"""Reconcile benchmark: API traffic, throughput and memory of the real operator, in one run.

The Kubernetes API is kmock (``tests/contract/kube.py``: ``ApplyingEmulator``) served on
127.0.0.1 by this process; the operator is the real Kopf operator (``kopf.operator`` with
our handlers) in a child process of this same script, logged in through its own
kubeconfig. Every HTTP request the child makes is recorded by the emulator, and tagged by
User-Agent: ``kopf/...`` is Kopf's own machinery (watches, finalizer/annotation/status
patches, Events), ``OpenAPI-Generator/...`` is our ``k8s.Client`` (server-side applies,
Secret reads). Our own creates (``kmock/...``) and the reference probe (``bench-rtt``)
are never counted. Two operator runs, each in a fresh child and a fresh emulator:

A. resync 0.5 s (``LLAMA_OPERATOR_RESYNC_SECONDS``, set in the child's environment
   before ``llama_operator.handlers`` is imported, as Kopf binds timer intervals then).
   One LlamaDeployment is created and left to settle; then the requests made during
   ``NOOP_TICKS`` timer ticks of the unchanged object are counted. Ticks are counted by
   wrapping ``handlers._reconcile`` in the child (it is looked up by name at call
   time). Anything above 0 requests per no-op tick is a regression: exit status 1.

B. resync 600 s, longer than the whole run, so no timer fires and only change handlers
   are measured (a timer reconcile here would be reported in the "timer reconciles" row).
   1. First reconcile: one LlamaDeployment ("probe") is created; every operator request
      from its create until the operator has been quiet for ``QUIET_SECONDS`` is listed,
      reads vs writes, each write named (apply of which kind, which metadata/status keys
      a patch sets, which Event reason).
   2. Throughput: ``BULK`` LlamaDeployments, models cycled over the catalog, are created
      at once (``asyncio.gather`` of API creates). Wall time runs from the first create
      to the moment every one has ``status.plan`` and its Deployment and both Services;
      "time to planned" is per object, from its own create to that moment (seen by the
      emulator as the write that completed it). Requests are counted up to quiet.
   3. Memory: ``ru_maxrss`` of the child, whose only tenant is the operator (the API
      server runs here, in the parent): after imports, once the operator is up and idle,
      and after the bulk run (the peak).

Reference (side by side with B.2): the cost of the API traffic alone. The child times
``RTT_SAMPLES`` sequential GETs of one LlamaDeployment through the same ``k8s.Client``
stack (different User-Agent), once while the emulator is nearly empty and once after the
bulk run, when it holds every object and its history. "Same #requests as sequential
GETs" multiplies the bulk run's request count by that round trip: how long the traffic
would take one request at a time with no operator logic. The operator overlaps requests
(Kopf is async; handlers run on 16 threads) but also computes plans, so ours below the
reference means concurrency pays; far above means time goes somewhere other than the
API. Both numbers come from the same machine in the same minute, so a slow machine moves
both. A read-before-write variant of the operator was not chosen as the reference: it
would measure a strawman we do not ship.

kmock is not an API server: it scans every stored object on each get/list and keeps
every version of every object, so its per-request cost grows with the run; the loaded
round trip shows by how much. Absolute times are this machine's; request counts and
memory are the portable numbers. Nothing here asserts on wall time.

Run: ``.venv/bin/python benchmarks/bench_reconcile.py`` (about a minute on 2 cores).
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
IS_CHILD = __name__ == "__main__" and sys.argv[1:2] == ["--child"]

# The parent (API server) and the child (operator) import only what they use, so the
# child's RSS is the operator's: no kmock, no emulator.
if TYPE_CHECKING or not IS_CHILD:
    sys.path.insert(0, str(ROOT / "tests" / "contract"))
    import kmock
    import kube
if TYPE_CHECKING or IS_CHILD:
    import kopf

    from llama_operator import handlers, k8s

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


def _memory() -> dict[str, float]:
    """Peak (ru_maxrss, KiB on Linux) and current (VmRSS) resident size, in MiB."""
    current = 0.0
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mib": peak, "current_mib": current}


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


async def _child() -> None:
    lock = threading.Lock()
    _emit(lock, event="memory", label="imported", **_memory())
    _wrap_reconcile(lock)
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
        if command == "memory":
            _emit(lock, event="memory", label=args[0], **_memory())
        elif command == "rtt":
            result = await asyncio.to_thread(_round_trips, int(args[0]), args[1])
            _emit(lock, event="rtt", **result)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(operator, timeout=15)
    _emit(lock, event="stopped", **_memory())


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


def _emulator_class() -> type[kube.ApplyingEmulator]:
    class Emulator(kube.ApplyingEmulator):  # type: ignore[misc]
        """Records every request with its timing, and when each LlamaDeployment is done."""

        records: list[Record]
        created: dict[str, float]
        done: dict[str, float]

        async def _handle(self, request: kmock.Request) -> Any:
            record = Record(time.monotonic(), request)
            self.records.append(record)
            try:
                return await super()._handle(request)
            finally:
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

    return Emulator


def _new_emulator() -> Any:
    emulator = _emulator_class()()
    emulator.records, emulator.created, emulator.done = [], {}, {}
    return emulator


def classify(request: kmock.Request) -> tuple[str, str]:
    """("read" | "write", a label saying what the request did)."""
    method = str(request.method.value)
    plural = request.resource.plural if request.resource is not None else request.url.path
    if method not in WRITE_METHODS:
        action = request.action.name.lower() if request.action is not None else "get"
        return "read", f"{method} {action} {plural}"
    content_type = str(request.headers.get("Content-Type", ""))
    data = request.data
    if "apply-patch" in content_type:
        return "write", f"PATCH server-side apply {plural}"
    if plural == "events" and isinstance(data, Mapping):
        return "write", f"{method} {plural} reason={data.get('reason')}"
    kind = "merge" if "merge-patch" in content_type else content_type.rsplit("/", 1)[-1]
    target = plural + (f"/{request.subresource}" if request.subresource else "")
    return "write", f"{method} {target} ({kind}) {_keys(data)}"


def _keys(data: Any) -> str:
    """The fields a patch sets, e.g. ``metadata.finalizers status.plan``."""
    if not isinstance(data, Mapping):
        return "?"
    keys: list[str] = []
    for top, value in data.items():
        if isinstance(value, Mapping) and top in ("metadata", "status"):
            for key, inner in value.items():
                if key == "resourceVersion":
                    continue  # the emulator adds it to every write
                if key == "annotations" and isinstance(inner, Mapping):
                    keys.extend(f"annotations[{a.rsplit('/', 1)[-1]}]" for a in inner)
                else:
                    keys.append(f"{top}.{key}")
        else:
            keys.append(top)
    return " ".join(sorted(keys)) or "{}"


def operator_requests(
    records: Sequence[Record], since: float, until: float = float("inf")
) -> list[kmock.Request]:
    return [r.request for r in records if r.by_operator and since <= r.start <= until]


def breakdown(requests: Iterable[kmock.Request]) -> tuple[int, int, collections.Counter[str]]:
    reads, writes, labels = 0, 0, collections.Counter[str]()
    for request in requests:
        verb, label = classify(request)
        labels[f"{verb}: {label}"] += 1
        if verb == "read":
            reads += 1
        else:
            writes += 1
    return reads, writes, labels


class Child:
    """The operator in a child process, driven over stdin/stdout (JSON lines)."""

    def __init__(self, process: asyncio.subprocess.Process, log: pathlib.Path) -> None:
        self.process = process
        self.log = log
        self.reconciles: list[dict[str, Any]] = []
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


async def wait_ready(cluster: Any, child: Child) -> None:
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


async def wait_quiet(cluster: Any, timeout: float) -> float:
    """Until the operator sent nothing for QUIET_SECONDS; returns its last request's time."""

    def last() -> float:
        return max((r.start for r in cluster.records if r.by_operator), default=0.0)

    await wait_for(
        lambda: time.monotonic() - last() >= QUIET_SECONDS, timeout, "the operator to go quiet"
    )
    return last()


def spec_for(index: int) -> dict[str, Any]:
    return {"model": {"id": MODELS[index % len(MODELS)]}, "replicas": 1}


@contextlib.asynccontextmanager
async def cluster_and_operator(workdir: pathlib.Path, resync: float) -> Any:
    emulator = _new_emulator()
    async with emulator, kmock.Server(emulator) as server:
        kube.declare_resources(emulator)
        child = await Child.start(workdir, str(server.url), resync)
        try:
            await wait_ready(emulator, child)
            yield emulator, child
        finally:
            await child.stop()


@dataclasses.dataclass
class NoopResult:
    ticks: int
    requests: list[kmock.Request]
    per_tick: list[int]
    warnings: list[str]


async def run_noop(workdir: pathlib.Path) -> NoopResult:
    async with cluster_and_operator(workdir, RESYNC_NOOP) as (cluster, child):
        await kube.create(cluster, kube.LLAMA, kube.llama("idle", spec=spec_for(0)))
        await wait_for(lambda: "idle" in cluster.done, 30, "the first reconcile")
        await wait_quiet(cluster, 30)

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
        warnings = child.warnings()
    return NoopResult(NOOP_TICKS, requests, per_tick, warnings)


@dataclasses.dataclass
class BulkResult:
    first: list[kmock.Request]
    first_seconds: float
    wall: float
    to_planned: list[float]
    requests: list[kmock.Request]
    reconciles: collections.Counter[str]
    reconcile_seconds: list[float]
    memory: dict[str, dict[str, float]]
    rtt_empty: dict[str, float]
    rtt_loaded: dict[str, float]
    stored_objects: int
    warnings: list[str]


async def run_bulk(workdir: pathlib.Path) -> BulkResult:
    async with cluster_and_operator(workdir, RESYNC_BULK) as (cluster, child):
        memory = {"imported": await child.replies.get()}
        memory["idle"] = await child.ask("memory idle")

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
        to_planned = [cluster.done[name] - cluster.created[name] for name in names]
        requests = operator_requests(cluster.records, started, settled)
        memory["after"] = await child.ask("memory after")
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
        memory=memory,
        rtt_empty=rtt_empty,
        rtt_loaded=rtt_loaded,
        stored_objects=stored,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- report


def table(title: str, rows: Sequence[tuple[str, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  " + "  ".join(cells).rstrip())


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(noop: NoopResult, bulk: BulkResult) -> None:
    reads, writes, labels = breakdown(bulk.first)
    rows: list[tuple[str, ...]] = [("first reconcile of one object", "requests")]
    rows += [("  reads", str(reads)), ("  writes", str(writes))]
    rows += [(f"    {label}", str(n)) for label, n in sorted(labels.items())]
    rows += [("  total", str(reads + writes))]
    rows += [("  time to planned (create -> plan + 3 children)", f"{bulk.first_seconds:.3f} s")]
    table("1. API requests per reconcile (resync 600 s; counted until 1 s quiet)", rows)

    reads, writes, labels = breakdown(noop.requests)
    rows = [("no-op reconcile (unchanged object)", "requests")]
    rows += [(f"  timer ticks observed (resync {RESYNC_NOOP} s)", str(noop.ticks))]
    rows += [("  requests during those ticks", str(reads + writes))]
    rows += [("  per tick", " ".join(str(n) for n in noop.per_tick))]
    rows += [(f"    {label}", str(n)) for label, n in sorted(labels.items())]
    table("   no-op reconciles (separate run, resync 0.5 s)", rows)

    reads, writes, labels = breakdown(bulk.requests)
    per_object = len(bulk.requests) / BULK
    sequential_empty = len(bulk.requests) * bulk.rtt_empty["median"]
    sequential_loaded = len(bulk.requests) * bulk.rtt_loaded["median"]
    rows = [
        ("", "operator", "reference"),
        (
            f"wall: {BULK} objects created at once -> all planned",
            f"{bulk.wall:.2f} s",
            f"{sequential_empty:.2f}-{sequential_loaded:.2f} s",
        ),
        ("  (reference: same #requests as sequential GETs, empty-loaded)", "", ""),
        (
            "throughput",
            f"{BULK / bulk.wall:.1f} obj/s",
            f"{BULK / sequential_loaded:.1f} obj/s",
        ),
        ("time to planned p50", f"{quantile(bulk.to_planned, 0.5):.2f} s", ""),
        ("time to planned p95", f"{quantile(bulk.to_planned, 0.95):.2f} s", ""),
        ("time to planned max", f"{max(bulk.to_planned):.2f} s", ""),
        (
            "requests (reads/writes), per object",
            f"{reads}/{writes}, {per_object:.1f}",
            "",
        ),
        (
            "API round trip, median (emulator empty / loaded)",
            "",
            f"{bulk.rtt_empty['median'] * 1e3:.2f} / {bulk.rtt_loaded['median'] * 1e3:.2f} ms",
        ),
        (
            "_reconcile calls by cause",
            " ".join(f"{k}={v}" for k, v in sorted(bulk.reconciles.items())),
            "",
        ),
        (
            "_reconcile duration p50 / max (in handler thread)",
            f"{quantile(bulk.reconcile_seconds, 0.5) * 1e3:.1f} / "
            f"{max(bulk.reconcile_seconds) * 1e3:.0f} ms",
            "",
        ),
        ("objects stored in the emulator afterwards", str(bulk.stored_objects), ""),
    ]
    rows += [(f"  {label}", f"{n / BULK:.2f}/obj", "") for label, n in sorted(labels.items())]
    table(f"2. Throughput: {BULK} LlamaDeployments (+ the probe already settled)", rows)

    memory = bulk.memory
    rows = [("operator process (child)", "ru_maxrss", "VmRSS")]
    for label, text in (
        ("imported", "after imports, before the operator starts"),
        ("idle", "operator up, watches open, no objects"),
        ("after", f"after {BULK + 1} objects reconciled (peak)"),
    ):
        rows.append(
            (
                f"  {text}",
                f"{memory[label]['peak_mib']:.1f} MiB",
                f"{memory[label]['current_mib']:.1f} MiB",
            )
        )
    growth = memory["after"]["peak_mib"] - memory["idle"]["peak_mib"]
    rows.append(
        (
            "  growth per object (peak after - idle) / objects",
            f"{growth * 1024 / (BULK + 1):.0f} KiB",
            "",
        )
    )
    table("3. Memory", rows)

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
