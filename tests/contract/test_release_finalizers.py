"""``llama-operator release-finalizers`` against the in-memory API (no operator running),
as the chart's uninstall hook runs it: it reads $KUBECONFIG, lists the LlamaDeployments of
every namespace, JSON-patches ``llamaops.dev/finalizer`` out of each, leaves every other
finalizer, and deletes nothing. A LlamaDeployment already being deleted, held only by our
finalizer, then goes (what unsticks a namespace left Terminating)."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from kube import LLAMA, NAMESPACE, llama

from llama_operator import cli
from llama_operator.runtime import finalizers

OURS = finalizers.FINALIZER
OTHER = "example.com/other"
OTHER_NAMESPACE = "team-b"
COLLECTION = "/apis/llamaops.dev/v1alpha1/llamadeployments"


def collection(namespace: str) -> str:
    return f"/apis/llamaops.dev/v1alpha1/namespaces/{namespace}/llamadeployments"


async def seed(
    cluster: kmock.KubernetesEmulator, namespace: str, name: str, listed: list[str]
) -> None:
    body: dict[str, Any] = llama(name)
    body["metadata"].update(namespace=namespace, finalizers=listed, uid=f"uid-{namespace}-{name}")
    async with cluster.post(collection(namespace), json=body) as response:
        assert response.status < 300, await response.text()


def finalizers_of(cluster: kmock.KubernetesEmulator, namespace: str, name: str) -> list[str]:
    return list(cluster.objects[LLAMA, namespace, name].raw["metadata"].get("finalizers") or [])


def gone(cluster: kmock.KubernetesEmulator, namespace: str, name: str) -> bool:
    try:
        return bool(cluster.objects[LLAMA, namespace, name].deleted)
    except KeyError:
        return True


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # In a thread: the command's client blocks, and kmock serves from this event loop.
    code = await asyncio.to_thread(cli.main, ["release-finalizers", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_releases_ours_in_every_namespace_keeps_the_others_deletes_nothing(
    cluster: kmock.KubernetesEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(cluster, NAMESPACE, "chat", [OURS, OTHER])
    await seed(cluster, OTHER_NAMESPACE, "code", [OTHER, OURS])
    await seed(cluster, NAMESPACE, "plain", [OTHER])
    # Deleted while no operator ran: held by our finalizer alone, Terminating for good.
    await seed(cluster, OTHER_NAMESPACE, "leaving", [OURS])
    async with cluster.delete(f"{collection(OTHER_NAMESPACE)}/leaving") as response:
        assert response.status < 300
    assert cluster.objects[LLAMA, OTHER_NAMESPACE, "leaving"].raw["metadata"]["deletionTimestamp"]
    since = len(list(cluster))

    code, out, err = await run_cli(capsys, "--wait", "1")

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"released {OURS} from {NAMESPACE}/chat",
        f"released {OURS} from {OTHER_NAMESPACE}/code",
        f"released {OURS} from {OTHER_NAMESPACE}/leaving",
    ]
    assert finalizers_of(cluster, NAMESPACE, "chat") == [OTHER]
    assert finalizers_of(cluster, OTHER_NAMESPACE, "code") == [OTHER]
    assert finalizers_of(cluster, NAMESPACE, "plain") == [OTHER]
    assert not gone(cluster, NAMESPACE, "chat")
    assert not gone(cluster, OTHER_NAMESPACE, "code")
    assert not gone(cluster, NAMESPACE, "plain")
    assert gone(cluster, OTHER_NAMESPACE, "leaving")  # the API server finished deleting it

    requests = list(cluster)[since:]
    assert {str(r.method.value) for r in requests} == {"GET", "PATCH"}  # never a DELETE
    lists = [r for r in requests if str(r.method.value) == "GET"]
    # All namespaces, one list per pass: the first released, the second (after the wait's
    # pause) found nothing left.
    assert [r.url.path for r in lists] == [COLLECTION, COLLECTION]
    patches = [r for r in requests if str(r.method.value) == "PATCH"]
    assert sorted(r.url.path for r in patches) == [
        f"{collection(NAMESPACE)}/chat",
        f"{collection(OTHER_NAMESPACE)}/code",
        f"{collection(OTHER_NAMESPACE)}/leaving",
    ]
    for patch in patches:
        assert patch.headers["Content-Type"] == "application/json-patch+json"
        test, remove = patch.data[:2]
        assert (test["op"], test["value"]) == ("test", OURS)
        assert remove == {"op": "remove", "path": test["path"]}


async def test_only_the_named_namespaces(
    cluster: kmock.KubernetesEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(cluster, NAMESPACE, "chat", [OURS, OTHER])
    await seed(cluster, OTHER_NAMESPACE, "code", [OURS, OTHER])
    since = len(list(cluster))

    code, out, _ = await run_cli(capsys, "--namespace", OTHER_NAMESPACE)

    assert code == 0
    assert out.splitlines() == [f"released {OURS} from {OTHER_NAMESPACE}/code"]
    assert finalizers_of(cluster, NAMESPACE, "chat") == [OURS, OTHER]
    assert finalizers_of(cluster, OTHER_NAMESPACE, "code") == [OTHER]
    lists = [r.url.path for r in list(cluster)[since:] if str(r.method.value) == "GET"]
    assert lists == [collection(OTHER_NAMESPACE)]


async def test_nothing_to_release(
    cluster: kmock.KubernetesEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(cluster, NAMESPACE, "plain", [OTHER])
    code, out, _ = await run_cli(capsys, "--wait", "60")
    assert code == 0
    assert out == f"no LlamaDeployment carries {OURS}\n"
    assert finalizers_of(cluster, NAMESPACE, "plain") == [OTHER]
