"""Observed KV-cache capacity: what the running engine allocated, against what the plan said.

Pipeline position: on the reconcile path, once the primary is rolled out on its current
template. ``autoscaling_loop.capacity_per_pod`` reads each ready pod's /metrics (only when
``due``: the set of ready pods changed since the last reading, because an engine sizes its
KV cache once, at start-up) and ``parse`` turns each page into a ``PodCapacity``;
``observe`` keeps the lowest pod against ``Plan.kvCacheTokens`` as
``status.plan.observed``; ``condition`` decides ``KVCacheCapacity``; ``correction`` is the
record the reconcile writes to the calibration ConfigMap, which ``ratios`` reads back for
the next plans of the same model, engine release and GPU product
(``planner.Request.kv_corrections``).

Pure: exposition text, plans and ConfigMap data in; numbers, conditions and records out.

vLLM publishes its capacity in the labels of an info gauge, ``vllm:cache_config_info``:
``log_metrics_info`` in vllm/v1/metrics/loggers.py (0.24.0 and 0.34.0) makes one gauge,
set to 1, labelled with ``CacheConfig.metrics_info()`` (vllm/config/cache.py: every field
of the engine's CacheConfig as ``str()``) plus ``engine``. ``PrometheusStatLogger`` is
always among the loggers (``StatLoggerManager``, same file), and its
``log_engine_initialized`` emits the gauge once the engine core is up (``AsyncLLM``,
vllm/v1/engine/async_llm.py): it is on every page unless ``--disable-log-stats``. Of its
labels (all releases engines.yaml verifies, 0.24.0 to 0.34.0):

- ``kv_cache_size_tokens``: what vLLM logs as "GPU KV cache size: N tokens"
  (``update_kv_cache_capacity``, vllm/v1/core/kv_cache_utils.py, 0.34.0; inline in
  ``get_kv_cache_configs`` in 0.24.0): ``int(max_concurrency * max_model_len)``, where
  ``get_max_concurrency_for_kv_cache_config`` divides ``num_blocks`` by the blocks one
  request of ``max_model_len`` takes in every KV-cache group. For one full-attention
  group that is ``num_blocks / cdiv(max_model_len, block_size) * max_model_len``:
  ``num_gpu_blocks x block_size`` when ``max_model_len`` is a multiple of ``block_size``,
  a little less otherwise, and less again for sliding-window or hybrid models, which is
  why the engine's own figure is read first ("group-aware capacity since num_gpu_blocks
  * block_size can be wrong for hybrid models", vllm/config/cache.py, 0.34.0).
  ``Plan.kvCacheTokens`` promises this figure.
- ``num_gpu_blocks`` and ``block_size``: the fallback when ``kv_cache_size_tokens`` is
  "None" (an attention-free model). The frontend sums ``num_gpu_blocks`` over
  data-parallel engines (``_apply_ready_response``, vllm/v1/engine/core_client.py,
  0.34.0); the operator runs one engine per pod, so the sum is that engine's.

TGI 3.3.7 publishes none: ``connect_backend`` (backends/v3/src/lib.rs) sets the gauge
``tgi_batch_max_total_tokens`` (its KV capacity: ``num_blocks * BLOCK_SIZE`` from
``warmup`` in server/text_generation_server/models/flash_causal_lm.py) before
``server::run`` installs the Prometheus recorder (``metrics::set_global_recorder`` in
``start``, router/src/server.rs; backends/v3/src/main.rs calls them in that order), so
with the ``metrics`` crate 0.23 the value goes to the no-op recorder and /metrics never
shows it; its ``/info`` has no such field either (``Info``, router/src/lib.rs). Only its
log line "Setting max batch total tokens to N" says it, and the operator reads no running
pod's log. ``KVCacheCapacity`` is Unknown ``NotAvailable`` for TGI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

# Observed at least planned x (1 - TOLERANCE) is as planned. The plan's figure is a lower
# bound of the engine's, but vLLM's own rounding (whole blocks per request, the int() of
# max_concurrency x max_model_len) can land a block or two below it.
TOLERANCE = 0.02
# A shortfall this large (observed below half the memory model's figure) is not the
# memory model's error but something else on the GPU (another process, a MIG slice, an
# engine argument): recorded as a correction, it would double the GPUs of every later plan.
MIN_CORRECTION = 0.5

# The profile's signal that names the capacity metric (data/engines.yaml, ``metrics``).
SIGNAL: engine_profiles.Signal = "kvCapacity"
# Labels of vllm:cache_config_info: fields of vLLM's CacheConfig (vllm/config/cache.py,
# 0.24.0 to 0.34.0; tests/engines/test_vllm_source.py checks them in each release).
TOKENS_LABEL = "kv_cache_size_tokens"
BLOCKS_LABEL = "num_gpu_blocks"
BLOCK_SIZE_LABEL = "block_size"

# ConfigMap data keys: [-._a-zA-Z0-9]+, at most 253 characters.
_KEY_CHARACTERS = re.compile(r"[^-._a-zA-Z0-9]")
MAX_KEY = 253
# What the calibration ConfigMap says about itself (kubectl describe shows it).
DESCRIPTION = (
    "KV-cache corrections llama-operator learnt from running pods: one key per model, "
    "engine release and GPU product, read by the next plans. Delete a key (or this "
    "ConfigMap) to forget it. docs/concepts/observed-capacity.md"
)


@dataclasses.dataclass(frozen=True)
class PodCapacity:
    """What one pod's engine allocated for its KV cache."""

    tokens: int  # KV-cache tokens per replica
    gpu_blocks: int | None
    block_size: int | None


