"""The one HTTP client of the engines' adapter endpoints: list, load, reload and unload
LoRA adapters in running serving pods, every pod at once, each request bounded.

An engine that loads adapters at run time (``engine_profiles.LoraRuntime``, vLLM with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING``) lists what it holds at ``modelsPath`` and changes it
with POSTs to ``loadPath`` and ``unloadPath``. A caller says which pods (``Pod``: the
pod's name and the base URL of its API server) and gets, per pod, what it holds
(``list_adapters``: a ``Listing``) or, per change asked for, whether the engine took it
(``apply``: a ``Done``). What a failed pod or a refused change means (retry, restart the
pod, report) is the caller's to decide; nothing is logged here, and nothing is decided.

What the engine says, read from vLLM's source (0.24.0 through 0.34.0; the facts and their
files are in ``data/engines.yaml``, ``vllm`` -> ``lora``, and ``tests/engines`` checks them):

- GET ``modelsPath`` answers an OpenAI ModelList: the base model's card, ``parent`` null,
  and one card per loaded adapter, ``id`` its name, ``root`` its lora_path and ``parent``
  the base model (``show_available_models``, vllm/entrypoints/openai/models/serving.py).
- POST ``loadPath`` takes ``{lora_name, lora_path, load_inplace}`` and POST ``unloadPath``
  ``{lora_name}`` (vllm/entrypoints/serve/lora/protocol.py), as JSON only: the routes
  depend on ``validate_json_request`` (vllm/entrypoints/serve/utils/api_utils.py), which
  refuses any other content type. 200 means done; a refusal is an ErrorResponse
  ``{"error": {"message", "type", "param", "code"}}`` (ErrorInfo: 0.24.0-0.28.0
  vllm/entrypoints/openai/engine/protocol.py, 0.34.0 vllm/entrypoints/serve/engine/
  protocol.py), e.g. 400 for a name already loaded without ``load_inplace``, 404 for an
  unload of an unknown name.
- The API key guards every path under /v1 (``GUARDED_PREFIX``, AuthenticationMiddleware:
  0.24.0-0.28.0 vllm/entrypoints/serve/utils/server_utils.py, 0.34.0
  vllm/entrypoints/serve/middleware/authenticate.py): ``Authorization: Bearer <key>``,
  else 401 ``{"error": "Unauthorized"}``.

The API key is sent only in that header. It is never part of a failure, an exception or a
repr: a failure's text comes from the engine's answer or the connection error and has the
key blanked out should an engine ever echo it.

All requests of a call run concurrently, one pod's changes one after another in the order
given (a failed change does not stop that pod's later ones), each request under its own
timeout, so one slow pod never holds up the others.

Where it sits: an I/O client beside ``scraper`` (whose session and failure wording it
shares), over ``planning.engine_profiles`` (where the paths come from); its only callers
are in ``runtime/``, which hands a reconcile's worker thread the blocking wrappers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp

from llama_operator.clients import scraper
from llama_operator.planning import engine_profiles

Kind = Literal["load", "reload", "unload"]

# Why a request failed: nothing else a request raises is caught here.
_FAILURES = (aiohttp.ClientError, TimeoutError)
# A failure's text is cut to this; an error body's fallback to _BODY_CHARS.
_FAILURE_CHARS = 300
_BODY_CHARS = 200
_REFUSED_KEY = "HTTP 401: the API key was refused"


@dataclasses.dataclass(frozen=True)
class Pod:
    """A serving pod and the base URL of its API server."""

    name: str
    base_url: str  # "http://10.1.2.3:8000" (no trailing slash; IPv6 host in brackets)


@dataclasses.dataclass(frozen=True)
class Listing:
    """One pod's adapters, or (``failure``) why they could not be read."""

    pod: str
    # adapter name -> its ModelCard.root (the lora_path it was loaded from); only cards
    # with a non-null parent; None when the pod could not be read
    loaded: dict[str, str] | None = None
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to one pod's adapters."""

    pod: Pod
    kind: Kind  # reload = load with load_inplace true (new weights under the same name)
    name: str
    path: str | None = None  # lora_path for load/reload


@dataclasses.dataclass(frozen=True)
class Done:
    """What became of one ``Change``."""

    pod: str
    kind: Kind
    name: str
    failure: str | None = None  # None: the engine answered 200


