"""Which of spec.adapters the serving pods may carry, and what status says about each.

Pure: the plan phase (``reconcile.desired_state``) reads each adapter's facts from the Hub
(``Found``) and asks ``decide``; the servable adapters go to the planner, the others are
held back and reported, and none ever blocks the base model or another adapter
(docs/concepts/adapters.md).

The rules, in order:

1. **AdapterUnavailable**: its facts could not be read (the Hub failed and the spec does
   not give both rank and targetModules), or no rank or target modules are known.
2. **BaseModelMismatch**: the adapter names the base models it was trained on
   (``base_model_name_or_path`` in adapter_config.json when it is a repository id, and its
   card's ``base_model``) and none is the served model. Ids are compared case-insensitively;
   a published variant the built-in catalog folds onto the same shape (``-Instruct``,
   ``-chat``, ``-hf``) also matches, and status says so. An adapter that names no
   repository (a path, a local path in its config) is not checked, and status says so.
3. **LicenseNotAccepted**: its card declares a licence that is not the base model's, or
   one the operator does not know, or a restricted one, and
   ``spec.adapters[].license.accept`` is not true. No declared licence: the base model's
   licence covers the adapter, a derivative of it.
4. What the planned engine release cannot serve (``planning.adapters.unservable``: a rank
   above its largest, a revision it cannot fetch) is held back by ``hold`` with that
   reason (``AdapterRankUnsupported``, ``AdapterRevisionUnsupported``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.licensing import terms
from llama_operator.planning import catalog, facts

ALL_SERVED = "AllServed"
BASE_MODEL_MISMATCH = "BaseModelMismatch"
LICENSE_NOT_ACCEPTED = "LicenseNotAccepted"
ADAPTER_UNAVAILABLE = "AdapterUnavailable"

# A Hub repository id (owner/name); anything else in base_model_name_or_path (a local
# path of the training machine, say) names no repository that can be compared.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class Found:
    """What the outside world says about one adapter (all empty for a path adapter)."""

    rank: int | None = None  # adapter_config.json ``r``
    target_modules: tuple[str, ...] = ()  # adapter_config.json ``target_modules``
    base_models: tuple[str, ...] = ()  # config's base model, then the card's base_model
    license: str | None = None  # the card's ``license``
    license_name: str | None = None  # the card's ``license_name`` (for "other")
    error: str | None = None  # why the Hub could not say (None: it answered, or not asked)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One adapter: its facts when it is served, and its status entry either way."""

    served: facts.AdapterFacts | None
    status: api.AdapterStatus


@dataclasses.dataclass(frozen=True)
class Decisions:
    """Every adapter's decision, in spec order, and the AdaptersReady condition (None: no
    adapter in the spec, the condition is removed)."""

    each: tuple[Decision, ...]
    check: conditions.Check | None

    @property
    def servable(self) -> tuple[facts.AdapterFacts, ...]:
        return tuple(d.served for d in self.each if d.served is not None)


# No adapter in the spec: nothing served, the condition removed.
NONE = Decisions(each=(), check=None)


def decide(
    *,
    adapters: Sequence[api.Adapter],
    found: Sequence[Found],
    model_id: str,
    base_license: terms.License | None,
) -> Decisions:
    """Which adapters are served, and why the others are not."""
    each = tuple(
        _one(adapter, seen, index=index, model_id=model_id, base_license=base_license)
        for index, (adapter, seen) in enumerate(zip(adapters, found, strict=True))
    )
    return Decisions(each=each, check=_check(each))


def hold(decisions: Decisions, *, refused: Mapping[str, tuple[str, str]]) -> Decisions:
    """``decisions`` with the adapters in ``refused`` (name -> (reason, message), what the
    planned engine release cannot serve: ``planning.adapters.unservable``) held back too."""
    if not refused:
        return decisions
    each = []
    for index, decision in enumerate(decisions.each):
        name = decision.status.name
        if decision.served is None or name not in refused:
            each.append(decision)
            continue
        reason, message = refused[name]
        each.append(_held(decision.status, reason, f"spec.adapters[{index}] ({name}): {message}"))
    return Decisions(each=tuple(each), check=_check(each))


def noted(decisions: Decisions, note: str) -> Decisions:
    """``decisions`` with ``note`` added to the AdaptersReady message (its status and
    reason unchanged): what else a user should know about how the adapters are served."""
    check = decisions.check
    if check is None:
        return decisions
    return Decisions(
        each=decisions.each, check=dataclasses.replace(check, message=f"{check.message}; {note}")
    )


