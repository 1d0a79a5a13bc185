"""The NetworkPolicy of one LlamaDeployment: who may reach its serving pods and, when
``spec.network.egress.restrict`` is set, where they may connect.

Whether a policy is built at all is ``serving.security``'s decision; the operator
config's ``networkPolicy`` names the operator's and the monitoring's namespaces. Pure:
``spec.network`` and those settings in, one object out.
"""

from __future__ import annotations

import copy
from typing import Any

from llama_operator import api
from llama_operator.planning import config
from llama_operator.serving import engines
from llama_operator.serving.builders import hashing, identity

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
    policy_spec: dict[str, Any] = {
        "podSelector": {"matchLabels": identity.serving_pods(name=name)},
        # Ingress is always listed: with no rule at all it still denies every connection.
        "policyTypes": ["Ingress"],
        "ingress": _ingress_rules(network=network, settings=settings),
    }
    if network.egress.restrict:
        policy_spec["policyTypes"].append("Egress")
        policy_spec["egress"] = [
            # DNS to wherever the cluster resolves (kube-dns, a node-local cache).
            {"ports": [{"protocol": p, "port": DNS_PORT} for p in ("UDP", "TCP")]},
            *_egress_rules(network.egress.allowTo),
        ]
    return hashing.with_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": network_policy_name(name),
                "namespace": namespace,
                "labels": identity.labels(name=name, variant="network-policy"),
                "ownerReferences": [identity.owner_reference(name=name, uid=uid)],
            },
            "spec": policy_spec,
        }
    )


def _ingress_rules(*, network: api.Network, settings: config.NetworkPolicy) -> list[dict[str, Any]]:
    """One rule per kind of client, in order: the spec's, the operator's, the monitoring's."""
    port = [{"protocol": "TCP", "port": engines.PORT}]
    clients = (
        _spec_peers(network),
        _operator_peers(settings),
        _monitoring_peers(settings),
    )
    # Never an empty "from": that would let everyone in.
    return [{"from": peers, "ports": copy.deepcopy(port)} for peers in clients if peers]


def _spec_peers(network: api.Network) -> list[dict[str, Any]]:
    peers = (
        network.allowFrom
        if network.allowFrom is not None
        else [api.NetworkPeer(podSelector=api.LabelSelector())]
    )
    return [_peer(peer.namespaceSelector, peer.podSelector) for peer in peers]


def _operator_peers(settings: config.NetworkPolicy) -> list[dict[str, Any]]:
    if not settings.operatorNamespace:
        return []
    return [
        {
            "namespaceSelector": {
                "matchLabels": {NAMESPACE_NAME_LABEL: settings.operatorNamespace}
            },
            "podSelector": {"matchLabels": dict(settings.operatorPodLabels)},
        }
    ]


def _monitoring_peers(settings: config.NetworkPolicy) -> list[dict[str, Any]]:
    if not settings.monitoringNamespace:
        return []
    monitoring: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.monitoringNamespace}}
    }
    if settings.monitoringPodLabels:
        monitoring["podSelector"] = {"matchLabels": dict(settings.monitoringPodLabels)}
    return [monitoring]


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
