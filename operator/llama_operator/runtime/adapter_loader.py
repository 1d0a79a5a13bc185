"""Runtime adapter loading: the engine calls behind ``reconcile.adapter_loading``.

A reconcile whose plan loads adapters at runtime asks ``Loader`` with what each variant's
pods should hold (``reconcile.inputs.AdapterLoadRequest``). For every ready pod of those
variants (their EndpointSlices, the Kopf index the autoscaler and the probes use, so no
API request):

1. list what it has loaded (the engine's ``/v1/models``: cards with a parent), all pods
   at once (``clients.engine_admin``);
2. the calls that bring it to what it should hold (``operations.adapter_loading.changes``):
   unloads, loads, reloads in place;
3. make them, each pod's in order, pods at once; a failed call is retried by the next
   reconcile (the resync) and reported meanwhile.

The API key (spec.auth.apiKeySecretRef) is read from its Secret at most every
``KEY_SECONDS`` (a reconcile with nothing to load asks the API server nothing) and again
after an engine refused it (a rotated key); it is kept in this process' memory and sent
as a bearer token, nowhere else: not logged, not in status, not in an error. Never raises:
anything unexpected is logged and answered as "not known" (None), so adapter loading can
never fail a reconcile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llama_operator import api
from llama_operator.clients import engine_admin
from llama_operator.operations import adapter_loading
from llama_operator.planning import engine_profiles
from llama_operator.reconcile import inputs
from llama_operator.runtime import autoscaling_loop
from llama_operator.serving import engines

# (namespace, Service name) -> the EndpointSlices of that Service.
Slices = Callable[[str, str], Iterable[Mapping[str, Any]]]
# (spec.auth.apiKeySecretRef, namespace) -> the key, or None when the Secret or key is missing.
KeyRead = Callable[[api.APIKeySecretRef, str], str | None]

# A listing answers at once; a load may first download the adapter from the Hub, which
# the engine does before it answers (add_lora in the worker), so it gets longer.
LIST_TIMEOUT_SECONDS = 5.0
LOAD_TIMEOUT_SECONDS = 60.0
# How long a key read from its Secret is used before it is read again.
KEY_SECONDS = 300.0

logger = logging.getLogger(__name__)


class Loader:
    """Lists, loads and unloads the adapters of the serving pods (one per operator)."""

    def __init__(
        self,
        slices: Slices,
        key: KeyRead,
        *,
        list_timeout: float = LIST_TIMEOUT_SECONDS,
        load_timeout: float = LOAD_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slices = slices
        self._key = key
        self._list_timeout = list_timeout
        self._load_timeout = load_timeout
        self._clock = clock
        self._keys: dict[tuple[str, str, str], tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def _api_key(self, ref: api.APIKeySecretRef, namespace: str) -> str | None:
        where = (namespace, ref.name, ref.key)
        now = self._clock()
        with self._lock:
            kept = self._keys.get(where)
        if kept is not None and now - kept[1] < KEY_SECONDS:
            return kept[0]
        value = self._key(ref, namespace)
        with self._lock:
            self._keys[where] = (value, now)
        return value

    def _forget_key(self, ref: api.APIKeySecretRef, namespace: str) -> None:
        with self._lock:
            self._keys.pop((namespace, ref.name, ref.key), None)

    def __call__(
        self, request: inputs.AdapterLoadRequest
    ) -> Mapping[str, adapter_loading.PodState] | None:
        """Each ready pod's state after this call; None when nothing could be asked."""
        try:
            return self._load(request)
        except Exception:  # loading must never fail a reconcile: logged, not raised
            logger.exception("loading the adapters of %s/%s", request.namespace, request.name)
            return None

    def _load(
        self, request: inputs.AdapterLoadRequest
    ) -> Mapping[str, adapter_loading.PodState] | None:
        runtime = engine_profiles.get(request.engine, request.engine_version).lora.runtime
        if runtime is None:
            return None
        ref = request.api_key if runtime.guardedByApiKey else None
        key = self._api_key(ref, request.namespace) if ref is not None else None
        pods: dict[str, tuple[str, engine_admin.Pod]] = {}
        wanted: dict[str, tuple[api.PlanAdapter, ...]] = {}
        for variant, adapters in request.variants:
            service = f"{request.name}-{variant}"
            for endpoint in autoscaling_loop.ready_endpoints(
                self._slices(request.namespace, service)
            ):
                base = endpoint.url.removesuffix(engines.METRICS_PATH)
                pods[endpoint.pod] = (variant, engine_admin.Pod(endpoint.pod, base))
                wanted[endpoint.pod] = adapters
        listings = engine_admin.list_blocking(
            [pod for _, pod in pods.values()],
            runtime=runtime,
            api_key=key,
            timeout=self._list_timeout,
        )
        loaded = {listing.pod: listing for listing in listings}
        if ref is not None and any(_refused(listing.failure) for listing in listings):
            self._forget_key(ref, request.namespace)  # rotated? read it again next time
        changes = [
            engine_admin.Change(pod=pods[name][1], kind=c.kind, name=c.name, path=c.path)
            for name, listing in loaded.items()
            if listing.loaded is not None
            for c in adapter_loading.changes(wanted[name], listing.loaded)
        ]
        done = (
            engine_admin.apply_blocking(
                changes, runtime=runtime, api_key=key, timeout=self._load_timeout
            )
            if changes
            else []
        )
        return {
            name: _state(variant, loaded[name], changes, done)
            for name, (variant, _) in sorted(pods.items())
        }


def _refused(failure: str | None) -> bool:
    return failure is not None and failure.startswith("HTTP 401")


def _state(
    variant: str,
    listing: engine_admin.Listing,
    changes: list[engine_admin.Change],
    done: list[engine_admin.Done],
) -> adapter_loading.PodState:
    """One pod after its calls: what it holds now, and the calls that failed."""
    if listing.loaded is None:
        return adapter_loading.PodState(
            variant=variant, loaded=None, unreadable=listing.failure or "not readable"
        )
    # A pod makes at most one call per adapter name: (pod, kind, name) finds its answer.
    answers = {(d.pod, d.kind, d.name): d.failure for d in done}
    ours = [
        (
            adapter_loading.Change(c.kind, c.name, c.path),
            answers.get((c.pod.name, c.kind, c.name), "no answer"),
        )
        for c in changes
        if c.pod.name == listing.pod
    ]
    return adapter_loading.PodState(
        variant=variant,
        loaded=adapter_loading.after(listing.loaded, ours),
        failures=tuple((change.name, failure) for change, failure in ours if failure is not None),
    )
