"""What ``plan`` reports about one LlamaDeployment, as data: its licence, security,
rollout and fallbacks entries.

``cli.offline`` prints these as they are with ``-o json`` or ``-o yaml``, and through
``cli.text`` otherwise; they come from what the pipeline decided (``cli.inputs``), so
they say what the operator would do.
"""

from __future__ import annotations

from typing import Any

from llama_operator import api, reconcile
from llama_operator.api import conditions
from llama_operator.licensing import gating, terms
from llama_operator.operations import rollout
from llama_operator.planning import catalog, config
from llama_operator.serving import builders, engines, security


def license_entry(
    doc: dict[str, Any],
    *,
    wanted: reconcile.Desired | None = None,
    gate: reconcile.Gate | None = None,
) -> dict[str, Any]:
    """The licence of a document's model, and what the operator does about it.

    With a plan, the detection the operator itself made (Hub card included when the Hub
    is reachable) plus the gate and what is injected into the pods; without one (the
    spec could not be planned), what is known offline.
    """
    spec = _mapping(doc.get("spec"))
    model, chosen = _mapping(spec.get("model")), _mapping(spec.get("license"))
    model_id = str(model.get("id") or "")
    if wanted is None or gate is None:
        override = chosen.get("id")
        entry = catalog.lookup(model_id) if model_id else None
        found = terms.detect(
            model_id=model_id,
            override=str(override) if override is not None else None,
            catalog_license=entry.license if entry is not None else None,
        )
        return {
            **found.as_dict(),
            "euMultimodal": terms.eu_multimodal_notice(found.license, model_id),
        }
    found = wanted.detection
    # The licence's own part of the gate: an API key the spec lacks is the security
    # entry's to report.
    held = gate.hold if gate.hold != gate.auth.hold else None
    (config_map,) = [o for o in wanted.objects if o["kind"] == "ConfigMap"]
    return {
        **found.as_dict(),
        "euMultimodal": terms.eu_multimodal_notice(found.license, model_id),
        "accepted": bool(gate.license is not None and gate.license["accepted"]),
        "serving": "held" if held else "allowed",
        "held": held,
        "injected": {
            "configMap": config_map["metadata"]["name"],
            "mountPath": gating.MOUNT_PATH,
            "files": sorted(config_map["data"]),
            "annotations": builders.license_annotations(found),
        },
    }


def security_entry(
    doc: dict[str, Any],
    *,
    wanted: reconcile.Desired,
    settings: config.OperatorConfig,
    gate: reconcile.Gate,
) -> dict[str, Any]:
    """The API-key gate, the NetworkPolicy and the input limits the engine is given."""
    spec = wanted.spec
    name = str((doc.get("metadata") or {}).get("name", "unnamed"))
    verdict = gate.auth
    ref = spec.auth.apiKeySecretRef
    limits = engines.limits(spec=spec, plan=wanted.plan)
    policy = security.network_policy_enabled(spec, settings)
    return {
        "auth": {
            "mode": security.auth_mode(spec, settings),
            "apiKeySecret": f"{ref.name}/{ref.key}" if ref is not None else None,
            "serving": "held" if verdict.hold else "allowed",
            "held": verdict.hold,
        },
        "networkPolicy": builders.network_policy_name(name) if policy else None,
        "egress": "restricted" if policy and spec.network.egress.restrict else "open",
        "limits": {
            "maxTokensPerRequest": limits.max_tokens_per_request,
            "maxConcurrentSequences": limits.max_concurrent_sequences,
        },
        # The Pod Security Standard level the serving pods meet (TGI's image runs as root).
        "podSecurity": engines.pod_security_level(plan=wanted.plan),
        "engineProfile": next(
            {"verified": check.status == "True", "reason": check.reason, "note": check.message}
            for check in gate.checks
            if check.type == conditions.ENGINE_PROFILE
        ),
    }


def rollout_entry(spec: api.LlamaDeploymentSpec) -> dict[str, Any]:
    """How a change of this spec's pod template would reach users (spec.rollout)."""
    policy = rollout.policy_of(spec)
    traffic = "HTTPRoute" if spec.traffic is not None and spec.traffic.gatewayRef else "Service"
    return {
        "strategy": policy.strategy,
        "steps": [step.model_dump(mode="json") for step in policy.steps],
        "analysis": policy.analysis.model_dump(mode="json", exclude_none=True),
        "traffic": traffic,
        "maxSurge": policy.maxSurge,
        "maxUnavailable": policy.maxUnavailable,
    }


def fallback_entry(backup: reconcile.Backup) -> dict[str, Any]:
    """One fallback: its variant name, model, warm replicas, and its plan or why not."""
    c = backup.candidate
    found: dict[str, Any] = {
        "name": api.fallback_variant(c.index),
        "model": c.model,
        "replicas": c.configured,
        "servable": c.servable,
    }
    if backup.wanted is not None:
        found["plan"] = backup.wanted.plan.model_dump(mode="json", exclude_none=True)
        found["license"] = backup.wanted.detection.id
    if c.reason:
        found["reason"] = c.reason
    return found


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
