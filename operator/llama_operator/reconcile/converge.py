"""The converge phase: the writes that are not a server-side apply of a rendered child.

After the apply phase, before the report: the held primary's replica count follows the
canary's split (a merge patch), children no longer wanted are deleted (the canary's once
no canary runs, a route or NetworkPolicy switched off, an external scaler replaced, the
children of a fallback the spec no longer has), and a KV-cache correction learnt from the
primary's pods is recorded in the calibration ConfigMap (``record_correction``, after the
observed-capacity step). Every deletion is of a child status names or the watch sees, so
nothing the operator did not create is ever touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping
from typing import Any

from llama_operator import api
from llama_operator.clients import k8s
from llama_operator.licensing import gating
from llama_operator.operations import capacity, rollout
from llama_operator.planning import config
from llama_operator.reconcile import apply, desired_state, inputs, observe, status
from llama_operator.serving import builders, scalers, security

_SCALER_API_VERSIONS = {
    "ScaledObject": scalers.KEDA_API_VERSION,
    "HorizontalPodAutoscaler": scalers.HPA_API_VERSION,
}


@dataclasses.dataclass(frozen=True)
class Converged:
    """The converge phase's result: what status says of the children it manages."""

    primary: Mapping[str, Any] | None  # the primary Deployment, after its replica patch
    resized: str | None  # "Deployment/<name> (replicas a -> b)": the held primary's patch
    removed: tuple[str, ...]  # "Kind/name" deleted
    http_route: str | None  # status.httpRoute
    route_known: bool  # False: status.httpRoute stays as it is
    network_policy: str | None  # status.networkPolicy
    policy_known: bool  # False: status.networkPolicy stays as it is
    external_scaler: dict[str, str] | None  # status.externalScaler
    scaler_known: bool  # False: status.externalScaler stays as it is
    canary: status.Counts  # the pods of a canary in traffic (they count in status)


def converge(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    decision: rollout.Decision | None,
    applied: apply.Applied,
    settings: config.OperatorConfig,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
) -> Converged:
    """The patch, the deletions, and the canary's counts, in this order."""
    meta, previous = seen.meta, seen.previous
    primary, resized = applied.primary, None
    removed: list[str] = []
    route: tuple[str | None, bool] = (None, False)
    if decision is not None:
        primary, resized = _resize_held_primary(
            decision,
            primary,
            client=cluster.client,
            namespace=meta.namespace,
            name=seen.primary_name,
            generations=memory.generations,
        )
        removed += _remove_canary(decision, seen, cluster=cluster)
        route = _sync_route(wanted, seen, client=cluster.client, missing=applied.route_missing)
    policy = _sync_network_policy(wanted, seen, settings=settings, client=cluster.client)
    external: dict[str, str] | None = None
    scaler_known = applied.held_back is None or seen.primary is None
    if scaler_known:
        external = _sync_external_scaler(
            wanted,
            previous,
            client=cluster.client,
            namespace=meta.namespace,
            missing=applied.scaler_missing,
        )
    # else: a closed gate holds everything back; the scaler recorded stays as it is.
    removed += _remove_stale_fallbacks(seen, wanted.spec, cluster=cluster)
    return Converged(
        primary=primary,
        resized=resized,
        removed=tuple(removed),
        http_route=route[0],
        route_known=route[1],
        network_policy=policy[0],
        policy_known=policy[1],
        external_scaler=external,
        scaler_known=scaler_known,
        canary=_canary_counts(decision, seen, lookup=cluster.lookup),
    )


def _resize_held_primary(
    decision: rollout.Decision,
    deployment: Mapping[str, Any] | None,
    *,
    client: k8s.Client,
    namespace: str,
    name: str,
    generations: MutableMapping[str, int],
) -> tuple[Mapping[str, Any] | None, str | None]:
    """While the primary's template is held, only its replica count follows the split:
    the primary as patched, and what was written.

    A merge patch of spec.replicas alone: applying a partial object with server-side apply
    would drop every field this manager owns and leaves out.
    """
    if decision.mode not in ("canary", "hold") or deployment is None:
        return deployment, None
    live = (deployment.get("spec") or {}).get("replicas")
    if live == decision.stable_replicas:
        return deployment, None
    result = client.merge_patch(
        api_version="apps/v1",
        kind="Deployment",
        namespace=namespace,
        name=name,
        body={"spec": {"replicas": decision.stable_replicas}},
    )
    applied = (result.get("metadata") or {}).get("generation")
    if isinstance(applied, int):
        generations[f"Deployment/{name}"] = applied  # our own edit, not someone else's
    written = f"Deployment/{name} (replicas {live} -> {decision.stable_replicas})"
    return result or deployment, written


def _remove_canary(
    decision: rollout.Decision, seen: observe.Observed, *, cluster: inputs.Cluster
) -> list[str]:
    """Delete the canary's children once no canary is wanted (after the entry Service and
    route were switched back to the primary above, so no request meets a vanishing pod)."""
    if decision.canary_exists:
        return []
    name, namespace = seen.meta.name, seen.meta.namespace
    canary = f"{name}-{builders.CANARY}"
    deployment = cluster.lookup("Deployment", namespace, canary)
    service = cluster.lookup("Service", namespace, canary)
    removed = []
    targets = [
        ("apps/v1", "Deployment", canary, deployment is not None),
        ("v1", "Service", canary, service is not None),
        (
            "v1",
            "ConfigMap",
            builders.license_config_map_name(name=name, variant=builders.CANARY),
            deployment is not None or service is not None or seen.previous.canary_running,
        ),
    ]
    for api_version, kind, child, present in targets:
        if present and cluster.client.delete(
            api_version=api_version, kind=kind, namespace=namespace, name=child
        ):
            removed.append(f"{kind}/{child}")
    return removed


