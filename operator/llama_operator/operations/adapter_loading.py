"""Runtime adapter updates: which loads and unloads bring a running pod to the plan's
adapters, and what status says once they ran.

Pure. With ``spec.adapterUpdates.mode: Runtime`` on an engine that can load adapters into
a running server (vLLM, ``engine_profiles.LoraRuntime``), the pods start with LoRA slots
and no adapter; on every reconcile the load phase (``reconcile.adapter_loading``) lists
what each ready pod has loaded (its ``/v1/models``), asks ``changes`` what to do, has
the runtime (``runtime.adapter_loader``) call the engine, and turns the outcome into
``status.adapters[].loadedPods`` and the ``AdaptersReady`` condition with ``summary``.

What a pod should hold is the same on every variant that loads at runtime: the adapters
the current plan serves, whatever template the pod runs. The adapter list is not in the
template, so a canary of another change and the primary it replaces both get an adapter
added meanwhile; only an adapter of a higher rank than a variant's slots waits for the
rollout that raises them (``fits``).

A new version of an adapter (the same name, another Hub id or path) is loaded in place
(``reload``, vLLM's ``load_inplace``): in the running pods at once, not canaried. To
canary a version by weight, use ``mode: Rollout`` (docs/concepts/adapters.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from llama_operator import api
from llama_operator.api import conditions

Kind = Literal["load", "reload", "unload"]

LOADING = "AdapterLoading"
LOAD_FAILED = "AdapterLoadFailed"
ALL_LOADED = "AllLoaded"


@dataclasses.dataclass(frozen=True)
class Change:
    """One call to make on one pod: load an adapter from ``path``, load a new version in
    place, or unload one."""

    kind: Kind
    name: str
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class PodState:
    """One ready pod after this reconcile's calls."""

    variant: str  # builders.PRIMARY or builders.CANARY
    loaded: Mapping[str, str] | None  # name -> path it was loaded from; None: not readable
    failures: tuple[tuple[str, str], ...] = ()  # (adapter, why) for calls that failed
    unreadable: str | None = None  # why its adapters could not be listed


def fits(adapter: api.PlanAdapter, plan: api.Plan) -> bool:
    """Whether a variant running ``plan`` has slots for the adapter: runtime loading on,
    and the slots' rank at least the adapter's."""
    return plan.lora is not None and plan.lora.runtime and adapter.rank <= plan.lora.maxLoraRank


def held_by(wanted: Sequence[api.PlanAdapter], *, running: api.Plan) -> tuple[api.PlanAdapter, ...]:
    """What the pods of a variant running ``running`` should hold of the plan's ``wanted``
    adapters: each that fits its slots (``fits``), at the version ``running`` serves it when
    it serves it (a new version reaches a variant with its template: the canary's, then the
    primary's once promoted), else the wanted one (an adapter added, on every variant)."""
    versions = {adapter.name: adapter for adapter in running.adapters}
    return tuple(
        versions.get(adapter.name, adapter) for adapter in wanted if fits(adapter, running)
    )


def changes(wanted: Sequence[api.PlanAdapter], loaded: Mapping[str, str]) -> list[Change]:
    """The calls that make a pod with ``loaded`` (name -> path) hold exactly ``wanted``.

    Unloads come first, so an adapter removed frees its place in host memory before one
    added takes it; then loads and reloads in the plan's order.
    """
    paths = {adapter.name: adapter.source for adapter in wanted}
    result = [Change("unload", name) for name in sorted(loaded) if name not in paths]
    for adapter in wanted:
        held = loaded.get(adapter.name)
        if held is None:
            result.append(Change("load", adapter.name, adapter.source))
        elif held != adapter.source:
            result.append(Change("reload", adapter.name, adapter.source))
    return result


