"""The one module that talks to the Kubernetes API (besides Kopf's own machinery).

Everything the operator writes goes through ``Client.apply``: a server-side apply
under one field manager, so ownership of every field is explicit. It applies with
``force``: the operator is the intended owner of what it renders, so a field another
manager (a stray ``kubectl apply``, an older operator) took over is taken back.

Reads are few: Secrets (only when a Hugging Face token is needed, and whether an API-key
Secret holds its key while serving pods are about to change), pods by label (a
canary's while it is checked, the primary's while it has fewer ready pods than it asks
for or a fallback serves), the calibration ConfigMap of KV-cache corrections (when a
plan is made anew; one key merged into it when a pod reports less than planned), and
single objects on demand; the reconcile loop otherwise reads children from Kopf indexes
fed by watches. ``llama-operator release-finalizers``
(``runtime.finalizers``) lists LlamaDeployments and JSON-patches their finalizers, which
is all it does.

It uses the official ``kubernetes`` client synchronously: Kopf runs our sync
handlers in its thread pool, so blocking here never stalls the event loop.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as kclient
from kubernetes import config as kconfig

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# kind -> (plural, namespaced). Only what the operator manages or reads.
PLURALS: dict[str, tuple[str, bool]] = {
    "Deployment": ("deployments", True),
    "Service": ("services", True),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Node": ("nodes", False),
    "LlamaDeployment": ("llamadeployments", True),
    "ScaledObject": ("scaledobjects", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "HTTPRoute": ("httproutes", True),
    "NetworkPolicy": ("networkpolicies", True),
    "Pod": ("pods", True),
}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Objects per page of a list: one page each for all but the largest clusters.
LIST_PAGE = 500
# (connect, read) seconds. The client waits forever by default; a request the API
# server never answers would hold a reconcile (and its object's lock) or an autoscaler
# tick indefinitely. Kopf retries a reconcile that failed; the autoscaler's next tick
# tries again.
REQUEST_TIMEOUT = (10.0, 60.0)


# No in-cluster credentials and no usable kubeconfig (re-exported, so callers need not
# import ``kubernetes``).
CredentialsError = kconfig.ConfigException


class APIError(RuntimeError):
    """A non-success answer from the API server; carries status and the server's reason,
    and which request it answered (``request``, e.g. "apply Service/chat": the kind and
    name, never a body), so a reconcile that fails can say which child the API refused."""

    def __init__(self, status: int, reason: str, message: str, request: str = "") -> None:
        prefix = f"{request}: " if request else ""
        super().__init__(f"{prefix}{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.request = request


def path_for(*, api_version: str, kind: str, namespace: str | None, name: str | None) -> str:
    """The API path of an object (or its collection), every name percent-escaped.

    Names come from specs users write (a Secret, a claim): the schema refuses anything
    that is not an object name, and escaping here means no text ever adds or climbs a
    path segment even if it got past the schema ("../x" stays one segment, "..%2Fx").
    """
    plural, namespaced = PLURALS[kind]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{_segment(namespace)}" if namespaced and namespace else ""
    tail = f"/{_segment(name)}" if name else ""
    return f"{base}{scope}/{plural}{tail}"


def _serializable(
    body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any] | list[dict[str, Any]] | None:
    if body is None:
        return None
    if isinstance(body, Mapping):
        return dict(body)
    return [dict(operation) for operation in body]


def _segment(text: str) -> str:
    # "." and ".." are path segments of their own even when escaped; no object has them.
    if text in (".", ".."):
        raise ValueError(f"{text!r} is not an object name")
    return urllib.parse.quote(text, safe="")


@dataclasses.dataclass
class Client:
    """A thin, typed wrapper over ``kubernetes.client.ApiClient`` for raw JSON objects."""

    api: kclient.ApiClient
    field_manager: str = "llama-operator"

    @classmethod
    def from_environment(cls, *, field_manager: str = "llama-operator") -> Client:
        """In-cluster credentials when running in a pod, else the current kubeconfig."""
        configuration = kclient.Configuration()
        try:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kconfig.ConfigException:
            # Pass $KUBECONFIG explicitly: the client reads it only once, at import time.
            kconfig.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        return cls(api=kclient.ApiClient(configuration), field_manager=field_manager)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            # A JSON patch is a list of operations; every other body is one object.
            body=_serializable(body),
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT)
        raw: bytes = response.read()  # type: ignore[no-untyped-call]
        if response.status == 404 and method == "GET":
            return None
        if not 200 <= response.status < 300:
            reason, message = response.reason or "", raw.decode(errors="replace")[:500]
            try:
                status = json.loads(raw)
                reason, message = status.get("reason", reason), status.get("message", message)
            except ValueError:
                pass
            raise APIError(response.status, str(reason), str(message), request=what)
        return json.loads(raw) if raw else {}

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (created when missing), taking ownership of its fields."""
        meta = obj["metadata"]
        path = path_for(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            namespace=meta.get("namespace"),
            name=meta["name"],
        )
        # force=true: this operator is the sole intended owner of what it renders; a
        # conflicting manager (an old operator version, a stray kubectl apply) loses.
        query = [("fieldManager", self.field_manager), ("force", "true")]
        result = self._request(
            "PATCH",
            path,
            query=query,
            body=obj,
            content_type=APPLY_CONTENT_TYPE,
            what=f"apply {obj['kind']}/{meta['name']}",
        )
        return result or {}

    def get(
        self, *, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
        return self._request("GET", path, what=f"get {kind}/{name}")

    def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or key is missing.

        The value is returned to the caller only: never logged, never put in status.
        """
        secret = self.get(api_version="v1", kind="Secret", namespace=namespace, name=name)
        if secret is None:
            return None
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            return None
        return base64.b64decode(encoded).decode().strip()

    def secret_has_key(self, *, namespace: str, name: str, key: str) -> bool:
        """Whether a Secret exists and holds a non-empty ``key``: the API-key check. The
        value is looked at for emptiness only, and goes nowhere."""
        secret = self.get(api_version="v1", kind="Secret", namespace=namespace, name=name)
        return secret is not None and bool((secret.get("data") or {}).get(key))

    def list_pods(self, *, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Pods matching every label (used only while a canary exists; not watched)."""
        path = path_for(api_version="v1", kind="Pod", namespace=namespace, name=None)
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        result = (
            self._request("GET", path, query=[("labelSelector", selector)], what="list Pods") or {}
        )
        items = [item for item in result.get("items") or [] if isinstance(item, dict)]
        # Filter again here: the selector is the API server's job, but a pod that does not
        # match must never fail a canary (and test emulators ignore selectors).
        return [
            item
            for item in items
            if all(
                ((item.get("metadata") or {}).get("labels") or {}).get(key) == value
                for key, value in labels.items()
            )
        ]

    def merge_patch(
        self,
        *,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch of one object, or of its ``status`` or ``scale`` subresource."""
        path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
        what = f"patch {kind}/{name}"
        if subresource:
            path = f"{path}/{subresource}"
            what = f"{what}/{subresource}"
        return self._request("PATCH", path, body=body, content_type=MERGE_PATCH, what=what) or {}

    def list_objects(
        self, *, api_version: str, kind: str, namespace: str | None
    ) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace``, or in all namespaces when it is None,
        read page by page; [] when the API server does not serve the kind (no CRD)."""
        path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=None)
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("limit", str(LIST_PAGE)), *([("continue", token)] if token else [])]
            page = self._request("GET", path, query=query, what=f"list {kind}")
            if page is None:
                return []
            items += [item for item in page.get("items") or [] if isinstance(item, dict)]
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def json_patch(
        self,
        *,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        """A JSON patch (RFC 6902) of one object. Its ``test`` operations make it fail
        (422 Invalid) when the object no longer holds what the patch was computed from."""
        path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
        return (
            self._request(
                "PATCH", path, body=operations, content_type=JSON_PATCH, what=f"patch {kind}/{name}"
            )
            or {}
        )

    def delete(self, *, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete one object; False when it was already gone."""
        path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
        try:
            self._request("DELETE", path, what=f"delete {kind}/{name}")
        except APIError as exc:
            if exc.status == 404:
                return False
            raise
        return True
