"""Reading the engines' own Prometheus metrics: one number per pod for the autoscaler,
and each pod's finished requests and latency histograms for the canary analysis.

Pure: exposition text in, a float or a ``Traffic`` (or None) out. Parsing is
``prometheus_client``'s parser; the metric names come from the engine release's profile
(``planning.engine_profiles``, ``data/engines.yaml``), current name first and older
names after it, because engines rename metrics between releases (vLLM's
``gpu_cache_usage_perc`` became ``kv_cache_usage_perc``) and a renamed metric must not
silently read as an idle pod.

Signals (``api.Autoscaling.metric``):
- ``queue``: requests waiting, summed over the engine's series (vLLM labels them per
  model and engine core).
- ``inflight``: waiting plus running requests; both must be present.
- ``kvCache``: the fraction of the KV cache in use (vLLM only); the highest series.
A signal the text does not carry is None: the caller treats the pod as not scraped,
never as idle.

Traffic (``traffic``, for ``operations.canary_analysis``): finished requests, those that
did not end normally by the engine's own kind, and the end-to-end and
time-to-first-token histograms, and the tokens generated (for ``operations.slo``), all
cumulative as exposed; the analysis subtracts two
scrapes and decides which kinds are failures. vLLM counts every finished request in one
counter labelled ``finished_reason`` (stop, length, abort, error, repetition); TGI has a
success counter and a failure counter labelled ``err`` (validation, overloaded,
generation, ...). The profile's ``outcomes`` name the label and the normal kinds. A page
without any finished-request counter is None, like a missing signal.

Adapters (``Traffic.adapters``, for ``operations.slo``): which LoRA adapters had running
and waiting requests when the page was made, from the profile's ``lora.activity`` (vLLM's
``vllm:lora_requests_info``). It is the only per-adapter metric an engine has: no vLLM
(0.24.0 to 0.34.0, vllm/v1/metrics/loggers.py) request, latency or error metric carries an
adapter's name, and TGI 3.3.7 exports nothing per adapter.

``series`` gives any family's samples with their labels, for readers whose numbers sit
in labels (``operations.capacity``: vLLM's ``vllm:cache_config_info``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from llama_operator import api
from llama_operator.planning import engine_profiles

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


def read(
    text: str, *, engine: api.Engine, signal: Signal, version: str | None = None
) -> tuple[float | None, float | None]:
    """(the pod's value of ``signal``, the requests it runs now), parsing the page once.

    ``version``: the engine release the pod runs (``Plan.engineVersion``), whose profile
    names the metrics; None: the engine's default release.
    """
    names = engine_profiles.get(engine, version).metrics
    wanted = frozenset((*names["queue"], *names["inflight"], *names["kvCache"]))
    found = samples(text, wanted)
    running = _first(found, names["inflight"])
    return _value(found, names, signal), (sum(running) if running is not None else None)


def value(
    text: str, *, engine: api.Engine, signal: Signal, version: str | None = None
) -> float | None:
    """The pod's value of ``signal``, or None when its metrics do not carry it."""
    return read(text, engine=engine, signal=signal, version=version)[0]


def _value(
    found: Mapping[str, list[float]],
    names: Mapping[engine_profiles.Signal, tuple[str, ...]],
    signal: Signal,
) -> float | None:
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


# --------------------------------------------------------------------------- traffic
# What a canary analysis reads: finished requests, how those that did not end normally
# ended, and latency histograms. All cumulative, as exposed; ``canary_analysis`` turns two
# scrapes into the window between them, and decides which kinds count as failed.

# The kind of a TGI tgi_request_failure series without its err label. No profile knows
# it, so the analysis counts it as failed (as it counts any kind it does not know).
UNKNOWN = "unknown"

# Requests that did not end normally, by kind: (kind, cumulative count), sorted by kind.
# A tuple, not a dict, so that ``Traffic`` stays hashable.
Kinds = tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class Histogram:
    """A cumulative histogram summed over a pod's series.

    ``buckets``: (upper bound, cumulative count), ascending, the last bound math.inf.
    """

    buckets: tuple[tuple[float, float], ...]

    @property
    def count(self) -> float:
        """The +Inf bucket's count: every observation (0.0 when empty)."""
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclasses.dataclass(frozen=True)
class Adapters:
    """The LoRA adapters with requests in one pod when its page was made (names as the
    engine knows them: spec.adapters[].name)."""

    running: tuple[str, ...]  # adapters with running requests (each holds a GPU slot)
    waiting: tuple[str, ...]  # adapters with requests waiting


@dataclasses.dataclass(frozen=True)
class Traffic:
    """One pod's finished-request counters and latency histograms (cumulative, as exposed)."""

    requests: float  # finished requests, summed over series, however they ended
    # The finished requests that did not end normally, by the engine's own kind (vLLM's
    # finished_reason, TGI's err label; see the profile's ``outcomes``). Every kind the
    # page shows is here, at 0 too; which count as failed is the analysis' business.
    outcomes: Kinds
    latency: Histogram | None  # end-to-end latency (the profile's "e2eLatency" metric)
    ttft: Histogram | None  # time to first token ("timeToFirstToken")
    # Tokens generated over the pod's life ("generatedTokens": vLLM's counter, TGI's
    # histogram sum); None when the page has none (TGI before its first success).
    tokens: float | None = None
    # The adapters with requests now (the profile's ``lora.activity``); None when the
    # engine release exports no such metric or the page has no series of it.
    adapters: Adapters | None = None

    def outcome(self, kind: str) -> float:
        """The requests that ended as ``kind`` (0.0 when the page has no such series)."""
        return dict(self.outcomes).get(kind, 0.0)


def kinds(counts: Mapping[str, float]) -> Kinds:
    """``counts`` in ``Traffic.outcomes`` form: sorted by kind."""
    return tuple(sorted(counts.items()))


def traffic(text: str, *, engine: api.Engine, version: str | None = None) -> Traffic | None:
    """One pod's traffic counters, by the metric names of the engine release's profile.

    None when the page has no finished-request counter at all; MetricsError when it is
    not Prometheus text.
    """
    profile = engine_profiles.get(engine, version)
    names, outcomes = profile.metrics, profile.outcomes
    counters = (*names["finished"], *names["failed"], *names["generatedTokens"])
    histograms = (*names["e2eLatency"], *names["timeToFirstToken"])
    wanted = {name for counter in counters for name in _counter_names(counter)}
    wanted.update(name for histogram in histograms for name in (histogram, f"{histogram}_bucket"))
    activity = profile.lora.activity
    if activity is not None:
        wanted.add(activity.metric)
    found = _labelled(_select(text, frozenset(wanted)))
    finished = _first_counter(found, names["finished"])
    failed = _first_counter(found, names["failed"])
    if finished is None and failed is None:
        if text.strip():
            # Parse it all once: an HTML error page or a proxy's answer must read as a
            # broken scrape, not as a pod that has simply not finished any request yet.
            _labelled(text)
        return None
    requests = 0.0
    counts: dict[str, float] = {}
    # vLLM counts every finished request in one counter, labelled with how it ended; TGI
    # counts successes in one (no label) and failures in another, labelled with the kind.
    # A finished-counter series without the label ended normally: the counter is named
    # "success", and a missing label is not a reason.
    for labels, value in finished or []:
        requests += value
        kind = labels.get(outcomes.label) or None
        if kind is not None and kind not in outcomes.normal:
            counts[kind] = counts.get(kind, 0.0) + value
    # A failure-counter series always counts as a failure of some kind, "unknown" when
    # it carries no label.
    for labels, value in failed or []:
        requests += value
        kind = labels.get(outcomes.label) or UNKNOWN
        counts[kind] = counts.get(kind, 0.0) + value
    generated = _first_counter(found, names["generatedTokens"])
    return Traffic(
        requests=requests,
        outcomes=kinds(counts),
        latency=_first_histogram(found, names["e2eLatency"]),
        ttft=_first_histogram(found, names["timeToFirstToken"]),
        tokens=sum(value for _, value in generated) if generated is not None else None,
        adapters=None if activity is None else _adapters(found.get(activity.metric), activity),
    )


def _adapters(found: _Series | None, activity: engine_profiles.LoraActivity) -> Adapters | None:
    """The adapters of the newest series of the activity gauge; None without a series.

    vLLM sets vllm:lora_requests_info to the current time (set_to_current_time) with the
    adapters as comma-joined labels, "" for none (vllm/v1/metrics/loggers.py, 0.24.0 to
    0.34.0); prometheus_client keeps exporting every label set it was ever set with, so
    the series with the largest value is the current one (on a tie, the first listed).
    """
    if not found:
        return None
    labels, _ = max(found, key=lambda sample: sample[1])
    return Adapters(
        running=_names(labels.get(activity.runningLabel, "")),
        waiting=_names(labels.get(activity.waitingLabel, "")),
    )


def _names(joined: str) -> tuple[str, ...]:
    """The adapters of one label: vLLM joins their names with "," (loggers.py, 0.34.0)."""
    return tuple(name for name in joined.split(",") if name)


def merge(histograms: Iterable[Histogram]) -> Histogram | None:
    """The sum of cumulative histograms (series of one pod, or pods of one variant).

    Equal layouts add bucket by bucket. Different layouts (two engine versions) are added
    on the union of their bounds, each histogram counting at a bound what it has at its
    largest bound not above it: still cumulative, never more than was observed below the
    bound. None when there is nothing to add.
    """
    layouts = [h.buckets for h in histograms if h.buckets]
    if not layouts:
        return None
    bounds = sorted({bound for buckets in layouts for bound, _ in buckets})
    totals = [0.0] * len(bounds)
    for buckets in layouts:
        position, below = 0, 0.0
        for index, bound in enumerate(bounds):
            while position < len(buckets) and buckets[position][0] <= bound:
                below = buckets[position][1]
                position += 1
            totals[index] += below
    return Histogram(buckets=tuple(zip(bounds, totals, strict=True)))


_Series = list[tuple[dict[str, str], float]]


def series(text: str, names: frozenset[str] | None = None) -> dict[str, _Series]:
    """Every sample as (labels, value), by sample name; ``names``: parse only the lines of
    these metric names (as ``samples`` does). MetricsError when it is not Prometheus text."""
    return _labelled(text if names is None else _select(text, names))


def _labelled(text: str) -> dict[str, _Series]:
    """Every sample as (labels, value), by sample name."""
    found: dict[str, _Series] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsError(f"not Prometheus exposition text: {exc}") from exc
    return found


def _counter_names(name: str) -> tuple[str, str]:
    """The sample names a counter can have on the page and after parsing.

    prometheus_client's parser names a counter's samples ``<family>_total`` when its TYPE
    line is there (TGI's ``tgi_request_success`` reads as ``tgi_request_success_total``),
    and as written when it is not; vLLM already exposes the ``_total`` name.
    """
    base = name.removesuffix("_total")
    return base, f"{base}_total"


def _first_counter(found: Mapping[str, _Series], names: Iterable[str]) -> _Series | None:
    for name in names:
        series = [s for sample in _counter_names(name) for s in found.get(sample, [])]
        if series:
            return series
    return None


def _first_histogram(found: Mapping[str, _Series], names: Iterable[str]) -> Histogram | None:
    for name in names:
        series = found.get(f"{name}_bucket")
        if series:
            return _histogram(series)
    return None


def _histogram(series: _Series) -> Histogram | None:
    """Bucket samples of any number of label series, summed per series layout."""
    by_series: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
    for labels, value in series:
        if "le" not in labels:
            continue
        try:
            bound = float(labels["le"])
        except ValueError as exc:
            raise MetricsError(f"bucket bound le={labels['le']!r} is not a number") from exc
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        by_series.setdefault(key, {})[bound] = value
    # A series without its +Inf bucket has no total: Prometheus itself gives no quantile
    # for it, so neither is it counted here.
    complete = [
        Histogram(buckets=tuple(sorted(buckets.items())))
        for buckets in by_series.values()
        if math.inf in buckets
    ]
    return merge(complete)
