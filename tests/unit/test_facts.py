"""Model facts: merging spec > catalog > Hub, naming missing fields, reading config.json.

The config.json dicts below carry the values of the published Llama repositories, so
``from_hf_config`` and ``estimate_parameters`` are checked against real shapes.
"""

from __future__ import annotations

import pytest

from llama_operator import api
from llama_operator.planning import catalog, facts

LLAMA_31_8B_CONFIG: dict[str, object] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}

LLAMA_32_11B_VISION_CONFIG: dict[str, object] = {
    "architectures": ["MllamaForConditionalGeneration"],
    "model_type": "mllama",
    "image_token_index": 128256,
    "text_config": {
        "model_type": "mllama_text_model",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_hidden_layers": 40,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "vocab_size": 128256,
        "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "hidden_size": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "image_size": 560,
        "patch_size": 14,
    },
}


def spec(model_id: str = "example/unknown", **fields: object) -> api.ModelSpec:
    return api.ModelSpec.model_validate({"id": model_id, **fields})


# ------------------------------------------------------------------------------ resolve


def test_catalog_alone_gives_complete_facts() -> None:
    entry = catalog.lookup("meta-llama/Llama-3.1-8B-Instruct")
    resolved = facts.resolve(model=spec("meta-llama/Llama-3.1-8B-Instruct"), catalog_entry=entry)
    assert resolved.id == "meta-llama/Llama-3.1-8B-Instruct"
    assert resolved.parameters == pytest.approx(8.03e9)
    assert (resolved.layers, resolved.kv_heads, resolved.head_dim) == (32, 8, 128)
    assert resolved.max_context == 131072
    assert resolved.license == "llama3.1"
    assert resolved.source == "catalog"


def test_spec_overrides_catalog_which_overrides_hub() -> None:
    entry = catalog.lookup("meta-llama/Llama-3.1-8B")
    hub = facts.PartialFacts(
        parameters=7e9, layers=30, attention_heads=30, kv_heads=6, max_context=4096
    )
    resolved = facts.resolve(
        model=spec("meta-llama/Llama-3.1-8B", parameters="9B", maxContext=16384),
        catalog_entry=entry,
        hub=hub,
    )
    assert resolved.parameters == 9e9  # spec
    assert resolved.max_context == 16384  # spec
    assert resolved.layers == 32  # catalog, not hub
    assert resolved.attention_heads == 32
    assert resolved.kv_heads == 8
    assert resolved.source == "spec"  # where the parameter count came from


def test_hub_fills_what_the_spec_leaves_out() -> None:
    hub = facts.from_hf_config(LLAMA_31_8B_CONFIG, parameters=8_030_261_248)
    resolved = facts.resolve(model=spec(layers=30), catalog_entry=None, hub=hub)
    assert resolved.layers == 30  # spec beats hub
    assert resolved.parameters == 8_030_261_248
    assert (resolved.attention_heads, resolved.kv_heads, resolved.head_dim) == (32, 8, 128)
    assert resolved.max_context == 131072
    assert resolved.source == "hub"


def test_spec_alone_is_enough_and_derives_head_dim_and_kv_heads() -> None:
    resolved = facts.resolve(
        model=spec(
            parameters="13B", layers=40, hiddenSize=5120, attentionHeads=40, maxContext=4096
        ),
        catalog_entry=None,
    )
    assert resolved.head_dim == 128  # 5120 / 40
    assert resolved.kv_heads == 40  # no GQA declared
    assert resolved.source == "spec"


def test_missing_facts_name_the_spec_fields_to_set() -> None:
    with pytest.raises(facts.FactsError) as error:
        facts.resolve(model=spec(parameters="7B"), catalog_entry=None)
    message = str(error.value)
    assert "example/unknown" in message
    for field in (
        "spec.model.layers",
        "spec.model.attentionHeads",
        "spec.model.kvHeads",
        "spec.model.headDim",
        "spec.model.maxContext",
    ):
        assert field in message
    assert "spec.model.parameters" not in message


def test_missing_parameter_count_alone_is_named() -> None:
    hub = facts.PartialFacts(
        layers=32, hidden_size=4096, attention_heads=32, kv_heads=8, max_context=8192
    )
    with pytest.raises(facts.FactsError, match=r"set spec\.model\.parameters$"):
        facts.resolve(model=spec(), catalog_entry=None, hub=hub)


def test_nothing_known_names_every_field() -> None:
    with pytest.raises(facts.FactsError) as error:
        facts.resolve(model=spec(), catalog_entry=None)
    assert "spec.model.parameters" in str(error.value)
    assert "spec.model.layers" in str(error.value)


# ------------------------------------------------------------------------ from_hf_config


def test_llama_31_8b_config_is_read_and_its_size_estimated() -> None:
    partial = facts.from_hf_config(LLAMA_31_8B_CONFIG, parameters=None)
    assert partial.layers == 32
    assert partial.hidden_size == 4096
    assert partial.attention_heads == 32
    assert partial.kv_heads == 8
    assert partial.head_dim == 128
    assert partial.max_context == 131072
    assert partial.moe is False
    assert partial.parameters is not None
    assert partial.parameters == pytest.approx(8.03e9, rel=0.01)
    assert facts.estimate_parameters(LLAMA_31_8B_CONFIG) == partial.parameters


def test_a_known_parameter_count_wins_over_the_estimate() -> None:
    partial = facts.from_hf_config(LLAMA_31_8B_CONFIG, parameters=8_030_261_248)
    assert partial.parameters == 8_030_261_248


