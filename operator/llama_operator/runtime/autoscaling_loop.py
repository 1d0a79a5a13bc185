"""The built-in autoscaler's loop, one tick at a time: find, scrape, decide, act.

Each tick of a LlamaDeployment with ``spec.autoscaling.engine: builtin``:

1. The ready serving pods of the primary variant come from the EndpointSlices of its
   ``<name>-primary`` Service (a Kopf index, so no API request): the Service's own
   readiness view, with each pod's address and the engine's port.
2. Every ready pod's ``/metrics`` is scraped concurrently (``clients.scraper``), each
   with its own timeout, so one slow pod costs at most that timeout and is then counted
   as "not scraped" (which never lets replicas fall, see ``operations.autoscaling``).
3. ``autoscaling.decide`` turns the samples into replicas.
4. A change is written to the LlamaDeployment's ``/scale`` subresource, exactly as
   ``kubectl scale``, an HPA or KEDA would, so ``spec.replicas`` stays the one place
   that says how many replicas there should be; the reconcile that follows resizes
   the Deployment. The window's recommendations and the last decisions go to
   ``status.autoscaling`` (so they survive a restart); the Event is returned for the
   handler to post.

Writes happen only when something changed: a steady endpoint costs its scrapes and
no API request.

Beside the loop, two blocking readers of the same pods for a reconcile's thread:
``queue_per_pod`` (the failover's overload trigger) and ``capacity_per_pod`` (the KV
cache each engine allocated, read once per set of ready pods; ``operations.capacity``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from llama_operator import api
from llama_operator.api.events import Event
from llama_operator.clients import k8s, scraper
from llama_operator.operations import autoscaling, capacity
from llama_operator.serving import engine_metrics, engines

# A pod's scrape may take at most this long (and never longer than the interval).
SCRAPE_TIMEOUT_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Tick:
    decision: autoscaling.Decision
    samples: list[autoscaling.Sample]
    current: int
    metric: str
    target: float
    events: list[Event]
    status_written: bool


def enabled(spec: Mapping[str, Any] | None) -> bool:
    """Whether the built-in scaler runs for this spec (the daemon's filter)."""
    scaling = (spec or {}).get("autoscaling")
    return isinstance(scaling, Mapping) and scaling.get("engine", "builtin") == "builtin"


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> list[scraper.Endpoint]:
    """Ready pods, with the URL of their /metrics, from a Service's EndpointSlices."""
    found: dict[str, scraper.Endpoint] = {}
    for slice_ in slices:
        ports = [p for p in slice_.get("ports") or [] if isinstance(p, Mapping)]
        port = next((p.get("port") for p in ports if p.get("name") == engines.PORT_NAME), None)
        if port is None and ports:
            port = ports[0].get("port")
        if not isinstance(port, int):
            continue
        ipv6 = slice_.get("addressType") == "IPv6"
        for endpoint in slice_.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            addresses = endpoint.get("addresses") or []
            # ready unset means ready (the EndpointSlice API's rule); terminating pods
            # are not ready and not scraped.
            if conditions.get("ready") is False or not addresses:
                continue
            host = f"[{addresses[0]}]" if ipv6 else str(addresses[0])
            pod = str((endpoint.get("targetRef") or {}).get("name") or addresses[0])
            found[pod] = scraper.Endpoint(pod, f"http://{host}:{port}{engines.METRICS_PATH}")
    return [found[pod] for pod in sorted(found)]


async def scrape(
    session: aiohttp.ClientSession,
    endpoints: Sequence[scraper.Endpoint],
    *,
    engine: api.Engine,
    signal: engine_metrics.Signal,
    timeout: float,
    version: str | None = None,
) -> list[autoscaling.Sample]:
    """One sample per pod, concurrently; a pod that fails or is too slow gives None.

    ``version``: the engine release the pods run (status.plan.engineVersion), whose
    profile names the metrics."""
    pages = await scraper.fetch(
        session,
        endpoints,
        timeout=timeout,
        parse=lambda text: engine_metrics.read(text, engine=engine, signal=signal, version=version),
    )
    return [
        autoscaling.Sample(page.pod, page.value[0], running=page.value[1])
        if page.value is not None
        else autoscaling.Sample(page.pod, None)
        for page in pages
    ]


def timeout_for(interval: float) -> float:
    return min(SCRAPE_TIMEOUT_SECONDS, max(0.1, interval * 0.8))


async def tick(
    *,
    body: Mapping[str, Any],
    slices: Iterable[Mapping[str, Any]],
    session: aiohttp.ClientSession,
    client: k8s.Client,
    now: float,
    wall: str,
    resume: bool = False,
) -> Tick | None:
    """One evaluation; None when there is nothing to evaluate yet (no plan, bad spec).

    ``resume``: the first tick of a (re)started scaler. The window in status says what
    was recommended up to the last evaluation, not during the gap since, so a new window
    starts: after a restart the endpoint is never scaled down sooner than one full
    window (the learned capacity and the decisions are kept).
    """
    scaled = _scaled(body)
    if scaled is None:
        return None
    samples = await scrape(
        session,
        ready_endpoints(slices),
        engine=scaled.engine,
        signal=scaled.scaling.metric,
        timeout=timeout_for(scaled.scaling.intervalSeconds),
        version=scaled.version,
    )
    judged = _decide(scaled=scaled, samples=samples, now=now, resume=resume)
    events, status_written = await _act(client=client, scaled=scaled, judged=judged, wall=wall)
    return Tick(
        judged.decision,
        samples,
        scaled.current,
        scaled.scaling.metric,
        judged.policy.target,
        events,
        status_written,
    )


@dataclasses.dataclass(frozen=True)
class _Scaled:
    """What a tick scales: a LlamaDeployment whose built-in scaler can run now."""

    name: str
    namespace: str | None
    current: int  # spec.replicas
    scaling: api.Autoscaling
    engine: api.Engine  # status.plan.engine: what the pods run, not what the spec asks
    version: str | None  # status.plan.engineVersion, whose profile names the metrics
    previous: Mapping[str, Any]  # status.autoscaling as last written


@dataclasses.dataclass(frozen=True)
class _Judgement:
    """What ``autoscaling.decide`` made of this tick's samples, and what it started from."""

    decision: autoscaling.Decision
    policy: autoscaling.Policy
    stored: autoscaling.State  # the window and capacity status held before this tick


def _scaled(body: Mapping[str, Any]) -> _Scaled | None:
    """What a tick scales, from the LlamaDeployment as the daemon sees it; None when the
    scaler has nothing to do for it yet. The pods are found next (``ready_endpoints``)."""
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    status = body.get("status") or {}
    try:
        spec = api.parse_spec(dict(body.get("spec") or {}))
    except api.SpecError:
        return None  # the reconcile reports it; nothing to scale on meanwhile
    scaling = spec.autoscaling
    engine = (status.get("plan") or {}).get("engine")
    if scaling is None or scaling.engine != "builtin" or engine not in ("vllm", "tgi"):
        return None
    if scaling.metric == "kvCache" and engine == "tgi":
        return None  # the reconcile reports it: TGI has no KV-cache metric
    version = (status.get("plan") or {}).get("engineVersion")
    return _Scaled(
        name=str(name),
        namespace=namespace,
        current=spec.replicas,
        scaling=scaling,
        engine=engine,
        version=version if isinstance(version, str) else None,
        previous=status.get("autoscaling") or {},
    )


def _decide(
    *, scaled: _Scaled, samples: list[autoscaling.Sample], now: float, resume: bool
) -> _Judgement:
    """Step 3 (decide): the samples and the window kept in status, into replicas."""
    previous = scaled.previous
    stored = autoscaling.State.from_status(previous.get("recommendations")).with_capacity(
        previous.get("capacity")
    )
    state = autoscaling.State((), stored.capacity) if resume else stored
    policy = autoscaling.Policy.of(scaled.scaling)
    decision = autoscaling.decide(
        policy=policy, samples=samples, current=scaled.current, state=state, now=now
    )
    return _Judgement(decision, policy, stored)


async def _act(
    *, client: k8s.Client, scaled: _Scaled, judged: _Judgement, wall: str
) -> tuple[list[Event], bool]:
    """Step 4 (act): a change of replicas to /scale, then what changed to
    ``status.autoscaling``. The Events to post, and whether status was written."""
    decision, stored, current = judged.decision, judged.stored, scaled.current
    events: list[Event] = []
    update: dict[str, Any] = {}
    if decision.state.recommendations != stored.recommendations:
        update["recommendations"] = decision.state.as_status()
    if decision.state.capacity is not None and decision.state.capacity != stored.capacity:
        update["capacity"] = round(decision.state.capacity, 3)
    if decision.replicas != current:
        await _patch(
            client, scaled, body={"spec": {"replicas": decision.replicas}}, subresource="scale"
        )
        entry = autoscaling.history_entry(
            decision,
            current=current,
            now=wall,
            metric=scaled.scaling.metric,
            target=judged.policy.target,
        )
        update["decisions"] = autoscaling.merge_history(scaled.previous.get("decisions"), entry)
        update["lastScaleTime"] = wall
        verb = "ScaledUp" if decision.replicas > current else "ScaledDown"
        events.append(
            Event(
                "Normal",
                verb,
                f"{current} -> {decision.replicas} replicas ({decision.reason}): "
                f"{decision.message}",
            )
        )
    if update:
        await _patch(client, scaled, body={"status": {"autoscaling": update}}, subresource="status")
    return events, bool(update)


async def _patch(
    client: k8s.Client, scaled: _Scaled, *, body: Mapping[str, Any], subresource: str
) -> None:
    """A merge patch of the LlamaDeployment's ``subresource``, off the event loop."""
    await asyncio.to_thread(
        client.merge_patch,
        api_version=api.API_VERSION,
        kind=api.KIND,
        namespace=scaled.namespace,
        name=scaled.name,
        body=body,
        subresource=subresource,
    )


def queue_per_pod(
    slices: Iterable[Mapping[str, Any]], *, engine: api.Engine, version: str | None = None
) -> float | None:
    """Waiting requests per ready pod behind these EndpointSlices, or None when no pod
    could be read (the failover's overload trigger). Blocking: for a reconcile's thread."""
    endpoints = ready_endpoints(slices)
    if not endpoints:
        return None

    pages = scraper.fetch_blocking(
        endpoints,
        timeout=SCRAPE_TIMEOUT_SECONDS,
        parse=lambda text: engine_metrics.value(
            text, engine=engine, signal="queue", version=version
        ),
    )
    values = [page.value for page in pages if page.value is not None]
    return sum(values) / len(values) if values else None


def capacity_per_pod(
    slices: Iterable[Mapping[str, Any]], *, plan: api.Plan
) -> dict[str, capacity.PodCapacity | None] | None:
    """The KV capacity each ready pod behind these EndpointSlices reports, by pod (None:
    its page carries none); a pod that could not be read is left out. None, with no
    request, when the reading is not due (``capacity.due``: the same pods as last time).
    Blocking: for a reconcile's thread."""
    endpoints = ready_endpoints(slices)
    if not capacity.due(plan, ready=[e.pod for e in endpoints]):
        return None
    pages = scraper.fetch_blocking(
        endpoints,
        timeout=SCRAPE_TIMEOUT_SECONDS,
        parse=lambda text: capacity.parse(text, engine=plan.engine, version=plan.engineVersion),
    )
    return {page.pod: page.value for page in pages if page.read}
