"""RBAC contract: the chart's ClusterRole grants exactly what the operator calls.

The real operator runs through scenarios that exercise every code path that talks to
the API (create, update, readiness, an unplannable spec, a Hub lookup that reads a
token Secret, the API-key Secret check, GPU-node discovery, an outside edit, deletion,
a NetworkPolicy switched off). Every request kmock saw
is mapped to the (API group, resource, verb) the API server would authorise, and
compared with the rules of the ClusterRole rendered by the real ``helm``: nothing the
operator calls may be missing, and nothing may be granted that it never calls, except
the few rules listed in ``NEEDED_BUT_NOT_CALLED`` with the reason they are needed.

In the operator's own namespace it touches one object, the calibration ConfigMap of
KV-cache corrections: a second scenario checks that every request there is granted by the
chart's Role of that namespace, resource names included.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest
import yaml
from hack import generate_chart
from kube import (
    DEPLOYMENTS,
    ENDPOINTSLICES,
    HPAS,
    HTTPROUTES,
    LLAMA,
    NETWORKPOLICIES,
    POOLS_YAML,
    SCALEDOBJECTS,
    SECRETS,
    ApplyingEmulator,
    create,
    endpoint_slice,
    eventually,
    exists,
    gpu_node,
    llama,
    obj,
    patch,
    path,
    report_ready,
    secret,
    status_of,
    wait_condition,
)

import podserver

ROOT = pathlib.Path(__file__).parents[2]
HELM = ROOT / ".cache" / "bin" / "helm"
CHART = ROOT / "charts" / "llama-operator"

Permission = tuple[str, str, str]  # (API group, resource[/subresource], verb)

# Granted although no request in a run shows them, each for a stated reason.
NEEDED_BUT_NOT_CALLED: dict[Permission, str] = {
    ("llamaops.dev", "llamadeployments/finalizers", "update"): (
        "children carry ownerReferences with blockOwnerDeletion; clusters running the "
        "OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require it"
    ),
}
DISCOVERY_CONFIG = "images: {vllm: 'vllm/vllm-openai:v0.11.0'}\n"  # no pools: nodes are read


def slice_for(name: str, pod: podserver.FakePod) -> dict[str, Any]:
    """The EndpointSlice of <name>-primary with one ready pod: the fake one."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-primary-0",
            "namespace": "ai",
            "labels": {
                "kubernetes.io/service-name": f"{name}-primary",
                "app.kubernetes.io/managed-by": "llama-operator",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": pod.port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }


def permissions(request: Any) -> set[Permission]:
    """What the API server authorises for one recorded request (empty for discovery)."""
    parts = [p for p in request.url.path.split("/") if p]
    if len(parts) < 3:
        return set()  # /api, /apis, /version: discovery, allowed to everyone
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return set()
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]  # namespaced resource: drop namespaces/<ns>
    if not rest:
        return set()  # discovery (/api/v1, /apis/group/version): allowed to everyone
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    method = str(request.method.value)
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            verbs = {"watch"}
        else:
            verbs = {"get"} if named else {"list"}
    elif method == "POST":
        verbs = {"create"}
    elif method == "PATCH":
        # A server-side apply may create the object, which is authorised as create.
        apply = "apply-patch" in request.headers.get("Content-Type", "")
        verbs = {"patch", "create"} if apply else {"patch"}
    elif method == "PUT":
        verbs = {"update"}
    else:
        verbs = {method.lower()}
    return {(group, resource, verb) for verb in verbs}


def canary_pods_listed(cluster: ApplyingEmulator) -> bool:
    """The operator has listed the canary's pods (a resync does, to fail a crashing one)."""
    return any(
        str(r.method.value) == "GET"
        and r.url.path == "/api/v1/namespaces/ai/pods"
        and "llamaops.dev/variant=canary" in r.params.get("labelSelector", "")
        for r in list(cluster)
    )


def granted_by_chart() -> set[Permission]:
    if not HELM.exists():
        pytest.fail(f"helm not found at {HELM}: run make setup", pytrace=False)
    done = generate_chart.helm(
        "template", "llama-operator", str(CHART), "-n", "llama-operator", helm_path=HELM
    )
    assert done.returncode == 0, done.stderr
    rendered = done.stdout
    # The release's own objects: the uninstall hook's RBAC is the hook Job's, not the
    # operator's (tests/chart/test_chart_uninstall.py checks it).
    objects = [
        o
        for o in yaml.safe_load_all(rendered)
        if o and "helm.sh/hook" not in (o["metadata"].get("annotations") or {})
    ]
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    role_name = binding["roleRef"]["name"]
    (role,) = [
        o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == role_name
    ]
    granted: set[Permission] = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    granted.add((group, resource, verb))
    return granted