def metric_names(engine: api.Engine, version: str | None = None) -> tuple[str, ...]:
    """The capacity metric of this engine release, current name first; () when none."""
    return engine_profiles.get(engine, version).metrics.get(SIGNAL, ())


def published(engine: api.Engine, version: str | None = None) -> bool:
    """Whether this engine release publishes its KV capacity on /metrics."""
    return bool(metric_names(engine, version))


def parse(text: str, *, engine: api.Engine, version: str | None = None) -> PodCapacity | None:
    """The pod's KV capacity, or None when its page does not carry it.

    Several series (one per data-parallel engine) give their lowest. MetricsError when the
    page is not Prometheus text (an error page must not read as "reports nothing").
    """
    names = metric_names(engine, version)
    if not names:
        return None
    found = engine_metrics.series(text, frozenset(names))
    for name in names:
        readings = [_of(labels) for labels, _ in found.get(name, [])]
        usable = [r for r in readings if r is not None]
        if usable:
            return min(usable, key=lambda r: r.tokens)
    if text.strip():
        engine_metrics.series(text)  # raises on a page that is not Prometheus text at all
    return None


def _of(labels: Mapping[str, str]) -> PodCapacity | None:
    blocks, size = _count(labels.get(BLOCKS_LABEL)), _count(labels.get(BLOCK_SIZE_LABEL))
    tokens = _count(labels.get(TOKENS_LABEL))
    if tokens is None and blocks is not None and size is not None:
        tokens = blocks * size
    if tokens is None:
        return None
    return PodCapacity(tokens=tokens, gpu_blocks=blocks, block_size=size)


def _count(text: str | None) -> int | None:
    """A positive whole number written by str(): "4096"; "None" and the like are None."""
    try:
        value = int(str(text))
    except ValueError:
        return None
    return value if value > 0 else None


def due(plan: api.Plan, *, ready: Iterable[str]) -> bool:
    """Whether the ready pods need reading: some are ready, the engine publishes its
    capacity, and they are not the pods the plan's observation was made from."""
    pods = sorted(set(ready))
    if not pods or not published(plan.engine, plan.engineVersion):
        return False
    return plan.observed is None or plan.observed.pods != pods


def observe(
    readings: Mapping[str, PodCapacity | None], *, plan: api.Plan, now: str
) -> api.ObservedCapacity:
    """The observation of the pods read (``readings``: by pod, None for a pod whose page
    carries no capacity): the lowest pod, since every replica must hold what was planned."""
    reported = [r for r in readings.values() if r is not None]
    lowest = min(reported, key=lambda r: r.tokens) if reported else None
    planned = plan.kvCacheTokens
    ratio = round(lowest.tokens / planned, 3) if lowest is not None and planned else None
    return api.ObservedCapacity(
        kvCacheTokens=lowest.tokens if lowest is not None else None,
        blockSize=lowest.block_size if lowest is not None else None,
        gpuBlocks=lowest.gpu_blocks if lowest is not None else None,
        pods=sorted(readings),
        plannedKVCacheTokens=planned,
        ratio=ratio,
        correction=_correction(lowest, plan),
        engineVersion=plan.engineVersion,
        observedAt=now,
    )


def _raw_ratio(observed: int, plan: api.Plan) -> float | None:
    """Observed over the memory model's own figure: the plan's, before the correction the
    planner applied to it (``Plan.kvCorrection``), so corrections never compound."""
    if not plan.kvCacheTokens:
        return None
    return observed / plan.kvCacheTokens * (plan.kvCorrection or 1.0)


def _correction(lowest: PodCapacity | None, plan: api.Plan) -> float | None:
    """The correction to record for a reading below the plan (outside TOLERANCE, as the
    condition says): against the memory model (never above 1), rounded down (the next plan
    stays on the safe side), and not a shortfall too large to be the memory model's."""
    if lowest is None or not plan.kvCacheTokens:
        return None
    if lowest.tokens / plan.kvCacheTokens >= 1.0 - TOLERANCE:
        return None  # as planned
    raw = _raw_ratio(lowest.tokens, plan)
    if raw is None or raw >= 1.0 or raw < MIN_CORRECTION:
        return None
    return math.floor(raw * 1000) / 1000


