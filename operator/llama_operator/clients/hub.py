"""Model facts from the Hugging Face Hub, for models outside the built-in catalog.

Reads ``config.json`` (the shape) with ``hf_hub_download`` and the parameter count
from the safetensors index with ``get_safetensors_metadata``, never the weights.
Answers are cached per (repository, revision) for the life of the process, so a
timer-driven reconcile asks the Hub once, not every tick; failures are cached too,
with a back-off (1 minute doubling to 1 hour), so an unreachable Hub or a missing
grant is retried patiently rather than on every resync. With ``HF_HUB_OFFLINE=1``
only the local Hugging Face cache is consulted (tests and air-gapped clusters).

The token, when given, is passed straight to the client and never logged or kept.

Two more questions go to the Hub's API rather than to files, through ``HfApi`` against
``HF_ENDPOINT``: ``card`` reads the licence and lineage facts of a model card (for
licence detection: a fine-tune inherits its base model's licence), and ``access`` asks
whether a token has been granted a gated repository, so a missing grant is reported on
the resource before a pod spends minutes failing to download. Access answers are kept
under a hash of the token, so a rotated Secret is asked about at once. ``model_page`` is
the repository's page on that Hub, where access is requested.

``adapter_config`` reads a LoRA adapter repository's ``adapter_config.json`` (PEFT's ``r``,
``target_modules``, ``base_model_name_or_path``) with one GET through the client's session
and its error mapping, written to no disk (the operator's filesystem is read-only); its
licence comes from ``card`` like a model's. Errors name ``spec.adapters[].id`` and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import httpx2
import huggingface_hub
from huggingface_hub import errors as hf_errors
from huggingface_hub import file_download, hf_api
from huggingface_hub.utils import _headers as hf_headers
from huggingface_hub.utils import _http as hf_http

from llama_operator.planning import facts


class HubError(RuntimeError):
    """The Hub could not supply facts; the message says why in user terms."""


FIRST_RETRY_SECONDS = 60.0
MAX_RETRY_SECONDS = 3600.0

_lock = threading.Lock()
_T = TypeVar("_T")


class _Memo(Generic[_T]):
    """Answers per (repository, revision), kept for the life of the process; failures kept
    until their back-off (``FIRST_RETRY_SECONDS`` doubling to ``MAX_RETRY_SECONDS``) ends,
    so a resync asks the Hub once, and an unreachable Hub is asked again patiently."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], _T] = {}
        # key -> (the error, when to try again, the current back-off)
        self.failures: dict[tuple[str, str], tuple[HubError, float, float]] = {}

    def get(self, key: tuple[str, str]) -> _T | None:
        with _lock:
            return self.answers.get(key)

    def call(self, key: tuple[str, str], ask: Callable[[], _T], now: Callable[[], float]) -> _T:
        with _lock:
            hit = self.answers.get(key)
            failure = self.failures.get(key)
        if hit is not None:
            return hit
        when = now()
        if failure is not None and when < failure[1]:
            raise failure[0]
        try:
            result = ask()
        except HubError as exc:
            backoff = (
                FIRST_RETRY_SECONDS if failure is None else min(failure[2] * 2, MAX_RETRY_SECONDS)
            )
            with _lock:
                self.failures[key] = (_detached(exc), when + backoff, backoff)
            raise
        with _lock:
            self.answers[key] = result
            self.failures.pop(key, None)
        return result

    def clear(self) -> None:
        with _lock:
            self.answers.clear()
            self.failures.clear()


_facts: _Memo[facts.PartialFacts] = _Memo()


def cached(*, repo_id: str, revision: str) -> facts.PartialFacts | None:
    """The cached answer, if any: lets callers skip reading a token they will not need."""
    return _facts.get((repo_id, revision))


def fetch(
    *,
    repo_id: str,
    revision: str,
    token: str | None,
    clock: Callable[[], float] = time.monotonic,
) -> facts.PartialFacts:
    """Shape and size of ``repo_id`` at ``revision``, or ``HubError``."""
    return _facts.call(
        (repo_id, revision),
        lambda: _fetch(repo_id=repo_id, revision=revision, token=token),
        clock,
    )


