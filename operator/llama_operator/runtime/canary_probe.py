"""Measuring a canary: scrape the canary's and the stable pods' /metrics, judge windows.

The reconcile asks for a judgement (``reconcile.Measure``) while a canary takes
traffic; ``Analyzer.measure`` answers at most once per ``spec.rollout.analysis.interval``:

1. The ready pods of ``<name>-canary`` and ``<name>-primary`` come from their
   EndpointSlices (a Kopf index, as the autoscaler finds them).
2. Every pod's page is scraped concurrently, each with its own timeout, and read with
   ``engine_metrics.traffic``: finished requests, those that did not end normally by kind,
   and the latency histograms, by the metric names of the variant's engine release.
3. The counters are compared with the baseline taken at the start of the window,
   per pod (``canary_analysis.window``). A window with fewer canary requests than
   ``minRequests`` is not judged: it grows until the next interval.
4. ``canary_analysis.judge`` compares the canary's window with the thresholds and with the
   stable pods' window of the same time span, each variant's failures by its own engine
   release's outcomes (``planning.engine_profiles``); the baseline is then reset.

Baselines are in memory. After an operator restart the first scrape only takes a new
baseline: one interval of the rollout is not judged, and no counter from before the
restart is mistaken for recent traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from llama_operator import api, reconcile
from llama_operator.clients import scraper
from llama_operator.operations import canary_analysis
from llama_operator.planning import engine_profiles
from llama_operator.runtime import autoscaling_loop, operator_metrics
from llama_operator.serving import engine_metrics

# (namespace, Service name) -> the EndpointSlices of that Service.
Slices = Callable[[str, str], Iterable[Mapping[str, Any]]]


@dataclasses.dataclass
class _Window:
    revision: str
    started: float  # monotonic
    canary: dict[str, engine_metrics.Traffic]
    stable: dict[str, engine_metrics.Traffic]


class Analyzer:
    """Per-LlamaDeployment analysis windows, shared by every reconcile of the process."""

    def __init__(self, slices: Slices, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._slices = slices
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._windows.pop(uid, None)

    def measure(self, request: reconcile.MeasureRequest) -> canary_analysis.Judgement | None:
        """A judgement when the interval has passed and the window has enough requests."""
        now = self._clock()
        interval = api.parse_duration(request.analysis.interval)
        with self._lock:
            window = self._windows.get(request.uid)
        if (
            window is not None
            and window.revision == request.revision
            and now - window.started < interval
        ):
            return None
        canary_pods = autoscaling_loop.ready_endpoints(
            self._slices(request.namespace, f"{request.name}-canary")
        )
        stable_pods = autoscaling_loop.ready_endpoints(
            self._slices(request.namespace, f"{request.name}-primary")
        )
        timeout = autoscaling_loop.timeout_for(min(interval, 5.0))
        canary_version, stable_version = (
            request.canary_engine_version,
            request.stable_engine_version,
        )
        canary_now, stable_now = asyncio.run(
            _scrape_both(
                canary_pods,
                stable_pods,
                canary=(request.canary_engine, canary_version),
                stable=(request.stable_engine, stable_version),
                timeout=timeout,
            )
        )
        if window is None or window.revision != request.revision:
            # A first sight (a new canary, or a restarted operator): baseline only.
            with self._lock:
                self._windows[request.uid] = _Window(request.revision, now, canary_now, stable_now)
            return None
        canary_window = canary_analysis.window(window.canary, canary_now)
        stable_window = canary_analysis.window(window.stable, stable_now)
        if canary_window.requests < request.analysis.minRequests:
            # Too little traffic to judge: the window grows. Pods seen for the first time
            # are baselined now, so they count from here on.
            grown = _Window(
                window.revision,
                window.started,
                {**canary_now, **window.canary},
                {**stable_now, **window.stable},
            )
            with self._lock:
                self._windows[request.uid] = grown
            return None
        judgement = canary_analysis.judge(
            canary=canary_window,
            stable=stable_window,
            analysis=request.analysis,
            outcomes=engine_profiles.get(request.canary_engine, canary_version).outcomes,
            stable_outcomes=engine_profiles.get(request.stable_engine, stable_version).outcomes,
        )
        operator_metrics.record_judgement(judgement.result)
        with self._lock:
            self._windows[request.uid] = _Window(request.revision, now, canary_now, stable_now)
        return judgement


# (engine, release) of one variant's pods.
_Release = tuple[api.Engine, str | None]


async def _scrape_both(
    canary_pods: Sequence[scraper.Endpoint],
    stable_pods: Sequence[scraper.Endpoint],
    *,
    canary: _Release,
    stable: _Release,
    timeout: float,
) -> tuple[dict[str, engine_metrics.Traffic], dict[str, engine_metrics.Traffic]]:
    # One session per measurement: nothing of it outlives this call (it runs in its own
    # event loop, in the reconcile's worker thread).
    async with scraper.session() as session:
        canary_pages, stable_pages = await asyncio.gather(
            scraper.fetch(session, canary_pods, timeout=timeout, parse=_traffic(canary)),
            scraper.fetch(session, stable_pods, timeout=timeout, parse=_traffic(stable)),
        )
    return _counters(canary_pages), _counters(stable_pages)


def _traffic(release: _Release) -> Callable[[str], engine_metrics.Traffic | None]:
    engine, version = release
    return lambda text: engine_metrics.traffic(text, engine=engine, version=version)


def _counters(
    pages: Sequence[scraper.Page[engine_metrics.Traffic | None]],
) -> dict[str, engine_metrics.Traffic]:
    """Each pod's counters; a pod that fails, is too slow or exposes none is left out."""
    return {page.pod: page.value for page in pages if page.value is not None}