def condition(plan: api.Plan, *, not_recorded: str | None = None) -> conditions.Check | None:
    """``KVCacheCapacity`` for the plan and its observation; None: not known yet (no ready
    pod read since this plan was made), and the condition is removed.

    ``not_recorded``: why a correction the observation carries was not recorded (no
    calibration ConfigMap configured, engine arguments that override the plan's sizing).
    """
    if not published(plan.engine, plan.engineVersion):
        shown = engine_profiles.get(plan.engine, plan.engineVersion).displayName
        return _check(
            "Unknown",
            "NotAvailable",
            f"{shown} {plan.engineVersion or '(version unknown)'} publishes no KV-cache "
            "capacity on /metrics, so the plan's KV cache cannot be checked against the "
            "running pods (docs/concepts/observed-capacity.md)",
        )
    observed = plan.observed
    if observed is None:
        return None
    pods = f"{len(observed.pods)} ready pod(s)"
    if observed.kvCacheTokens is None:
        metric = " or ".join(metric_names(plan.engine, plan.engineVersion))
        return _check(
            "Unknown",
            "NotReported",
            f"the {pods} read report no KV-cache capacity: their /metrics has no {metric} "
            "(vLLM publishes it unless --disable-log-stats is set)",
        )
    reported = (
        f"the engine reports {observed.kvCacheTokens:,} KV-cache tokens per replica "
        f"(the lowest of {pods})"
    )
    planned = plan.kvCacheTokens
    if not planned:
        return _check(
            "Unknown",
            "NoPlannedFigure",
            f"{reported}; the plan has no kvCacheTokens to compare with (it was made by an "
            "earlier operator version); the next plan will",
        )
    ratio = observed.kvCacheTokens / planned
    if ratio >= 1.0 - TOLERANCE:
        return _check("True", "AsPlanned", f"{reported}, planned {planned:,}: ratio {ratio:.2f}")
    sequences = observed.kvCacheTokens / plan.maxModelLen
    return _check(
        "False",
        "BelowPlan",
        f"{reported}, below the planned {planned:,} (ratio {ratio:.2f}, tolerance "
        f"{TOLERANCE:.0%}): a replica holds {sequences:.1f} sequences of maxModelLen "
        f"{plan.maxModelLen} at once, not the planned {plan.maxConcurrentSequences}, so "
        f"requests queue sooner. This endpoint keeps its plan. "
        + _next(plan, observed, not_recorded),
    )


def _next(plan: api.Plan, observed: api.ObservedCapacity, not_recorded: str | None) -> str:
    """What follows from a shortfall: the correction for the next plans, or why none."""
    if observed.correction is None:
        raw = _raw_ratio(observed.kvCacheTokens or 0, plan) or 0.0
        return (
            f"No correction was recorded: observed / planned {raw:.2f} is too far below "
            "the memory model to be its error; check what else takes the GPU's memory "
            "(spec.engineArgs, another process, a MIG slice)"
        )
    if observed.recordedIn is None:
        return f"No correction was recorded: {not_recorded or 'not yet written'}"
    version = plan.engineVersion or "(version unknown)"
    return (
        f"The next plans of this model on {plan.engine} {version} and {plan.gpuProduct} "
        f"plan {observed.correction:.3f} of the memory model's KV cache (recorded in "
        f"{observed.recordedIn}). To re-plan this endpoint with it, change a planning field "
        "(spec.model, spec.engine or spec.placement); to forget it, delete the key"
    )


def _check(status: conditions.Status, reason: str, message: str) -> conditions.Check:
    return conditions.Check(conditions.KV_CACHE_CAPACITY, status, reason, message)


# --------------------------------------------------------------------------- corrections
# One data key of the calibration ConfigMap per (model, engine, release, GPU product), its
# value a small JSON object. Latest observation wins: a key is rewritten only when a new
# observation's correction differs from the one in status.


@dataclasses.dataclass(frozen=True)
class Correction:
    """One recorded correction: observed / planned KV cache before any correction."""

    model: str
    engine: str
    engine_version: str | None
    gpu_product: str
    ratio: float
    planned_tokens: int  # the plan's kvCacheTokens
    applied: float | None  # the correction that plan already carried (Plan.kvCorrection)
    observed_tokens: int
    observed_at: str
    source: str  # <namespace>/<name> of the LlamaDeployment it was observed on

    @property
    def key(self) -> str:
        return key(
            model=self.model,
            engine=self.engine,
            version=self.engine_version,
            gpu_product=self.gpu_product,
        )

    def value(self) -> str:
        """The ConfigMap value: one line of JSON, keys in a stable order."""
        return json.dumps(
            {
                "model": self.model,
                "engine": self.engine,
                "engineVersion": self.engine_version,
                "gpuProduct": self.gpu_product,
                "ratio": self.ratio,
                "plannedTokens": self.planned_tokens,
                "appliedCorrection": self.applied,
                "observedTokens": self.observed_tokens,
                "observedAt": self.observed_at,
                "from": self.source,
            }
        )


