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


def samples(text: str, only: frozenset[str] | None = None) -> dict[str, list[float]]:
    """Every sample value by sample name (``_total`` and the like kept as exposed).

    ``only``: parse just the lines of these metric names. An engine's page carries dozens
    of histograms; the autoscaler needs two gauges, and parsing is most of a scrape's CPU.
    """
    found: dict[str, list[float]] = {}
    if only is not None:
        text = _select(text, only)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append(float(sample.value))
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsError(f"not Prometheus exposition text: {exc}") from exc
    return found


def _select(text: str, names: frozenset[str]) -> str:
    """The lines of ``text`` that belong to ``names`` (samples, HELP and TYPE)."""
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(maxsplit=3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2] in names:
                kept.append(line)
            continue
        end = len(line)
        for stop in ("{", " "):
            index = line.find(stop)
            if index != -1:
                end = min(end, index)
        if line[:end] in names:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _first(found: Mapping[str, list[float]], names: Iterable[str]) -> list[float] | None:
    for name in names:
        if name in found:
            return found[name]
    return None


def read(text: str, *, engine: api.Engine, signal: Signal) -> tuple[float | None, float | None]:
    """(the pod's value of ``signal``, the requests it runs now), parsing the page once."""
    names = engines.METRICS[engine]
    wanted = frozenset((*names["queue"], *names["inflight"], *names["kvCache"]))
    found = samples(text, wanted)
    running = _first(found, names["inflight"])
    return _value(found, engine, signal), (sum(running) if running is not None else None)


def value(text: str, *, engine: api.Engine, signal: Signal) -> float | None:
    """The pod's value of ``signal``, or None when its metrics do not carry it."""
    return read(text, engine=engine, signal=signal)[0]


def _value(found: Mapping[str, list[float]], engine: api.Engine, signal: Signal) -> float | None:
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
