"""One reconcile of one LlamaDeployment: decide, apply what changed, report.

The pipeline of architecture.md in one place, as named phases, each a module of this
package that returns a frozen result the later phases read and none changes::

    observe       the object (spec parsed once, status read into the API's status
                  models once), the GPU pools, the primary Deployment and its health
    plan          re-planning, model facts (spec > catalog > Hub), GPU pools, the plan,
                  the licence (spec > Hub card and its base models > catalog > name),
                  the newest spec's children                      (desired_state)
    gate          licence, gated access, API key, engine args     (serving_gates)
    rollout step  a canary rollout's move, when the gates are open (rollout_step)
    fallbacks     each fallback planned and gated; where traffic goes (fallbacks)
    render        every child for the rollout mode and the failover (render)
    apply         server-side apply of what changed                (apply)
    converge      the held primary's replicas, deletions           (converge)
    capacity      what the primary's engines allocated; a correction recorded
                                                    (observed_capacity, converge)
    serving       the primary's live figures over the SLO window, SLOMet (serving_slo)
    adapters      with runtime updates, the running pods' adapters loaded and unloaded
                  (adapter_loading; the engines' endpoints, not the API)
    report        ``.status`` (``status.compute``) and Events      (report)

Decisions are delegated to pure modules (``operations``, ``planning``, ``serving``); the
only I/O is through the injected cluster (``inputs.Cluster``: every API write is in the
apply and converge phases) and readers (``inputs.Readers``: the Hub, Secrets, the pods'
metrics, the engines' adapter endpoints). A reconcile that raises ends in
``errors.failed`` instead of the report.

A spec that cannot be planned never touches the children: whatever was serving
keeps serving, and the ``Planned`` condition names the field to fix. A closed gate
(licence not accepted, no access to a gated model) holds back the serving
Deployments only: nothing that serves is torn down or changed, and the licence
ConfigMap and Services are still applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator.planning import config
from llama_operator.reconcile import (
    adapter_loading,
    apply,
    converge,
    desired_state,
    fallbacks,
    inputs,
    observe,
    observed_capacity,
    render,
    report,
    rollout_step,
    serving_gates,
    serving_slo,
)
from llama_operator.reconcile.apply import EXTERNAL_SCALER_KINDS as EXTERNAL_SCALER_KINDS
from llama_operator.reconcile.apply import OPTIONAL_KINDS as OPTIONAL_KINDS
from llama_operator.reconcile.apply import REAPPLY_SECONDS as REAPPLY_SECONDS
from llama_operator.reconcile.apply import UNWATCHED_KINDS as UNWATCHED_KINDS
from llama_operator.reconcile.desired_state import MAX_BASE_MODELS as MAX_BASE_MODELS
from llama_operator.reconcile.desired_state import Desired as Desired
from llama_operator.reconcile.desired_state import PlanningError as PlanningError
from llama_operator.reconcile.desired_state import decide_adapters as decide_adapters
from llama_operator.reconcile.desired_state import desired as desired
from llama_operator.reconcile.desired_state import detect_license as detect_license
from llama_operator.reconcile.desired_state import resolve_facts as resolve_facts
from llama_operator.reconcile.errors import API_ERROR as API_ERROR
from llama_operator.reconcile.errors import ERROR_MESSAGE_LIMIT as ERROR_MESSAGE_LIMIT
from llama_operator.reconcile.errors import MAX_RETRY_INTERVALS as MAX_RETRY_INTERVALS
from llama_operator.reconcile.errors import REPEAT_WARNING_SECONDS as REPEAT_WARNING_SECONDS
from llama_operator.reconcile.errors import UNEXPECTED_ERROR as UNEXPECTED_ERROR
from llama_operator.reconcile.errors import Failed as Failed
from llama_operator.reconcile.errors import describe_error as describe_error
from llama_operator.reconcile.errors import failed as failed
from llama_operator.reconcile.errors import retry_delay as retry_delay
from llama_operator.reconcile.fallbacks import Backup as Backup
from llama_operator.reconcile.fallbacks import plan_fallbacks as plan_fallbacks
from llama_operator.reconcile.inputs import AccessCheck as AccessCheck
from llama_operator.reconcile.inputs import AdapterLoad as AdapterLoad
from llama_operator.reconcile.inputs import AdapterLoadRequest as AdapterLoadRequest
from llama_operator.reconcile.inputs import AdapterRead as AdapterRead
from llama_operator.reconcile.inputs import CapacityRead as CapacityRead
from llama_operator.reconcile.inputs import CardFetch as CardFetch
from llama_operator.reconcile.inputs import Clock as Clock
from llama_operator.reconcile.inputs import Cluster as Cluster
from llama_operator.reconcile.inputs import CorrectionsRead as CorrectionsRead
from llama_operator.reconcile.inputs import HubFetch as HubFetch
from llama_operator.reconcile.inputs import KeyCheck as KeyCheck
from llama_operator.reconcile.inputs import Lookup as Lookup
from llama_operator.reconcile.inputs import Measure as Measure
from llama_operator.reconcile.inputs import MeasureRequest as MeasureRequest
from llama_operator.reconcile.inputs import Memory as Memory
from llama_operator.reconcile.inputs import QueueRead as QueueRead
from llama_operator.reconcile.inputs import Readers as Readers
from llama_operator.reconcile.inputs import ServingRead as ServingRead
from llama_operator.reconcile.inputs import ServingRequest as ServingRequest
from llama_operator.reconcile.observe import name_failure as name_failure
from llama_operator.reconcile.observe import not_yet_active as not_yet_active
from llama_operator.reconcile.readers import access_checker as access_checker
from llama_operator.reconcile.readers import adapter_facts as adapter_facts
from llama_operator.reconcile.readers import adapter_reader as adapter_reader
from llama_operator.reconcile.readers import card_fetcher as card_fetcher
from llama_operator.reconcile.readers import corrections_reader as corrections_reader
from llama_operator.reconcile.readers import key_checker as key_checker
from llama_operator.reconcile.readers import token_fetcher as token_fetcher
from llama_operator.reconcile.render import steady_children as steady_children
from llama_operator.reconcile.report import Outcome as Outcome
from llama_operator.reconcile.serving_gates import Gate as Gate
from llama_operator.reconcile.serving_gates import gates as gates


def reconcile(
    *,
    body: Mapping[str, Any],
    settings: config.OperatorConfig,
    cluster: inputs.Cluster,
    clock: inputs.Clock,
    readers: inputs.Readers | None = None,
    memory: inputs.Memory | None = None,
) -> Outcome:
    """Reconcile one LlamaDeployment: its phases, in order.

    ``readers`` None: no outside world (``inputs.Readers``: the Hub, tokens, the pods'
    metrics). ``memory`` is what this process remembers of the object (``inputs.Memory``;
    the handlers keep it in the object's memo); None: nothing, as after a restart.
    """
    memory = inputs.Memory() if memory is None else memory
    readers = (inputs.Readers() if readers is None else readers).asking_key_once()
    meta = observe.meta_of(body)
    unservable = observe.name_failure(meta.name)
    if unservable is not None:
        # No Service could be named after it: create no child at all, rather than the
        # half of an endpoint that the API server would accept before refusing the rest.
        return report.unservable(
            unservable, body=body, meta=meta, lookup=cluster.lookup, clock=clock
        )
    seen = observe.read(body, meta=meta, settings=settings, cluster=cluster)
    planned = desired_state.plan_primary(seen, settings=settings, readers=readers, clock=clock)
    wanted = planned.wanted
    if wanted is None:
        # Nothing can be served as planned: every child stays as it is.
        return report.report(seen, planned, served=None, clock=clock)
    # With a failure, re-planning excluded every pool: the last plan stands (its pods
    # wait for GPUs) and the failover serves from a fallback meanwhile.
    gate = serving_gates.gate_primary(
        seen, wanted, settings=settings, readers=readers, cluster=cluster, memory=memory
    )
    step = rollout_step.step(
        seen, wanted, gate=gate, cluster=cluster, readers=readers, memory=memory, clock=clock
    )
    chosen = fallbacks.decide(
        seen,
        wanted,
        settings=settings,
        readers=readers,
        cluster=cluster,
        memory=memory,
        clock=clock,
    )
    objects = render.render(seen, wanted, decision=step.decision, chosen=chosen, settings=settings)
    applied = apply.apply(seen, objects, gate=gate, cluster=cluster, memory=memory, clock=clock)
    converged = converge.converge(
        seen,
        wanted,
        decision=step.decision,
        applied=applied,
        settings=settings,
        cluster=cluster,
        memory=memory,
    )
    shown = report.shown(seen, planned, gate=gate, step=step, applied=applied)
    # What the primary's engines allocated, against the plan they serve (only while status
    # gets this plan: not while a canary or a closed gate keeps the stable one there).
    kv = observed_capacity.observe_plan(
        shown.plan,
        wanted=wanted,
        gate=gate,
        primary=converged.primary,
        readers=readers,
        settings=settings,
        meta=meta,
        now=clock.now,
    )
    converge.record_correction(kv.correction, client=cluster.client, settings=settings)
    live = serving_slo.observe_serving(
        seen,
        wanted,
        plan=kv.plan,
        primary=converged.primary,
        readers=readers,
        now=clock.now,
    )
    # With runtime updates, the running pods get the plan's adapters (no template change).
    loaded = adapter_loading.load_adapters(
        seen,
        wanted,
        step=step,
        running=kv.plan if kv.plan is not None else seen.previous.plan,
        readers=readers,
    )
    served = report.Served(
        gate=gate,
        step=step,
        chosen=chosen,
        applied=applied,
        converged=converged,
        shown=shown,
        capacity=kv,
        serving=live,
        adapters=loaded,
    )
    return report.report(seen, planned, served=served, clock=clock)