def _sync_route(
    wanted: desired_state.Desired,
    seen: observe.Observed,
    *,
    client: k8s.Client,
    missing: str | None,
) -> tuple[str | None, bool]:
    """status.httpRoute, and the route deleted once spec.traffic.gatewayRef is gone."""
    traffic = wanted.spec.traffic
    if traffic is not None and traffic.gatewayRef is not None:
        return (None if missing is not None else seen.meta.name), True
    before = seen.previous.http_route
    if before is not None:
        client.delete(
            api_version=builders.HTTPROUTE_API_VERSION,
            kind="HTTPRoute",
            namespace=seen.meta.namespace,
            name=before,
        )
        return None, True
    return None, False


def _sync_network_policy(
    wanted: desired_state.Desired,
    seen: observe.Observed,
    *,
    settings: config.OperatorConfig,
    client: k8s.Client,
) -> tuple[str | None, bool]:
    """status.networkPolicy, and the policy deleted once it is switched off."""
    if security.network_policy_enabled(wanted.spec, settings):
        return builders.network_policy_name(seen.meta.name), True
    before = seen.previous.network_policy
    if before is not None:
        client.delete(
            api_version="networking.k8s.io/v1",
            kind="NetworkPolicy",
            namespace=seen.meta.namespace,
            name=before,
        )
        return None, True
    return None, False


def _sync_external_scaler(
    wanted: desired_state.Desired,
    previous: observe.Previous,
    *,
    client: k8s.Client,
    namespace: str,
    missing: str | None,
) -> dict[str, str] | None:
    """The external scaler now in place (status.externalScaler); a stale one is deleted.

    Switching spec.autoscaling.engine (or turning autoscaling off) must not leave the old
    ScaledObject or HPA scaling the endpoint against the new engine, so the one recorded
    in status is deleted once it is no longer wanted.
    """
    current = next(
        (o for o in wanted.objects if o["kind"] in apply.EXTERNAL_SCALER_KINDS and missing is None),
        None,
    )
    now = (
        {"kind": current["kind"], "name": current["metadata"]["name"]}
        if current is not None
        else None
    )
    before = previous.external_scaler
    if (
        before is not None
        and before.get("kind") in _SCALER_API_VERSIONS
        and (now is None or dict(before) != now)
    ):
        client.delete(
            api_version=_SCALER_API_VERSIONS[str(before["kind"])],
            kind=str(before["kind"]),
            namespace=namespace,
            name=str(before.get("name")),
        )
    return now


def _remove_stale_fallbacks(
    seen: observe.Observed, spec: api.LlamaDeploymentSpec, *, cluster: inputs.Cluster
) -> list[str]:
    """Delete the children of fallbacks the spec no longer has (status names them)."""
    before = seen.previous.failover
    if before is None:
        return []
    name, namespace = seen.meta.name, seen.meta.namespace
    wanted = {f"{name}-{api.fallback_variant(i)}" for i in range(len(spec.fallbacks))}
    removed = []
    for row in before.fallbacks:
        child = f"{name}-{row.name}"
        if child in wanted:
            continue
        for api_version, kind, obj_name in (
            ("apps/v1", "Deployment", child),
            ("v1", "Service", child),
            ("v1", "ConfigMap", gating.config_map_name(child)),
        ):
            if kind != "ConfigMap" and cluster.lookup(kind, namespace, obj_name) is None:
                continue
            if cluster.client.delete(
                api_version=api_version, kind=kind, namespace=namespace, name=obj_name
            ):
                removed.append(f"{kind}/{obj_name}")
    return removed


def _canary_counts(
    decision: rollout.Decision | None, seen: observe.Observed, *, lookup: inputs.Lookup
) -> status.Counts:
    """The canary's pods while it takes traffic (read after everything was applied)."""
    if decision is None or not decision.canary_exists:
        return status.counts(None)
    if (decision.status or {}).get("phase") not in rollout.states.IN_TRAFFIC:
        return status.counts(None)
    return status.counts(lookup("Deployment", seen.meta.namespace, f"{seen.meta.name}-canary"))


def record_correction(
    record: capacity.Correction | None,
    *,
    client: k8s.Client,
    settings: config.OperatorConfig,
) -> None:
    """Merge one key into the calibration ConfigMap (no read, so corrections of other
    keys written meanwhile are never lost); create it by server-side apply when missing.
    None: nothing to record (``observed_capacity.Capacity.correction``)."""
    namespace, name = settings.calibration.namespace, settings.calibration.configMap
    if record is None or namespace is None:
        return
    data = {record.key: record.value()}
    try:
        client.merge_patch(
            api_version="v1", kind="ConfigMap", namespace=namespace, name=name, body={"data": data}
        )
    except k8s.APIError as exc:
        if exc.status != 404:
            raise
        client.apply(capacity.config_map(namespace=namespace, name=name, data=data))