async def list_adapters(
    session: aiohttp.ClientSession,
    pods: Sequence[Pod],
    *,
    runtime: engine_profiles.LoraRuntime,
    api_key: str | None,
    timeout: float,
) -> list[Listing]:
    """Every pod's loaded adapters, concurrently; one ``Listing`` per pod, in order."""
    headers = _headers(runtime=runtime, api_key=api_key)

    async def one(pod: Pod) -> Listing:
        try:
            async with session.get(
                pod.base_url + runtime.modelsPath,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
                status = response.status
        except _FAILURES as exc:
            return Listing(
                pod.name, failure=_failure(scraper.reason(exc, timeout=timeout), api_key)
            )
        if status != 200:
            return Listing(pod.name, failure=_failure(_refusal(status, body), api_key))
        loaded = _adapters(body)
        if loaded is None:
            text = body[:_BODY_CHARS].decode("utf-8", errors="replace")
            return Listing(pod.name, failure=_failure(f"not a model list: {text}", api_key))
        return Listing(pod.name, loaded)

    return list(await asyncio.gather(*(one(pod) for pod in pods)))


async def apply(
    session: aiohttp.ClientSession,
    changes: Sequence[Change],
    *,
    runtime: engine_profiles.LoraRuntime,
    api_key: str | None,
    timeout: float,
) -> list[Done]:
    """Every change, one ``Done`` each in the order given: a pod's changes one after
    another in that order, different pods concurrently."""
    headers = _headers(runtime=runtime, api_key=api_key)
    # Every request built before the first is sent: a change without a path sends nothing.
    requests = [_request(change, runtime) for change in changes]
    by_pod: dict[Pod, list[int]] = {}
    for index, change in enumerate(changes):
        by_pod.setdefault(change.pod, []).append(index)
    done: list[Done | None] = [None] * len(changes)

    async def one(index: int) -> Done:
        change, (path, body) = changes[index], requests[index]
        try:
            async with session.post(
                change.pod.base_url + path,
                json=body,  # sets Content-Type: application/json, which vLLM requires
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                answer = await response.read()
                status = response.status
        except _FAILURES as exc:
            failure: str | None = _failure(scraper.reason(exc, timeout=timeout), api_key)
        else:
            failure = None if status == 200 else _failure(_refusal(status, answer), api_key)
        return Done(change.pod.name, change.kind, change.name, failure)

    async def in_order(indices: list[int]) -> None:
        for index in indices:
            done[index] = await one(index)

    await asyncio.gather(*(in_order(indices) for indices in by_pod.values()))
    return [result for result in done if result is not None]


def list_blocking(
    pods: Sequence[Pod],
    *,
    runtime: engine_profiles.LoraRuntime,
    api_key: str | None,
    timeout: float,
) -> list[Listing]:
    """``list_adapters`` with a session and an event loop of its own: for a reconcile's
    worker thread. Nothing of either outlives the call."""

    async def run() -> list[Listing]:
        async with scraper.session() as opened:
            return await list_adapters(
                opened, pods, runtime=runtime, api_key=api_key, timeout=timeout
            )

    return asyncio.run(run())


def apply_blocking(
    changes: Sequence[Change],
    *,
    runtime: engine_profiles.LoraRuntime,
    api_key: str | None,
    timeout: float,
) -> list[Done]:
    """``apply`` with a session and an event loop of its own: for a reconcile's worker
    thread. Nothing of either outlives the call."""

    async def run() -> list[Done]:
        async with scraper.session() as opened:
            return await apply(opened, changes, runtime=runtime, api_key=api_key, timeout=timeout)

    return asyncio.run(run())


def _headers(*, runtime: engine_profiles.LoraRuntime, api_key: str | None) -> dict[str, str]:
    # Only where the key guards the paths: a key is not sent where it is not asked for.
    if api_key is None or not runtime.guardedByApiKey:
        return {}
    # aiohttp refuses a header with a line break, and its error may quote the value.
    if any(character in api_key for character in "\r\n\0"):
        raise ValueError("the API key holds a line break or NUL: it cannot be sent")
    return {"Authorization": f"Bearer {api_key}"}


def _request(change: Change, runtime: engine_profiles.LoraRuntime) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of a change (LoadLoRAAdapterRequest and
    UnloadLoRAAdapterRequest, vllm/entrypoints/serve/lora/protocol.py, 0.24.0-0.34.0)."""
    if change.kind == "unload":
        return runtime.unloadPath, {"lora_name": change.name}
    if change.path is None:
        raise ValueError(f"a {change.kind} of adapter {change.name!r} needs a path")
    return runtime.loadPath, {
        "lora_name": change.name,
        "lora_path": change.path,
        "load_inplace": change.kind == "reload",
    }


def _adapters(body: bytes) -> dict[str, str] | None:
    """The adapters of a ModelList: cards with a parent, id -> root; None if it is none."""
    try:
        payload = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return None
    cards = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(cards, list):
        return None
    loaded: dict[str, str] = {}
    for card in cards:
        if not isinstance(card, dict):
            return None
        if card.get("parent") is None:
            continue  # a base model
        name, root = card.get("id"), card.get("root")
        if not isinstance(name, str) or not isinstance(root, str):
            return None
        loaded[name] = root
    return loaded


def _refusal(status: int, body: bytes) -> str:
    """Why the engine refused: its ErrorResponse's message, or the start of its body."""
    if status == 401:
        return _REFUSED_KEY
    text = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = text[:_BODY_CHARS]
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _failure(text: str, api_key: str | None) -> str:
    """``text`` cut to length, the key blanked out should an engine ever echo it."""
    if api_key:
        text = text.replace(api_key, "***")
    return text[:_FAILURE_CHARS]
