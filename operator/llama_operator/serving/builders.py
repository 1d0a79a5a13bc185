"""Builders: the Kubernetes objects one LlamaDeployment owns, as plain dicts.

Pipeline position: planner (Plan) -> engines (container) -> **builders** (Deployment,
Services, the licence ConfigMap, the canary's copies of them, the HTTPRoute) -> k8s
(server-side apply). Pure: spec, plan, pool,
settings and the detected licence in, objects out, no I/O; ``k8s`` applies what comes
out unchanged.

Every object carries ``HASH_ANNOTATION``, a hash of the rest of the object, so the
reconciler can compare it with the live object's annotation and skip writes that
would change nothing (an unchanged LlamaDeployment makes no writes). Serving
Deployments also carry ``REVISION_ANNOTATION``, the hash of the pod template the
primary has (or would have) for the spec they were built from: two revisions differ
exactly when a change would restart the serving pods, which is what a canary rollout
protects (``rollout``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from llama_operator import api
from llama_operator.licensing import gating, terms
from llama_operator.planning import config, pools, sizing
from llama_operator.serving import engines

HASH_ANNOTATION = f"{api.GROUP}/spec-hash"
REVISION_ANNOTATION = f"{api.GROUP}/revision"
# On a canary's pods only (never the primary's: adding it would restart them): which
# revision a pod runs, so a crash of an older canary template is not blamed on the newest.
REVISION_LABEL = f"{api.GROUP}/revision"
MODEL_ANNOTATION = f"{api.GROUP}/model"
PLAN_ANNOTATION = f"{api.GROUP}/plan"
LICENSE_ANNOTATION = f"{api.GROUP}/license"
AUP_ANNOTATION = f"{api.GROUP}/aup-url"
DEPLOYMENT_LABEL = f"{api.GROUP}/deployment"
# Fallback pods carry this instead of DEPLOYMENT_LABEL: the entry Service selects the
# primary's and a canary's pods by DEPLOYMENT_LABEL alone, and must never pick a
# fallback's by accident; it selects a fallback's only when one is active.
FALLBACK_OF_LABEL = f"{api.GROUP}/fallback-of"
FALLBACK_PREFIX = api.FALLBACK_PREFIX
VARIANT_LABEL = f"{api.GROUP}/variant"
# Named in api, whose MAX_NAME_LENGTH leaves room for them in every Service name.
PRIMARY = api.PRIMARY
CANARY = api.CANARY
GATEWAY_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_API_VERSION = f"{GATEWAY_GROUP}/v1"
MANAGER = "llama-operator"

# Long enough for a first start that downloads the weights (see the startup probe).
PROGRESS_DEADLINE_SECONDS = 3600
TERMINATION_GRACE_SECONDS = 60
SHM_SIZE_LIMIT = "16Gi"
FS_GROUP = 1000


def labels(*, name: str, variant: str) -> dict[str, str]:
    """Recommended ``app.kubernetes.io`` labels plus the operator's selector labels."""
    return {
        "app.kubernetes.io/name": api.SINGULAR,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": variant,
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": MANAGER,
        **selector(name=name, variant=variant),
    }


def selector(*, name: str, variant: str) -> dict[str, str]:
    """The labels that pick one variant's pods; a subset of ``labels``."""
    if variant.startswith(FALLBACK_PREFIX):
        return {FALLBACK_OF_LABEL: name, VARIANT_LABEL: variant}
    return {DEPLOYMENT_LABEL: name, VARIANT_LABEL: variant}


def selector_string(*, name: str, variant: str) -> str:
    """``selector`` as a label-selector string, for ``status.selector`` (/scale)."""
    return ",".join(f"{key}={value}" for key, value in selector(name=name, variant=variant).items())


