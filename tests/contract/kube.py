"""An in-memory Kubernetes API for contract tests and benchmarks: kmock, plus the least
of what a real API server does that our operator and Kopf rely on.

kmock stores objects and serves list/watch/patch, but knows nothing of server-side
apply; ``ApplyingEmulator`` adds only the one behaviour our client relies on (an
apply PATCH of a missing object creates it, as a real API server does). Everything
else is kmock as shipped: naive merges, no garbage collection, no RBAC, so tests
assert only on what we send and store, not on what only a real API server would do.

``conftest.py`` runs the real operator against it; ``benchmarks/bench_reconcile.py``
imports it too.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import pytest

from llama_operator import api
from llama_operator.runtime import operator_metrics

LLAMA = "llamaops.dev/v1alpha1/llamadeployments"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
CONFIGMAPS = "v1/configmaps"
ENDPOINTSLICES = "discovery.k8s.io/v1/endpointslices"
SCALEDOBJECTS = "keda.sh/v1alpha1/scaledobjects"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"
PODS = "v1/pods"
NODES = "v1/nodes"
EVENTS = "v1/events"
SECRETS = "v1/secrets"
NETWORKPOLICIES = "networking.k8s.io/v1/networkpolicies"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
NAMESPACE = "ai"
# The operator config of these tests: the bundled pool catalogue (an operator config
# with only `pools:` set is valid).
POOLS_YAML = pathlib.Path(__file__).parents[2] / "operator/llama_operator/data/pools.yaml"
FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"
# Every LlamaDeployment of these tests names this Secret as its API key (``llama``), which
# the ``cluster`` fixture creates: the operator's defaults (API keys required) are what the
# contract tests run with. Its value is planted: no log line, Event, status or object the
# operator writes may ever contain it (conftest's ``no_secret_leaks``).
API_KEY_SECRET = "api-key"
PLANTED_API_KEY = "sk-planted-api-key-4f9d2a6c1e8b7035"


async def seed_api_key(cluster: kmock.KubernetesEmulator) -> None:
    """The Secret every ``llama`` names as its API key (the operator requires one)."""
    await create(cluster, SECRETS, secret(API_KEY_SECRET, {"api-key": PLANTED_API_KEY}))


def secret(name: str, values: dict[str, str], namespace: str = "ai") -> dict[str, Any]:
    """A Secret as ``kubectl create secret generic`` makes it (values base64-encoded)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


class ApplyingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock plus create-on-apply (server-side apply of a missing object creates it), and
    applies a test tells it to refuse (``refuse``) as an admission webhook or a validation
    error would."""

    _generated: int = 0
    _version: int = 1

    def refuse(self, resource: str, name: str, *, status: int, reason: str, message: str) -> None:
        """Answer every apply of ``resource`` ``name`` with this error until ``allow``."""
        self._refused()[resource, name] = kmock.KubernetesError(
            status=status, reason=reason, message=message
        )

    def allow(self, resource: str, name: str) -> None:
        self._refused().pop((resource, name), None)

    def _refused(self) -> dict[tuple[str, str], Exception]:
        refused: dict[tuple[str, str], Exception] = self.__dict__.setdefault("_refusals", {})
        return refused

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # A JSON-patch "test" of a stale resourceVersion is 422 Invalid on a real API
        # server (kmock says 500); Kopf re-reads the object on 422 instead of retrying.
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)

    def _bump_generation(self, request: kmock.Request) -> None:
        """metadata.generation: 1 on create, +1 on every change of spec (as the API server)."""
        # A /scale patch changes spec.replicas, which bumps the generation like any spec edit.
        if not isinstance(request.data, dict) or request.subresource not in (None, "scale"):
            return
        meta = request.data.setdefault("metadata", {})
        if request.action == kmock.action.CREATE:
            meta.setdefault("generation", 1)
            return
        if "spec" not in request.data or "generation" in meta:
            return  # a test may set the generation itself
        try:
            current = self._objects[request.resource, request.namespace, request.name]
        except KeyError:
            meta["generation"] = 1  # a server-side apply that creates
            return
        if not current.deleted and current.raw.get("spec") != request.data["spec"]:
            meta["generation"] = int(current.raw.get("metadata", {}).get("generation") or 0) + 1

    def _next_version(self) -> str:
        type(self)._version += 1
        return str(type(self)._version)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Every write bumps resourceVersion, as on a real API server: Kopf relies on it to
        # tell the echo of its own patch from a newer state of the object.
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            self._bump_generation(request)
            version = self._next_version()
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            elif isinstance(request.data, list):  # JSON patch
                request.data.append(
                    {"op": "add", "path": "/metadata/resourceVersion", "value": version}
                )
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            _assign_server_fields(meta)
            # generateName (Kopf's Events use it): the API server picks a unique name.
            if not meta.get("name") and meta.get("generateName"):
                type(self)._generated += 1
                meta["name"] = f"{meta['generateName']}{type(self)._generated:05d}"
        content_type = request.headers.get("Content-Type", "")
        if (
            request.action == kmock.action.UPDATE
            and request.resource is not None
            and request.subresource is None
            and "apply-patch" in content_type
        ):
            for (resource, name), refusal in self._refused().items():
                # kmock's resource equals its "group/version/plural" string.
                if request.resource == resource and request.name == name:
                    raise refusal
            if request.resource not in self.resources:
                # A kind the API server does not serve (a CRD that is not installed).
                raise kmock.KubernetesError(
                    status=404, reason="NotFound", message="the server could not find it"
                )
            key = (request.resource, request.namespace, request.name)
            created: dict[str, Any] | None = None
            async with self._lock:
                if key not in self._objects or self._objects[key].deleted:
                    data = copy.deepcopy(request.data)
                    meta = data.setdefault("metadata", {})
                    meta.setdefault("namespace", request.namespace)
                    _assign_server_fields(meta)
                    if key not in self._objects:
                        self._objects[key] = data
                    else:
                        self._objects[key].create(data)
                    created = self._objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": created})
            if created is not None:
                return aiohttp.web.json_response(created, status=201)
        return await super()._handle(request)


def _assign_server_fields(meta: dict[str, Any]) -> None:
    """What a real API server sets on create. Kopf keys its indexes by uid, so objects
    of different kinds that share a name must not share a (missing) uid."""
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    emulator.resources[LLAMA] = kmock.ResourceInfo(
        kind=api.KIND,
        namespaced=True,
        singular=api.SINGULAR,
        shortnames={"llama"},
        subresources={"status", "scale"},
        verbs={"get", "list", "watch", "patch", "create", "update", "delete"},
    )
    for resource, kind, namespaced in (
        (DEPLOYMENTS, "Deployment", True),
        (SERVICES, "Service", True),
        (CONFIGMAPS, "ConfigMap", True),
        (ENDPOINTSLICES, "EndpointSlice", True),
        (SCALEDOBJECTS, "ScaledObject", True),
        (HPAS, "HorizontalPodAutoscaler", True),
        (HTTPROUTES, "HTTPRoute", True),
        (PODS, "Pod", True),
        (NODES, "Node", False),
        (EVENTS, "Event", True),
        (SECRETS, "Secret", True),
        (NETWORKPOLICIES, "NetworkPolicy", True),
        # Kopf's own backbone: it watches CRDs and namespaces to notice new resources.
        ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
        ("v1/namespaces", "Namespace", False),
    ):
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            verbs={"get", "list", "watch", "patch", "create", "update", "delete"},
        )


def llama(
    name: str = "chat",
    *,
    spec: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    """A LlamaDeployment; one whose spec says nothing of ``auth`` gets the API key of
    ``API_KEY_SECRET`` (pass ``auth: {}`` for none)."""
    chosen = dict(
        spec
        or {
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
            "replicas": 1,
            "license": {"accept": True},
        }
    )
    chosen.setdefault("auth", {"apiKeySecretRef": {"name": API_KEY_SECRET}})
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": chosen,
    }


def gpu_node(name: str, product: str, gpus: int, memory_mib: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.memory": str(memory_mib),
                "nvidia.com/gpu.count": str(gpus),
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


# How long ``eventually`` waits by default. What takes a second here can take ten on a
# loaded 2-core CI machine running two suites at once; a longer wait costs nothing when the
# state comes, and only a failing test waits it out.
TIMEOUT = 60.0


async def eventually(
    check: Callable[[], Any], *, timeout: float = TIMEOUT, message: str = "condition"
) -> Any:
    """Poll ``check`` until it returns a truthy value (the operator works asynchronously).

    Wait for the state a test asserts, not for an earlier sign of it: the operator applies
    children, then patches status, then posts Events, each landing on its own, so status
    read once a Deployment exists (or Events once status is) may not be there yet."""
    deadline = asyncio.get_running_loop().time() + timeout
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            result = check()
            if result:
                return result
        except (LookupError, ValueError, AssertionError, TypeError) as exc:
            last_error = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}; last error: {last_error!r}")


def obj(cluster: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any]:
    """The stored object (raises KeyError/ValueError while it does not exist)."""
    stored = cluster.objects[resource, NAMESPACE, name]
    return dict(stored.raw)


def exists(cluster: kmock.KubernetesEmulator, resource: str, name: str) -> bool:
    try:
        return not cluster.objects[resource, NAMESPACE, name].deleted
    except KeyError:
        return False


def events(cluster: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    """Events posted so far (type, reason, message), oldest first."""
    return [
        r.data
        for r in list(cluster)
        if str(r.method.value) == "POST" and r.url.path.endswith("/events")
    ]


def writes(cluster: kmock.KubernetesEmulator, since: int = 0) -> list[Any]:
    return [r for r in list(cluster)[since:] if str(r.method.value) in WRITES]


def path(resource: str, name: str | None = None) -> str:
    group_version, plural = resource.rsplit("/", 1)
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/namespaces/{NAMESPACE}/{plural}" + (f"/{name}" if name else "")


async def create(cluster: kmock.KubernetesEmulator, resource: str, body: dict[str, Any]) -> None:
    """Create through the API, so watchers (the operator) see an ADDED event."""
    async with cluster.post(path(resource), json=body) as response:
        assert response.status < 300, await response.text()


async def patch(
    cluster: kmock.KubernetesEmulator,
    resource: str,
    name: str,
    body: dict[str, Any],
    *,
    subresource: str | None = None,
) -> None:
    """Merge-patch through the API, so watchers see a MODIFIED event."""
    url = path(resource, name) + (f"/{subresource}" if subresource else "")
    headers = {"Content-Type": "application/merge-patch+json"}
    async with cluster.patch(url, json=body, headers=headers) as response:
        assert response.status < 300, await response.text()


def write_kubeconfig(path: pathlib.Path, server_url: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
        f"clusters: [{{name: kmock, cluster: {{server: '{server_url.rstrip('/')}'}}}}]\n"
        "users: [{name: kmock, user: {token: test-token}}]\n"
        "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
    )


def status_of(cluster: kmock.KubernetesEmulator, name: str = "chat") -> dict[str, Any]:
    return dict(obj(cluster, LLAMA, name).get("status") or {})


def condition_of(
    cluster: kmock.KubernetesEmulator, type_: str, name: str = "chat"
) -> dict[str, Any]:
    for condition in status_of(cluster, name).get("conditions") or []:
        if condition["type"] == type_:
            return dict(condition)
    raise KeyError(type_)


async def wait_condition(
    cluster: kmock.KubernetesEmulator, type_: str, name: str = "chat", **expected: Any
) -> dict[str, Any]:
    """The condition ``type_`` of ``name`` once every field in ``expected`` has its value
    (``reason="APIKeyRequired"``): a condition may first appear with another reason, and a
    status patch lands after the applies of its reconcile, so wait for what is asserted."""

    def check() -> dict[str, Any]:
        found = condition_of(cluster, type_, name)
        assert all(found.get(key) == value for key, value in expected.items()), found
        return found

    return dict(await eventually(check, message=f"condition {type_} of {name} with {expected}"))


def reconciles(outcome: str) -> float:
    """The operator's reconciles so far with this outcome (``unchanged``: applied nothing),
    from its metrics registry (the whole process: compare with an earlier reading)."""
    value = operator_metrics.REGISTRY.get_sample_value(
        "llama_operator_reconciles_total", {"outcome": outcome}
    )
    return float(value or 0.0)


async def settled() -> None:
    """Until a reconcile (of any LlamaDeployment: for tests of one) that ends from now on
    finds nothing to apply: the operator's own writes of the state so far are done, however
    slow the machine (a fixed sleep is not enough on a loaded one)."""
    before = reconciles("unchanged")
    await eventually(
        lambda: reconciles("unchanged") > before, message="a reconcile that applies nothing"
    )


def container_args(deployment: dict[str, Any]) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def endpoint_slice(service: str, variant: str, index: int, port: int) -> dict[str, Any]:
    """One ready pod behind ``service``, as the EndpointSlice controller would publish it
    (mirroring the Service's labels, which is how the operator's index finds it)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{index:05d}",
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app.kubernetes.io/managed-by": "llama-operator",
                "llamaops.dev/deployment": service.rsplit("-", 1)[0],
                "llamaops.dev/variant": variant,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": f"{service}-abc-{index}"},
            }
        ],
    }


