"""LoRA adapters in a plan: which the engine can serve, its LoRA settings, the plan's view.

Pipeline position: between ``plan_request`` (``Request.adapters``, resolved by the
reconciler or the CLI) and ``sizing`` (``sizing.LoraLoad``, the memory term); the planner
copies ``plan_adapters`` and ``plan_lora`` into ``api.Plan``, which is all the engines and
builders read. Pure.

The engine's settings (vLLM, ``data/engines.yaml`` ``lora``): one GPU slot per adapter, so
a request for any adapter never waits for a swap, up to ``MAX_GPU_SLOTS``; the rank of
the slots is the smallest value ``--max-lora-rank`` allows at or above the largest rank;
every adapter is also kept in host memory (``--max-cpu-loras``). With runtime updates
(``spec.adapterUpdates.mode: Runtime`` on an engine that can, ``runtime``) the slots come
from the spec instead, so the list can change in the running pods without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_operator import api
from llama_operator.planning import engine_profiles, facts, sizing

# vLLM preallocates every slot in every layer (sizing.lora_gib): 8 slots of rank 16 take
# 0.66 GiB per GPU on Llama 3.1 8B, 8 of rank 64 take 6.5 GiB per GPU on a 70B at TP 4.
# Past 8 adapters, the others wait in host memory and are swapped into a slot when a
# batch asks for them (LRUCacheLoRAModelManager, vllm/lora/model_manager.py): slower for
# those, but the KV cache keeps its room.
MAX_GPU_SLOTS = 8


def runtime(
    updates: api.AdapterUpdates | None, *, profile: engine_profiles.Profile
) -> api.AdapterUpdates | None:
    """``updates`` when they ask for runtime loading and this engine release can load
    adapters into a running server; None otherwise (the adapters load at start)."""
    if updates is None or updates.mode != "Runtime" or profile.lora.runtime is None:
        return None
    return updates


def unservable(
    adapter: facts.AdapterFacts,
    *,
    profile: engine_profiles.Profile,
    updates: api.AdapterUpdates | None = None,
) -> tuple[str, str] | None:
    """(CamelCase reason, what to do) when this engine release cannot serve the adapter
    (``updates``: runtime loading, whose slots' rank the spec may fix)."""
    lora = profile.lora
    fixed = updates.maxRank if updates is not None else None
    if fixed is not None and adapter.rank > (lora.rank_slot(fixed) or fixed):
        return (
            "AdapterRankUnsupported",
            f"adapter {adapter.name!r} has rank {adapter.rank}, above the slots' rank "
            f"{lora.rank_slot(fixed) or fixed} (spec.adapterUpdates.maxRank): raise maxRank "
            "(the pods restart once) or use an adapter of a lower rank",
        )
    if lora.rank_slot(adapter.rank) is None:
        top = max(lora.allowedRanks)
        return (
            "AdapterRankUnsupported",
            f"adapter {adapter.name!r} has rank {adapter.rank}; {profile.displayName} serves "
            f"LoRA ranks up to {top} (--max-lora-rank): use an adapter of a lower rank",
        )
    hub = adapter.revision is not None
    if hub and not lora.hubRevision and adapter.revision not in ("main", None):
        return (
            "AdapterRevisionUnsupported",
            f"adapter {adapter.name!r} asks for revision {adapter.revision!r}, but "
            f"{profile.displayName} fetches a Hub adapter at its default branch only: "
            "remove revision, or download that revision to the model cache and give its path",
        )
    return None


def load(
    adapters: Sequence[facts.AdapterFacts],
    *,
    profile: engine_profiles.Profile,
    updates: api.AdapterUpdates | None = None,
) -> sizing.LoraLoad | None:
    """What the engine will hold for these adapters; None without adapters, unless
    ``updates`` (``runtime``'s answer) keeps slots for adapters loaded later."""
    lora = profile.lora
    if updates is not None:
        # Fixed by the spec, so an adapter added later fits the running pods: the slots'
        # rank covers maxRank, else the engine's default and every listed adapter.
        wanted = updates.maxRank or max(
            [lora.defaultMaxLoraRank, *(adapter.rank for adapter in adapters)]
        )
        return sizing.LoraLoad(
            memory=lora.memory,
            max_loras=updates.gpuSlots or api.DEFAULT_RUNTIME_SLOTS,
            max_rank=lora.rank_slot(wanted) or max(lora.allowedRanks),
            adapters=tuple(adapters),
            runtime=True,
        )
    if not adapters:
        return None
    largest = max(adapter.rank for adapter in adapters)
    rank = lora.rank_slot(largest)
    if rank is None:
        raise ValueError(
            f"LoRA rank {largest} is above what {profile.displayName} serves; "
            "filter the adapters with planning.adapters.unservable first"
        )
    return sizing.LoraLoad(
        memory=lora.memory,
        max_loras=min(len(adapters), MAX_GPU_SLOTS),
        max_rank=rank,
        adapters=tuple(adapters),
    )


def plan_adapters(
    adapters: Sequence[facts.AdapterFacts], *, profile: engine_profiles.Profile
) -> list[api.PlanAdapter]:
    """The adapters as ``status.plan.adapters`` shows them and the engines render them."""
    by_id = profile.lora.hubAddressedBy == "repositoryId"
    return [
        api.PlanAdapter(
            name=adapter.name,
            model=adapter.source if by_id and adapter.revision is not None else adapter.name,
            source=adapter.source,
            revision=adapter.revision,
            rank=adapter.rank,
            targetModules=list(adapter.target_modules),
        )
        for adapter in adapters
    ]


def plan_lora(
    load: sizing.LoraLoad | None, *, model: facts.ModelFacts, tensor_parallel: int
) -> api.PlanLora | None:
    """The engine's LoRA settings and the memory they take per GPU."""
    if load is None:
        return None
    return api.PlanLora(
        maxLoras=load.max_loras,
        maxLoraRank=load.max_rank,
        # Runtime: room in host memory for every adapter the spec can list, so an added
        # one is never evicted (the cache is filled as adapters load, not preallocated).
        maxCpuLoras=max(api.MAX_ADAPTERS, load.max_loras) if load.runtime else len(load.adapters),
        loraGiB=round(sizing.lora_gib(model=model, lora=load, tensor_parallel=tensor_parallel), 3),
        runtime=load.runtime,
    )