def owner_reference(*, name: str, uid: str) -> dict[str, Any]:
    """Makes the LlamaDeployment the controller of a child, so deleting it deletes them."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def plan_summary(*, plan: api.Plan) -> str:
    """A short human summary of a plan, e.g. ``2x NVIDIA-L4 fp8``."""
    if plan.quantization == "none":
        precision = "bf16" if plan.dtype == "bfloat16" else "fp16"
    else:
        precision = plan.quantization
    return f"{plan.gpusPerReplica}x {plan.gpuProduct} {precision}"


def checkpoint_gib(*, plan: api.Plan) -> float:
    """Size of what the engine downloads, which is not always what it serves.

    fp8, eetq and bitsandbytes quantize at load time from the 16-bit checkpoint, so
    the download is the 16-bit size even though the plan's weights are smaller.
    """
    if plan.quantization in ("none", "awq", "gptq"):
        return plan.weightsGiB
    if plan.checkpointGiB is not None:
        return plan.checkpointGiB
    # A plan made before checkpointGiB existed: scaling every weight by the 16-bit ratio
    # over-counts the embeddings (already 16-bit), which errs on the large side.
    ratio = sizing.BYTES_PER_PARAMETER["none"] / sizing.BYTES_PER_PARAMETER[plan.quantization]
    return plan.weightsGiB * ratio


def license_config_map_name(*, name: str, variant: str = PRIMARY) -> str:
    """``<name>-license`` for the primary; a canary of another model carries its own."""
    if variant == PRIMARY:
        return gating.config_map_name(name)
    return gating.config_map_name(f"{name}-{variant}")


def volumes(
    *, name: str, spec: api.LlamaDeploymentSpec, plan: api.Plan, variant: str = PRIMARY
) -> list[dict[str, Any]]:
    """The pod volumes the engine container mounts (``engines.volume_mounts``)."""
    cache = spec.modelCache
    if cache.volume == "persistentVolumeClaim":
        if not cache.claimName:
            raise api.SpecError(
                "spec.modelCache.claimName", "is required when volume is persistentVolumeClaim"
            )
        model_cache: dict[str, Any] = {
            "name": engines.CACHE_VOLUME,
            "persistentVolumeClaim": {"claimName": cache.claimName},
        }
    else:
        # Twice the download: room for the partial files next to the finished ones,
        # without letting a runaway cache fill the node's disk.
        size = cache.sizeLimit or f"{math.ceil(2 * checkpoint_gib(plan=plan))}Gi"
        model_cache = {"name": engines.CACHE_VOLUME, "emptyDir": {"sizeLimit": size}}
    result = [
        model_cache,
        {"name": engines.TMP_VOLUME, "emptyDir": {}},
        {
            "name": engines.LICENSE_VOLUME,
            "configMap": {
                "name": license_config_map_name(name=name, variant=variant),
                "defaultMode": 0o444,
            },
        },
    ]
    if engines.needs_shared_memory(plan=plan):
        # Memory-backed, so it counts against the pod's memory; bounded for that reason.
        result.append(
            {
                "name": engines.SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT},
            }
        )
    return result


def deployment(
    *,
    name: str,
    namespace: str,
    uid: str,
    variant: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    replicas: int,
    detection: terms.Detection,
    revision: str | None = None,
) -> dict[str, Any]:
    """The Deployment serving one variant (primary, canary, fallback-N).

    ``revision``: the primary-form revision to annotate (a canary's is the revision the
    primary will have once the canary is promoted); None computes the primary's own.
    """
    if pool.name != plan.pool:
        raise ValueError(f"plan is for pool {plan.pool!r}, but pool {pool.name!r} was given")
    pod_spec: dict[str, Any] = {
        "containers": [engines.container(name=name, spec=spec, plan=plan, settings=settings)],
        "nodeSelector": dict(pool.nodeSelector),
        "tolerations": copy.deepcopy(pool.tolerations),
        # Kubernetes injects <SERVICE>_PORT variables for every Service in the
        # namespace; a Service named "vllm" yields VLLM_PORT=tcp://..., which vLLM reads
        # as its own setting and fails on. The engines need none of these variables.
        "enableServiceLinks": False,
        # Lets in-flight generations finish after the pod leaves the Service endpoints.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # The engine never calls the Kubernetes API; no token means none to steal.
        "automountServiceAccountToken": False,
        "securityContext": {
            # False only for an image that cannot start as non-root (TGI); the container
            # context says so too, and the PodSecurity condition tells the user.
            "runAsNonRoot": not engines.runs_as_root(plan=plan),
            # Makes a PersistentVolumeClaim cache writable by the non-root engine user.
            "fsGroup": FS_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": volumes(name=name, spec=spec, plan=plan, variant=variant),
    }
    policy = spec.rollout if spec.rollout is not None else api.Rollout()
    result: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{name}-{variant}",
            "namespace": namespace,
            "labels": labels(name=name, variant=variant),
            "ownerReferences": [owner_reference(name=name, uid=uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(name=name, variant=variant)},
            # By default a new pod must be ready before an old one goes, so a bad new
            # template (wrong flag, model that no longer fits) never takes serving pods
            # down; it just stalls until the deadline. The cost is one spare pod's worth
            # of GPUs (spec.rollout.maxSurge; a fixed count, never a percentage that
            # would round up to double the GPU budget).
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": policy.maxSurge,
                    "maxUnavailable": policy.maxUnavailable,
                },
            },
            "progressDeadlineSeconds": (
                min(
                    PROGRESS_DEADLINE_SECONDS, max(60, int(api.parse_duration(policy.readyTimeout)))
                )
                if variant == CANARY
                else PROGRESS_DEADLINE_SECONDS
            ),
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": labels(name=name, variant=variant),
                    "annotations": {
                        MODEL_ANNOTATION: spec.model.id,
                        PLAN_ANNOTATION: plan_summary(plan=plan),
                        **license_annotations(detection),
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    if variant == PRIMARY and revision is None:
        revision = template_revision(result)
    if revision is not None:
        result["metadata"]["annotations"] = {REVISION_ANNOTATION: revision}
    if variant == CANARY and revision is not None:
        result["spec"]["template"]["metadata"]["labels"][REVISION_LABEL] = revision
    return result


def template_revision(deployment: dict[str, Any]) -> str:
    """Hash of a primary Deployment's pod template: what a rollout compares."""
    template = deployment["spec"]["template"]
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def revision_of(deployment: Mapping[str, Any] | None) -> str | None:
    """The revision a live Deployment was applied with (None: none, or an older operator)."""
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    return str(value) if value else None


