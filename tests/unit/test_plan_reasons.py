"""Refusals name the constraint that really binds, and what would work.

A plan can fail for a GPU that lacks the capability a pinned quantization needs, a pinned
tensor-parallel degree that does not divide the model's heads or does not fit one node, a
pinned context longer than the model's, a pool name that matches nothing, or memory. Each
has its own ``PlanError.reason`` (the ``Planned=False`` condition reason) and a message
that names the numbers; memory is blamed only when memory is what is missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_planner import pool, request_for
from test_reconcile import SETTINGS, SPEC, body, run

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.planning import config, facts, planner, pools

# 7 attention heads (and 7 KV heads): only tensorParallel 1 divides them.
SEVEN_HEADS = facts.ModelFacts(
    id="example/seven-heads",
    parameters=0.5e9,
    layers=24,
    hidden_size=896,
    attention_heads=7,
    kv_heads=7,
    head_dim=128,
    max_context=32768,
    source="spec",
)
CATALOGUE_NAMES = ("l4", "a10g", "l40s", "a100-80", "h100")
# Every catalogue GPU (compute capability 8.0 and up) runs fp8 on both engines (vLLM from
# 7.5, TGI from 8.0): capability refusals need an older GPU. A V100 (7.0) is below every
# engine's fp8 floor; a T4 (7.5, in the GPU table) is below TGI's only.
V100 = pools.Pool(
    name="v100",
    gpuProduct="Tesla-V100-SXM2-32GB",
    gpuMemoryGiB=32,
    computeCapability="7.0",
    gpusPerNode=8,
    costPerGPUHour=1.0,
)
WITH_V100 = (*config.default_pools(), V100)


def refusal(request: planner.Request) -> planner.PlanError:
    with pytest.raises(planner.PlanError) as caught:
        planner.plan(request)
    error = caught.value
    # The brute-force reference reaches the same verdict for the same reason.
    with pytest.raises(planner.PlanError) as reference:
        planner.plan_exhaustive(request)
    assert (reference.value.reason, reference.value.field) == (error.reason, error.field)
    assert str(reference.value) == str(error)
    return error


def custom(
    model: facts.ModelFacts,
    *,
    available: tuple[pools.Pool, ...] | None = None,
    **placement: Any,
) -> planner.Request:
    """A request for ``model`` (not in the catalog) built as the operator builds one."""
    spec = api.parse_spec({"model": {"id": model.id}, "placement": placement})
    return planner.request_for(
        spec=spec,
        model=model,
        available=config.default_pools() if available is None else available,
        settings=config.OperatorConfig(),
    )


class TestGPUCapability:
    def test_fp8_pinned_on_a_v100_names_the_gpu_and_what_runs(self) -> None:
        error = refusal(
            request_for(
                "meta-llama/Llama-3.2-1B", available=WITH_V100, pools=["v100"], quantization="fp8"
            )
        )
        message = str(error)
        assert error.reason == "GPUCapabilityTooLow"
        assert error.field == "spec.placement.quantization"
        assert "Tesla-V100-SXM2-32GB" in message
        assert "compute capability 7.0" in message
        assert "7.5" in message  # what fp8 needs, from the engine profile
        # What would work: the quantization it does run, and the pools whose GPUs run fp8.
        assert "it runs none (16-bit)" in message
        assert "l4, a10g, l40s, a100-80, h100" in message
        assert "Would fit: quantization: auto (1x v100 at none)" in message
        assert "pools: add l4 (1x l4 at fp8)" in message
        # Not a memory problem: the old message blamed 2 GiB of 16-bit weights.
        assert "16-bit weights" not in message
        assert "GiB" not in message.partition("Would fit")[0]

    def test_every_pool_short_of_the_capability_is_named(self) -> None:
        # TGI serves fp8 from 8.0 (Marlin W8A16): the T4 (7.5) and the V100 (7.0) fall short.
        available = (pool("t4", "Tesla-T4"), V100)
        error = refusal(
            request_for(
                "meta-llama/Llama-3.1-8B", engine="tgi", available=available, quantization="fp8"
            )
        )
        message = str(error)
        assert error.reason == "GPUCapabilityTooLow"
        assert "compute capability 8.0 or higher" in message
        assert "t4 (Tesla-T4, compute capability 7.5)" in message
        assert "v100 (Tesla-V100-SXM2-32GB, compute capability 7.0)" in message
        assert "no pool has a GPU that runs fp8" in message

    def test_tgi_lists_the_int8_paths_the_t4_runs(self) -> None:
        available = (*config.default_pools(), pool("t4", "Tesla-T4"))
        error = refusal(
            request_for(
                "meta-llama/Llama-3.1-8B",
                engine="tgi",
                available=available,
                pools=["t4"],
                quantization="fp8",
            )
        )
        assert error.reason == "GPUCapabilityTooLow"
        assert "it runs none (16-bit), eetq, bitsandbytes-int8, bitsandbytes-nf4" in str(error)

    def test_a_prequantized_checkpoint_blames_the_pools(self) -> None:
        # AutoAWQConfig.get_min_capability() is 75: a V100 (7.0) cannot run the checkpoint,
        # and the checkpoint is the repository's, so the pools are what to change.
        available = (V100, pool("l4", "NVIDIA-L4", cost=0.8))
        error = refusal(
            request_for(
                "meta-llama/Llama-3.1-8B", checkpoint="awq", available=available, pools=["v100"]
            )
        )
        message = str(error)
        assert error.reason == "GPUCapabilityTooLow"
        assert error.field == "spec.placement.pools"
        assert "runs an awq checkpoint only on GPUs of compute capability 7.5" in message
        assert "v100 (Tesla-V100-SXM2-32GB, compute capability 7.0)" in message
        assert "Would fit: pools: add l4 (1x l4 at awq)" in message


class TestHeadDivisibility:
    def test_seven_heads_at_tensor_parallel_2_names_the_heads(self) -> None:
        error = refusal(custom(SEVEN_HEADS, tensorParallel=2))
        message = str(error)
        assert error.reason == "HeadsNotDivisible"
        assert error.field == "spec.placement.tensorParallel"
        assert "tensorParallel 2" in message
        assert "7 attention heads" in message
        assert "7 KV heads" in message
        assert "degrees that divide both: 1" in message
        assert "Would fit: tensorParallel: auto (1x l4 at" in message
        assert "GiB" not in message.partition("Would fit")[0]

    def test_kv_heads_alone_can_be_the_reason(self) -> None:
        two_kv = facts.ModelFacts(
            id="example/two-kv-heads",
            parameters=3e9,
            layers=28,
            hidden_size=3072,
            attention_heads=24,
            kv_heads=2,
            head_dim=128,
            max_context=32768,
            source="spec",
        )
        error = refusal(custom(two_kv, tensorParallel=4))
        assert error.reason == "HeadsNotDivisible"
        assert "2 KV heads" in str(error)
        assert "degrees that divide both: 1, 2" in str(error)

    def test_both_constraints_are_named_when_both_bind(self) -> None:
        # fp8 on a V100 and 7 heads at TP 2: the heads hold on every pool, so they lead.
        error = refusal(
            custom(
                SEVEN_HEADS,
                available=WITH_V100,
                tensorParallel=2,
                quantization="fp8",
                pools=["v100"],
            )
        )
        message = str(error)
        assert error.reason == "HeadsNotDivisible"
        assert "7 attention heads" in message
        assert "compute capability 7.0" in message


class TestOtherPins:
    def test_tensor_parallel_beyond_one_node(self) -> None:
        error = refusal(request_for("meta-llama/Llama-3.1-8B", pools=["a10g"], tensorParallel=8))
        message = str(error)
        assert error.reason == "TooFewGPUsPerNode"
        assert error.field == "spec.placement.tensorParallel"
        assert "tensorParallel 8 needs 8 GPUs on one node" in message
        assert "a10g has 4" in message

    def test_context_longer_than_the_model(self) -> None:
        error = refusal(request_for("meta-llama/Llama-2-7b-hf", maxModelLen=8192))
        message = str(error)
        assert error.reason == "ContextTooLong"
        assert error.field == "spec.placement.maxModelLen"
        assert "maxModelLen 8192" in message
        assert "4096 tokens" in message
        assert "GiB" not in message.partition("Would fit")[0]


class TestPoolNames:
    def test_a_pool_name_that_matches_nothing_lists_the_pools(self) -> None:
        request = request_for("meta-llama/Llama-3.1-8B", pools=["a100"])
        error = refusal(request)
        message = str(error)
        assert error.reason == "UnknownPool"
        assert error.field == "spec.placement.pools"
        assert "'a100'" in message
        assert f"the pools are: {', '.join(CATALOGUE_NAMES)}" in message
        assert "did you mean a100-80?" in message

    def test_no_pools_at_all_is_still_no_gpu_pools(self) -> None:
        error = refusal(request_for("meta-llama/Llama-3.1-8B", available=(), pools=["a100"]))
        assert error.reason == "NoGPUPools"
        assert "'a100'" in str(error)

    def test_an_unknown_name_beside_known_ones_is_mentioned_when_nothing_fits(self) -> None:
        request = request_for("meta-llama/Llama-3.1-405B", pools=["l4", "h1OO"], optimize="quality")
        error = refusal(request)
        assert error.reason == "NoFeasiblePlan"
        assert "'h1OO' matches no GPU pool" in str(error)


class TestMemory:
    def test_a_model_too_big_for_every_pool_still_blames_memory(self) -> None:
        error = refusal(request_for("meta-llama/Llama-3.1-405B-Instruct", optimize="quality"))
        message = str(error)
        assert error.reason == "NoFeasiblePlan"
        assert error.field == "spec.placement"
        assert "weights need 756 GiB" in message
        assert "at 16-bit" in message
        assert "8x h100" in message or "8x a100-80" in message

    def test_memory_at_a_pinned_quantization_counts_that_quantizations_weights(self) -> None:
        # fp8 pinned: l4 runs it but 405B does not fit 8 of them; v100 cannot run it.
        # The candidate honouring every pin fails on memory: that is the reason, and the
        # V100 is named so the user does not move there.
        request = request_for(
            "meta-llama/Llama-3.1-405B",
            available=WITH_V100,
            pools=["v100", "l4"],
            quantization="fp8",
        )
        error = refusal(request)
        message = str(error)
        assert error.reason == "NoFeasiblePlan"
        assert "at fp8 its weights need 384 GiB" in message
        assert "16-bit weights" not in message
        assert "8x l4" in message
        assert "v100 (Tesla-V100-SXM2-32GB, compute capability 7.0)" in message

    def test_a_pool_honouring_every_pin_makes_memory_the_reason(self) -> None:
        # fp8 pinned: the L4 runs it but lacks the memory; the V100 would fit at 16-bit
        # but cannot run fp8. The L4's candidate changes nothing the user asked for, so
        # memory is the reason; the V100 is named, and releasing the pin is the fix.
        available = (
            V100.model_copy(update={"gpusPerNode": 1}),
            pool("l4", "NVIDIA-L4", per_node=1),
        )
        request = request_for(
            "meta-llama/Llama-3.1-8B",
            available=available,
            quantization="fp8",
            # 8 GiB of fp8 weights and 10 of KV cache exceed the L4's 17 GiB budget; 15 GiB
            # of 16-bit weights and the same KV cache fit the V100's 32 GiB.
            concurrentSequences=20,
        )
        error = refusal(request)
        message = str(error)
        assert error.reason == "NoFeasiblePlan"
        assert error.field == "spec.placement.quantization"
        assert "1x l4" in message
        assert "v100 (Tesla-V100-SXM2-32GB, compute capability 7.0)" in message
        assert "Would fit: quantization: auto (1x v100 at none)" in message

    def test_tensor_parallel_pinned_too_small_is_memory(self) -> None:
        error = refusal(
            request_for("meta-llama/Llama-3.1-70B", optimize="quality", tensorParallel=1)
        )
        assert error.reason == "NoFeasiblePlan"
        assert error.field == "spec.placement.tensorParallel"
        assert "1x " in str(error)

    def test_heads_that_cap_the_degree_are_named_beside_memory(self) -> None:
        # 7 heads allow only TP 1, and 20B at 16-bit does not fit one GPU.
        big = facts.ModelFacts(
            id="example/seven-heads-20b",
            parameters=20e9,
            layers=40,
            hidden_size=896,
            attention_heads=7,
            kv_heads=7,
            head_dim=128,
            max_context=32768,
            source="spec",
        )
        error = refusal(custom(big, optimize="quality", pools=["l4"]))
        assert error.reason == "NoFeasiblePlan"
        assert "no larger degree divides its 7 attention heads and 7 KV heads" in str(error)


class TestSurfacedAsTheCondition:
    """The reason is the Planned=False condition's reason; the message carries the field."""

    @pytest.mark.parametrize(
        ("placement", "reason", "field"),
        [
            ({"pools": ["v100"], "quantization": "fp8"}, "GPUCapabilityTooLow", "quantization"),
            ({"pools": ["a100"]}, "UnknownPool", "pools"),
            ({"maxModelLen": 262144}, "ContextTooLong", "maxModelLen"),
        ],
    )
    def test_reason_and_field(self, placement: dict[str, Any], reason: str, field: str) -> None:
        # The catalogue's GPUs all run fp8: the operator is also given a V100 pool.
        settings = SETTINGS.model_copy(update={"pools": (*SETTINGS.pools, V100)})
        outcome, client = run(body({**SPEC, "placement": placement}), settings=settings)
        found = conditions.find(outcome.status_patch["conditions"], conditions.PLANNED)
        assert found is not None
        assert (found["status"], found["reason"]) == ("False", reason)
        assert found["message"].startswith(f"spec.placement.{field}: ")
        assert not [o for o in client.applied if o["kind"] == "Deployment"]

    def test_seven_heads_from_spec_overrides(self) -> None:
        model = {
            "id": "example/seven-heads",
            "parameters": "0.5B",
            "layers": 24,
            "attentionHeads": 7,
            "kvHeads": 7,
            "headDim": 128,
            "maxContext": 32768,
        }
        spec = {**SPEC, "model": model, "placement": {"tensorParallel": 2}}
        outcome, _ = run(body(spec))
        found = conditions.find(outcome.status_patch["conditions"], conditions.PLANNED)
        assert found is not None
        assert found["reason"] == "HeadsNotDivisible"
        assert "7 attention heads" in found["message"]