def test_tied_embeddings_count_once() -> None:
    untied = facts.estimate_parameters(LLAMA_31_8B_CONFIG)
    tied = facts.estimate_parameters({**LLAMA_31_8B_CONFIG, "tie_word_embeddings": True})
    assert untied is not None
    assert tied is not None
    assert untied - tied == 128256 * 4096


def test_estimate_needs_the_shape() -> None:
    incomplete = {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != "intermediate_size"}
    assert facts.estimate_parameters(incomplete) is None


def test_nested_text_config_of_a_vision_model_is_read() -> None:
    partial = facts.from_hf_config(LLAMA_32_11B_VISION_CONFIG, parameters=10.6e9)
    assert partial.layers == 40
    assert partial.hidden_size == 4096
    assert (partial.attention_heads, partial.kv_heads, partial.head_dim) == (32, 8, 128)
    assert partial.max_context == 131072
    assert partial.parameters == 10.6e9


def test_mixture_of_experts_is_flagged() -> None:
    moe = {**LLAMA_31_8B_CONFIG, "num_local_experts": 8}
    partial = facts.from_hf_config(moe, parameters=None)
    assert partial.moe is True
    dense = facts.estimate_parameters(LLAMA_31_8B_CONFIG)
    assert partial.parameters is not None
    assert dense is not None
    assert partial.parameters > 4 * dense  # all experts are held in memory


def test_kv_bytes_per_token_formula() -> None:
    entry = catalog.lookup("meta-llama/Llama-3.1-8B")
    assert entry is not None
    assert entry.kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2
    assert entry.kv_bytes_per_token(1) == 2 * 32 * 8 * 128
    assert entry.billions == pytest.approx(8.03)


# The layout fields (issue 16): what the memory model needs beyond the shape.


def test_the_layout_is_read_from_config_json() -> None:
    """vocab_size, tie_word_embeddings and intermediate_size of Llama-3.1-8B's config."""
    partial = facts.from_hf_config(LLAMA_31_8B_CONFIG, 8.03e9)
    assert (partial.vocab_size, partial.tied_embeddings, partial.intermediate_size) == (
        128256,
        False,
        14336,
    )
    assert (partial.windowed_layers, partial.attention_window) == (None, None)


def test_embeddings_and_lm_head_count_twice_unless_tied() -> None:
    untied = catalog.lookup("meta-llama/Llama-3.1-8B")
    tied = catalog.lookup("meta-llama/Llama-3.2-1B")
    assert untied is not None
    assert tied is not None
    assert untied.embedding_parameters == 2 * 128256 * 4096
    assert tied.embedding_parameters == 128256 * 2048


def test_an_unknown_vocabulary_weighs_no_embeddings_apart() -> None:
    model = facts.resolve(
        model=api.ModelSpec(
            id="example-org/unknown",
            parameters="7B",
            layers=32,
            attentionHeads=32,
            kvHeads=8,
            headDim=128,
            maxContext=8192,
        ),
        catalog_entry=None,
    )
    assert model.vocab_size == 0
    assert model.embedding_parameters == 0


def test_llama_4_no_rope_layers_mark_the_global_layers() -> None:
    """transformers' Llama4TextConfig: no_rope_layers has one flag per layer, 0 where the
    layer is global (NoPE, full attention), 1 where it uses chunked local attention."""
    flags = [0 if (layer + 1) % 4 == 0 else 1 for layer in range(48)]
    config: dict[str, object] = {
        "text_config": {
            "num_hidden_layers": 48,
            "hidden_size": 5120,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "attention_chunk_size": 8192,
            "no_rope_layers": flags,
            "vocab_size": 202048,
        }
    }
    partial = facts.from_hf_config(config, 109e9)
    assert (partial.windowed_layers, partial.attention_window) == (36, 8192)


def test_layer_types_name_the_windowed_layers() -> None:
    config: dict[str, object] = {
        "num_hidden_layers": 4,
        "layer_types": [
            "sliding_attention",
            "full_attention",
            "sliding_attention",
            "full_attention",
        ],
        "sliding_window": 4096,
    }
    assert facts.windowed_layers(config, 4) == (2, 4096)


def test_a_sliding_window_the_config_turns_off_bounds_nothing() -> None:
    """Qwen2-style configs carry sliding_window with use_sliding_window: false."""
    assert facts.windowed_layers({"sliding_window": 32768, "use_sliding_window": False}, 28) == (
        None,
        None,
    )
    assert facts.windowed_layers({"sliding_window": 4096}, 32) == (32, 4096)


def test_a_windowed_layer_keeps_at_most_its_window_of_a_sequence() -> None:
    scout = catalog.lookup("meta-llama/Llama-4-Scout-17B-16E")
    assert scout is not None
    per_layer = scout.kv_bytes_per_layer_token()
    assert scout.kv_bytes_per_sequence(4096) == 48 * 4096 * per_layer
    assert scout.kv_bytes_per_sequence(100_000) == (12 * 100_000 + 36 * 8192) * per_layer


def test_hub_layout_fields_survive_the_merge() -> None:
    hub = facts.from_hf_config(LLAMA_31_8B_CONFIG, 8.03e9)
    merged = facts.resolve(
        model=api.ModelSpec(id="example-org/llama-ft"), catalog_entry=None, hub=hub
    )
    assert (merged.vocab_size, merged.intermediate_size, merged.tied_embeddings) == (
        128256,
        14336,
        False,
    )
