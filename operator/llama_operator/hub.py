"""Model facts from the Hugging Face Hub, for models outside the built-in catalog.

Reads ``config.json`` (the shape) with ``hf_hub_download`` and the parameter count
from the safetensors index with ``get_safetensors_metadata``, never the weights.
Answers are cached per (repository, revision) for the life of the process, so a
timer-driven reconcile asks the Hub once, not every tick; failures are cached too,
with a back-off (1 minute doubling to 1 hour), so an unreachable Hub or a missing
grant is retried patiently rather than on every resync. With ``HF_HUB_OFFLINE=1``
only the local Hugging Face cache is consulted (tests and air-gapped clusters).

The token, when given, is passed straight to the client and never logged or kept.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from huggingface_hub import errors as hf_errors
from huggingface_hub import file_download, hf_api

from llama_operator import facts


class HubError(RuntimeError):
    """The Hub could not supply facts; the message says why in user terms."""


FIRST_RETRY_SECONDS = 60.0
MAX_RETRY_SECONDS = 3600.0

_cache: dict[tuple[str, str], facts.PartialFacts] = {}
# (repository, revision) -> (the error, when to try again, the current back-off)
_failures: dict[tuple[str, str], tuple[HubError, float, float]] = {}
_lock = threading.Lock()


def cached(*, repo_id: str, revision: str) -> facts.PartialFacts | None:
    """The cached answer, if any: lets callers skip reading a token they will not need."""
    with _lock:
        return _cache.get((repo_id, revision))


def fetch(
    *,
    repo_id: str,
    revision: str,
    token: str | None,
    clock: Callable[[], float] = time.monotonic,
) -> facts.PartialFacts:
    """Shape and size of ``repo_id`` at ``revision``, or ``HubError``."""
    key = (repo_id, revision)
    with _lock:
        hit = _cache.get(key)
        failure = _failures.get(key)
    if hit is not None:
        return hit
    now = clock()
    if failure is not None and now < failure[1]:
        raise failure[0]
    try:
        result = _fetch(repo_id=repo_id, revision=revision, token=token)
    except HubError as exc:
        backoff = FIRST_RETRY_SECONDS if failure is None else min(failure[2] * 2, MAX_RETRY_SECONDS)
        with _lock:
            _failures[key] = (exc, now + backoff, backoff)
        raise
    with _lock:
        _cache[key] = result
        _failures.pop(key, None)
    return result


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


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _failures.clear()
