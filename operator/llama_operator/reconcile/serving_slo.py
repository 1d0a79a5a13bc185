"""The serving phase: the primary's live figures (``status.serving``) and, with
``spec.slo``, the ``SLOMet`` condition.

After the capacity phase, on every reconcile with a plan: ``Readers.serving`` (the
runtime's window keeper, ``runtime.slo_probe``) scrapes the primary's ready pods when a
scrape is due (a fifth of the window, never more often than the resync) and answers with
the window's scrapes; ``operations.slo`` turns them into figures, status and a verdict.
Between scrapes (and without a reader) status.serving and SLOMet stay as they are. The
canary's pods are left out: while it takes traffic its own analysis judges it
(status.rollout.analysis), and the figures describe the stable primary.

The window lives in this process' memory only: after an operator restart it starts anew
(the first scrape is its baseline). See docs/concepts/slo.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import slo
from llama_operator.planning import engine_profiles
from llama_operator.reconcile import desired_state, inputs, observe, status


@dataclasses.dataclass(frozen=True)
class Serving:
    """The serving phase's result."""

    status: Mapping[str, Any] | None  # status.serving, when known
    known: bool  # False: status.serving (and SLOMet, when spec.slo is set) stay as they are
    check: conditions.Check | None = None  # SLOMet, with spec.slo and a fresh reading
    removed: tuple[str, ...] = ()  # SLOMet without spec.slo


def observe_serving(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    plan: api.Plan | None,
    primary: Mapping[str, Any] | None,
    readers: inputs.Readers,
    now: str,
) -> Serving:
    """The live figures of the primary running ``plan`` (the plan status shows; the stable
    one while a canary holds the primary), when a scrape is due."""
    objectives = wanted.spec.slo
    removed = () if objectives is not None else (conditions.SLO_MET,)
    running = plan if plan is not None else seen.previous.plan
    read = readers.serving
    if read is None or running is None:
        return Serving(status=None, known=False, removed=removed)
    window = api.parse_duration(objectives.window if objectives is not None else api.DEFAULT_WINDOW)
    history = read(
        inputs.ServingRequest(
            namespace=seen.meta.namespace,
            name=seen.meta.name,
            uid=seen.meta.uid,
            engine=running.engine,
            engine_version=running.engineVersion,
            window=window,
        )
    )
    if history is None:
        return Serving(status=None, known=False, removed=removed)
    pods = len(history[-1].pods) if history else 0
    figures = slo.measure(
        history,
        outcomes=engine_profiles.get(running.engine, running.engineVersion).outcomes,
        ready=status.counts(primary).ready,
        cost_per_hour=running.costPerHour,
    )
    newest = history[-1].pods if history else None
    shown = slo.serving_status(figures, pods=pods, now=now, newest=newest)
    check = slo.verdict(figures, slo=objectives, pods=pods) if objectives is not None else None
    return Serving(
        status=shown.model_dump(mode="json", exclude_none=True),
        known=True,
        check=check,
        removed=removed,
    )