def license_annotations(detection: terms.Detection) -> dict[str, str]:
    """The licence id (``unknown`` when it is) and the use-policy link, for pods and Services."""
    result = {LICENSE_ANNOTATION: detection.id or "unknown"}
    if detection.license is not None and detection.license.aup_url:
        result[AUP_ANNOTATION] = detection.license.aup_url
    return result


def license_config_map(
    *,
    name: str,
    namespace: str,
    uid: str,
    model_id: str,
    detection: terms.Detection,
    variant: str = PRIMARY,
) -> dict[str, Any]:
    """``<name>-license``: the NOTICE, the links and the obligations, mounted at /licenses.

    Keys are files in the mount: ``NOTICE`` (the licence's exact sentence, then the
    attribution line) only when the licence has one, ``LICENSE_URL`` and ``AUP_URL`` when
    known, ``LICENSE_ID`` and ``README`` always.
    """
    lic = detection.license
    data: dict[str, str] = {"LICENSE_ID": (detection.id or "unknown") + "\n"}
    if lic is not None:
        if lic.notice_text():
            data["NOTICE"] = lic.notice_text() + "\n"
        data["LICENSE_URL"] = lic.license_url + "\n"
        if lic.aup_url:
            data["AUP_URL"] = lic.aup_url + "\n"
    data["README"] = terms.readme(detection, model_id)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": license_config_map_name(name=name, variant=variant),
            "namespace": namespace,
            "labels": labels(
                name=name, variant="license" if variant == PRIMARY else f"{variant}-license"
            ),
            "annotations": license_annotations(detection),
            "ownerReferences": [owner_reference(name=name, uid=uid)],
        },
        "data": data,
    }


