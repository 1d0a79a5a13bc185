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

from llama_operator import api
from llama_operator.api import crd

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
def operator_config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's handlers registered, and its config: the GPU pool no node matches."""
    from llama_operator.runtime import handlers as _handlers  # noqa: F401, PLC0415 - registers them

    config_file = tmp_path / "config.yaml"
    config_file.write_text(POOLS)
    monkeypatch.setenv("LLAMA_OPERATOR_CONFIG", str(config_file))


@pytest.fixture
async def operator(namespace: str, operator_config: None) -> AsyncIterator[None]:
    async with operator_running(namespace):
        yield


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


@pytest.mark.parametrize("name", ["a.b.c", "x" * (api.MAX_NAME_LENGTH + 1)])
def test_a_name_no_service_could_have_is_refused_by_cel(
    api_client: kclient.ApiClient, namespace: str, name: str
) -> None:
    """Only a real API server evaluates the CRD's root rule on metadata.name (kmock does
    not): ``a.b.c`` is a valid object name, and 53 characters are within 253, so only the
    CEL rule refuses them (issue 15, item 3). A name at the limit is admitted."""
    custom = kclient.CustomObjectsApi(api_client)

    def body(of: str) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": of, "namespace": namespace},
            "spec": {"model": {"id": "meta-llama/Llama-3.2-1B-Instruct"}},
        }

    with pytest.raises(kclient.ApiException) as refused:
        custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, body(name)
        )
    assert refused.value.status == 422
    assert "metadata.name must be a DNS-1035 label" in str(refused.value.body)
    assert f"at most {api.MAX_NAME_LENGTH} characters" in str(refused.value.body)

    longest = "x" * api.MAX_NAME_LENGTH
    custom.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body(longest)
    )
    # An update of the admitted object passes the create-only rule (optionalOldSelf).
    custom.patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, longest, {"spec": {"replicas": 0}}
    )
    custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, longest)


@contextlib.asynccontextmanager
async def operator_running(namespace: str) -> AsyncIterator[None]:
    """The operator from start to stop, inside a test (the ``operator`` fixture's body)."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(namespaces=[namespace], standalone=True, stop_flag=stop)
    )
    try:
        yield
    finally:
        stop.set()
        # Bounded (asyncio.wait, not wait_for: on Python 3.11 a timed-out wait_for waits
        # for the cancelled task without bound, as tests/contract/conftest.py explains).
        done, _ = await asyncio.wait({task}, timeout=30)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30)
        assert done, "the operator did not stop within 60 s"


async def test_an_edit_made_while_the_operator_was_down_is_reverted_by_a_real_apply(
    api_client: kclient.ApiClient,
    namespace: str,
    operator_config: None,
) -> None:
    """Issue 15, item 2, where only a real API server shows it: server-side apply with
    force puts back the image and the (atomic) args list another manager changed, and
    leaves the generation alone when nothing was changed."""
    custom = kclient.CustomObjectsApi(api_client)
    apps = kclient.AppsV1Api(api_client)
    core = kclient.CoreV1Api(api_client)
    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "drift", "namespace": namespace},
        "spec": {
            "model": {"id": "meta-llama/Llama-3.2-1B-Instruct"},
            "license": {"accept": True},
            "auth": {"mode": "optional"},
        },
    }
    async with operator_running(namespace):
        custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)
        good = await wait_for(lambda: apps.read_namespaced_deployment("drift-primary", namespace))
    container = good.spec.template.spec.containers[0]
    edited = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": container.name,
                            "image": "evil/image:latest",
                            "args": [*container.args, "--trust-remote-code"],
                        }
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("drift-primary", namespace, edited)  # strategic merge
    assert (
        apps.read_namespaced_deployment("drift-primary", namespace)
        .spec.template.spec.containers[0]
        .image
        == "evil/image:latest"
    )

    async with operator_running(namespace):

        def restored() -> Any:
            live = apps.read_namespaced_deployment("drift-primary", namespace)
            first = live.spec.template.spec.containers[0]
            return first.image == container.image and first.args == container.args and live

        await wait_for(restored)

        def drift_event() -> list[Any]:
            listed = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=drift"
            )
            return [e for e in listed.items if e.reason == "DriftReverted"]

        (event,) = await wait_for(drift_event)
    assert event.type == "Warning"
    assert "Deployment/drift-primary" in event.message
