"""The children of each variant, as the reconciler applies them: the primary's
(``build_all``), and those of a canary or a fallback beside it (``variant_objects``).

Each set is the variant's licence ConfigMap (``notice``), its Deployment (``workload``)
and its Service (``traffic``), each hashed (``hashing``) for the reconciler to apply
through ``clients.k8s``. Pure.
"""

from __future__ import annotations

from typing import Any

from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.planning import config, pools
from llama_operator.serving.builders import hashing, identity, notice, traffic, workload


def build_all(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    detection: terms.Detection,
) -> list[dict[str, Any]]:
    """Everything one LlamaDeployment owns today, each object hashed."""
    objects = [
        notice.license_config_map(
            name=name,
            namespace=namespace,
            uid=uid,
            model_id=spec.model.id,
            detection=detection,
            adapters=plan.adapters,
        ),
        workload.deployment(
            name=name,
            namespace=namespace,
            uid=uid,
            variant=identity.PRIMARY,
            spec=spec,
            plan=plan,
            pool=pool,
            settings=settings,
            replicas=spec.replicas,
            detection=detection,
        ),
        # The stable entry point users call. It selects the primary until rollouts
        # and fallbacks move traffic between variants.
        traffic.service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=name,
            variant=identity.PRIMARY,
            detection=detection,
        ),
        traffic.service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=f"{name}-{identity.PRIMARY}",
            variant=identity.PRIMARY,
            detection=detection,
        ),
    ]
    return [hashing.with_hash(obj) for obj in objects]


def variant_objects(  # noqa: PLR0913 - owner, variant, and what it runs
    *,
    name: str,
    namespace: str,
    uid: str,
    variant: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    detection: terms.Detection,
    replicas: int,
    revision: str | None = None,
) -> list[dict[str, Any]]:
    """A variant beside the primary, ``<name>-<variant>``: its licence ConfigMap (it may
    serve another model, under another licence), its Deployment and its Service (for the
    HTTPRoute and for scraping), each hashed."""
    objects = [
        notice.license_config_map(
            name=name,
            namespace=namespace,
            uid=uid,
            model_id=spec.model.id,
            detection=detection,
            variant=variant,
            adapters=plan.adapters,
        ),
        workload.deployment(
            name=name,
            namespace=namespace,
            uid=uid,
            variant=variant,
            spec=spec,
            plan=plan,
            pool=pool,
            settings=settings,
            replicas=replicas,
            detection=detection,
            revision=revision,
        ),
        traffic.service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=f"{name}-{variant}",
            variant=variant,
            detection=detection,
        ),
    ]
    return [hashing.with_hash(obj) for obj in objects]


def canary_objects(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    detection: terms.Detection,
    replicas: int,
    revision: str,
) -> list[dict[str, Any]]:
    """``<name>-canary``: the newest spec's children beside the stable ones; ``revision``
    is the primary's once it is promoted."""
    return variant_objects(
        name=name,
        namespace=namespace,
        uid=uid,
        variant=identity.CANARY,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
        detection=detection,
        replicas=replicas,
        revision=revision,
    )


def fallback_objects(
    *,
    name: str,
    namespace: str,
    uid: str,
    index: int,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    detection: terms.Detection,
    replicas: int,
) -> list[dict[str, Any]]:
    """``<name>-fallback-N``: the fallback model's children. ``spec`` is the fallback's
    own (``spec.fallbacks[N]`` over the primary's placement policy)."""
    return variant_objects(
        name=name,
        namespace=namespace,
        uid=uid,
        variant=api.fallback_variant(index),
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
        detection=detection,
        replicas=replicas,
    )