def service(
    *,
    name: str,
    namespace: str,
    uid: str,
    service_name: str,
    variant: str,
    detection: terms.Detection | None = None,
    annotations: Mapping[str, str] | None = None,
    all_variants: bool = False,
    target: str | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service named ``service_name`` in front of one variant's pods.

    ``all_variants``: select every serving pod of this LlamaDeployment (stable and canary
    alike), which is how a canary's share follows its replica count without a Gateway.
    ``annotations`` replace the licence annotations of ``detection`` (the entry Service
    describes what the primary runs, which during a rollout is not the newest spec).
    ``target``: select that variant's pods instead (the entry Service on an active
    fallback).
    """
    if annotations is None:
        if detection is None:
            raise ValueError("service() needs detection or annotations")
        annotations = license_annotations(detection)
    chosen = (
        {DEPLOYMENT_LABEL: name} if all_variants else selector(name=name, variant=target or variant)
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": namespace,
            "labels": labels(name=name, variant=variant),
            "annotations": dict(annotations),
            "ownerReferences": [owner_reference(name=name, uid=uid)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": chosen,
            "ports": [
                {
                    "name": engines.PORT_NAME,
                    "port": engines.PORT,
                    "targetPort": engines.PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


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
        license_config_map(
            name=name, namespace=namespace, uid=uid, model_id=spec.model.id, detection=detection
        ),
        deployment(
            name=name,
            namespace=namespace,
            uid=uid,
            variant=PRIMARY,
            spec=spec,
            plan=plan,
            pool=pool,
            settings=settings,
            replicas=spec.replicas,
            detection=detection,
        ),
        # The stable entry point users call. It selects the primary until rollouts
        # and fallbacks move traffic between variants.
        service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=name,
            variant=PRIMARY,
            detection=detection,
        ),
        service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=f"{name}-{PRIMARY}",
            variant=PRIMARY,
            detection=detection,
        ),
    ]
    return [with_hash(obj) for obj in objects]


def variant_objects(
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
        license_config_map(
            name=name,
            namespace=namespace,
            uid=uid,
            model_id=spec.model.id,
            detection=detection,
            variant=variant,
        ),
        deployment(
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
        service(
            name=name,
            namespace=namespace,
            uid=uid,
            service_name=f"{name}-{variant}",
            variant=variant,
            detection=detection,
        ),
    ]
    return [with_hash(obj) for obj in objects]


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
        variant=CANARY,
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
        variant=f"{FALLBACK_PREFIX}{index}",
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
        detection=detection,
        replicas=replicas,
    )


def http_route(
    *,
    name: str,
    namespace: str,
    uid: str,
    traffic: api.Traffic,
    canary_weight: int | None,
    annotations: Mapping[str, str],
    stable: str = PRIMARY,
) -> dict[str, Any]:
    """``HTTPRoute <name>`` (Gateway API v1) on ``spec.traffic.gatewayRef``: exact weights.

    ``canary_weight`` None: the primary alone. Otherwise both variants' Services, the
    canary with that percent (0 while it is not in traffic yet). ``stable``: the variant
    in the primary's place (an active fallback takes it, alone).
    """
    gateway = traffic.gatewayRef
    if gateway is None:
        raise ValueError("http_route() needs spec.traffic.gatewayRef")
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    if gateway.sectionName:
        parent["sectionName"] = gateway.sectionName
    alone = stable != PRIMARY or canary_weight is None
    backends = [_backend(f"{name}-{stable}", 100 if alone else 100 - (canary_weight or 0))]
    if not alone:
        assert canary_weight is not None
        backends.append(_backend(f"{name}-{CANARY}", canary_weight))
    route_spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": backends,
            }
        ],
    }
    if traffic.hostnames:
        route_spec["hostnames"] = list(traffic.hostnames)
    return with_hash(
        {
            "apiVersion": HTTPROUTE_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels(name=name, variant="route"),
                "annotations": dict(annotations),
                "ownerReferences": [owner_reference(name=name, uid=uid)],
            },
            "spec": route_spec,
        }
    )


# Restricted egress, by default: HTTPS to the public internet, which is where the model
# hub and its CDNs are (NetworkPolicy cannot name hosts). The private, shared (carrier NAT)
# and link-local ranges are left out, so a compromised engine reaches no other workload in
# the cluster or the network it runs in, and no cloud metadata endpoint (169.254.169.254).
PUBLIC_INTERNET: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "0.0.0.0/0",
        (
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ),
    ),
    ("::/0", ("::1/128", "fc00::/7", "fe80::/10")),
)
HUB_PORT = 443
DNS_PORT = 53
# Kubernetes sets this label on every namespace (1.21+): a namespace selected by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def network_policy_name(name: str) -> str:
    """``<name>``: one NetworkPolicy per LlamaDeployment, for all of its serving pods."""
    return name


def serving_pods(*, name: str) -> dict[str, str]:
    """Labels every serving pod of this LlamaDeployment carries, and nothing else does:
    the primary's, a canary's and the fallbacks' alike (``labels``)."""
    return {
        "app.kubernetes.io/name": api.SINGULAR,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGER,
    }