def _one(
    adapter: api.Adapter,
    seen: Found,
    *,
    index: int,
    model_id: str,
    base_license: terms.License | None,
) -> Decision:
    field = f"spec.adapters[{index}]"
    rank = adapter.rank if adapter.rank is not None else seen.rank
    modules = tuple(adapter.targetModules or ()) or seen.target_modules
    source = adapter.path or f"{adapter.id}@{adapter.revision}"
    base = next((b for b in seen.base_models if _REPO_ID.match(b)), None)
    entry = api.AdapterStatus(
        name=adapter.name,
        source=source,
        rank=rank,
        targetModules=list(modules),
        baseModel=base or (seen.base_models[0] if seen.base_models else None),
        license=seen.license_name if (seen.license or "").lower() == "other" else seen.license,
    )
    if seen.error is not None or rank is None or not modules:
        why = seen.error or "its adapter_config.json gives no rank or no target_modules"
        return _held(
            entry,
            ADAPTER_UNAVAILABLE,
            f"{field} ({adapter.name}): {why}; set {field}.rank and {field}.targetModules, "
            "or fix the repository",
        )
    matched, note = _base_matches(seen.base_models, model_id)
    if not matched:
        return _held(
            entry,
            BASE_MODEL_MISMATCH,
            f"{field} ({adapter.name}) was trained on {', '.join(seen.base_models)}, not the "
            f"served {model_id}: use an adapter of {model_id}, or remove it",
        )
    unaccepted = _license_problem(seen, base_license)
    if unaccepted is not None and not (adapter.license and adapter.license.accept):
        return _held(
            entry,
            LICENSE_NOT_ACCEPTED,
            f"{field} ({adapter.name}): its card declares {unaccepted}; read it and set "
            f"{field}.license.accept: true to serve it under that licence",
        )
    served = facts.AdapterFacts(
        name=adapter.name,
        source=adapter.path or adapter.id or "",
        revision=None if adapter.path else adapter.revision,
        rank=rank,
        target_modules=modules,
        base_model=base,
        license=entry.license,
    )
    return Decision(
        served=served, status=entry.model_copy(update={"served": True, "message": note})
    )


def _held(entry: api.AdapterStatus, reason: str, message: str) -> Decision:
    return Decision(
        served=None,
        status=entry.model_copy(update={"served": False, "reason": reason, "message": message}),
    )


def _base_matches(base_models: Sequence[str], model_id: str) -> tuple[bool, str]:
    """Whether a declared base is the served model, and a note for status."""
    ids = [b for b in base_models if _REPO_ID.match(b)]
    if not ids:
        return True, "its base model is not declared as a Hub repository: not checked"
    wanted = model_id.strip().lower()
    if any(b.lower() == wanted for b in ids):
        return True, ""
    served_entry = catalog.lookup(model_id)
    for b in ids:
        if served_entry is not None and catalog.lookup(b) is served_entry:
            return True, f"trained on {b}, a published variant of {model_id} with its shape"
    return False, ""


def _license_problem(seen: Found, base_license: terms.License | None) -> str | None:
    """What about the adapter's declared licence needs accepting, or None when the base
    model's licence covers it."""
    if not seen.license and not seen.license_name:
        return None
    declared = terms.from_card(seen.license, seen.license_name)
    text = seen.license_name or seen.license
    if declared is None:
        return f"the licence {text!r}, which the operator does not know"
    if declared.restricted is not None:
        return f"the restricted licence {declared.id} ({declared.restricted})"
    if base_license is None or declared.id != base_license.id:
        base = base_license.id if base_license is not None else "unknown"
        return f"the licence {declared.id}, not the base model's ({base})"
    return None


def _check(each: Sequence[Decision]) -> conditions.Check | None:
    if not each:
        return None
    held = [d.status for d in each if not d.status.served]
    if not held:
        return conditions.Check(
            conditions.ADAPTERS_READY,
            "True",
            ALL_SERVED,
            f"every adapter is served: {', '.join(d.status.name for d in each)}",
        )
    # The first held adapter's reason (spec order); the message names every one and its fix.
    return conditions.Check(
        conditions.ADAPTERS_READY, "False", held[0].reason, "; ".join(s.message for s in held)
    )
