"""Contract-test harness: the real Kopf operator against kmock's in-memory Kubernetes API.

kmock stores objects and serves list/watch/patch, but knows nothing of server-side
apply; ``ApplyingEmulator`` adds only the one behaviour our client relies on (an
apply PATCH of a missing object creates it, as a real API server does). Everything
else is kmock as shipped: naive merges, no garbage collection, no RBAC, so tests
assert only on what we send and store, not on what only a real API server would do.

The operator runs in the test's own event loop via ``kopf.operator`` (the same entry
point ``kopf run`` uses), logged in through a kubeconfig pointing at kmock on
127.0.0.1; our sync handlers talk to kmock over HTTP from Kopf's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import kopf
import pytest

from llama_operator import api, hub, k8s
from llama_operator import handlers as _handlers  # noqa: F401 - registers them with Kopf

# Resync every half second instead of 15 s, so timer-driven behaviour is seen quickly.
# Set before llama_operator.handlers is imported: Kopf binds timer intervals then.
os.environ.setdefault("LLAMA_OPERATOR_RESYNC_SECONDS", "0.5")

LLAMA = "llamaops.dev/v1alpha1/llamadeployments"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
NODES = "v1/nodes"
EVENTS = "v1/events"
SECRETS = "v1/secrets"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
NAMESPACE = "ai"
# The operator config of these tests: the bundled pool catalogue (an operator config
# with only `pools:` set is valid).
POOLS_YAML = pathlib.Path(__file__).parents[2] / "operator/llama_operator/data/pools.yaml"
FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"


class ApplyingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock plus create-on-apply (server-side apply of a missing object creates it)."""

    _generated: int = 0
    _version: int = 1

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # A JSON-patch "test" of a stale resourceVersion is 422 Invalid on a real API
        # server (kmock says 500); Kopf re-reads the object on 422 instead of retrying.
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)

    def _next_version(self) -> str:
        type(self)._version += 1
        return str(type(self)._version)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Every write bumps resourceVersion, as on a real API server: Kopf relies on it to
        # tell the echo of its own patch from a newer state of the object.
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
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
        (NODES, "Node", False),
        (EVENTS, "Event", True),
        (SECRETS, "Secret", True),
        # Kopf's own backbone: it watches CRDs and namespaces to notice new resources.
        ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
        ("v1/namespaces", "Namespace", False),
    ):
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            verbs={"get", "list", "watch", "patch", "create", "update", "delete"},
        )


@pytest.fixture
async def cluster(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[ApplyingEmulator]:
    async with ApplyingEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{str(server.url).rstrip('/')}'}}}}]\n"
            "users: [{name: kmock, user: {token: test-token}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock}}]\n"
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        operator_config = tmp_path / "config.yaml"
        marker = request.node.get_closest_marker("operator_config")
        operator_config.write_text(marker.args[0] if marker else POOLS_YAML.read_text())
        monkeypatch.setenv("LLAMA_OPERATOR_CONFIG", str(operator_config))
        monkeypatch.setenv("HF_HUB_CACHE", str(FIXTURES / "hf-cache"))
        hub.clear_cache()
        k8s.reset()
        yield emulator


@pytest.fixture
async def operator(cluster: ApplyingEmulator) -> AsyncIterator[ApplyingEmulator]:
    """The real operator, running until the test ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop))
    try:
        yield cluster
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def llama(
    name: str = "chat",
    *,
    spec: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": spec or {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "replicas": 1},
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


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, message: str = "condition"
) -> Any:
    """Poll ``check`` until it returns a truthy value (the operator works asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            result = check()
            if result:
                return result
        except (KeyError, ValueError, AssertionError, TypeError) as exc:
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
