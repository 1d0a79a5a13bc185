"""LoRA adapters in planning: the memory the engine allocates for them, the settings the
planner gives it, and the planner's properties with the new overhead term."""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest
from hypothesis import strategies as st
from tests.unit import test_planner as properties

from llama_operator import api
from llama_operator.planning import (
    adapters,
    catalog,
    config,
    engine_profiles,
    facts,
    planner,
    sizing,
)

LLAMA_8B = catalog.lookup("meta-llama/Llama-3.1-8B-Instruct")
assert LLAMA_8B is not None


def adapter(
    name: str = "sql", *, rank: int = 16, revision: str | None = None
) -> facts.AdapterFacts:
    return facts.AdapterFacts(
        name=name,
        source=f"acme/{name}" if revision else f"/models/{name}",
        revision=revision,
        rank=rank,
        target_modules=("q_proj", "v_proj"),
    )


def test_the_shape_the_worked_examples_use() -> None:
    assert LLAMA_8B is not None
    shape = (
        LLAMA_8B.layers,
        LLAMA_8B.hidden_size,
        LLAMA_8B.attention_heads,
        LLAMA_8B.kv_heads,
        LLAMA_8B.head_dim,
        LLAMA_8B.intermediate_size,
        LLAMA_8B.vocab_size,
    )
    assert shape == (32, 4096, 32, 8, 128, 14336, 128256)


def test_vllm_slots_worked_example() -> None:
    """Llama 3.1 8B, 2 slots of rank 16, TP 1, 2-byte weights. Per layer and unit of rank:
    7 x 4096 (A of qkv, gate_up; B of o, down) = 28672, + 2 x 4096 / 1 (B of q, A of o) =
    8192, + 2 x 8 x 128 (B of k and v) = 2048, + 3 x 14336 / 1 (B of gate_up, A of down) =
    43008: 81920; x 32 layers = 2621440; + the embedding's 128256 + 4096 = 2753792; x 2
    slots x rank 16 x 2 bytes = 176242688 bytes = 0.16414 GiB."""
    load = sizing.LoraLoad(memory="slots", max_loras=2, max_rank=16)
    got = sizing.lora_gib(model=LLAMA_8B, lora=load, tensor_parallel=1)
    assert got * sizing.GIB == pytest.approx(176_242_688)
    # TP 2: the sharded terms halve: (8192 + 43008) / 2 = 25600, KV heads 4 -> 1024:
    # (28672 + 25600 + 1024) x 32 + 132352 = 1901824; x 64 = 121716736 bytes.
    at_two = sizing.lora_gib(model=LLAMA_8B, lora=load, tensor_parallel=2)
    assert at_two * sizing.GIB == pytest.approx(121_716_736)


def test_tgi_adapter_weights_worked_example() -> None:
    """Rank 16 on q_proj (4096 -> 4096) and v_proj (4096 -> 1024): 16 x (8192 + 5120) x
    2 bytes = 425984 per layer, x 32 layers = 13631488 bytes, whatever the degree."""
    load = sizing.LoraLoad(memory="adapters", max_loras=1, max_rank=16, adapters=(adapter(),))
    for tp in (1, 2, None):
        got = sizing.lora_gib(model=LLAMA_8B, lora=load, tensor_parallel=tp)
        assert got * sizing.GIB == pytest.approx(13_631_488)


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_the_least_over_degrees_is_below_every_degree(tp: int) -> None:
    load = sizing.LoraLoad(memory="slots", max_loras=8, max_rank=64)
    least = sizing.lora_gib(model=LLAMA_8B, lora=load, tensor_parallel=None)
    assert 0 < least <= sizing.lora_gib(model=LLAMA_8B, lora=load, tensor_parallel=tp)


def test_settings_slot_per_adapter_capped_and_rank_rounded_up() -> None:
    vllm = engine_profiles.get("vllm")
    load = adapters.load([adapter("a", rank=8), adapter("b", rank=20)], profile=vllm)
    assert load == sizing.LoraLoad(
        memory="slots",
        max_loras=2,
        max_rank=32,
        adapters=(adapter("a", rank=8), adapter("b", rank=20)),
    )
    many = [adapter(f"a{i}") for i in range(12)]
    capped = adapters.load(many, profile=vllm)
    assert capped is not None
    assert (capped.max_loras, len(capped.adapters)) == (adapters.MAX_GPU_SLOTS, 12)
    assert adapters.load([], profile=vllm) is None