def network_policy(
    *,
    name: str,
    namespace: str,
    uid: str,
    network: api.Network,
    settings: config.NetworkPolicy,
) -> dict[str, Any]:
    """``NetworkPolicy <name>``: who may reach the serving port of this endpoint's pods, and,
    with ``spec.network.egress.restrict``, where they may connect.

    Ingress: ``spec.network.allowFrom`` (omitted: every pod in this namespace), the
    operator's pods (metrics for canary analysis, autoscaling and failover) and the
    monitoring namespace of the operator config. The kubelet's probes are not pod traffic
    and are not affected.
    """
    port = [{"protocol": "TCP", "port": engines.PORT}]
    peers = (
        network.allowFrom
        if network.allowFrom is not None
        else [api.NetworkPeer(podSelector=api.LabelSelector())]
    )
    ingress: list[dict[str, Any]] = []
    if peers:
        # Never an empty "from": that would let everyone in.
        ingress.append(
            {
                "from": [_peer(peer.namespaceSelector, peer.podSelector) for peer in peers],
                "ports": copy.deepcopy(port),
            }
        )
    if settings.operatorNamespace:
        ingress.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {NAMESPACE_NAME_LABEL: settings.operatorNamespace}
                        },
                        "podSelector": {"matchLabels": dict(settings.operatorPodLabels)},
                    }
                ],
                "ports": copy.deepcopy(port),
            }
        )
    if settings.monitoringNamespace:
        monitoring: dict[str, Any] = {
            "namespaceSelector": {
                "matchLabels": {NAMESPACE_NAME_LABEL: settings.monitoringNamespace}
            }
        }
        if settings.monitoringPodLabels:
            monitoring["podSelector"] = {"matchLabels": dict(settings.monitoringPodLabels)}
        ingress.append({"from": [monitoring], "ports": copy.deepcopy(port)})
    policy_spec: dict[str, Any] = {
        "podSelector": {"matchLabels": serving_pods(name=name)},
        # Ingress is always listed: with no rule at all it still denies every connection.
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if network.egress.restrict:
        policy_spec["policyTypes"].append("Egress")
        policy_spec["egress"] = [
            # DNS to wherever the cluster resolves (kube-dns, a node-local cache).
            {"ports": [{"protocol": p, "port": DNS_PORT} for p in ("UDP", "TCP")]},
            *_egress_rules(network.egress.allowTo),
        ]
    return with_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": network_policy_name(name),
                "namespace": namespace,
                "labels": labels(name=name, variant="network-policy"),
                "ownerReferences": [owner_reference(name=name, uid=uid)],
            },
            "spec": policy_spec,
        }
    )


def _egress_rules(allow_to: list[api.EgressRule] | None) -> list[dict[str, Any]]:
    if allow_to is None:
        return [
            {
                "to": [
                    {"ipBlock": {"cidr": cidr, "except": list(excluded)}}
                    for cidr, excluded in PUBLIC_INTERNET
                ],
                "ports": [{"protocol": "TCP", "port": HUB_PORT}],
            }
        ]
    result = []
    for rule in allow_to:
        peer: dict[str, Any] = {}
        if rule.ipBlock is not None:
            block: dict[str, Any] = {"cidr": rule.ipBlock.cidr}
            if rule.ipBlock.except_:
                block["except"] = list(rule.ipBlock.except_)
            peer["ipBlock"] = block
        peer.update(_peer(rule.namespaceSelector, rule.podSelector))
        result.append(
            {"to": [peer], "ports": [{"protocol": "TCP", "port": port} for port in rule.ports]}
        )
    return result


def _peer(namespaces: api.LabelSelector | None, pods: api.LabelSelector | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if namespaces is not None:
        result["namespaceSelector"] = _selector(namespaces)
    if pods is not None:
        result["podSelector"] = _selector(pods)
    return result


def _selector(selector: api.LabelSelector) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if selector.matchLabels:
        result["matchLabels"] = dict(selector.matchLabels)
    if selector.matchExpressions:
        result["matchExpressions"] = [
            {
                "key": requirement.key,
                "operator": requirement.operator,
                **({"values": list(requirement.values)} if requirement.values else {}),
            }
            for requirement in selector.matchExpressions
        ]
    return result


def _backend(service_name: str, weight: int) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": service_name,
        "port": engines.PORT,
        "weight": weight,
    }


def license_annotations_of_status(license: Mapping[str, Any] | None) -> dict[str, str]:
    """``license_annotations`` from ``status.license``: what the running primary serves."""
    license = license or {}
    result = {LICENSE_ANNOTATION: str(license.get("id") or "unknown")}
    if license.get("aupURL"):
        result[AUP_ANNOTATION] = str(license["aupURL"])
    return result


def spec_hash(obj: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the object's canonical JSON, minus its own hash."""
    canonical = json.dumps(_without_hash(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of the object with ``HASH_ANNOTATION`` set; the input is not changed."""
    result = _without_hash(obj)
    digest = spec_hash(result)
    metadata = result.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return result


def _without_hash(obj: dict[str, Any]) -> dict[str, Any]:
    # An emptied annotations map is dropped as well, so an object hashes the same
    # whether it never had annotations or only ever had the hash.
    result = copy.deepcopy(obj)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(HASH_ANNOTATION, None)
            if not annotations:
                del metadata["annotations"]
    return result
