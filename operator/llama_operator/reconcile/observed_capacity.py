"""The observed-capacity step: what the primary's engines allocated, against its plan.

After the converge phase, for the plan status shows (not while a canary or a closed gate
keeps the stable one there). The primary's ready pods are read (``Readers.kv_capacity``)
only once the primary runs its current template on every pod (a rolling update's old
pods were sized by another plan) and the set of ready pods changed since the last
reading. The reading goes into ``status.plan.observed`` and the KVCacheCapacity
condition; a shortfall becomes a correction for the next plans of the same model, engine
release and GPU product, written by ``converge.record_correction`` only when it differs
from the one the last reading recorded. See docs/concepts/observed-capacity.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import capacity
from llama_operator.planning import config
from llama_operator.reconcile import desired_state, inputs, observe, serving_gates, status


@dataclasses.dataclass(frozen=True)
class Capacity:
    """The observed-capacity step's result."""

    plan: api.Plan | None  # the plan status shows, with what its pods report
    check: conditions.Check | None  # KVCacheCapacity; None with known: remove it
    known: bool  # False: KVCacheCapacity stays as it is (no plan shown this time)
    correction: capacity.Correction | None = None  # to record in the calibration ConfigMap


def observe_plan(
    plan: api.Plan | None,
    *,
    wanted: desired_state.Desired,
    gate: serving_gates.Gate,
    primary: Mapping[str, Any] | None,
    readers: inputs.Readers,
    settings: config.OperatorConfig,
    meta: observe.Meta,
    now: str,
) -> Capacity:
    """The plan with what its pods report (``plan.observed``), and ``KVCacheCapacity``.

    The pods are read only once the primary runs this template on every pod (a rolling
    update's old pods were sized by another plan) and the set of ready pods changed since
    the last reading; a correction is recorded only when it differs from the one the last
    reading recorded."""
    if plan is None:
        return Capacity(plan=None, check=None, known=False)
    before = plan.observed
    observed = before
    read = readers.kv_capacity
    if read is not None and _rolled_out(primary):
        readings = read(meta.namespace, meta.name, plan)
        if readings:  # every pod failed to answer: keep what was known
            observed = capacity.observe(readings, plan=plan, now=now)
    unrecorded = _not_recorded(settings, gate)
    correction = None
    if observed is not None and observed is not before:
        where = capacity.already_recorded(before, observed)
        record = capacity.correction(
            plan.model_copy(update={"observed": observed}),
            model=wanted.spec.model.id,
            source=f"{meta.namespace}/{meta.name}",
        )
        home = settings.calibration.namespace  # None: _not_recorded says why
        if where is None and unrecorded is None and record is not None and home is not None:
            correction = record
            where = capacity.recorded_in(home, settings.calibration.configMap, record)
        observed = observed.model_copy(update={"recordedIn": where})
    plan = plan.model_copy(update={"observed": observed})
    return Capacity(
        plan=plan,
        check=capacity.condition(plan, not_recorded=unrecorded),
        known=True,
        correction=correction,
    )


def _rolled_out(deployment: Mapping[str, Any] | None) -> bool:
    """Every pod of the primary runs its current template, and one is ready."""
    c = status.counts(deployment)
    return deployment is not None and c.current and c.ready > 0 and c.updated >= c.replicas


def _not_recorded(settings: config.OperatorConfig, gate: serving_gates.Gate) -> str | None:
    """Why a shortfall would not be recorded as a correction, or None."""
    if settings.calibration.namespace is None:
        return (
            "the operator config names no calibration namespace (calibration.namespace; "
            "the Helm chart sets it to the operator's)"
        )
    args = next((c for c in gate.checks if c.type == conditions.ENGINE_ARGS), None)
    if args is not None and args.status == "False":
        return (
            "spec.engineArgs override the plan's sizing (the EngineArgs condition), so the "
            "shortfall says nothing about the memory model"
        )
    return None