def key(*, model: str, engine: str, version: str | None, gpu_product: str) -> str:
    """The data key of one correction: ``<org>--<model>_<engine>-<release>_<GPU product>``,
    e.g. ``meta-llama--Llama-3.1-8B-Instruct_vllm-0.34.0_NVIDIA-L4`` (the release
    ``unknown`` when the image names none). The value repeats each part exactly; a key
    whose parts had characters a ConfigMap key cannot hold (or that is too long) ends in
    a hash of them, so two never share a key."""
    raw = f"{model.replace('/', '--')}_{engine}-{version or 'unknown'}_{gpu_product}"
    cleaned = _KEY_CHARACTERS.sub("-", raw)
    if cleaned == raw and len(raw) <= MAX_KEY:
        return raw
    digest = hashlib.sha256(f"{model}\0{engine}\0{version}\0{gpu_product}".encode()).hexdigest()
    return f"{cleaned[: MAX_KEY - 9]}_{digest[:8]}"


def correction(plan: api.Plan, *, model: str, source: str) -> Correction | None:
    """The record of the plan's observation, when it carries a correction."""
    observed = plan.observed
    if observed is None or observed.correction is None or observed.kvCacheTokens is None:
        return None
    if not plan.kvCacheTokens:
        return None
    return Correction(
        model=model,
        engine=plan.engine,
        engine_version=plan.engineVersion,
        gpu_product=plan.gpuProduct,
        ratio=observed.correction,
        planned_tokens=plan.kvCacheTokens,
        applied=plan.kvCorrection,
        observed_tokens=observed.kvCacheTokens,
        observed_at=observed.observedAt,
        source=source,
    )


def already_recorded(
    before: api.ObservedCapacity | None, after: api.ObservedCapacity
) -> str | None:
    """Where ``after``'s correction already is (the observation it replaces recorded the
    same one), or None: the ConfigMap is written only when a correction changes."""
    if before is None or before.recordedIn is None or after.correction is None:
        return None
    return before.recordedIn if before.correction == after.correction else None


def recorded_in(namespace: str, config_map: str, record: Correction) -> str:
    return f"{namespace}/{config_map}, key {record.key}"


def records(data: Mapping[str, Any] | None) -> dict[str, Correction]:
    """The corrections of a calibration ConfigMap's data, by key; values that are not a
    correction (edited by hand, from another version) are skipped."""
    found: dict[str, Correction] = {}
    for data_key, text in (data or {}).items():
        try:
            value = json.loads(str(text))
            record = Correction(
                model=str(value["model"]),
                engine=str(value["engine"]),
                engine_version=(
                    str(value["engineVersion"]) if value.get("engineVersion") else None
                ),
                gpu_product=str(value["gpuProduct"]),
                ratio=float(value["ratio"]),
                planned_tokens=int(value.get("plannedTokens") or 0),
                applied=(
                    float(value["appliedCorrection"])
                    if value.get("appliedCorrection") is not None
                    else None
                ),
                observed_tokens=int(value.get("observedTokens") or 0),
                observed_at=str(value.get("observedAt") or ""),
                source=str(value.get("from") or ""),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if math.isfinite(record.ratio):
            found[str(data_key)] = record
    return found


def ratios(
    found: Mapping[str, Correction],
    *,
    model: str,
    engine: str,
    version: str | None,
    gpu_products: Sequence[str],
) -> dict[str, float]:
    """The corrections for a request, by GPU product (``planner.Request.kv_corrections``):
    only ratios below 1 (a correction never plans above the memory model) and not below
    MIN_CORRECTION (a hand-edited value cannot multiply the GPUs of a plan)."""
    result: dict[str, float] = {}
    for product in gpu_products:
        record = found.get(key(model=model, engine=engine, version=version, gpu_product=product))
        if record is not None and MIN_CORRECTION <= record.ratio < 1.0:
            result[product] = record.ratio
    return result


def config_map(*, namespace: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    """The calibration ConfigMap with ``data``, as the operator creates it (server-side
    apply) when it does not exist yet; later corrections are merged into it key by key."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "llama-operator",
                "app.kubernetes.io/component": "calibration",
            },
            "annotations": {"llamaops.dev/description": DESCRIPTION},
        },
        "data": dict(data),
    }
