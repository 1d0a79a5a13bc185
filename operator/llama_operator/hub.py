"""Model facts from the Hugging Face Hub, for models outside the built-in catalog.

Reads ``config.json`` (the shape) with ``hf_hub_download`` and the parameter count
from the safetensors index with ``get_safetensors_metadata``, never the weights.
Answers are cached per (repository, revision) for the life of the process, so a
timer-driven reconcile asks the Hub once, not every tick. With ``HF_HUB_OFFLINE=1``
only the local Hugging Face cache is consulted (tests and air-gapped clusters).

The token, when given, is passed straight to the client and never logged or kept.
"""

from __future__ import annotations

import json
import os
import threading

from huggingface_hub import errors as hf_errors
from huggingface_hub import file_download, hf_api

from llama_operator import facts


class HubError(RuntimeError):
    """The Hub could not supply facts; the message says why in user terms."""


_cache: dict[tuple[str, str], facts.PartialFacts] = {}
_lock = threading.Lock()


def fetch(*, repo_id: str, revision: str, token: str | None) -> facts.PartialFacts:
    """Shape and size of ``repo_id`` at ``revision``, or ``HubError``."""
    key = (repo_id, revision)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
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
        raise HubError(
            f"{repo_id} is gated: the token in spec.model.tokenSecretRef has not been granted "
            f"access (request it at https://huggingface.co/{repo_id})"
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
    if not offline:
        try:
            metadata = hf_api.get_safetensors_metadata(
                repo_id, revision=revision, token=token or False
            )
            parameters = float(sum(metadata.parameter_count.values())) or None
        except (hf_errors.HfHubHTTPError, hf_errors.NotASafetensorsRepoError, OSError, ValueError):
            parameters = None  # no safetensors index: estimated from config.json below
    result = facts.from_hf_config(config, parameters)
    with _lock:
        _cache[key] = result
    return result


def clear_cache() -> None:
    with _lock:
        _cache.clear()
