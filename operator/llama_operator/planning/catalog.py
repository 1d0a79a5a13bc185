"""The built-in model catalog: shapes of every Llama release, from each config.json.

Lets ``plan`` and ``render`` work offline for the models people actually deploy.
Repository ids are matched case-insensitively, with and without the ``-Instruct``,
``-chat`` and ``-hf`` suffixes (the suffix changes the weights, not the shape).
"""

from __future__ import annotations

from llama_operator.planning import facts

B = 1e9


def _f(  # noqa: PLR0913 - one row per line of the facts.md table, positional
    name: str,
    params: float,
    layers: int,
    hidden: int,
    heads: int,
    kv: int,
    head_dim: int,
    context: int,
    license_id: str,
    *,
    vocab: int,
    intermediate: int,
    tied: bool = False,
    moe: bool = False,
    windowed: int = 0,
    window: int = 0,
) -> facts.ModelFacts:
    return facts.ModelFacts(
        id=name,
        parameters=params,
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        max_context=context,
        moe=moe,
        license=license_id,
        source="catalog",
        vocab_size=vocab,
        tied_embeddings=tied,
        intermediate_size=intermediate,
        windowed_layers=windowed,
        attention_window=window,
    )


# One entry per shape; ``aliases`` below maps every published repo id onto it.
# Sources of the layout fields (vocab, intermediate size, tied embeddings, chunked layers),
# each a verbatim copy of the model's config.json in a public repository:
# - Llama 2: scaleapi/llm-engine model-engine/tests/unit/domain/test_llm_use_cases.py
#   @a823696 (vocab 32000, intermediate 11008 / 13824 / 28672); untied: mlc-ai/mlc-llm
#   python/mlc_llm/model/model_preset.py @79d603f (llama2_7b, _13b, _70b).
# - Llama 3 and 3.1: ai-dynamo/aiconfigurator model_configs/meta-llama--Meta-Llama-3.1-
#   {8B,70B,405B}_config.json @095f58a (vocab 128256, tie_word_embeddings false); Meta-
#   Llama-3-8B/70B: llm-engine (same file), the same vocab and intermediate sizes.
# - Llama 3.2 1B/3B: mlc-llm model_preset.py (llama3_2_1b, llama3_2_3b):
#   tie_word_embeddings true, intermediate 8192.
# - Llama 3.2 11B Vision: NVIDIA/TensorRT-LLM tests/unittest/_torch/modeling/
#   test_modeling_mllama.py @191b07a (text_config). 90B: meta-llama/llama-models
#   models/sku_list.py @8c88b8c (dim 8192, ffn multiplier 1.3 -> 28672); its tie flag is
#   not published in a copy we found, so it is taken as untied (heavier: safe).
# - Llama 3.3 70B: aiconfigurator meta-llama--Llama-3.3-70B-Instruct_config.json @f577ab8.
# - Llama 4: aiconfigurator meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json @54cb8c6
#   and TensorRT-LLM test_modeling_llama_min_latency.py @0074a22 (Maverick): vocab 202048,
#   attention_chunk_size 8192, untied. Which layers are chunked: llama-models
#   models/llama4/model.py @a9c89c4 (a layer with (layer_id + 1) % nope_layer_interval == 0
#   is a global NoPE layer, interval 4) and transformers Llama4TextConfig (no_rope_layers
#   defaults to that rule): 12 of 48 layers attend globally, 36 keep at most one 8192-token
#   chunk.
ENTRIES: tuple[facts.ModelFacts, ...] = (
    _f("meta-llama/Llama-2-7b-hf", 6.74 * B, 32, 4096, 32, 32, 128, 4096, "llama2",
       vocab=32000, intermediate=11008),
    _f("meta-llama/Llama-2-13b-hf", 13.0 * B, 40, 5120, 40, 40, 128, 4096, "llama2",
       vocab=32000, intermediate=13824),
    _f("meta-llama/Llama-2-70b-hf", 69.0 * B, 80, 8192, 64, 8, 128, 4096, "llama2",
       vocab=32000, intermediate=28672),
    _f("meta-llama/Meta-Llama-3-8B", 8.03 * B, 32, 4096, 32, 8, 128, 8192, "llama3",
       vocab=128256, intermediate=14336),
    _f("meta-llama/Meta-Llama-3-70B", 70.6 * B, 80, 8192, 64, 8, 128, 8192, "llama3",
       vocab=128256, intermediate=28672),
    _f("meta-llama/Llama-3.1-8B", 8.03 * B, 32, 4096, 32, 8, 128, 131072, "llama3.1",
       vocab=128256, intermediate=14336),
    _f("meta-llama/Llama-3.1-70B", 70.6 * B, 80, 8192, 64, 8, 128, 131072, "llama3.1",
       vocab=128256, intermediate=28672),
    _f("meta-llama/Llama-3.1-405B", 405.9 * B, 126, 16384, 128, 8, 128, 131072, "llama3.1",
       vocab=128256, intermediate=53248),
    _f("meta-llama/Llama-3.2-1B", 1.24 * B, 16, 2048, 32, 8, 64, 131072, "llama3.2",
       vocab=128256, intermediate=8192, tied=True),
    _f("meta-llama/Llama-3.2-3B", 3.21 * B, 28, 3072, 24, 8, 128, 131072, "llama3.2",
       vocab=128256, intermediate=8192, tied=True),
    _f("meta-llama/Llama-3.2-11B-Vision", 10.6 * B, 40, 4096, 32, 8, 128, 131072, "llama3.2",
       vocab=128256, intermediate=14336),
    _f("meta-llama/Llama-3.2-90B-Vision", 88.6 * B, 100, 8192, 64, 8, 128, 131072, "llama3.2",
       vocab=128256, intermediate=28672),
    _f("meta-llama/Llama-3.3-70B-Instruct", 70.6 * B, 80, 8192, 64, 8, 128, 131072, "llama3.3",
       vocab=128256, intermediate=28672),
    _f("meta-llama/Llama-4-Scout-17B-16E", 109 * B, 48, 5120, 40, 8, 128, 10_485_760, "llama4",
       vocab=202048, intermediate=8192, moe=True, windowed=36, window=8192),
    _f("meta-llama/Llama-4-Maverick-17B-128E", 400 * B, 48, 5120, 40, 8, 128, 1_048_576,
       "llama4", vocab=202048, intermediate=8192, moe=True, windowed=36, window=8192),
)  # fmt: skip

_SUFFIXES = ("-instruct", "-chat-hf", "-chat", "-hf")


def _key(repo_id: str) -> str:
    key = repo_id.strip().lower()
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                key = key[: -len(suffix)]
                changed = True
    return key


_INDEX: dict[str, facts.ModelFacts] = {_key(entry.id): entry for entry in ENTRIES}


def lookup(repo_id: str) -> facts.ModelFacts | None:
    """The catalog entry for a repo id (any published variant of it), or None."""
    return _INDEX.get(_key(repo_id))
