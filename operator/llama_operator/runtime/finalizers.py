"""The operator's finalizer, and releasing it once no operator will: the work of
``llama-operator release-finalizers`` (run by the chart's ``helm uninstall`` hook).

No deletion needs the operator. Every child of a LlamaDeployment carries an owner
reference to it and is garbage-collected without the operator, and ``handlers.forget``
is ``@kopf.on.delete(optional=True)``, which asks for no finalizer. Yet Kopf puts
``FINALIZER`` on every LlamaDeployment, because the operator has a ``@kopf.timer`` (the
resync) and a ``@kopf.daemon`` (the built-in autoscaler): Kopf registers both with
``requires_finalizer=True``, hard-coded (``kopf/on.py``, ``timer()`` and ``daemon()``;
https://github.com/nolar/kopf/issues/1074). It needs it: a deleted object's DELETED
event carries no ``deletionTimestamp``, so without the finalizer Kopf never stops that
object's timer and daemon (``process_spawning_cause`` calls ``stop_daemons`` only while
a deletion is ongoing), and they would go on reconciling and scaling an object that is
gone. So the finalizer stays, and the running operator removes it within moments of a
deletion.

Without an operator nothing removes it, and deleting a LlamaDeployment, or its
namespace, hangs. ``release`` removes it from every LlamaDeployment it can list, and
only it: other finalizers stay, nothing is deleted. Each removal is a JSON patch that
``test``s the finalizer at its index before it ``remove``s it, so a concurrent edit of
the list fails the patch (422) instead of removing someone else's entry; the object is
then read again and the patch recomputed. A pass that released something is followed
by another, while the wait lasts: a stopping operator may put the finalizer back once.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

from llama_operator import api
from llama_operator.clients import k8s

FINALIZER = f"{api.GROUP}/finalizer"
# A JSON patch whose test failed (422 Invalid), or a conflict (409): read again, retry.
CONFLICTS = (409, 422)
ATTEMPTS = 5
# Between passes: long enough for a stopping operator's last event to land.
PASS_INTERVAL_SECONDS = 2.0


def release_patch(finalizers: Sequence[str], finalizer: str = FINALIZER) -> list[dict[str, Any]]:
    """The JSON patch that removes every ``finalizer`` from ``finalizers`` ([] for none):
    a ``test`` and a ``remove`` per index, the highest index first, so each removal leaves
    the indexes of those still to come unchanged."""
    operations: list[dict[str, Any]] = []
    for index in reversed(range(len(finalizers))):
        if finalizers[index] == finalizer:
            path = f"/metadata/finalizers/{index}"
            operations += [
                {"op": "test", "path": path, "value": finalizer},
                {"op": "remove", "path": path},
            ]
    return operations


@dataclasses.dataclass(frozen=True)
class Released:
    namespace: str
    name: str
    pass_number: int  # 1 for the first pass; a later one: the finalizer had come back


@dataclasses.dataclass
class Outcome:
    released: list[Released] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    # "namespace/name" of objects that got the finalizer back after it was released,
    # and still had it when the last pass before the deadline released it again.
    came_back: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.came_back


def release(
    *,
    client: k8s.Client,
    namespaces: Sequence[str] | None,
    wait: float,
    finalizer: str = FINALIZER,
    interval: float = PASS_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Remove ``finalizer`` from every LlamaDeployment in ``namespaces`` (all when None),
    pass after pass until one finds nothing to release or ``wait`` seconds have gone.

    A pass that fails (an object or a namespace the API refuses) ends it: the outcome
    names what failed. So does a finalizer still coming back at the deadline: then
    something (an operator that still runs) keeps putting it back.
    """
    deadline = clock() + wait
    outcome = Outcome()
    for pass_number in itertools.count(1):
        found = _one_pass(client=client, namespaces=namespaces, finalizer=finalizer)
        again = []
        for namespace, name, error in found:
            if error:
                outcome.errors.append(f"{namespace}/{name}: {error}" if name else error)
            else:
                outcome.released.append(
                    Released(namespace=namespace, name=name, pass_number=pass_number)
                )
                again.append(f"{namespace}/{name}")
        outcome.came_back = again if pass_number > 1 else []
        remaining = deadline - clock()
        if outcome.errors or not again or remaining <= 0:
            break
        sleep(min(interval, remaining))
    return outcome


def _one_pass(
    *, client: k8s.Client, namespaces: Sequence[str] | None, finalizer: str
) -> list[tuple[str, str, str]]:
    """(namespace, name, "") for each object released, (namespace, name, error) for each
    that failed, (namespace, "", error) for a namespace that could not be listed."""
    results: list[tuple[str, str, str]] = []
    for namespace in namespaces if namespaces is not None else [None]:
        try:
            items = client.list_objects(
                api_version=api.API_VERSION, kind=api.KIND, namespace=namespace
            )
        except k8s.APIError as exc:
            where = f"in namespace {namespace}" if namespace else "in all namespaces"
            results.append((namespace or "", "", f"cannot list {api.PLURAL} {where}: {exc}"))
            continue
        for item in items:
            meta = item.get("metadata") or {}
            if finalizer not in (meta.get("finalizers") or []):
                continue
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            try:
                if _release_one(client=client, obj=item, finalizer=finalizer):
                    results.append((ns, name, ""))
            except k8s.APIError as exc:
                results.append((ns, name, str(exc)))
    return results


def _release_one(*, client: k8s.Client, obj: dict[str, Any], finalizer: str) -> bool:
    """Remove ``finalizer`` from one object; False when it (or the object) went meanwhile."""
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), str(meta["name"])
    finalizers = list(meta.get("finalizers") or [])
    for attempt in range(1, ATTEMPTS + 1):
        operations = release_patch(finalizers, finalizer)
        if not operations:
            return False
        try:
            client.json_patch(
                api_version=api.API_VERSION,
                kind=api.KIND,
                namespace=namespace,
                name=name,
                operations=operations,
            )
        except k8s.APIError as exc:
            if exc.status == 404:
                return False
            if exc.status not in CONFLICTS or attempt == ATTEMPTS:
                raise
        else:
            return True
        # The list changed under us: compute the patch again from what is there now.
        current = client.get(
            api_version=api.API_VERSION, kind=api.KIND, namespace=namespace, name=name
        )
        if current is None:
            return False
        finalizers = list((current.get("metadata") or {}).get("finalizers") or [])
    return False  # not reached: the last attempt returns or raises
