"""The one HTTP reader of the engines' /metrics pages: every pod at once, each bounded.

Every reader of the serving pods' numbers goes through here: the built-in autoscaler's
tick and the failover's queue read (``runtime.autoscaling_loop.scrape``,
``runtime.autoscaling_loop.queue_per_pod``), the KV cache each engine allocated
(``runtime.autoscaling_loop.capacity_per_pod``) and the canary analysis
(``runtime.canary_probe``). A caller says which pods (``Endpoint``: the pod's name and the
URL of its page), how long each may take and how to read a page (a
``serving.engine_metrics`` or ``operations.capacity`` parser, text in); it gets one
``Page`` per pod, in the order given: the parser's answer, or why the pod could not be
read. What a failed pod means (not scraped, left out) is the caller's to decide; nothing
is logged here.

A pod could not be read when it does not answer within the timeout, the connection
fails, it answers anything but 200, its page is not text, or the parser finds no
Prometheus exposition text (``engine_metrics.MetricsError``). All GETs of a call run
concurrently, each under its own timeout, so one slow pod costs at most that timeout and
never holds up the others; the response is released before its page is parsed.

Where it sits: an I/O client like ``k8s`` and ``hub``, above the pure parsers
(``serving.engine_metrics``, ``operations.capacity``) and below its callers
(``runtime.autoscaling_loop``, ``runtime.canary_probe``, and ``runtime.handlers``, whose
autoscaler daemon opens a ``session`` per tick).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import aiohttp

from llama_operator.serving import engine_metrics

_T = TypeVar("_T")

# Why a pod could not be read: nothing else a GET or a parser raises is caught here.
_FAILURES = (aiohttp.ClientError, TimeoutError, engine_metrics.MetricsError, UnicodeError)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A ready pod and the URL of its /metrics page."""

    pod: str
    url: str


@dataclasses.dataclass(frozen=True)
class Page(Generic[_T]):
    """One pod's scrape: the parser's answer, or (``failure``) why there is none."""

    pod: str
    value: _T | None = None  # None when the pod failed (or when the parser said None)
    failure: str | None = None

    @property
    def read(self) -> bool:
        return self.failure is None


def session() -> aiohttp.ClientSession:
    """A session for scrapes, to open in the event loop that uses it (``async with``).

    No connection limit: every ready pod is scraped at once (aiohttp's default pool of
    100 would queue the rest while their timeouts run)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def fetch(
    session: aiohttp.ClientSession,
    endpoints: Sequence[Endpoint],
    *,
    timeout: float,
    parse: Callable[[str], _T],
) -> list[Page[_T]]:
    """Every pod's page, read by ``parse``, concurrently; one ``Page`` per endpoint."""

    async def one(endpoint: Endpoint) -> Page[_T]:
        try:
            async with session.get(
                endpoint.url, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                if response.status != 200:
                    return Page(endpoint.pod, failure=f"HTTP {response.status}")
                text = await response.text()
            return Page(endpoint.pod, parse(text))
        except _FAILURES as exc:
            return Page(endpoint.pod, failure=reason(exc, timeout=timeout))

    return list(await asyncio.gather(*(one(e) for e in endpoints)))


def fetch_blocking(
    endpoints: Sequence[Endpoint], *, timeout: float, parse: Callable[[str], _T]
) -> list[Page[_T]]:
    """``fetch`` with a session of its own, in an event loop of its own: for a
    reconcile's worker thread. Nothing of either outlives the call."""

    async def run() -> list[Page[_T]]:
        async with session() as opened:
            return await fetch(opened, endpoints, timeout=timeout, parse=parse)

    return asyncio.run(run())


def reason(exc: BaseException, *, timeout: float) -> str:
    """Why a request to a pod failed, for status and logs (``engine_admin`` too)."""
    # aiohttp's timeouts are TimeoutErrors with no message: say what ran out.
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"