def _fetch(*, repo_id: str, revision: str, token: str | None) -> facts.PartialFacts:
    # Read at call time (the client reads them once, at import), so a test or an
    # operator restart with a new environment is honoured.
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        path = file_download.hf_hub_download(
            repo_id,
            "config.json",
            revision=revision,
            token=token or False,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
        with open(path, encoding="utf-8") as stream:
            config = json.load(stream)
    except hf_errors.GatedRepoError as exc:
        who = (
            "the token in spec.model.tokenSecretRef has not been granted access"
            if token
            else "set spec.model.tokenSecretRef to a token that has been granted access"
        )
        raise HubError(
            f"{repo_id} is gated: {who} (request it at https://huggingface.co/{repo_id})"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise HubError(
            f"{repo_id} was not found on the Hub (or is private and needs "
            "spec.model.tokenSecretRef)"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise HubError(f"{repo_id} has no revision {revision!r}; fix spec.model.revision") from exc
    except (hf_errors.LocalEntryNotFoundError, hf_errors.HfHubHTTPError, OSError) as exc:
        raise HubError(f"the Hub could not be reached for {repo_id}: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise HubError(f"{repo_id}: config.json is not valid JSON") from exc

    parameters: float | None = None
    # Packed 4-bit checkpoints (awq, gptq) store eight weights per int32 element, so the
    # safetensors element count understates them; their config.json gives the true shape.
    if not offline and "quantization_config" not in config:
        try:
            metadata = hf_api.get_safetensors_metadata(
                repo_id, revision=revision, token=token or False
            )
            parameters = float(sum(metadata.parameter_count.values())) or None
        except (hf_errors.HfHubHTTPError, hf_errors.NotASafetensorsRepoError, OSError, ValueError):
            parameters = None  # no safetensors index: estimated from config.json below
    return facts.from_hf_config(config, parameters)


@dataclasses.dataclass(frozen=True)
class Card:
    """What a model card's metadata says about the model's licence and lineage."""

    license: str | None  # card ``license`` (e.g. "llama3.1", "mit", "other")
    license_name: str | None  # card ``license_name``, which names the licence when "other"
    base_models: tuple[str, ...]  # repositories this model derives from, card order first
    gated: bool  # downloads need a token that has been granted access


# The client's shared session has no timeout: a Hub that hangs must not hold a reconcile.
_TIMEOUT_SECONDS = 30.0

_cards: _Memo[Card] = _Memo()


def cached_card(*, repo_id: str, revision: str) -> Card | None:
    """The cached card, if any."""
    return _cards.get((repo_id, revision))


def card(
    *,
    repo_id: str,
    revision: str,
    token: str | Callable[[], str | None] | None,
    clock: Callable[[], float] = time.monotonic,
) -> Card:
    """The card facts of ``repo_id`` at ``revision``, or ``HubError``; cached like ``fetch``.

    ``token`` may be a function returning it, called only when the Hub is asked, so a
    cached card costs no Secret read.
    """
    return _cards.call(
        (repo_id, revision),
        lambda: _card(repo_id=repo_id, revision=revision, token=token),
        clock,
    )


def _card(*, repo_id: str, revision: str, token: str | Callable[[], str | None] | None) -> Card:
    endpoint = _endpoint()
    if _offline():
        raise HubError(f"HF_HUB_OFFLINE is set: the model card of {repo_id} was not read")
    if callable(token):
        token = token()
    try:
        info = hf_api.HfApi(endpoint=endpoint).model_info(
            repo_id,
            revision=revision,
            expand=["cardData", "gated", "baseModels"],
            token=token or False,
            timeout=_TIMEOUT_SECONDS,
        )
    except hf_errors.RevisionNotFoundError as exc:
        raise HubError(f"{repo_id} has no revision {revision!r}; fix spec.model.revision") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise HubError(
            f"{repo_id} was not found on the Hub (or is private and needs "
            "spec.model.tokenSecretRef)"
        ) from exc
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code
        if status == 401 and token:
            raise HubError(
                f"the Hub rejected the token in spec.model.tokenSecretRef (HTTP 401) reading "
                f"the model card of {repo_id}; replace it with a valid access token"
            ) from exc
        raise HubError(f"the Hub answered HTTP {status} for the model card of {repo_id}") from exc
    except hf_errors.HFValidationError as exc:
        raise HubError(f"{repo_id!r} is not a Hub repository id; fix spec.model.id") from exc
    except (OSError, httpx2.HTTPError) as exc:
        # Offline mode is an OSError; a refused connection or a timeout escapes the client
        # as an httpx2 error, which is not.
        raise HubError(
            f"the Hub at {endpoint} could not be reached for {repo_id}: {type(exc).__name__}"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        # A body that is not JSON, or lacks "id": the client fails building ModelInfo.
        raise HubError(f"the Hub's answer for {repo_id} was not understood") from exc
    return Card(
        license=_single_text(_field(info.card_data, "license")),
        license_name=_single_text(_field(info.card_data, "license_name")),
        base_models=tuple(
            dict.fromkeys(
                [*_repo_ids(_field(info.card_data, "base_model")), *_repo_ids(info.base_models)]
            )
        ),
        gated=bool(info.gated),  # False, or the approval mode: "auto" or "manual"
    )


def _field(data: object, key: str) -> object:
    # ModelCardData keeps every card key as an attribute; a plain mapping is accepted too.
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None)


def _single_text(value: object) -> str | None:
    # A list of several licences (dual licensing) names no single one: left unknown
    # rather than guessed.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _repo_ids(value: object) -> list[str]:
    """Repository ids from a card ``base_model`` or the Hub's ``baseModels``, in order.

    Accepts a string, a list of strings or of ``{"id": ...}``, and the Hub's
    ``{"relation": "finetune", "models": [{"id": ...}]}``; anything else gives nothing.
    """
    if isinstance(value, Mapping):
        value = value.get("models")
    items: list[object] = [value] if isinstance(value, str) else []
    if isinstance(value, list):
        items = value
    ids: list[str] = []
    for item in items:
        repo = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(repo, str) and repo.strip():
            ids.append(repo.strip())
    return ids


@dataclasses.dataclass(frozen=True)
class Access:
    """Whether a token may download a repository, and a status-condition message saying so."""

    granted: bool
    reason: str  # "Granted" | "NotGranted" | "NotFound" | "BadToken"
    message: str  # one line: what is wrong, the model page, what to do; never the token


# (repository, sha256 of the token or "") -> the answer. A hash, so the cache holds no
# secret, and a rotated token is a new key, asked about at once.
_granted: dict[tuple[str, str], Access] = {}
# ... -> (the denial or the error, when to ask again, the current back-off)
_denied: dict[tuple[str, str], tuple[Access | HubError, float, float]] = {}


def access(
    *,
    repo_id: str,
    token: str | None,
    clock: Callable[[], float] = time.monotonic,
    retry_seconds: float = 30.0,
    max_retry_seconds: float = 600.0,
) -> Access:
    """Whether ``token`` (or no token) may download ``repo_id``, or ``HubError`` when unknown.

    A grant is kept for the life of the process. A denial is kept only until its back-off
    ends (``retry_seconds``, doubling to ``max_retry_seconds``) and then asked again, so
    access granted on the Hub later is noticed; failures back off the same way.
    """
    key = (repo_id, hashlib.sha256(token.encode()).hexdigest() if token else "")
    with _lock:
        hit = _granted.get(key)
        pending = _denied.get(key)
    if hit is not None:
        return hit
    now = clock()
    if pending is not None and now < pending[1]:
        if isinstance(pending[0], HubError):
            raise pending[0]
        return pending[0]
    try:
        answer = _access(repo_id=repo_id, token=token)
    except HubError as exc:
        outcome: Access | HubError = exc
    else:
        outcome = answer
        if answer.granted:
            with _lock:
                _granted[key] = answer
                _denied.pop(key, None)
            return answer
    first = min(retry_seconds, max_retry_seconds)
    backoff = first if pending is None else min(pending[2] * 2, max_retry_seconds)
    with _lock:
        _denied[key] = (
            _detached(outcome) if isinstance(outcome, HubError) else outcome,
            now + backoff,
            backoff,
        )
    if isinstance(outcome, HubError):
        raise outcome
    return outcome


def _access(*, repo_id: str, token: str | None) -> Access:
    endpoint = _endpoint()
    page = model_page(repo_id)
    if _offline():
        raise HubError(f"HF_HUB_OFFLINE is set: access to {repo_id} was not checked")
    try:
        hf_api.HfApi(endpoint=endpoint).auth_check(repo_id, token=token or False)
    except hf_errors.GatedRepoError:
        if token:
            message = (
                f"{repo_id} is gated and the token in spec.model.tokenSecretRef has not been "
                f"granted access: request access on the model page {page} with the account "
                "that owns the token in spec.model.tokenSecretRef (checked again periodically)"
            )
        else:
            message = (
                f"{repo_id} is gated and no token is set: request access on the model page "
                f"{page}, then set spec.model.tokenSecretRef to a Secret holding a token of "
                "the account that was granted access"
            )
        return Access(granted=False, reason="NotGranted", message=message)
    except (hf_errors.RepositoryNotFoundError, hf_errors.HFValidationError):
        return _not_found(repo_id, page, token)
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code
        if status == 401 and token:
            message = (
                f"the Hub rejected the token in spec.model.tokenSecretRef (HTTP 401) for "
                f"{repo_id}: replace it with a valid access token of an account granted "
                f"access on the model page {page}"
            )
            return Access(granted=False, reason="BadToken", message=message)
        if status == 401:
            # What the Hub answers anonymously for a private or missing repository; the
            # client only recognises it as such on https endpoints.
            return _not_found(repo_id, page, token)
        if status == 403 and token:
            # A definite refusal, not an outage: typically a fine-grained token without the
            # permission to read gated repositories. The engine would fail the same way.
            message = (
                f"the Hub refused the token in spec.model.tokenSecretRef for {repo_id} "
                "(HTTP 403): a fine-grained token needs the permission to read public gated "
                "repositories; grant it, or use a read token of an account granted access on "
                f"{page}"
            )
            return Access(granted=False, reason="NotGranted", message=message)
        raise HubError(f"the Hub answered HTTP {status} when checking access to {repo_id}") from exc
    except (OSError, httpx2.HTTPError) as exc:
        raise HubError(
            f"the Hub at {endpoint} could not be reached to check access to {repo_id}: "
            f"{type(exc).__name__}"
        ) from exc
    who = "the token in spec.model.tokenSecretRef" if token else "anyone, without a token,"
    return Access(granted=True, reason="Granted", message=f"{who} may download {repo_id} ({page})")


def _not_found(repo_id: str, page: str, token: str | None) -> Access:
    if token:
        what = "or the token in spec.model.tokenSecretRef cannot see it (private repository)"
    else:
        what = "or it is private and needs a token in spec.model.tokenSecretRef"
    message = f"{repo_id} was not found on the Hub ({page}), {what}: check spec.model.id"
    return Access(granted=False, reason="NotFound", message=message)


def model_page(repo_id: str) -> str:
    """The repository's page on the Hub the operator talks to (where access is requested)."""
    return f"{_endpoint()}/{repo_id}"


def _endpoint() -> str:
    # Read at call time: huggingface_hub.constants.ENDPOINT was fixed when it was imported.
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _detached(exc: HubError) -> HubError:
    # The client's exception, kept as the cause, holds its request and so the token in
    # the Authorization header: a failure kept in the cache keeps only its message.
    return HubError(str(exc))


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """What a LoRA adapter's ``adapter_config.json`` (PEFT) says about its shape and base."""

    rank: int | None  # ``r``
    target_modules: tuple[str, ...]  # ``target_modules`` (a list; a regex string gives ())
    base_model: str | None  # ``base_model_name_or_path`` (a repository id or a local path)


_adapters: _Memo[AdapterConfig] = _Memo()


def adapter_config(
    *,
    repo_id: str,
    revision: str,
    token: str | Callable[[], str | None] | None,
    clock: Callable[[], float] = time.monotonic,
) -> AdapterConfig:
    """``adapter_config.json`` of the adapter repository ``repo_id`` at ``revision``, or
    ``HubError``; cached like ``fetch``. ``token`` may be a function, called only when the
    Hub is asked."""
    return _adapters.call(
        (repo_id, revision),
        lambda: _adapter_config(repo_id=repo_id, revision=revision, token=token),
        clock,
    )


def _adapter_config(
    *, repo_id: str, revision: str, token: str | Callable[[], str | None] | None
) -> AdapterConfig:
    where = "spec.adapters[].id"
    if _offline():
        raise HubError(
            f"HF_HUB_OFFLINE is set: adapter_config.json of {repo_id} was not read; set "
            "rank and targetModules in spec.adapters[]"
        )
    if callable(token):
        token = token()
    url = file_download.hf_hub_url(
        repo_id, "adapter_config.json", revision=revision, endpoint=_endpoint()
    )
    try:
        response = hf_http.get_session().get(
            url,
            headers=hf_headers.build_hf_headers(token=token or False),
            follow_redirects=True,
            timeout=_TIMEOUT_SECONDS,
        )
        hf_http.hf_raise_for_status(response)
        config = response.json()
    except hf_errors.GatedRepoError as exc:
        raise HubError(
            f"adapter {repo_id} is gated: set spec.adapters[].tokenSecretRef (or "
            f"spec.model.tokenSecretRef) to a token granted access on {model_page(repo_id)}"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise HubError(
            f"adapter {repo_id} has no revision {revision!r}; fix spec.adapters[].revision"
        ) from exc
    except hf_errors.EntryNotFoundError as exc:
        raise HubError(
            f"adapter {repo_id} has no adapter_config.json: is {where} a PEFT LoRA adapter?"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise HubError(
            f"adapter {repo_id} was not found on the Hub (or is private and needs "
            "spec.adapters[].tokenSecretRef); fix spec.adapters[].id"
        ) from exc
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code
        raise HubError(
            f"the Hub answered HTTP {status} for adapter_config.json of adapter {repo_id}"
        ) from exc
    except hf_errors.HFValidationError as exc:
        raise HubError(f"{repo_id!r} is not a Hub repository id; fix {where}") from exc
    except (OSError, httpx2.HTTPError) as exc:
        raise HubError(
            f"the Hub at {_endpoint()} could not be reached for adapter {repo_id}: "
            f"{type(exc).__name__}"
        ) from exc
    except ValueError as exc:
        raise HubError(f"adapter {repo_id}: adapter_config.json is not valid JSON") from exc
    return _parsed_adapter_config(repo_id, config)


def _parsed_adapter_config(repo_id: str, config: object) -> AdapterConfig:
    if not isinstance(config, Mapping):
        raise HubError(f"adapter {repo_id}: adapter_config.json is not a JSON object")
    rank = config.get("r")
    modules = config.get("target_modules")
    base = config.get("base_model_name_or_path")
    return AdapterConfig(
        rank=rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else None,
        # PEFT also accepts a regular expression string here; it names no module list.
        target_modules=tuple(
            sorted({m for m in modules if isinstance(m, str)}) if isinstance(modules, list) else ()
        ),
        base_model=base.strip() if isinstance(base, str) and base.strip() else None,
    )


REQUEST_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0


def bound_requests(
    seconds: float = REQUEST_TIMEOUT_SECONDS, connect: float = CONNECT_TIMEOUT_SECONDS
) -> None:
    """Give every huggingface_hub request a timeout, for the life of the process.

    The library's shared HTTP client waits forever by default (``timeout=None``), and
    ``auth_check`` takes no timeout of its own: a Hub that accepts the connection and
    never answers would hold a reconcile, and the per-object lock, indefinitely. The
    operator calls this once at startup; ``set_client_factory`` is the library's own
    hook for configuring its client.
    """

    def factory() -> httpx2.Client:
        client = hf_http.default_client_factory()
        client.timeout = httpx2.Timeout(seconds, connect=min(connect, seconds))
        return client

    huggingface_hub.set_client_factory(factory)


def clear_cache() -> None:
    _facts.clear()
    _cards.clear()
    _adapters.clear()
    with _lock:
        _granted.clear()
        _denied.clear()
