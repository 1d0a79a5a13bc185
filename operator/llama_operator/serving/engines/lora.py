"""LoRA adapters on the engine's command line or in its environment, from the plan only.

vLLM takes every adapter at start from ``--lora-modules name=path`` (a Hub id is fetched
where a path is not absolute) with ``--enable-lora`` and the slot settings the planner
sized; TGI takes them from ``LORA_ADAPTERS`` (``id@revision`` from the Hub, ``name=/path``
on disk). The flag and variable names, and the forms each engine accepts, are the
release's profile (``data/engines.yaml``, ``lora``, with their sources). A change to the
adapters changes the pod template, so it rolls out through the canary like any other.

With runtime updates (``plan.lora.runtime``) the pods start with the slots only and the
variable that opens vLLM's load/unload endpoints; no adapter is on the command line, so
the template does not change with the list, and the operator loads them
(``reconcile.adapter_loading``).
"""

from __future__ import annotations

from typing import Any

from llama_operator import api
from llama_operator.planning import engine_profiles


def args(*, plan: api.Plan, profile: engine_profiles.Profile) -> list[str]:
    """The LoRA flags (vLLM); empty without adapters or for an engine that takes none."""
    lora, settings = profile.lora, plan.lora
    if settings is None or lora.modulesFlag is None:
        return []
    if not plan.adapters and not settings.runtime:
        return []
    result = [lora.enableFlag] if lora.enableFlag is not None else []
    for flag, value in (
        (lora.maxLorasFlag, settings.maxLoras),
        (lora.maxLoraRankFlag, settings.maxLoraRank),
        (lora.maxCpuLorasFlag, settings.maxCpuLoras),
    ):
        if flag is not None:
            result += [flag, str(value)]
    if settings.runtime:
        return result  # the operator loads the adapters into the running server
    # "name=path" (LoRAParserAction): names and paths never hold "=" or "," (the spec's
    # patterns), which would make vLLM read the value as JSON instead.
    return [*result, lora.modulesFlag, *(f"{a.name}={a.source}" for a in plan.adapters)]


def env(*, plan: api.Plan, profile: engine_profiles.Profile) -> list[dict[str, Any]]:
    """The LoRA variable: TGI's adapter list, or with runtime updates the one that opens
    vLLM's load/unload endpoints; empty otherwise."""
    runtime = profile.lora.runtime
    if plan.lora is not None and plan.lora.runtime and runtime is not None:
        # Opens the load/unload endpoints; the operator calls them (with the API key).
        return [{"name": runtime.env, "value": runtime.value}]
    variable = profile.lora.modulesEnv
    if not plan.adapters or variable is None:
        return []
    return [{"name": variable, "value": ",".join(_tgi_item(a) for a in plan.adapters)}]


def _tgi_item(adapter: api.PlanAdapter) -> str:
    # parse_lora_adapters (v3.3.7): "id[=path][@revision]". A Hub adapter keeps its
    # revision; one on a path is named, and the launcher skips downloading it.
    if adapter.revision is None:
        return f"{adapter.name}={adapter.source}"
    return f"{adapter.source}@{adapter.revision}"
