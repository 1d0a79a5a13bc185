"""Security decisions for one LlamaDeployment: its API-key gate, its NetworkPolicy, and
what its serving pods run as (the engine release's profile, ``PodSecurity`` and
``EngineProfile``).

Pure: the spec, the operator's defaults and (for the gate) whether the referenced Secret
holds the key in, a decision out. The reconciler asks the API server about the Secret
only when serving pods are about to be created or changed, and never reads its value
(``clients.k8s.Client.secret_has_key``); nothing here ever sees a key.

The gate works like the licence gate: ``hold`` names the field to fix, and while it is
set no serving Deployment is created or changed (one that already serves keeps serving,
unchanged: a bad edit never takes an endpoint down).
"""

from __future__ import annotations

import dataclasses

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.planning import config, engine_profiles
from llama_operator.serving import engines


@dataclasses.dataclass(frozen=True)
class AuthVerdict:
    """The ``Authenticated`` condition, and why serving pods must wait (None: they need not)."""

    check: conditions.Check
    hold: str | None


def auth_mode(spec: api.LlamaDeploymentSpec, settings: config.OperatorConfig) -> api.AuthMode:
    """spec.auth.mode, else the operator-wide default (Helm value auth.defaultMode)."""
    return spec.auth.mode or settings.security.defaultAuthMode


def auth(
    spec: api.LlamaDeploymentSpec,
    settings: config.OperatorConfig,
    *,
    secret_present: bool | None,
    namespace: str,
) -> AuthVerdict:
    """The API-key gate.

    ``secret_present``: whether the referenced Secret exists and holds the key; None when
    it was not asked (nothing is about to change, or the offline CLI).
    """
    mode = auth_mode(spec, settings)
    ref = spec.auth.apiKeySecretRef
    if ref is None:
        if mode == "required":
            message = (
                "spec.auth.apiKeySecretRef is required (spec.auth.mode is required"
                + ("" if spec.auth.mode else ", the operator's default")
                + "): no serving pod is created without an API key. Create one with "
                "`kubectl create secret generic <secret> -n "
                f"{namespace or '<namespace>'} --from-literal=api-key=$(openssl rand -hex 32)` "
                "and set spec.auth.apiKeySecretRef: {name: <secret>}, or set "
                "spec.auth.mode: optional to serve without a key"
            )
            return AuthVerdict(_check("False", "APIKeyRequired", message), message)
        return AuthVerdict(
            _check(
                "False",
                "AuthOptional",
                "spec.auth.mode is optional and spec.auth.apiKeySecretRef is not set: anyone "
                "the NetworkPolicy lets through can use the endpoint",
            ),
            None,
        )
    where = f"Secret {ref.name!r} (key {ref.key!r})"
    if secret_present is False:
        message = (
            f"spec.auth.apiKeySecretRef: {where} does not exist in namespace {namespace} or "
            "has no such key (or it is empty); create it, e.g. `kubectl create secret generic "
            f"{ref.name} -n {namespace} --from-literal={ref.key}=$(openssl rand -hex 32)`"
        )
        return AuthVerdict(_check("False", "SecretMissing", message), message)
    return AuthVerdict(
        _check(
            "True",
            "APIKey",
            f"requests need the API key in {where} as `Authorization: Bearer <key>`; "
            "/health and /metrics stay open",
        ),
        None,
    )


def network_policy_enabled(spec: api.LlamaDeploymentSpec, settings: config.OperatorConfig) -> bool:
    """spec.network.policy, else the operator-wide default (Helm value networkPolicy.enabled)."""
    chosen = spec.network.policy
    return settings.security.networkPolicy.enabled if chosen is None else chosen


def _check(status: conditions.Status, reason: str, message: str) -> conditions.Check:
    return conditions.Check(conditions.AUTHENTICATED, status, reason, message)


def pod_security_check(plan: api.Plan) -> conditions.Check:
    """``PodSecurity``: the Pod Security Standard level the serving pods meet, and why.

    False for an image that cannot start as non-root (TGI): a namespace that enforces
    "restricted" refuses its pods, so the user must know before the ReplicaSet says so.
    """
    facts = engines.profile(plan=plan)
    if engines.pod_security_level(plan=plan) == "restricted":
        return conditions.Check(
            conditions.POD_SECURITY,
            "True",
            "Restricted",
            f"serving pods meet the restricted Pod Security Standard: {facts.displayName} runs "
            f"as UID {engines.RUN_AS_USER} with no privilege escalation, no capabilities, "
            "seccomp RuntimeDefault and a read-only root filesystem",
        )
    version = plan.engineVersion or f"{facts.since}+"
    return conditions.Check(
        conditions.POD_SECURITY,
        "False",
        "RunsAsRoot",
        f"the {facts.displayName} {version} image cannot start as a non-root user (its Python "
        "lives under /root; huggingface/text-generation-inference#3082), so its pods run as "
        "root, with no privilege escalation, no capabilities, seccomp RuntimeDefault and a "
        "read-only root filesystem: they meet the baseline Pod Security Standard, not "
        "restricted. A namespace enforcing restricted refuses them: label it "
        "pod-security.kubernetes.io/enforce=baseline, or use engine: vllm "
        "(docs/operations/security.md)",
    )


def engine_profile_check(resolved: engine_profiles.Resolved) -> conditions.Check:
    """``EngineProfile``: which engine release the operator planned and rendered for."""
    if resolved.verified:
        return conditions.Check(conditions.ENGINE_PROFILE, "True", "Verified", resolved.note)
    reason = "VersionUnknown" if resolved.version is None else "VersionUnverified"
    return conditions.Check(conditions.ENGINE_PROFILE, "False", reason, resolved.note)
