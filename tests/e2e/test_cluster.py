"""End to end on a real cluster: opt in with ``pytest --with-e2e`` (``make test-e2e``).

Runs the real operator in-process against the current kube context, in a throwaway
namespace, with a GPU pool whose nodeSelector matches no node: the serving pods stay
Pending, so no GPU is needed, while everything the API server does for real (schema
and CEL validation, server-side apply, owner references, garbage collection) is
exercised. Refuses any context whose name does not say it is for testing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig

from llama_operator import api, crd

pytestmark = pytest.mark.e2e

TEST_CONTEXT = re.compile(r"(kind|k3d|minikube|test|e2e|ci)", re.IGNORECASE)
POOLS = """
pools:
- name: e2e-nowhere
  gpuProduct: NVIDIA-L4
  gpusPerNode: 8
  costPerGPUHour: 0.8
  nodeSelector: {llamaops.dev/e2e-no-such-node: "true"}
"""


@pytest.fixture(scope="module")
def api_client() -> Iterator[kclient.ApiClient]:
    _, active = kconfig.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
    name = active["name"]
    if not TEST_CONTEXT.search(name):
        pytest.fail(
            f"refusing to run e2e tests against kube context {name!r}: its name must "
            "contain kind, k3d, minikube, test, e2e or ci"
        )
    configuration = kclient.Configuration()
    kconfig.load_kube_config(
        config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
    )
    with kclient.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture(scope="module")
def namespace(api_client: kclient.ApiClient) -> Iterator[str]:
    extensions = kclient.ApiextensionsV1Api(api_client)
    definition = crd.render()
    try:
        extensions.create_custom_resource_definition(definition)
    except kclient.ApiException as exc:
        if exc.status != 409:
            raise
    name = f"llama-e2e-{uuid.uuid4().hex[:6]}"
    core = kclient.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
async def operator(
    namespace: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    from llama_operator import handlers as _handlers  # noqa: F401, PLC0415 - registers them

    config_file = tmp_path / "config.yaml"
    config_file.write_text(POOLS)
    monkeypatch.setenv("LLAMA_OPERATOR_CONFIG", str(config_file))
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(namespaces=[namespace], standalone=True, stop_flag=stop)
    )
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


async def wait_for(fn: Any, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(kclient.ApiException, KeyError, TypeError):
            result = await asyncio.to_thread(fn)
            if result:
                return result
        await asyncio.sleep(1)
    raise AssertionError("timed out")


async def test_llama_deployment_lifecycle(
    api_client: kclient.ApiClient, namespace: str, operator: None
) -> None:
    custom = kclient.CustomObjectsApi(api_client)
    apps = kclient.AppsV1Api(api_client)
    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "model": {"id": "meta-llama/Llama-3.2-1B-Instruct"},
            "license": {"accept": True},
        },
    }
    created = custom.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body
    )

    def get_llama() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, "chat"
        )
        return obj

    llama = await wait_for(lambda: (o := get_llama()).get("status", {}).get("plan") and o)
    assert llama["status"]["plan"]["pool"] == "e2e-nowhere"
    assert llama["status"]["phase"] in ("Pending", "Progressing")
    deployment = apps.read_namespaced_deployment("chat-primary", namespace)
    (owner,) = deployment.metadata.owner_references
    assert owner.uid == created["metadata"]["uid"]
    # The licence ConfigMap every serving pod mounts at /licenses (created, never read back).
    licence = kclient.CoreV1Api(api_client).read_namespaced_config_map("chat-license", namespace)
    assert licence.data["LICENSE_ID"] == "llama3.2\n"
    assert licence.data["NOTICE"].startswith("Llama 3.2 is licensed under")
    assert llama["status"]["license"]["accepted"] is True

    # The API server's CEL rules refuse a contradictory edit before the operator sees it.
    with pytest.raises(kclient.ApiException) as refused:
        custom.patch_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            "chat",
            {"spec": {"autoscaling": {"minReplicas": 3, "maxReplicas": 1}}},
        )
    assert refused.value.status == 422

    custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, "chat")

    def deployment_gone() -> bool:
        try:
            apps.read_namespaced_deployment("chat-primary", namespace)
        except kclient.ApiException as exc:
            return exc.status == 404
        return False

    assert await wait_for(deployment_gone, timeout=120)  # garbage-collected via ownerReferences
