"""How requests reach the serving pods: the ClusterIP Services and the Gateway API
HTTPRoute that splits traffic between the stable variant and a canary.

The Services select by ``identity``'s labels; the HTTPRoute (``spec.traffic.gatewayRef``)
names the variants' Services with exact weights, which ``operations.rollout`` and
``operations.failover`` decide. Pure: names and weights in, objects out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.serving import engines
from llama_operator.serving.builders import hashing, identity, notice

GATEWAY_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_API_VERSION = f"{GATEWAY_GROUP}/v1"


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
        annotations = notice.license_annotations(detection)
    chosen = (
        {identity.DEPLOYMENT_LABEL: name}
        if all_variants
        else identity.selector(name=name, variant=target or variant)
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": namespace,
            "labels": identity.labels(name=name, variant=variant),
            "annotations": dict(annotations),
            "ownerReferences": [identity.owner_reference(name=name, uid=uid)],
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


def http_route(
    *,
    name: str,
    namespace: str,
    uid: str,
    traffic: api.Traffic,
    canary_weight: int | None,
    annotations: Mapping[str, str],
    stable: str = identity.PRIMARY,
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
    alone = stable != identity.PRIMARY or canary_weight is None
    backends = [_backend(f"{name}-{stable}", 100 if alone else 100 - (canary_weight or 0))]
    if not alone:
        assert canary_weight is not None
        backends.append(_backend(f"{name}-{identity.CANARY}", canary_weight))
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
    return hashing.with_hash(
        {
            "apiVersion": HTTPROUTE_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": identity.labels(name=name, variant="route"),
                "annotations": dict(annotations),
                "ownerReferences": [identity.owner_reference(name=name, uid=uid)],
            },
            "spec": route_spec,
        }
    )


def _backend(service_name: str, weight: int) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": service_name,
        "port": engines.PORT,
        "weight": weight,
    }
