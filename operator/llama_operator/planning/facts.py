"""Model facts: the shape numbers the sizing model needs, and where they came from.

A ``ModelFacts`` is what the planner sizes from. ``resolve`` merges, in order of
trust, the explicit overrides in ``spec.model``, the built-in catalog and (when the
caller fetched it) what the Hugging Face Hub says, and refuses with a message
naming the ``spec.model`` fields to set when a needed number is missing.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from llama_operator import api

Source = Literal["spec", "catalog", "hub"]


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    id: str
    parameters: float  # total parameters (all experts for MoE)
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_context: int
    moe: bool = False
    license: str | None = None
    source: Source = "catalog"
    # The layout beyond the shape: input embeddings and LM head (``vocab_size`` x
    # ``hidden_size`` each, one matrix when tied) stay 16-bit in 8-bit and 4-bit
    # checkpoints, so they are weighed apart from the rest. Unknown vocabulary: 0.
    vocab_size: int = 0
    tied_embeddings: bool = False
    intermediate_size: int = 0
    # Layers whose attention sees a bounded window of tokens (a sliding window, or
    # Llama 4's chunked local attention) keep at most ``attention_window`` tokens of a
    # sequence in the KV cache; the other ``layers - windowed_layers`` keep all of them.
    windowed_layers: int = 0
    attention_window: int = 0

    def kv_bytes_per_token(self, kv_bytes: int = 2) -> int:
        """K and V, per layer, per KV head: 2 x layers x kv_heads x head_dim x bytes."""
        return self.layers * self.kv_bytes_per_layer_token(kv_bytes)

    def kv_bytes_per_layer_token(self, kv_bytes: int = 2) -> int:
        """One token of one layer: K and V for every KV head."""
        return 2 * self.kv_heads * self.head_dim * kv_bytes

    def kv_bytes_per_sequence(self, tokens: int, kv_bytes: int = 2) -> int:
        """The KV cache one sequence of ``tokens`` tokens needs, windowed layers capped."""
        windowed = self.windowed_layers if self.attention_window else 0
        kept = (self.layers - windowed) * tokens + windowed * min(tokens, self.attention_window)
        return kept * self.kv_bytes_per_layer_token(kv_bytes)

    @property
    def embedding_parameters(self) -> float:
        """Input embeddings plus LM head (one matrix when tied); 0 for an unknown vocabulary."""
        matrices = 1 if self.tied_embeddings else 2
        return float(self.vocab_size * self.hidden_size * matrices)

    @property
    def billions(self) -> float:
        return self.parameters / 1e9


@dataclasses.dataclass(frozen=True)
class AdapterFacts:
    """One LoRA adapter as the planner sizes it and the engines are told to serve it.

    From the adapter's adapter_config.json on the Hub (``r``, ``target_modules``,
    ``base_model_name_or_path``), or from spec.adapters[] for an adapter on a path.
    """

    name: str  # what clients send as `model`
    source: str  # the Hub repository id, or the path inside the serving pods
    revision: str | None  # None for a path
    rank: int
    target_modules: tuple[str, ...]
    base_model: str | None = None  # None: the adapter's config does not say
    license: str | None = None  # the licence its card declares; None: none declared


@dataclasses.dataclass(frozen=True)
class PartialFacts:
    """Facts from one source, any of which may be missing."""

    parameters: float | None = None
    layers: int | None = None
    hidden_size: int | None = None
    attention_heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    max_context: int | None = None
    moe: bool | None = None
    license: str | None = None
    vocab_size: int | None = None
    tied_embeddings: bool | None = None
    intermediate_size: int | None = None
    windowed_layers: int | None = None
    attention_window: int | None = None


class FactsError(ValueError):
    """Facts are missing; the message names the spec fields that would supply them."""


_SPEC_FIELD = {
    "parameters": "spec.model.parameters",
    "layers": "spec.model.layers",
    "attention_heads": "spec.model.attentionHeads",
    "kv_heads": "spec.model.kvHeads",
    "head_dim": "spec.model.headDim",
    "max_context": "spec.model.maxContext",
    "hidden_size": "spec.model.hiddenSize",
}


def from_spec(model: api.ModelSpec) -> PartialFacts:
    return PartialFacts(
        parameters=api.parse_parameters(model.parameters) if model.parameters else None,
        layers=model.layers,
        hidden_size=model.hiddenSize,
        attention_heads=model.attentionHeads,
        kv_heads=model.kvHeads,
        head_dim=model.headDim,
        max_context=model.maxContext,
    )


def resolve(
    *,
    model: api.ModelSpec,
    catalog_entry: ModelFacts | None,
    hub: PartialFacts | None = None,
) -> ModelFacts:
    """Merge spec overrides > catalog > hub into complete facts, or raise ``FactsError``."""
    layers: list[tuple[Source, PartialFacts]] = [("spec", from_spec(model))]
    if catalog_entry is not None:
        layers.append(("catalog", _as_partial(catalog_entry)))
    if hub is not None:
        layers.append(("hub", hub))

    merged: dict[str, object] = {}
    source: Source = "spec"
    for name in (f.name for f in dataclasses.fields(PartialFacts)):
        for origin, partial in layers:
            value = getattr(partial, name)
            if value is not None:
                merged[name] = value
                if name == "parameters":
                    source = origin
                break

    # head_dim is derivable from hidden size and heads for dense Llama-style models.
    if (
        merged.get("head_dim") is None
        and merged.get("hidden_size")
        and merged.get("attention_heads")
    ):
        merged["head_dim"] = int(merged["hidden_size"]) // int(merged["attention_heads"])  # type: ignore[call-overload]
    if merged.get("kv_heads") is None and merged.get("attention_heads") is not None:
        merged["kv_heads"] = merged["attention_heads"]  # no GQA declared: one KV head per head
    if (
        merged.get("hidden_size") is None
        and merged.get("head_dim")
        and merged.get("attention_heads")
    ):
        merged["hidden_size"] = int(merged["head_dim"]) * int(merged["attention_heads"])  # type: ignore[call-overload]

    required = ("parameters", "layers", "attention_heads", "kv_heads", "head_dim", "max_context")
    missing = [name for name in required if merged.get(name) is None]
    if missing:
        fields = ", ".join(_SPEC_FIELD[name] for name in missing)
        raise FactsError(
            f"model {model.id!r} is not in the built-in catalog and the Hugging Face Hub "
            f"did not supply its shape; set {fields}"
        )
    return ModelFacts(
        id=model.id,
        parameters=float(merged["parameters"]),  # type: ignore[arg-type]
        layers=int(merged["layers"]),  # type: ignore[call-overload]
        hidden_size=int(merged.get("hidden_size") or 0),  # type: ignore[call-overload]
        attention_heads=int(merged["attention_heads"]),  # type: ignore[call-overload]
        kv_heads=int(merged["kv_heads"]),  # type: ignore[call-overload]
        head_dim=int(merged["head_dim"]),  # type: ignore[call-overload]
        max_context=int(merged["max_context"]),  # type: ignore[call-overload]
        moe=bool(merged.get("moe") or False),
        license=merged.get("license"),  # type: ignore[arg-type]
        source=source,
        vocab_size=int(merged.get("vocab_size") or 0),  # type: ignore[call-overload]
        tied_embeddings=bool(merged.get("tied_embeddings") or False),
        intermediate_size=int(merged.get("intermediate_size") or 0),  # type: ignore[call-overload]
        windowed_layers=int(merged.get("windowed_layers") or 0),  # type: ignore[call-overload]
        attention_window=int(merged.get("attention_window") or 0),  # type: ignore[call-overload]
    )


def _as_partial(facts: ModelFacts) -> PartialFacts:
    return PartialFacts(
        parameters=facts.parameters,
        layers=facts.layers,
        hidden_size=facts.hidden_size,
        attention_heads=facts.attention_heads,
        kv_heads=facts.kv_heads,
        head_dim=facts.head_dim,
        max_context=facts.max_context,
        moe=facts.moe,
        license=facts.license,
        vocab_size=facts.vocab_size or None,
        tied_embeddings=facts.tied_embeddings,
        intermediate_size=facts.intermediate_size or None,
        windowed_layers=facts.windowed_layers or None,
        attention_window=facts.attention_window or None,
    )


def from_hf_config(config: dict[str, object], parameters: float | None) -> PartialFacts:
    """Read a Hugging Face ``config.json`` (Llama-style keys, nested text_config too)."""
    text = config.get("text_config")
    cfg: dict[str, object] = text if isinstance(text, dict) else config

    def num(key: str) -> int | None:
        value = cfg.get(key)
        return int(value) if isinstance(value, int | float) else None

    layers = num("num_hidden_layers")
    hidden = num("hidden_size")
    heads = num("num_attention_heads")
    kv_heads = num("num_key_value_heads") or heads
    head_dim = num("head_dim") or (hidden // heads if hidden and heads else None)
    experts = num("num_local_experts") or num("num_experts")
    if parameters is None:
        parameters = estimate_parameters(cfg)
    windowed, window = windowed_layers(cfg, layers)
    tied = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    return PartialFacts(
        parameters=parameters,
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        max_context=num("max_position_embeddings"),
        moe=bool(experts and experts > 1),
        vocab_size=num("vocab_size"),
        tied_embeddings=tied if isinstance(tied, bool) else None,
        intermediate_size=num("intermediate_size"),
        windowed_layers=windowed,
        attention_window=window,
    )


def windowed_layers(cfg: dict[str, object], layers: int | None) -> tuple[int | None, int | None]:
    """How many layers attend over a bounded window, and the window, from a config.json.

    - ``layer_types`` (transformers' per-layer list): "sliding_attention" and
      "chunked_attention" layers are windowed, by ``sliding_window`` and
      ``attention_chunk_size``.
    - Llama 4 (transformers ``Llama4TextConfig``): ``attention_chunk_size`` with
      ``no_rope_layers``, one flag per layer, 0 where the layer is a global (NoPE, full
      attention) layer and 1 where it uses RoPE with chunked local attention.
    - A bare ``sliding_window`` (Mistral-style, every layer) windows every layer, unless
      ``use_sliding_window`` is false.
    None, None: nothing in the config bounds the attention.
    """
    kinds = cfg.get("layer_types")
    chunk = cfg.get("attention_chunk_size")
    sliding = cfg.get("sliding_window")
    if isinstance(kinds, list) and kinds:
        window = chunk if "chunked_attention" in kinds else sliding
        count = sum(kind in ("sliding_attention", "chunked_attention") for kind in kinds)
        if isinstance(window, int) and window > 0 and count:
            return count, window
        return None, None
    flags = cfg.get("no_rope_layers")
    if isinstance(chunk, int) and chunk > 0 and isinstance(flags, list) and flags:
        return sum(1 for flag in flags if flag), chunk
    # Qwen2-style configs carry a sliding_window they do not use (use_sliding_window: false).
    if isinstance(sliding, int) and sliding > 0 and layers and cfg.get("use_sliding_window", True):
        return layers, sliding
    return None, None


def estimate_parameters(cfg: dict[str, object]) -> float | None:
    """Dense Llama-architecture parameter count from its config, when no weights index is known.

    embeddings (+ untied LM head) + per layer: attention q,o (h*h each) and k,v (h*kv*d
    each), a gated MLP (3 * h * intermediate, times experts for MoE) and two norms.
    """

    def whole(key: str, default: int | None = None) -> int:
        value = cfg.get(key)
        if isinstance(value, int | float) and value:
            return int(value)
        if default is None:
            raise KeyError(key)
        return default

    try:
        h = whole("hidden_size")
        layers = whole("num_hidden_layers")
        heads = whole("num_attention_heads")
        inter = whole("intermediate_size")
        vocab = whole("vocab_size")
    except KeyError:
        return None
    kv = whole("num_key_value_heads", heads)
    d = whole("head_dim", h // heads)
    experts = whole("num_local_experts", whole("num_experts", 1))
    tied = bool(cfg.get("tie_word_embeddings", False))
    attention = 2 * h * heads * d + 2 * h * kv * d
    mlp = 3 * h * inter * experts
    per_layer = attention + mlp + 2 * h
    embeddings = vocab * h * (1 if tied else 2)
    return float(embeddings + layers * per_layer + h)