def after(loaded: Mapping[str, str], done: Sequence[tuple[Change, str | None]]) -> dict[str, str]:
    """``loaded`` once the calls that succeeded (``(change, failure)`` with failure None)
    took effect; a failed call changed nothing."""
    result = dict(loaded)
    for change, failure in done:
        if failure is not None:
            continue
        if change.kind == "unload":
            result.pop(change.name, None)
        elif change.path is not None:
            result[change.name] = change.path
    return result


def summary(
    statuses: Sequence[api.AdapterStatus],
    *,
    wanted: Sequence[api.PlanAdapter],
    pods: Mapping[str, PodState],
    held: Mapping[str, Sequence[api.PlanAdapter]] | None = None,
) -> tuple[list[api.AdapterStatus], conditions.Check | None]:
    """status.adapters with ``loadedPods`` (served adapters only), and the AdaptersReady
    condition when runtime loading decides it: None leaves the decision's (an adapter
    held back, or nothing to say).

    ``held``: what each variant's pods should hold (``held_by``; default ``wanted`` on
    every pod). A pod counts for an adapter when it holds the version its variant should.
    True ``AllLoaded`` once every pod holds what it should; False ``AdapterLoadFailed``
    when an engine refused a call (its message, per pod), else False ``AdapterLoading``
    while a pod could not be read or has not got one yet (the next reconcile, at most the
    resync interval later, tries again).
    """
    expected = {
        name: {a.name: a.source for a in (held[pod.variant] if held else wanted)}
        for name, pod in pods.items()
    }
    shown = []
    for entry in statuses:
        if not entry.served or entry.name not in {a.name for a in wanted}:
            shown.append(entry)
            continue
        count = sum(
            1
            for name, pod in pods.items()
            if pod.loaded is not None
            and entry.name in expected[name]
            and pod.loaded.get(entry.name) == expected[name][entry.name]
        )
        shown.append(entry.model_copy(update={"loadedPods": count}))
    if any(not entry.served for entry in statuses):
        return shown, None  # the decision's condition names what is held back
    return shown, _check(wanted=wanted, pods=pods, expected=expected)


def _check(
    *,
    wanted: Sequence[api.PlanAdapter],
    pods: Mapping[str, PodState],
    expected: Mapping[str, Mapping[str, str]],
) -> conditions.Check | None:
    if not wanted:
        return None
    failed = [
        f"pod {name}: {adapter}: {why}"
        for name, pod in sorted(pods.items())
        for adapter, why in pod.failures
    ]
    # An engine that answered a listing with an HTTP error refused it (a key the pods did
    # not start with, say): a fault, not a pod still on its way.
    failed += [
        f"pod {name}: {pod.unreadable}"
        for name, pod in sorted(pods.items())
        if pod.unreadable is not None and pod.unreadable.startswith("HTTP ")
    ]
    if failed:
        return conditions.Check(
            conditions.ADAPTERS_READY,
            "False",
            LOAD_FAILED,
            "the engine refused to load or unload: " + "; ".join(failed),
        )
    unread = [  # no answer, or no connection: a pod starting, or going
        f"pod {name}: {pod.unreadable}" for name, pod in sorted(pods.items()) if pod.unreadable
    ]
    missing = sorted(
        {
            adapter
            for name, pod in pods.items()
            if pod.loaded is not None
            for adapter, path in expected[name].items()
            if pod.loaded.get(adapter) != path
        }
        | {a.name for a in wanted if not any(a.name in e for e in expected.values())}
    )
    if not pods or unread or missing:
        parts = [
            *(["no ready serving pod yet"] if not pods else []),
            *([f"not yet loaded everywhere: {', '.join(missing)}"] if missing else []),
            *unread,
        ]
        return conditions.Check(
            conditions.ADAPTERS_READY,
            "False",
            LOADING,
            "loading the adapters into the running pods: " + "; ".join(parts),
        )
    return conditions.Check(
        conditions.ADAPTERS_READY,
        "True",
        ALL_LOADED,
        f"every adapter is loaded on all {len(pods)} ready pod(s): "
        + ", ".join(adapter.name for adapter in wanted),
    )