def test_what_vllm_cannot_serve_is_named() -> None:
    vllm, tgi = engine_profiles.get("vllm"), engine_profiles.get("tgi")
    assert adapters.unservable(adapter(rank=600), profile=vllm)[0] == "AdapterRankUnsupported"  # type: ignore[index]
    pinned = adapter(revision="v2")
    assert adapters.unservable(pinned, profile=vllm)[0] == "AdapterRevisionUnsupported"  # type: ignore[index]
    assert adapters.unservable(pinned, profile=tgi) is None
    assert adapters.unservable(adapter(revision="main"), profile=vllm) is None


def plan_request(**changes: object) -> planner.Request:
    spec = api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}})
    settings = config.load()
    return planner.request_for(
        spec=spec,
        model=LLAMA_8B,  # type: ignore[arg-type]
        available=config.default_pools(),
        settings=settings,
        **changes,  # type: ignore[arg-type]
    )


def test_the_plan_carries_the_adapters_their_settings_and_says_so() -> None:
    bare = planner.plan(plan_request())
    served = (adapter("sql"), adapter("support", rank=64, revision="main"))
    plan = planner.plan(plan_request(adapters=served))
    assert [a.name for a in plan.adapters] == ["sql", "support"]
    assert plan.adapters[1].model == "support"  # vLLM: clients send the name
    assert plan.lora is not None
    assert (plan.lora.maxLoras, plan.lora.maxLoraRank, plan.lora.maxCpuLoras) == (2, 64, 2)
    assert "2 LoRA adapter(s) take" in plan.reason
    assert bare.adapters == []
    assert bare.lora is None
    assert "LoRA" not in bare.reason
    # The same pool and degree: less KV cache, by the LoRA memory.
    if (plan.pool, plan.tensorParallel, plan.quantization) == (
        bare.pool,
        bare.tensorParallel,
        bare.quantization,
    ):
        assert plan.memory is not None
        assert bare.memory is not None
        assert plan.memory.overheadGiB > bare.memory.overheadGiB


def test_tgi_addresses_hub_adapters_by_repository_id() -> None:
    tgi = engine_profiles.get("tgi")
    (hub,) = adapters.plan_adapters([adapter("sql", revision="main")], profile=tgi)
    assert hub.model == "acme/sql"
    (local,) = adapters.plan_adapters([adapter("sql")], profile=tgi)
    assert local.model == "sql"


ADAPTER_SETS = st.lists(
    st.builds(
        lambda i, rank: adapter(f"a{i}", rank=rank),
        st.integers(0, 99),
        st.sampled_from((1, 8, 16, 64, 256)),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda a: a.name,
)


@properties.SETTINGS
@hypothesis.given(properties.requests(), ADAPTER_SETS)
def test_pruned_equals_exhaustive_with_adapters(
    request: planner.Request, served: list[facts.AdapterFacts]
) -> None:
    request = dataclasses.replace(request, adapters=tuple(served))
    ours = properties.attempt(planner.plan, request)
    reference = properties.attempt(planner.plan_exhaustive, request)
    if isinstance(ours, planner.PlanError):
        assert isinstance(reference, planner.PlanError)
        assert reference.field == ours.field
        return
    assert reference == ours


@properties.SETTINGS
@hypothesis.given(properties.requests(), ADAPTER_SETS)
def test_min_tensor_parallel_stays_a_lower_bound_with_adapters(
    request: planner.Request, served: list[facts.AdapterFacts]
) -> None:
    request = dataclasses.replace(request, adapters=tuple(served))
    for pool in request.pools:
        for q in sizing.PRECISION_ORDER:
            terms = {**properties.memory_terms(request, pool), "lora": request.lora}
            lowest = sizing.min_tensor_parallel(
                model=request.model,
                quantization=q,
                gpu_memory_gib=pool.memory_gib,
                max_model_len=request.max_model_len,
                concurrency=request.concurrency,
                **terms,
            )
            for tp in planner.TP_DEGREES:
                fit = sizing.fit(
                    model=request.model,
                    quantization=q,
                    gpu_memory_gib=pool.memory_gib,
                    tensor_parallel=tp,
                    max_model_len=request.max_model_len,
                    concurrency=request.concurrency,
                    **terms,
                )
                if fit.feasible:
                    assert lowest is not None
                    assert tp >= lowest
