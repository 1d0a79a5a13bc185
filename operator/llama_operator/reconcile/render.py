"""The render phase: every child to apply, for the rollout mode and the failover decision.

Pure; after the fallbacks phase, before the apply. The plan phase built the newest spec's
children (``Desired.objects``); here they are shaped by what the rollout step and the
failover decided: the stable primary's children held back while a canary runs or after a
rollback, the canary's, the fallbacks' that may serve, the HTTPRoute, and the entry
Service (and the route) on the variant that serves. The CLI's ``render`` is the same
render with no rollout under way (``steady_children``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.operations import failover, rollout
from llama_operator.planning import config
from llama_operator.reconcile import desired_state, fallbacks, observe
from llama_operator.serving import builders


def render(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    decision: rollout.Decision | None,
    chosen: fallbacks.Failover,
    settings: config.OperatorConfig,
) -> tuple[dict[str, Any], ...]:
    """The children this reconcile wants, in the order they are applied."""
    return tuple(
        children(
            wanted,
            decision,
            name=seen.meta.name,
            namespace=seen.meta.namespace,
            uid=seen.meta.uid,
            stable_license=seen.previous.license,
            settings=settings,
            backups=chosen.backups,
            switched=chosen.switched,
        )
    )


def steady_children(
    wanted: desired_state.Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
    backups: Sequence[fallbacks.Backup] = (),
) -> list[dict[str, Any]]:
    """Every child of a resource with no rollout under way and the primary serving (the
    CLI's render): the fallbacks that may serve at their configured replicas."""
    return children(
        wanted,
        None,
        name=name,
        namespace=namespace,
        uid=uid,
        stable_license=None,
        settings=settings,
        backups=backups,
    )


def children(
    wanted: desired_state.Desired,
    decision: rollout.Decision | None,
    *,
    name: str,
    namespace: str,
    uid: str,
    stable_license: Mapping[str, Any] | None,
    settings: config.OperatorConfig,
    backups: Sequence[fallbacks.Backup] = (),
    switched: failover.Decision | None = None,
) -> list[dict[str, Any]]:
    """The children to apply for the rollout mode: the newest spec's, the stable primary's
    held back while a canary runs or after a rollback, the canary's, the fallbacks' that
    may serve, and the route; the entry Service and the route on the active fallback.

    ``decision`` None: no rollout decided (a closed gate, the CLI): the newest spec's.
    ``stable_license``: status.license, what the held primary serves under."""
    held = decision is not None and decision.mode in ("canary", "hold")
    active = switched.index if switched is not None else None
    annotations = _entry_annotations(
        wanted, held=held, stable_license=stable_license, backups=backups, active=active
    )
    entry = _entry_service(
        name=name,
        namespace=namespace,
        uid=uid,
        annotations=annotations,
        both=decision is not None and decision.both,
        active=active,
    )
    objects = [
        entry if obj["kind"] == "Service" and obj["metadata"]["name"] == name else obj
        for obj in _newest(wanted, name=name, held=held)
    ]
    if decision is not None and decision.canary_exists:
        objects += builders.canary_objects(
            name=name,
            namespace=namespace,
            uid=uid,
            spec=wanted.spec,
            plan=wanted.plan,
            pool=wanted.pool,
            settings=settings,
            detection=wanted.detection,
            replicas=decision.canary_replicas,
            revision=builders.revision_of(wanted.primary_deployment()) or "",
        )
    counts = switched.replicas if switched else tuple(b.candidate.configured for b in backups)
    objects += _fallback_children(
        backups, counts, name=name, namespace=namespace, uid=uid, settings=settings
    )
    traffic = wanted.spec.traffic
    if traffic is not None and traffic.gatewayRef is not None:
        objects.append(
            builders.http_route(
                name=name,
                namespace=namespace,
                uid=uid,
                traffic=traffic,
                canary_weight=(
                    decision.weight if decision is not None and decision.canary_exists else None
                ),
                annotations=annotations,
                stable=api.fallback_variant(active) if active is not None else builders.PRIMARY,
            )
        )
    return objects


def _entry_annotations(
    wanted: desired_state.Desired,
    *,
    held: bool,
    stable_license: Mapping[str, Any] | None,
    backups: Sequence[fallbacks.Backup],
    active: int | None,
) -> dict[str, str]:
    """The licence annotations of the entry Service and the route: those of what serves."""
    # The entry Service and the route describe what the primary runs, which is not the
    # newest spec while it is held.
    annotations = (
        builders.license_annotations_of_status(stable_license)
        if held
        else builders.license_annotations(wanted.detection)
    )
    serving_backup = next((b for b in backups if b.candidate.index == active), None)
    if serving_backup is not None and serving_backup.wanted is not None:
        annotations = builders.license_annotations(serving_backup.wanted.detection)
    return annotations


def _newest(wanted: desired_state.Desired, *, name: str, held: bool) -> list[dict[str, Any]]:
    """The newest spec's children, but for the stable primary's while it is held."""
    stable = {
        ("Deployment", f"{name}-primary"),
        ("ConfigMap", builders.license_config_map_name(name=name)),
        ("Service", f"{name}-primary"),
    }
    return [
        obj
        for obj in wanted.objects
        if not (held and (obj["kind"], obj["metadata"]["name"]) in stable)
    ]


def _entry_service(
    *,
    name: str,
    namespace: str,
    uid: str,
    annotations: Mapping[str, str],
    both: bool,
    active: int | None,
) -> dict[str, Any]:
    # The entry point: the primary's pods, or (without a Gateway, while the canary takes
    # traffic) both variants', so the canary's share follows its replica count; an
    # active fallback's alone while the primary cannot serve.
    return builders.with_hash(
        builders.service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=name,
            variant=builders.PRIMARY,
            annotations=annotations,
            all_variants=both and active is None,
            target=api.fallback_variant(active) if active is not None else None,
        )
    )


def _fallback_children(
    backups: Sequence[fallbacks.Backup],
    counts: Sequence[int],
    *,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
) -> list[dict[str, Any]]:
    """The children of each fallback that may serve (or still runs), at ``counts``."""
    objects: list[dict[str, Any]] = []
    for backup, replicas in zip(backups, counts, strict=False):
        if backup.wanted is None:
            continue  # could not be planned: reported in status.failover
        if not backup.candidate.servable and not backup.live:
            continue  # reported in status.failover, never given pods
        objects += fallbacks.children_of(
            backup.wanted,
            name=name,
            namespace=namespace,
            uid=uid,
            index=backup.candidate.index,
            settings=settings,
            # A fallback that may not serve any more keeps its objects but no pods.
            replicas=replicas if backup.candidate.servable else 0,
        )
    return objects
