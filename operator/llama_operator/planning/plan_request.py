"""The planner's input: a ``Request``, everything a plan is decided from, resolved.

First step of planning: ``request_for`` turns a spec, the model's facts, the available
GPU pools and the operator config into a ``Request`` (which engine, which release of it,
which pools, which pins); ``search`` enumerates and sizes candidates from it, and
``planner.plan`` picks one. No I/O: the caller has already read the facts and the pools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from llama_operator import api
from llama_operator.planning import adapters as lora_adapters
from llama_operator.planning import config, engine_profiles, facts, pools, sizing

# Named here because inside ``Request`` the field ``pools`` hides the module.
Pools = tuple[pools.Pool, ...]


@dataclasses.dataclass(frozen=True)
class Request:
    """Everything the planner decides from, already resolved (no I/O)."""

    model: facts.ModelFacts
    engine: api.Engine
    optimize: api.Optimize = "balanced"
    pools: tuple[pools.Pool, ...] = ()
    quantization: api.QuantizationChoice = "auto"
    tensor_parallel: int | None = None
    max_model_len: int | None = None
    concurrency: int = 4
    checkpoint: api.CheckpointQuantization = "none"
    memory_fraction: float = 0.9
    # The operator config's runtimeOverheadGiB: replaces the calibrated in-budget overhead
    # (None: the engine profile's memory model decides it).
    overhead_gib: float | None = None
    # More memory left free per GPU on top (re-planning after an out-of-memory exit).
    headroom_gib: float = 0.0
    # The sequences the engine schedules at once (its --max-num-seqs): the sampler's
    # activation peak grows with them.
    scheduled_sequences: int = sizing.DEFAULT_SCHEDULED_SEQUENCES
    # The engine release the image holds (``engine_profiles.resolve``); None: the engine's default.
    resolved: engine_profiles.Resolved | None = None
    # Every pool the operator knows, before spec.placement.pools picked ``pools`` from
    # them (empty: ``pools`` is all of them), and the names the spec asked for: a
    # refusal lists what exists and what would work elsewhere.
    catalogue: Pools = ()
    asked_pools: tuple[str, ...] = ()
    # Observed / planned KV cache recorded from running pods of this model and engine
    # release, by GPU product (docs/concepts/observed-capacity.md); a product missing: none
    # recorded. A ratio below 1 scales down the KV cache planned on that product.
    kv_corrections: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # The LoRA adapters served on the base model (spec.adapters, resolved): their weights
    # and the engine's LoRA buffers come out of each GPU's budget.
    adapters: tuple[facts.AdapterFacts, ...] = ()
    # spec.adapterUpdates: Runtime keeps GPU slots for adapters loaded later (an engine
    # that cannot load them at runtime ignores it: ``lora_adapters.runtime``).
    adapter_updates: api.AdapterUpdates | None = None

    @property
    def profile(self) -> engine_profiles.Profile:
        """What the configured engine release serves (quantizations and their GPU floors)."""
        if self.resolved is not None and self.resolved.profile.engine == self.engine:
            return self.resolved.profile
        return engine_profiles.get(self.engine)

    @property
    def lora(self) -> sizing.LoraLoad | None:
        """What the engine holds for the adapters on each GPU; None without adapters (and
        without runtime updates)."""
        profile = self.profile
        updates = lora_adapters.runtime(self.adapter_updates, profile=profile)
        return lora_adapters.load(self.adapters, profile=profile, updates=updates)

    @property
    def engine_version(self) -> str | None:
        if self.resolved is not None and self.resolved.profile.engine == self.engine:
            return self.resolved.version
        return self.profile.default


def request_for(
    *,
    spec: api.LlamaDeploymentSpec,
    model: facts.ModelFacts,
    available: Sequence[pools.Pool],
    settings: config.OperatorConfig,
    adapters: Sequence[facts.AdapterFacts] = (),
) -> Request:
    """Turn a spec plus operator settings into a planner request.

    ``adapters``: spec.adapters resolved and filtered to those that may be served (the
    caller drops the ones ``planning.adapters.unservable`` or the licence gate refuses).
    """
    placement = spec.placement
    engine: api.Engine = "tgi" if spec.engine == "tgi" else "vllm"  # auto = vLLM
    return Request(
        model=model,
        engine=engine,
        optimize=placement.optimize,
        pools=pools.restrict(available, placement.pools),
        quantization=placement.quantization,
        tensor_parallel=None if placement.tensorParallel == "auto" else placement.tensorParallel,
        max_model_len=None if placement.maxModelLen == "auto" else placement.maxModelLen,
        concurrency=placement.concurrentSequences,
        checkpoint=spec.model.checkpointQuantization,
        memory_fraction=placement.gpuMemoryUtilization or settings.gpuMemoryUtilization,
        overhead_gib=settings.runtimeOverheadGiB,
        scheduled_sequences=max(
            spec.limits.maxConcurrentSequences or 0, sizing.DEFAULT_SCHEDULED_SEQUENCES
        ),
        resolved=resolve_engine(spec=spec, engine=engine, settings=settings),
        catalogue=tuple(available),
        asked_pools=tuple(placement.pools),
        adapters=tuple(adapters),
        adapter_updates=spec.adapterUpdates,
    )


def resolve_engine(
    *, spec: api.LlamaDeploymentSpec, engine: api.Engine, settings: config.OperatorConfig
) -> engine_profiles.Resolved:
    """The profile of the image this spec's pods will run: spec.image, else the operator's."""
    image = spec.image or (settings.images.vllm if engine == "vllm" else settings.images.tgi)
    return engine_profiles.resolve(engine=engine, image=image, versions=settings.images.versions)
