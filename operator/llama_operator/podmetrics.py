"""Reading the engines' own Prometheus metrics: one number per pod for the autoscaler.

Pure: exposition text in, a float (or None) out. Parsing is ``prometheus_client``'s
parser; the metric names per engine come from ``engines.METRICS``, current name first
and older names after it, because engines rename metrics between releases (vLLM's
``gpu_cache_usage_perc`` became ``kv_cache_usage_perc``) and a renamed metric must
not silently read as an idle pod.

Signals (``api.Autoscaling.metric``):
- ``queue``: requests waiting, summed over the engine's series (vLLM labels them per
  model and engine core).
- ``inflight``: waiting plus running requests; both must be present.
- ``kvCache``: the fraction of the KV cache in use (vLLM only); the highest series.
A signal the text does not carry is None: the caller treats the pod as not scraped,
never as idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from llama_operator import api, engines

Signal = Literal["queue", "inflight", "kvCache"]


class MetricsError(ValueError):
    """The text is not Prometheus exposition format."""


def samples(text: str) -> dict[str, list[float]]:
    """Every sample value by sample name (``_total`` and the like kept as exposed)."""
    found: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append(float(sample.value))
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsError(f"not Prometheus exposition text: {exc}") from exc
    return found


def _first(found: Mapping[str, list[float]], names: Iterable[str]) -> list[float] | None:
    for name in names:
        if name in found:
            return found[name]
    return None


def value(text: str, *, engine: api.Engine, signal: Signal) -> float | None:
    """The pod's value of ``signal``, or None when its metrics do not carry it."""
    found = samples(text)
    names = engines.METRICS[engine]
    if signal == "kvCache":
        usage = _first(found, names["kvCache"])
        return max(usage) if usage else None
    waiting = _first(found, names["queue"])
    if waiting is None:
        return None
    if signal == "queue":
        return sum(waiting)
    running = _first(found, names["inflight"])
    return None if running is None else sum(waiting) + sum(running)


def running(text: str, *, engine: api.Engine) -> float | None:
    """Requests the pod runs now (the queue metric's floor), or None when not exposed."""
    found = _first(samples(text), engines.METRICS[engine]["inflight"])
    return sum(found) if found is not None else None
