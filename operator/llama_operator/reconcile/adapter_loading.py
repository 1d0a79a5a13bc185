"""The adapter-loading phase: with runtime updates, the running pods get the plan's
adapters without a restart, and status says which pods have them.

After converge, on every reconcile whose plan loads adapters at runtime
(``plan.lora.runtime``: spec.adapterUpdates.mode Runtime on vLLM): the variants in
traffic that load at runtime (the primary, and a canary while it takes traffic) are
handed to ``Readers.adapter_load`` (``runtime.adapter_loader``) with what their pods
should hold; it lists each ready pod's adapters, loads, reloads and unloads
(``operations.adapter_loading.changes``) and answers each pod's state, which
``adapter_loading.summary`` turns into ``status.adapters[].loadedPods`` and
``AdaptersReady``. Nothing here is a Kubernetes write: the pods' templates never change
for an adapter, and a failed call is retried on the next reconcile (the resync).

Without runtime updates, or without the reader (the offline CLI, tests), the phase does
nothing: status.adapters and AdaptersReady are the decision's (``operations.adapters``).
"""

from __future__ import annotations

import dataclasses

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import adapter_loading
from llama_operator.reconcile import desired_state, inputs, observe, rollout_step
from llama_operator.serving import builders


@dataclasses.dataclass(frozen=True)
class Loading:
    """The phase's result: status.adapters with loadedPods and the AdaptersReady it
    decides; None: the decision's stand."""

    statuses: tuple[api.AdapterStatus, ...] | None = None
    check: conditions.Check | None = None


NOTHING = Loading()
# AdaptersReady's reason while a change is on its way (no Warning Event for it).
LOADING = adapter_loading.LOADING


def load_adapters(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    step: rollout_step.Step,
    running: api.Plan | None,
    readers: inputs.Readers,
) -> Loading:
    """Bring the ready pods of the variants that load at runtime to the plan's adapters.

    ``running``: the plan the primary's pods run (status' plan: the stable one while a
    canary holds the primary); the canary, in traffic, runs the wanted plan. While a canary
    tries a new version of an adapter, the primary's pods keep the version they run.
    """
    plan = wanted.plan
    load = readers.adapter_load
    if load is None or plan.lora is None or not plan.lora.runtime:
        return NOTHING
    primary = running if running is not None else plan
    variants = [(builders.PRIMARY, primary)]
    decision = step.decision
    if decision is not None and decision.mode == "canary":
        variants.append((builders.CANARY, plan))
    # A variant whose pods took their adapters at start (a primary still on a template of
    # mode Rollout while the switch to Runtime is canaried) is left alone: its engine has
    # no load/unload endpoint, and its template says what it serves.
    variants = [(v, on) for v, on in variants if on.lora is not None and on.lora.runtime]
    if not variants:
        return NOTHING
    held = {variant: adapter_loading.held_by(plan.adapters, running=on) for variant, on in variants}
    pods = load(
        inputs.AdapterLoadRequest(
            namespace=seen.meta.namespace,
            name=seen.meta.name,
            engine=plan.engine,
            engine_version=plan.engineVersion,
            variants=tuple((variant, held[variant]) for variant, _ in variants),
            api_key=wanted.spec.auth.apiKeySecretRef,
        )
    )
    if pods is None:
        return NOTHING
    statuses, check = adapter_loading.summary(
        [entry.status for entry in wanted.adapter_decisions.each],
        wanted=plan.adapters,
        pods=pods,
        held=held,
    )
    return Loading(statuses=tuple(statuses), check=check)
