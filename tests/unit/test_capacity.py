"""capacity.py: the KV cache engines report, against the plan, and the corrections kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

import podserver
from llama_operator import api
from llama_operator.operations import capacity
from llama_operator.serving import engine_metrics


def plan(**changes: Any) -> api.Plan:
    """A vLLM 0.34.0 plan of Llama 3.1 8B on an L4 promising 31,040 KV-cache tokens."""
    fields: dict[str, Any] = {
        "engine": "vllm",
        "engineVersion": "0.34.0",
        "pool": "l4",
        "gpuProduct": "NVIDIA-L4",
        "gpusPerReplica": 1,
        "tensorParallel": 1,
        "quantization": "none",
        "dtype": "bfloat16",
        "maxModelLen": 7680,
        "maxConcurrentSequences": 4,
        "gpuMemoryUtilization": 0.9,
        "weightsGiB": 14.96,
        "estimatedGPUMemoryGiB": 20.21,
        "kvCacheGiB": 3.79,
        "kvCacheTokens": 31040,
        "reason": "test",
    }
    fields.update(changes)
    return api.Plan.model_validate(fields)


def page(blocks: int = podserver.DEFAULT_GPU_BLOCKS, engine: str = "vllm") -> str:
    pod = podserver.FakePod(engine)
    pod.num_gpu_blocks = blocks
    return pod.text()


def info(**labels: str) -> str:
    """A vllm:cache_config_info page with only these labels (and engine)."""
    shown = ",".join(f'{k}="{v}"' for k, v in sorted({"engine": "0", **labels}.items()))
    return (
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
        "# TYPE vllm:cache_config_info gauge\n"
        f"vllm:cache_config_info{{{shown}}} 1.0\n"
    )


class TestParse:
    def test_the_fixture_page(self) -> None:
        # 485 blocks of 64 tokens, 120 blocks per 7680-token request: 4.04 requests.
        found = capacity.parse(page(), engine="vllm", version="0.34.0")
        assert found == capacity.PodCapacity(tokens=31040, gpu_blocks=485, block_size=64)

    def test_the_engines_token_figure_comes_first(self) -> None:
        # A sliding-window or hybrid model: fewer tokens than blocks x block size.
        text = info(kv_cache_size_tokens="20000", num_gpu_blocks="485", block_size="64")
        found = capacity.parse(text, engine="vllm")
        assert found == capacity.PodCapacity(tokens=20000, gpu_blocks=485, block_size=64)

    def test_blocks_times_block_size_without_it(self) -> None:
        text = info(kv_cache_size_tokens="None", num_gpu_blocks="100", block_size="16")
        assert capacity.parse(text, engine="vllm") == capacity.PodCapacity(1600, 100, 16)

    def test_nothing_usable_is_none(self) -> None:
        text = info(kv_cache_size_tokens="None", num_gpu_blocks="None", block_size="16")
        assert capacity.parse(text, engine="vllm") is None

    def test_the_lowest_engine_series(self) -> None:
        text = info(kv_cache_size_tokens="5000") + (
            'vllm:cache_config_info{engine="1",kv_cache_size_tokens="4000"} 1.0\n'
        )
        found = capacity.parse(text, engine="vllm")
        assert found is not None
        assert found.tokens == 4000

    def test_a_page_without_the_gauge_reports_none(self) -> None:
        # --disable-log-stats, or vLLM before the gauge (the legacy fixture).
        assert capacity.parse(page(engine="vllm-legacy"), engine="vllm") is None

    def test_an_error_page_is_an_error(self) -> None:
        with pytest.raises(engine_metrics.MetricsError):
            capacity.parse("<html>502 Bad Gateway</html>", engine="vllm")

    def test_tgi_publishes_none(self) -> None:
        assert not capacity.published("tgi", "3.3.7")
        assert capacity.metric_names("tgi") == ()
        assert capacity.parse(page(engine="tgi"), engine="tgi") is None

    def test_vllm_names_the_info_gauge(self) -> None:
        assert capacity.metric_names("vllm", "0.34.0") == ("vllm:cache_config_info",)
        assert capacity.published("vllm", "0.24.0")


class TestDue:
    def test_new_pods_are_read(self) -> None:
        assert capacity.due(plan(), ready=["chat-primary-a"])

    def test_the_pods_already_read_are_not(self) -> None:
        observed = capacity.observe({"b": None, "a": None}, plan=plan(), now="2026-01-01T00:00:00Z")
        kept = plan(observed=observed.model_dump())
        assert not capacity.due(kept, ready=["a", "b"])
        assert capacity.due(kept, ready=["a", "b", "c"])  # scaled up
        assert capacity.due(kept, ready=["a", "d"])  # one pod replaced

    def test_no_ready_pod_or_no_metric_reads_nothing(self) -> None:
        assert not capacity.due(plan(), ready=[])
        assert not capacity.due(plan(engine="tgi", engineVersion="3.3.7"), ready=["a"])


NOW = "2026-01-01T00:00:00Z"


class TestObserve:
    def test_the_lowest_pod_against_the_plan(self) -> None:
        readings = {
            "chat-primary-b": capacity.PodCapacity(31040, 485, 64),
            "chat-primary-a": capacity.PodCapacity(28160, 440, 64),
            "chat-primary-c": None,  # its page carries no capacity
        }
        observed = capacity.observe(readings, plan=plan(), now=NOW)
        assert observed.kvCacheTokens == 28160
        assert (observed.gpuBlocks, observed.blockSize) == (440, 64)
        assert observed.pods == ["chat-primary-a", "chat-primary-b", "chat-primary-c"]
        assert observed.plannedKVCacheTokens == 31040
        assert observed.ratio == 0.907
        assert observed.correction == 0.907  # 28160 / 31040 = 0.90721, rounded down
        assert observed.engineVersion == "0.34.0"
        assert observed.observedAt == NOW

    def test_no_correction_within_the_tolerance(self) -> None:
        # As planned (the condition says so): nothing to learn.
        observed = capacity.observe(
            {"a": capacity.PodCapacity(30500, None, None)}, plan=plan(), now=NOW
        )
        assert observed.ratio == 0.983
        assert observed.correction is None

    def test_no_correction_at_or_above_the_plan(self) -> None:
        observed = capacity.observe(
            {"a": capacity.PodCapacity(32000, 500, 64)}, plan=plan(), now=NOW
        )
        assert observed.ratio == 1.031
        assert observed.correction is None

    def test_a_corrected_plan_records_against_the_memory_model(self) -> None:
        # The plan already carried 0.9 (31040 planned = 0.9 x 34489): 26000 observed is
        # 0.838 of the plan, and 0.754 of the memory model. Corrections never compound.
        observed = capacity.observe(
            {"a": capacity.PodCapacity(26000, None, None)},
            plan=plan(kvCorrection=0.9),
            now=NOW,
        )
        assert observed.ratio == 0.838
        assert observed.correction == 0.753

    def test_a_shortfall_too_large_is_not_a_correction(self) -> None:
        observed = capacity.observe(
            {"a": capacity.PodCapacity(12000, None, None)}, plan=plan(), now=NOW
        )
        assert observed.ratio == 0.387
        assert observed.correction is None

    def test_no_pod_reports(self) -> None:
        observed = capacity.observe({"a": None}, plan=plan(), now=NOW)
        assert observed.kvCacheTokens is None
        assert observed.ratio is None
        assert observed.correction is None

    def test_an_old_plan_without_a_figure(self) -> None:
        observed = capacity.observe(
            {"a": capacity.PodCapacity(30000, None, None)}, plan=plan(kvCacheTokens=None), now=NOW
        )
        assert observed.kvCacheTokens == 30000
        assert observed.ratio is None
        assert observed.correction is None


def observed_plan(tokens: int | None, **changes: Any) -> api.Plan:
    base = plan(**changes)
    readings = {"chat-primary-a": capacity.PodCapacity(tokens, None, None) if tokens else None}
    return base.model_copy(update={"observed": capacity.observe(readings, plan=base, now=NOW)})


class TestCondition:
    def test_absent_until_a_pod_was_read(self) -> None:
        assert capacity.condition(plan()) is None

    def test_as_planned(self) -> None:
        check = capacity.condition(observed_plan(31040))
        assert check is not None
        assert (check.type, check.status, check.reason) == ("KVCacheCapacity", "True", "AsPlanned")
        assert check.message == (
            "the engine reports 31,040 KV-cache tokens per replica (the lowest of 1 ready "
            "pod(s)), planned 31,040: ratio 1.00"
        )

    def test_within_the_tolerance(self) -> None:
        # vLLM's whole-block rounding can land just below the plan's lower bound.
        check = capacity.condition(observed_plan(30500))  # 0.9826
        assert check is not None
        assert check.status == "True"

    def test_below_plan_says_what_happens_next(self) -> None:
        recorded = observed_plan(28160)
        assert recorded.observed is not None
        where = "llama-operator/llama-operator-calibration, key k"
        recorded = recorded.model_copy(
            update={"observed": recorded.observed.model_copy(update={"recordedIn": where})}
        )
        check = capacity.condition(recorded)
        assert check is not None
        assert (check.status, check.reason) == ("False", "BelowPlan")
        assert check.message.startswith(
            "the engine reports 28,160 KV-cache tokens per replica (the lowest of 1 ready "
            "pod(s)), below the planned 31,040 (ratio 0.91, tolerance 2%): a replica holds "
            "3.7 sequences of maxModelLen 7680 at once, not the planned 4, so requests "
            "queue sooner. This endpoint keeps its plan. The next plans of this model on "
            "vllm 0.34.0 and NVIDIA-L4 plan 0.907 of the memory model's KV cache (recorded "
            f"in {where})."
        )
        assert "change a planning field" in check.message
        assert "delete the key" in check.message

    def test_below_plan_not_recorded_says_why(self) -> None:
        check = capacity.condition(observed_plan(28160), not_recorded="no calibration")
        assert check is not None
        assert check.status == "False"
        assert check.message.endswith("No correction was recorded: no calibration")

    def test_below_plan_far_below_blames_something_else(self) -> None:
        check = capacity.condition(observed_plan(12000))
        assert check is not None
        assert check.status == "False"
        assert "too far below the memory model" in check.message

    def test_pods_that_report_nothing(self) -> None:
        check = capacity.condition(observed_plan(None))
        assert check is not None
        assert (check.status, check.reason) == ("Unknown", "NotReported")
        assert "vllm:cache_config_info" in check.message
        assert "--disable-log-stats" in check.message

    def test_tgi_cannot_be_checked(self) -> None:
        check = capacity.condition(plan(engine="tgi", engineVersion="3.3.7"))
        assert check is not None
        assert (check.status, check.reason) == ("Unknown", "NotAvailable")
        assert check.message.startswith("TGI 3.3.7 publishes no KV-cache capacity on /metrics")

    def test_an_old_plan_has_nothing_to_compare_with(self) -> None:
        check = capacity.condition(observed_plan(30000, kvCacheTokens=None))
        assert check is not None
        assert (check.status, check.reason) == ("Unknown", "NoPlannedFigure")


class TestKey:
    def test_format(self) -> None:
        assert (
            capacity.key(
                model="meta-llama/Llama-3.1-8B-Instruct",
                engine="vllm",
                version="0.34.0",
                gpu_product="NVIDIA-L4",
            )
            == "meta-llama--Llama-3.1-8B-Instruct_vllm-0.34.0_NVIDIA-L4"
        )

    def test_unknown_release(self) -> None:
        found = capacity.key(model="a/b", engine="tgi", version=None, gpu_product="NVIDIA-L4")
        assert found == "a--b_tgi-unknown_NVIDIA-L4"

    def test_characters_a_configmap_key_cannot_hold(self) -> None:
        odd = capacity.key(model="a/b", engine="vllm", version="1", gpu_product="Tesla T4 16GB")
        assert odd.startswith("a--b_vllm-1_Tesla-T4-16GB_")
        assert len(odd) == len("a--b_vllm-1_Tesla-T4-16GB_") + 8
        # The same cleaned text from other parts does not share the key.
        dashed = capacity.key(model="a/b", engine="vllm", version="1", gpu_product="Tesla-T4 16GB")
        assert dashed != odd

    def test_at_most_253_characters(self) -> None:
        found = capacity.key(model="o/" + "m" * 300, engine="vllm", version="1", gpu_product="g")
        assert len(found) <= capacity.MAX_KEY
        assert all(c.isalnum() or c in "-._" for c in found)


def record(**changes: Any) -> capacity.Correction:
    fields: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "engine": "vllm",
        "engine_version": "0.34.0",
        "gpu_product": "NVIDIA-L4",
        "ratio": 0.907,
        "planned_tokens": 31040,
        "applied": None,
        "observed_tokens": 28160,
        "observed_at": NOW,
        "source": "ai/chat",
    }
    fields.update(changes)
    return capacity.Correction(**fields)


class TestCorrections:
    def test_the_record_of_an_observation(self) -> None:
        found = capacity.correction(
            observed_plan(28160), model="meta-llama/Llama-3.1-8B-Instruct", source="ai/chat"
        )
        assert found == record()
        assert json.loads(found.value()) == {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "engine": "vllm",
            "engineVersion": "0.34.0",
            "gpuProduct": "NVIDIA-L4",
            "ratio": 0.907,
            "plannedTokens": 31040,
            "appliedCorrection": None,
            "observedTokens": 28160,
            "observedAt": NOW,
            "from": "ai/chat",
        }

    def test_none_without_a_shortfall(self) -> None:
        assert capacity.correction(observed_plan(31040), model="m", source="ai/chat") is None
        assert capacity.correction(plan(), model="m", source="ai/chat") is None

    def test_records_round_trip_and_skip_what_is_not_one(self) -> None:
        one = record()
        found = capacity.records(
            {one.key: one.value(), "README": "hand-written notes", "bad": '{"ratio": 1}'}
        )
        assert found == {one.key: one}
        assert capacity.records(None) == {}

    def test_ratios_by_gpu_product(self) -> None:
        l4 = record()
        h100 = record(gpu_product="NVIDIA-H100-80GB-HBM3", ratio=0.95)
        other_release = record(engine_version="0.28.0", ratio=0.5)
        found = {r.key: r for r in (l4, h100, other_release)}
        assert capacity.ratios(
            found,
            model="meta-llama/Llama-3.1-8B-Instruct",
            engine="vllm",
            version="0.34.0",
            gpu_products=["NVIDIA-L4", "NVIDIA-H100-80GB-HBM3", "NVIDIA-A10G"],
        ) == {"NVIDIA-L4": 0.907, "NVIDIA-H100-80GB-HBM3": 0.95}

    @pytest.mark.parametrize("ratio", [1.0, 1.2, 0.3, float("nan")])
    def test_ratios_never_raise_a_plan_nor_shrink_it_wildly(self, ratio: float) -> None:
        # Written by hand, or by another version: read only in [MIN_CORRECTION, 1).
        edited = record(ratio=ratio)
        found = capacity.records({edited.key: edited.value()})
        assert (
            capacity.ratios(
                found,
                model=edited.model,
                engine="vllm",
                version="0.34.0",
                gpu_products=["NVIDIA-L4"],
            )
            == {}
        )

    def test_already_recorded(self) -> None:
        first = observed_plan(28160).observed
        assert first is not None
        written = first.model_copy(update={"recordedIn": "ns/cm, key k"})
        again = observed_plan(28160).observed
        assert again is not None
        assert capacity.already_recorded(written, again) == "ns/cm, key k"
        lower = observed_plan(27000).observed
        assert lower is not None
        assert capacity.already_recorded(written, lower) is None
        assert capacity.already_recorded(None, again) is None
        assert capacity.already_recorded(first, again) is None  # never written

    def test_the_configmap(self) -> None:
        made = capacity.config_map(namespace="llama-operator", name="cal", data={"k": "v"})
        assert made["metadata"]["name"] == "cal"
        assert made["metadata"]["namespace"] == "llama-operator"
        assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llama-operator"
        assert "Delete a key" in made["metadata"]["annotations"]["llamaops.dev/description"]
        assert made["data"] == {"k": "v"}
