"""Builders: the Kubernetes objects one LlamaDeployment owns, as plain dicts.

Pipeline position: planner (Plan) -> engines (container) -> **builders** (Deployment,
Services, the licence ConfigMap, the canary's copies of them, the HTTPRoute, the
NetworkPolicy) -> clients.k8s (server-side apply). Pure: spec, plan, pool,
settings and the detected licence in, objects out, no I/O; ``clients.k8s`` applies what
comes out unchanged.

Every object carries ``HASH_ANNOTATION``, a hash of the rest of the object, so the
reconciler can compare it with the live object's annotation and skip writes that
would change nothing (an unchanged LlamaDeployment makes no writes). Serving
Deployments also carry ``REVISION_ANNOTATION``, the hash of the pod template the
primary has (or would have) for the spec they were built from: two revisions differ
exactly when a change would restart the serving pods, which is what a canary rollout
protects (``operations.rollout``).

One module per kind of object, and the package re-exports their public names, so callers
write ``builders.deployment`` whichever module holds it:

- ``identity``: the labels, selectors and owner reference every child carries;
- ``hashing``: the spec hash and the pod template's revision;
- ``workload``: the serving Deployment, its pod template and volumes (the model cache);
- ``traffic``: the Services and the HTTPRoute;
- ``notice``: the licence ConfigMap and the licence annotations;
- ``policy``: the NetworkPolicy;
- ``variants``: the sets of children of the primary, a canary and a fallback.
"""

from __future__ import annotations

from llama_operator.serving.builders.hashing import (
    HASH_ANNOTATION,
    REVISION_ANNOTATION,
    revision_of,
    spec_hash,
    template_revision,
    with_hash,
)
from llama_operator.serving.builders.identity import (
    CANARY,
    DEPLOYMENT_LABEL,
    FALLBACK_OF_LABEL,
    FALLBACK_PREFIX,
    MANAGER,
    PRIMARY,
    VARIANT_LABEL,
    labels,
    owner_reference,
    selector,
    selector_string,
    serving_pods,
)
from llama_operator.serving.builders.notice import (
    AUP_ANNOTATION,
    LICENSE_ANNOTATION,
    license_annotations,
    license_annotations_of_status,
    license_config_map,
    license_config_map_name,
)
from llama_operator.serving.builders.policy import (
    DNS_PORT,
    HUB_PORT,
    NAMESPACE_NAME_LABEL,
    PUBLIC_INTERNET,
    network_policy,
    network_policy_name,
)
from llama_operator.serving.builders.traffic import (
    GATEWAY_GROUP,
    HTTPROUTE_API_VERSION,
    http_route,
    service,
)
from llama_operator.serving.builders.variants import (
    build_all,
    canary_objects,
    fallback_objects,
    variant_objects,
)
from llama_operator.serving.builders.workload import (
    ADAPTERS_REVISION_ANNOTATION,
    FS_GROUP,
    MODEL_ANNOTATION,
    PLAN_ANNOTATION,
    PROGRESS_DEADLINE_SECONDS,
    REVISION_LABEL,
    SHM_SIZE_LIMIT,
    TERMINATION_GRACE_SECONDS,
    checkpoint_gib,
    deployment,
    plan_summary,
    volumes,
)

__all__ = [
    "ADAPTERS_REVISION_ANNOTATION",
    "AUP_ANNOTATION",
    "CANARY",
    "DEPLOYMENT_LABEL",
    "DNS_PORT",
    "FALLBACK_OF_LABEL",
    "FALLBACK_PREFIX",
    "FS_GROUP",
    "GATEWAY_GROUP",
    "HASH_ANNOTATION",
    "HTTPROUTE_API_VERSION",
    "HUB_PORT",
    "LICENSE_ANNOTATION",
    "MANAGER",
    "MODEL_ANNOTATION",
    "NAMESPACE_NAME_LABEL",
    "PLAN_ANNOTATION",
    "PRIMARY",
    "PROGRESS_DEADLINE_SECONDS",
    "PUBLIC_INTERNET",
    "REVISION_ANNOTATION",
    "REVISION_LABEL",
    "SHM_SIZE_LIMIT",
    "TERMINATION_GRACE_SECONDS",
    "VARIANT_LABEL",
    "build_all",
    "canary_objects",
    "checkpoint_gib",
    "deployment",
    "fallback_objects",
    "http_route",
    "labels",
    "license_annotations",
    "license_annotations_of_status",
    "license_config_map",
    "license_config_map_name",
    "network_policy",
    "network_policy_name",
    "owner_reference",
    "plan_summary",
    "revision_of",
    "selector",
    "selector_string",
    "service",
    "serving_pods",
    "spec_hash",
    "template_revision",
    "variant_objects",
    "volumes",
    "with_hash",
]