@pytest.mark.operator_config(DISCOVERY_CONFIG)
async def test_chart_clusterrole_grants_exactly_what_the_operator_calls(
    operator: ApplyingEmulator,
) -> None:
    async with operator.post("/api/v1/nodes", json=gpu_node("gpu-1", "NVIDIA-L4", 4, 23034)) as r:
        assert r.status < 300
    # A model outside the catalog with a token: the Hub lookup reads the Secret.
    await create(operator, SECRETS, secret("hf", {"token": "hf_test"}))
    hub_spec = {
        "model": {"id": "example-org/tiny-llama", "tokenSecretRef": {"name": "hf", "key": "token"}}
    }
    await create(operator, LLAMA, llama("hub", spec=hub_spec))
    await create(operator, LLAMA, llama("chat"))
    await create(operator, LLAMA, llama("bad", spec={"model": {"id": "x/unknown"}}))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
    await eventually(lambda: obj(operator, DEPLOYMENTS, "hub-primary"))
    await eventually(lambda: status_of(operator, "bad").get("phase") == "Failed")
    await patch(
        operator,
        DEPLOYMENTS,
        "chat-primary",
        {"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}},
        subresource="status",
    )
    await eventually(lambda: status_of(operator).get("phase") == "Ready")
    await patch(
        operator, LLAMA, "chat", {"spec": {"model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}}}
    )
    await eventually(lambda: status_of(operator).get("observedGeneration") == 2)
    # That model change on a Ready endpoint is a canary rollout: its pods are listed (to
    # fail a crashing canary at once), and an abort deletes the canary's children.
    await eventually(lambda: exists(operator, DEPLOYMENTS, "chat-canary"))
    await eventually(lambda: (status_of(operator).get("rollout") or {}).get("phase") == "Starting")
    await eventually(lambda: canary_pods_listed(operator), message="the canary's pods listed")
    await patch(
        operator, LLAMA, "chat", {"metadata": {"annotations": {"llamaops.dev/rollout": "abort"}}}
    )
    await eventually(lambda: not exists(operator, DEPLOYMENTS, "chat-canary"), message="abort")
    async with operator.delete(path(LLAMA, "hub")) as r:  # Kopf releases its finalizer
        assert r.status < 300

    # A Gateway API route: applied with spec.traffic.gatewayRef, deleted without it.
    routed = {**llama().get("spec", {}), "traffic": {"gatewayRef": {"name": "inference"}}}
    await create(operator, LLAMA, llama("gw", spec=routed))
    await eventually(lambda: exists(operator, HTTPROUTES, "gw"), message="route")
    await patch(operator, LLAMA, "gw", {"spec": {"traffic": None}})
    await eventually(lambda: not exists(operator, HTTPROUTES, "gw"), message="route deleted")

    # The NetworkPolicy of every endpoint: applied, and deleted with spec.network.policy off.
    await eventually(lambda: exists(operator, NETWORKPOLICIES, "gw"), message="policy")
    await patch(operator, LLAMA, "gw", {"spec": {"network": {"policy": False}}})
    await eventually(lambda: not exists(operator, NETWORKPOLICIES, "gw"), message="policy gone")

    # Autoscaling: the built-in scaler (EndpointSlices, a pod's /metrics, the /scale
    # subresource) and the external scalers (applied, then deleted on a switch).
    with podserver.FakePod(waiting=30) as pod:
        auto = {
            **llama().get("spec", {}),
            "autoscaling": {"intervalSeconds": 1, "maxReplicas": 4},
        }
        await create(operator, LLAMA, llama("auto", spec=auto))
        await eventually(lambda: obj(operator, DEPLOYMENTS, "auto-primary"))
        await create(operator, ENDPOINTSLICES, slice_for("auto", pod))
        await eventually(lambda: obj(operator, LLAMA, "auto")["spec"]["replicas"] > 1)
    external = {**llama().get("spec", {}), "autoscaling": {"engine": "keda"}}
    await create(operator, LLAMA, llama("ext", spec=external))
    await eventually(lambda: exists(operator, SCALEDOBJECTS, "ext"))
    await patch(operator, LLAMA, "ext", {"spec": {"autoscaling": {"engine": "hpa"}}})
    await eventually(lambda: exists(operator, HPAS, "ext"))
    await eventually(lambda: not exists(operator, SCALEDOBJECTS, "ext"))
    await patch(operator, LLAMA, "ext", {"spec": {"autoscaling": None}})
    await eventually(lambda: not exists(operator, HPAS, "ext"))
    await asyncio.sleep(1.0)

    # The test's own requests (its creates and patches) are not the operator's.
    ours = {"kmock", "python"}
    called: set[Permission] = set()
    for request in operator:
        agent = request.headers.get("User-Agent", "")
        if any(agent.lower().startswith(prefix) for prefix in ours):
            continue
        called |= permissions(request)
    # (helm runs in a thread: the operator and kmock share this event loop.)
    granted = await asyncio.to_thread(granted_by_chart)

    assert called - granted == set(), "the operator calls what the ClusterRole does not grant"
    unused = granted - called - set(NEEDED_BUT_NOT_CALLED)
    assert unused == set(), "the ClusterRole grants what the operator never calls"
    assert ("", "secrets", "get") in called  # the scenario really covered the token read
    assert ("", "nodes", "watch") in called
    assert ("llamaops.dev", "llamadeployments/scale", "patch") in called
    assert ("keda.sh", "scaledobjects", "delete") in called
    assert ("", "pods", "list") in called
    assert ("", "pods", "watch") not in called
    assert ("apps", "deployments", "delete") in called
    assert ("gateway.networking.k8s.io", "httproutes", "delete") in called
    assert ("networking.k8s.io", "networkpolicies", "delete") in called
    assert ("networking.k8s.io", "networkpolicies", "get") not in called  # never read


# --- the calibration ConfigMap, in the operator's own namespace ----------------------------

CALIBRATION_HOME = "llama-operator"  # the namespace granted_by_chart renders the release in
CALIBRATION_CONFIG = POOLS_YAML.read_text() + (
    f"\ncalibration:\n  namespace: {CALIBRATION_HOME}\n  configMap: llama-operator-calibration\n"
)
Named = tuple[str, str, str, str, str]  # (namespace, API group, resource, name, verb)


def named_permissions(request: Any) -> set[Named]:
    """``permissions`` of a request in a namespace, with the namespace and object name."""
    parts = [p for p in request.url.path.split("/") if p]
    if "namespaces" not in parts:
        return set()
    at = parts.index("namespaces")
    rest = parts[at + 2 :]
    namespace, name = parts[at + 1], rest[1] if len(rest) >= 2 else ""
    return {
        (namespace, group, resource, name, verb) for group, resource, verb in permissions(request)
    }


def granted_in_home() -> list[dict[str, Any]]:
    """The rules of every Role the chart grants in its own namespace."""
    done = generate_chart.helm(
        "template", "llama-operator", str(CHART), "-n", CALIBRATION_HOME, helm_path=HELM
    )
    assert done.returncode == 0, done.stderr
    roles = [
        o
        for o in yaml.safe_load_all(done.stdout)
        if o and o["kind"] == "Role" and o["metadata"]["namespace"] == CALIBRATION_HOME
    ]
    return [rule for role in roles for rule in role["rules"]]


def allows(rules: list[dict[str, Any]], group: str, resource: str, name: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and ("resourceNames" not in rule or name in rule["resourceNames"])
        for rule in rules
    )


@pytest.mark.operator_config(CALIBRATION_CONFIG)
async def test_calibration_role_grants_exactly_what_the_operator_calls_there(
    operator: ApplyingEmulator,
) -> None:
    # A pod reporting less KV cache than planned: the ConfigMap is created, then a second
    # endpoint reads it when planned; a third shortfall merges a key into the existing one.
    spec = {**llama().get("spec", {}), "placement": {"pools": ["l4"]}}
    with podserver.FakePod() as pod:
        await create(operator, LLAMA, llama("chat", spec=spec))
        plan = await eventually(lambda: status_of(operator).get("plan"))
        pod.max_model_len = plan["maxModelLen"]
        pod.num_gpu_blocks = int(plan["kvCacheTokens"] * 0.8) // podserver.VLLM_BLOCK_SIZE
        await create(
            operator, ENDPOINTSLICES, endpoint_slice("chat-primary", "primary", 0, pod.port)
        )
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await report_ready(operator, "chat-primary", 1)
        await wait_condition(operator, "KVCacheCapacity", reason="BelowPlan")
        await create(operator, LLAMA, llama("second", spec=spec))
        await eventually(lambda: status_of(operator, "second").get("plan"))
        smaller = {**spec, "model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}}
        await create(operator, LLAMA, llama("small", spec=smaller))
        small = await eventually(lambda: status_of(operator, "small").get("plan"))
        pod.max_model_len = small["maxModelLen"]
        pod.num_gpu_blocks = int(small["kvCacheTokens"] * 0.8) // podserver.VLLM_BLOCK_SIZE
        await create(
            operator, ENDPOINTSLICES, endpoint_slice("small-primary", "primary", 0, pod.port)
        )
        await eventually(lambda: obj(operator, DEPLOYMENTS, "small-primary"))
        await report_ready(operator, "small-primary", 1)
        await wait_condition(operator, "KVCacheCapacity", "small", reason="BelowPlan")

    called: set[Named] = set()
    for request in operator:
        agent = request.headers.get("User-Agent", "").lower()
        if not agent.startswith(("kmock", "python")):
            called |= named_permissions(request)
    home = {p for p in called if p[0] == CALIBRATION_HOME}
    calibration = "llama-operator-calibration"
    # Read (planning), created by apply (patch + create), merged into (patch): that object only.
    assert {(p[2], p[3], p[4]) for p in home} == {
        ("configmaps", calibration, "get"),
        ("configmaps", calibration, "patch"),
        ("configmaps", calibration, "create"),
    }
    rules = await asyncio.to_thread(granted_in_home)
    refused = [p for p in home if not allows(rules, p[1], p[2], p[3], p[4])]
    assert refused == [], "the Role in the operator's namespace does not grant these"
