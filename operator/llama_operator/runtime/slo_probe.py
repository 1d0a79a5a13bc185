"""The live serving window: scrape the primary's ready pods when due, keep the window's
scrapes in memory.

A reconcile asks for the window (``reconcile.inputs.ServingRead``) on every run;
``Keeper.read`` answers None unless a scrape is due (``slo.due``: a fifth of
``spec.slo.window``, at least ``floor``, the operator's resync), and otherwise:

1. the ready pods of ``<name>-primary`` come from their EndpointSlices (the Kopf index the
   autoscaler and the canary probe use, so no API request);
2. every pod's page is scraped concurrently, each with its own timeout
   (``clients.scraper``), and read with ``engine_metrics.traffic`` by the metric names of
   the plan's engine release; a pod that cannot be read is left out of this scrape;
3. the scrape is added to the object's history, trimmed to the window (``slo.keep``),
   which is returned for ``operations.slo`` to measure.

Never raises: a failed scrape is a scrape without that pod, and anything unexpected is
logged and answered as "not due", so it can never fail a reconcile. The history lives in
memory only: after an operator restart the window starts anew.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from llama_operator.clients import scraper
from llama_operator.operations import slo
from llama_operator.reconcile import inputs
from llama_operator.runtime import autoscaling_loop
from llama_operator.serving import engine_metrics

# (namespace, Service name) -> the EndpointSlices of that Service.
Slices = Callable[[str, str], Iterable[Mapping[str, Any]]]

logger = logging.getLogger(__name__)


class Keeper:
    """Per-LlamaDeployment windows of scrapes, shared by every reconcile of the process."""

    def __init__(
        self, slices: Slices, *, floor: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._slices = slices
        self._floor = floor
        self._clock = clock
        self._histories: dict[str, tuple[slo.Scrape, ...]] = {}
        self._lock = threading.Lock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._histories.pop(uid, None)

    def read(self, request: inputs.ServingRequest) -> Sequence[slo.Scrape] | None:
        """The window's scrapes, the newest taken now; None when no scrape is due."""
        try:
            return self._read(request)
        except Exception:  # a reading must never fail a reconcile: logged, not raised
            logger.exception("reading the serving pods of %s/%s", request.namespace, request.name)
            return None

    def _read(self, request: inputs.ServingRequest) -> Sequence[slo.Scrape] | None:
        now = self._clock()
        with self._lock:
            history = self._histories.get(request.uid, ())
        every = slo.interval(request.window, floor=self._floor)
        if not slo.due(history, now=now, every=every):
            return None
        pods = autoscaling_loop.ready_endpoints(
            self._slices(request.namespace, f"{request.name}-primary")
        )
        pages = scraper.fetch_blocking(
            pods,
            timeout=autoscaling_loop.timeout_for(every),
            parse=lambda text: engine_metrics.traffic(
                text, engine=request.engine, version=request.engine_version
            ),
        )
        read = {page.pod: page.value for page in pages if page.value is not None}
        kept = slo.keep(history, slo.Scrape(at=now, pods=read), window=request.window)
        with self._lock:
            self._histories[request.uid] = kept
        return kept
