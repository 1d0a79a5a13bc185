"""The gate phase: whether the newest spec may be served, and the conditions that say so.

After the plan phase (``desired_state``), before anything is rendered or applied. In
order: the licence gate (``licensing.gating``: an acceptance the licence requires), gated
access (the referenced token may read the model's repository, asked of the Hub only when
serving pods are about to be created or changed), the API key (``security.auth``; its
Secret is looked at under the same rule), and spec.engineArgs that contradict the plan.
A closed gate (``Gate.hold``) holds back the serving Deployments only: nothing that
serves is torn down or changed, and the licence ConfigMap and Services are still applied.
Fallbacks pass the same gates (``fallbacks``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llama_operator.api import conditions
from llama_operator.clients import hub
from llama_operator.licensing import gating
from llama_operator.planning import config, planner
from llama_operator.reconcile import desired_state, drift, inputs, observe
from llama_operator.serving import engines, security


@dataclasses.dataclass(frozen=True)
class Gate:
    """The gate phase's result: whether serving waits, and the conditions that say why."""

    hold: str | None  # why serving Deployments are held back, or None
    license: dict[str, Any] | None  # status.license; None keeps the one in status
    checks: tuple[conditions.Check, ...]
    removed: tuple[str, ...]
    auth: security.AuthVerdict  # the API-key gate's part of hold and checks


def gate_primary(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    settings: config.OperatorConfig,
    readers: inputs.Readers,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
) -> Gate:
    """The primary's gates; access and the API key are asked about only when the newest
    spec would create or change serving pods."""
    primary = wanted.primary_deployment()
    live = cluster.lookup("Deployment", seen.meta.namespace, primary["metadata"]["name"])
    return gates(
        wanted,
        name=seen.meta.name,
        namespace=seen.meta.namespace,
        previous=seen.previous.raw,
        serving=seen.primary is not None,
        creating_pods=drift.differs(live, primary, generations=memory.generations),
        access=readers.access,
        settings=settings,
        api_key=readers.api_key,
    )


def gates(
    wanted: desired_state.Desired,
    *,
    name: str,
    namespace: str,
    previous: Mapping[str, Any],
    serving: bool,
    creating_pods: bool,
    access: inputs.AccessCheck | None,
    settings: config.OperatorConfig,
    api_key: inputs.KeyCheck | None = None,
) -> Gate:
    """The licence gate, then (only when pods are about to be created or changed) access,
    then the API key (``security.auth``; its Secret is looked at under the same rule)."""
    verdict = gating.license_verdict(
        detection=wanted.detection,
        model_id=wanted.spec.model.id,
        spec_license=wanted.spec.license,
        previous=previous.get("license"),
        serving=serving,
    )
    accessible = _access(
        wanted,
        namespace=namespace,
        ask=creating_pods and verdict.hold is None,
        access=access,
    )
    hold = verdict.hold
    if hold is None and gating.holds(accessible):
        assert accessible is not None
        hold = accessible.message
    auth = _auth(
        wanted,
        namespace=namespace,
        ask=creating_pods and hold is None,
        api_key=api_key,
        settings=settings,
    )
    if hold is None:
        hold = auth.hold
    # spec.engineArgs that contradict the plan: a warning, or a hold for flags the
    # operator owns or the engine refuses twice (engines.overrides).
    engine_args = engines.check_engine_args(spec=wanted.spec, plan=wanted.plan)
    if hold is None:
        hold = engine_args.hold
    checks = (
        verdict.checks
        + ((accessible,) if accessible is not None else ())
        + (auth.check, *_engine_checks(wanted, settings=settings, engine_args=engine_args))
    )
    return Gate(
        hold=hold,
        license=gating.license_status(
            detection=wanted.detection,
            accepted=verdict.accepted,
            config_map=gating.config_map_name(name),
        ),
        checks=checks,
        removed=verdict.removed
        + (() if engine_args.check is not None else (conditions.ENGINE_ARGS,)),
        auth=auth,
    )


def _engine_checks(
    wanted: desired_state.Desired,
    *,
    settings: config.OperatorConfig,
    engine_args: engines.overrides.Verdict,
) -> tuple[conditions.Check, ...]:
    """EngineProfile, EngineArgs (when spec.engineArgs say something) and PodSecurity."""
    return (
        security.engine_profile_check(
            planner.resolve_engine(spec=wanted.spec, engine=wanted.plan.engine, settings=settings)
        ),
        *((engine_args.check,) if engine_args.check is not None else ()),
        security.pod_security_check(wanted.plan),
    )


def _access(
    wanted: desired_state.Desired,
    *,
    namespace: str,
    ask: bool,
    access: inputs.AccessCheck | None,
) -> conditions.Check | None:
    """The ModelAccessible condition; the token is checked against the Hub only when
    ``ask`` (pods about to change, the licence gate open) and one is referenced."""
    model = wanted.spec.model
    answer: gating.AccessAnswer | None = None
    token_referenced = model.tokenSecretRef is not None
    if token_referenced and ask and access is not None:
        answer = access(model, namespace)  # the Hub is asked only when it matters
    return gating.access_check(
        model_id=model.id,
        page=hub.model_page(model.id),
        token_referenced=token_referenced,
        card_gated=wanted.card_gated,
        answer=answer,
    )


def _auth(
    wanted: desired_state.Desired,
    *,
    namespace: str,
    ask: bool,
    api_key: inputs.KeyCheck | None,
    settings: config.OperatorConfig,
) -> security.AuthVerdict:
    """The API-key gate; its Secret is looked at only when ``ask`` (pods about to change,
    the gates before it open)."""
    key_ref = wanted.spec.auth.apiKeySecretRef
    present: bool | None = None
    if key_ref is not None and ask and api_key is not None:
        present = api_key(key_ref, namespace)
    return security.auth(wanted.spec, settings, secret_present=present, namespace=namespace)