async def report_ready(
    cluster: kmock.KubernetesEmulator, name: str, replicas: int, *, updated: int | None = None
) -> None:
    """What the Deployment controller reports once ``replicas`` pods of the current template
    pass their readiness probe (observedGeneration: it has seen the latest template)."""
    generation = obj(cluster, DEPLOYMENTS, name)["metadata"].get("generation")
    await patch(
        cluster,
        DEPLOYMENTS,
        name,
        {
            "status": {
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas if updated is None else updated,
                "observedGeneration": generation,
            }
        },
        subresource="status",
    )


# Secret values shorter than this are not searched for: too likely to occur by chance.
MIN_SECRET_LENGTH = 6


def assert_no_secret_leaks(
    emulator: kmock.KubernetesEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """No value of any Secret in the cluster (the planted API key, every test's Hub token)
    appears in a log record of the run (the operator's and Kopf's, at DEBUG), nor in
    anything the operator sent to the API server: applied objects, status patches, Events
    (ours and Kopf's)."""
    values: set[str] = set()
    for key, stored in list(emulator.objects.items()):
        if key[0] != SECRETS:
            continue
        for encoded in (stored.raw.get("data") or {}).values():
            decoded = base64.b64decode(encoded).decode(errors="replace")
            values |= {decoded, decoded.strip(), str(encoded)}
    values = {value for value in values if len(value) >= MIN_SECRET_LENGTH}
    assert PLANTED_API_KEY in values  # the search below has something to find
    texts = [f"{record.name}: {record.getMessage()}" for record in caplog.records]
    texts += [
        f"{r.method} {r.url.path}: {r.text}"
        for r in list(emulator)
        if "/secrets" not in r.url.path and not _by_the_test(r)
    ]
    leaks = [(value, text[:300]) for value in values for text in texts if value in text]
    assert leaks == [], f"secret values leaked into logs or API writes: {leaks}"


def _by_the_test(request: kmock.Request) -> bool:
    """A request the test made itself (its creates and patches), not the operator."""
    agent = request.headers.get("User-Agent", "").lower()
    return agent.startswith(("kmock", "python"))
