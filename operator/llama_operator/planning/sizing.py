"""The sizing model: does a model fit a GPU shape, and with how much KV cache.

It follows what the engine itself does at start-up, per GPU (one tensor-parallel rank),
with the release's numbers from its profile (``engine_profiles.MemoryFacts``; every constant is
derived in ``data/engines.yaml`` and docs/concepts/planning.md):

- **vLLM** (``budget: fraction``): the KV cache gets ``total x gpu_memory_utilization``
  minus the weights' share and what the profile run adds: non-torch memory,
  communication buffers (TP >= 2), the activation peak and CUDA graphs. The CUDA context
  sits outside that budget, and vLLM refuses to start when the budget is larger than
  the memory free beside it, so the fraction is capped to what fits.
- **TGI** (``budget: freeAfterWarmup``): ``0.9 x fraction x total`` minus everything in
  use after a warmup forward, CUDA context included.
- **LoRA adapters** (``lora_gib``): vLLM preallocates ``max_loras`` slots of
  ``max_lora_rank`` in every LoRA-capable layer when the model loads; TGI loads each
  adapter's own weights at start. Both before the memory is measured, so both are a term
  of the overhead, inside the budget.

Weights are counted from the model's layout: the embeddings and LM head stay 16-bit in
8-bit and 4-bit checkpoints. The KV cache is counted per layer type: a layer that
attends over a bounded window (Llama 4's chunked layers) keeps at most that window of a
sequence. The result is meant as a lower bound of what the engine reports ("GPU KV cache
size: N tokens"): every uncertain term is taken at its upper end.

Pure arithmetic, shared by the planner, its brute-force check and the tests.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from llama_operator import api
from llama_operator.planning import engine_profiles, facts

GIB = 1024**3

# Bytes per parameter of everything but the embeddings and LM head (those stay 16-bit).
# - fp8, eetq, bitsandbytes-int8: 1 byte and a scale per output row or tensor; 1.005
#   covers the scales: Meta-Llama-3-8B-Instruct-FP8 logged 8.4596 GiB of weights (vLLM
#   0.5.5, fixture issue8009-llama3-8b-fp8-fp8kv; this gives 8.49), Llama-3.3-70B FP8
#   33.88 GiB per GPU at TP 2 (llmd-llama33-70b-fp8-tp2-h100; this gives 33.87 + 0.2 %).
# - awq, gptq: 4 bits, an fp16 scale and a 4-bit zero per group of 128 (0.5195), plus
#   what Marlin's repacking keeps: Llama-3.1-405B AWQ logged 51.1453 GiB per GPU at TP 4
#   (issue16259-llama31-405b-awq-tp4), 0.5257 per parameter; 0.53.
# - bitsandbytes-nf4: 4 bits and double-quantized absmax per block of 64: Meta-Llama-3-8B
#   logged 5.3128 GiB (issue5569-llama3-8b-bnb-t4), 0.516 per parameter; 0.52.
BYTES_PER_PARAMETER: dict[api.Quantization, float] = {
    "none": 2.0,
    "fp8": 1.005,
    "eetq": 1.005,
    "bitsandbytes-int8": 1.005,
    "awq": 0.53,
    "gptq": 0.53,
    "bitsandbytes-nf4": 0.52,
}
EMBEDDING_BYTES = 2.0  # embeddings and LM head: 16-bit in every format above
BITS: dict[api.Quantization, int] = {
    "none": 16,
    "fp8": 8,
    "eetq": 8,
    "bitsandbytes-int8": 8,
    "awq": 4,
    "gptq": 4,
    "bitsandbytes-nf4": 4,
}
# Higher precision first: the planner's tie-break after cost.
PRECISION_ORDER: tuple[api.Quantization, ...] = (
    "none",
    "fp8",
    "eetq",
    "bitsandbytes-int8",
    "awq",
    "gptq",
    "bitsandbytes-nf4",
)
KV_BYTES = 2  # the KV cache stays 16-bit; fp8 KV is an engine flag users can add
CONTEXT_GRANULARITY = 256
# "auto" never plans less context than this (or the model's own maximum if smaller):
# a Llama endpoint that cannot hold a 4k-token conversation is not healthy.
MIN_AUTO_CONTEXT = 4096
# The vocabulary assumed for the sampler's logits when the model's is unknown: the
# largest of the families in the catalog and fixtures (Llama 4: 202048).
DEFAULT_VOCABULARY = 202048
# Left free beside the budget when the fraction is capped: the start-up check compares
# free memory with the budget, and the free memory moves a little between starts.
CAP_MARGIN_GIB = 0.1
# The sequences the engine schedules at once when sizing does not know (the renderer's
# --max-num-seqs default ceiling, engines/input_limits.MAX_DEFAULT_SEQUENCES).
DEFAULT_SCHEDULED_SEQUENCES = 256


# LoRA weights are in the model's 16-bit dtype: LoRAConfig.lora_dtype "auto" becomes
# model_config.dtype (vllm/config/lora.py, 0.24.0 through 0.34.0), which the planner
# renders as bfloat16 or float16 whatever the quantization; TGI loads adapters in the
# model's dtype too (server/text_generation_server/adapters/lora.py, v3.3.7:
# `lora_a.to(base_device, dtype)`).
LORA_BYTES = 2


@dataclasses.dataclass(frozen=True)
class LoraLoad:
    """What the engine holds on each GPU for LoRA (``planning.adapters.load`` decides it).

    ``slots`` (vLLM): ``max_loras`` slots of rank ``max_rank`` in every LoRA-capable layer,
    whatever the adapters. ``adapters`` (TGI): each adapter's own weights.
    """

    memory: Literal["slots", "adapters"]
    max_loras: int
    max_rank: int
    adapters: tuple[facts.AdapterFacts, ...] = ()
    # Slots kept for adapters the operator loads into the running pods (spec.adapterUpdates
    # Runtime): sized by the spec, not the list, so the list can change without a restart.
    runtime: bool = False


@dataclasses.dataclass(frozen=True)
class Overhead:
    """What the engine charges to one GPU's budget beside weights and KV cache, in GiB."""

    non_torch: float
    communication: float
    activation: float
    cuda_graphs: float
    extra: float  # the operator config's reserve and re-planning's headroom
    lora: float = 0.0  # LoRA weights (``lora_gib``)

    @property
    def total(self) -> float:
        return (
            self.non_torch
            + self.communication
            + self.activation
            + self.cuda_graphs
            + self.extra
            + self.lora
        )


def lora_gib(
    *, model: facts.ModelFacts, lora: LoraLoad | None, tensor_parallel: int | None
) -> float:
    """LoRA memory on one GPU; ``tensor_parallel=None``: its least over every degree."""
    if lora is None:
        return 0.0
    if lora.memory == "adapters":
        return _adapter_weights(model=model, adapters=lora.adapters) / GIB
    return (
        lora.max_loras
        * lora.max_rank
        * LORA_BYTES
        * _slot_width(model=model, tensor_parallel=tensor_parallel)
        / GIB
    )


def _slot_width(*, model: facts.ModelFacts, tensor_parallel: int | None) -> float:
    """Elements of one vLLM LoRA slot per unit of rank, on one GPU.

    vLLM 0.24.0 through 0.34.0, ``create_lora_weights`` of each LoRA layer: A is
    (max_loras, rank, input per GPU) and B (max_loras, output per GPU, rank) per slice
    (vllm/lora/layers/base_linear.py, column_parallel_linear.py, row_parallel_linear.py).
    A Llama layer has qkv_proj (3 slices: A 3 x hidden, B its q + 2 kv heads' share),
    o_proj (A its share of q, B hidden), gate_up_proj (2 slices: A 2 x hidden, B
    2 x intermediate / TP) and down_proj (A intermediate / TP, B hidden): 7 x hidden
    unsharded plus (2 q + 3 intermediate) / TP plus 2 x the KV heads per GPU (at least one,
    QKVParallelLinear replicates them). Without ``--lora-target-modules`` every linear
    layer is wrapped (LoRAModelManager._create_lora_modules, vllm/lora/model_manager.py),
    and embed_tokens too (Llama's embedding_modules; VocabParallelEmbeddingWithLoRA,
    vllm/lora/layers/vocab_parallel_embedding.py: A (max_loras, vocabulary, rank), B
    (max_loras, hidden, rank), not sharded); the LM head is not (can_replace_layer refuses
    ParallelLMHead). The punica kernels' scratch (rank-wide rows per batched token) is
    megabytes and not counted. A MoE model's expert slots are not sized here.
    """
    hidden, head_dim = model.hidden_size, model.head_dim
    queries = model.attention_heads * head_dim
    intermediate = model.intermediate_size or 4 * hidden
    if tensor_parallel is None:  # the sharded terms at their least: nothing, one KV head
        sharded, kv_heads = 0.0, 1
    else:
        sharded = (2 * queries + 3 * intermediate) / tensor_parallel
        kv_heads = max(1, model.kv_heads // tensor_parallel)
    per_layer = 7 * hidden + sharded + 2 * kv_heads * head_dim
    vocabulary = model.vocab_size or DEFAULT_VOCABULARY
    return model.layers * per_layer + vocabulary + hidden


# Input and output width of each module an adapter may target (a Llama layer).
def _module_shapes(model: facts.ModelFacts) -> dict[str, tuple[int, int]]:
    hidden = model.hidden_size
    queries = model.attention_heads * model.head_dim
    kv = model.kv_heads * model.head_dim
    intermediate = model.intermediate_size or 4 * hidden
    return {
        "q_proj": (hidden, queries),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (queries, hidden),
        "gate_proj": (hidden, intermediate),
        "up_proj": (hidden, intermediate),
        "down_proj": (intermediate, hidden),
    }


def _adapter_weights(*, model: facts.ModelFacts, adapters: tuple[facts.AdapterFacts, ...]) -> float:
    """Bytes of every adapter's A and B in every layer, unsharded (TGI, v3.3.7).

    TGI loads each adapter at start (get_model_with_lora_adapters,
    server/text_generation_server/models/__init__.py) and shards some of it across GPUs
    (adapters/lora.py); counted whole on each GPU, which errs towards more memory.
    """
    shapes = _module_shapes(model)
    total = 0.0
    for adapter in adapters:
        for module in adapter.target_modules:
            width = sum(shapes.get(module, (model.hidden_size, model.hidden_size)))
            total += adapter.rank * width * LORA_BYTES
    return total * model.layers


@dataclasses.dataclass(frozen=True)
class Fit:
    """Memory arithmetic of one candidate; ``feasible`` is the verdict."""

    weights_gib: float  # per replica
    usable_per_gpu_gib: float  # the budget: what the engine plans in, per GPU
    kv_cache_gib: float  # per replica, what the engine will allocate (lower bound)
    kv_cache_tokens: int  # per replica, what the engine will report (lower bound)
    max_model_len: int
    max_sequences: int
    estimated_per_gpu_gib: float  # weights + overhead + the KV cache the plan needs
    feasible: bool
    gpu_gib: float = 0.0  # memory the engine sees per GPU
    memory_fraction: float = 0.0  # the fraction planned (capped to what fits)
    outside_gib: float = 0.0  # CUDA context, outside the budget
    overhead: Overhead | None = None
    needed_kv_gib: float = 0.0  # per GPU, for concurrency x max_model_len


def weights_gib(model: facts.ModelFacts, quantization: api.Quantization) -> float:
    """All weights of one replica: the layers at the format's width, embeddings at 16-bit."""
    embeddings = min(model.embedding_parameters, model.parameters)
    rest = model.parameters - embeddings
    return (rest * BYTES_PER_PARAMETER[quantization] + embeddings * EMBEDDING_BYTES) / GIB


def kv_gib_per_token(model: facts.ModelFacts) -> float:
    """A token of every layer (the upper bound per token of a sequence)."""
    return model.kv_bytes_per_token(KV_BYTES) / GIB


def min_context(model: facts.ModelFacts) -> int:
    return min(MIN_AUTO_CONTEXT, model.max_context)


def cuda_context_gib(memory: engine_profiles.MemoryFacts, tensor_parallel: int) -> float:
    context = memory.cudaContextGiB
    return context.single if tensor_parallel == 1 else context.parallel


def overhead(
    *,
    model: facts.ModelFacts,
    memory: engine_profiles.MemoryFacts,
    product: str,
    gpu_gib: float,
    tensor_parallel: int,
    scheduled_sequences: int,
    extra_gib: float = 0.0,
    lora: LoraLoad | None = None,
) -> Overhead:
    """The in-budget overhead of one GPU (see ``data/engines.yaml`` for each term)."""
    batch = memory.batch(product=product, gpu_gib=gpu_gib)
    vocabulary = model.vocab_size or DEFAULT_VOCABULARY
    # One logit row per scheduled sequence, at most one per batched token. The operator
    # always renders the sequences (--max-num-seqs), so the engine's own default
    # (batch.sequences) applies only to engines configured by hand, as in the logs.
    logits = min(batch.tokens, scheduled_sequences)
    sampler = logits * vocabulary * memory.samplerBytesPerLogit
    intermediate = model.intermediate_size or 4 * model.hidden_size
    buffers = memory.forwardBuffers
    forward = (
        batch.tokens
        * (
            buffers.intermediate * intermediate / tensor_parallel
            + buffers.hidden * model.hidden_size
        )
        * 2
    )
    graphs = memory.cudaGraphGiBPerLayer * model.layers if memory.cudaGraphsInBudget else 0.0
    return Overhead(
        non_torch=memory.nonTorchGiB,
        communication=memory.communicationGiBPerDoubling * math.log2(tensor_parallel),
        activation=(sampler + forward) / GIB,
        cuda_graphs=graphs,
        extra=extra_gib,
        lora=lora_gib(model=model, lora=lora, tensor_parallel=tensor_parallel),
    )


def budget_gib(
    *, memory: engine_profiles.MemoryFacts, gpu_gib: float, fraction: float, tensor_parallel: int
) -> tuple[float, float]:
    """(fraction planned, budget per GPU) for the requested fraction.

    vLLM: the budget must fit in the memory left free beside the CUDA context, else the
    engine refuses to start; the fraction is capped to that. TGI: the wiggle room
    scales the budget, and the context comes out of it (``fit`` subtracts it).
    """
    if memory.budget == "freeAfterWarmup":
        return fraction, gpu_gib * fraction * memory.wiggleRoom
    free = gpu_gib - cuda_context_gib(memory, tensor_parallel) - CAP_MARGIN_GIB
    fits = math.floor(free / gpu_gib * 100) / 100  # the fraction is rendered to 2 places
    planned = min(fraction, fits)
    return planned, gpu_gib * planned


def fit(  # noqa: PLR0913 - every input of the memory arithmetic, each a keyword
    *,
    model: facts.ModelFacts,
    quantization: api.Quantization,
    gpu_memory_gib: float,
    tensor_parallel: int,
    memory_fraction: float,
    memory: engine_profiles.MemoryFacts,
    max_model_len: int | None,
    concurrency: int,
    product: str = "",
    scheduled_sequences: int = DEFAULT_SCHEDULED_SEQUENCES,
    overhead_gib: float | None = None,
    extra_gib: float = 0.0,
    kv_correction: float = 1.0,
    lora: LoraLoad | None = None,
) -> Fit:
    """Size one candidate. ``max_model_len=None`` picks the largest healthy context.

    ``overhead_gib`` replaces the calibrated in-budget overhead (the operator config's
    runtimeOverheadGiB); ``extra_gib`` adds to it (re-planning's headroom);
    ``kv_correction`` (<= 1) scales the KV cache by what running pods showed.
    """
    weights = weights_gib(model, quantization)
    fraction, budget = budget_gib(
        memory=memory,
        gpu_gib=gpu_memory_gib,
        fraction=memory_fraction,
        tensor_parallel=tensor_parallel,
    )
    costs = overhead(
        model=model,
        memory=memory,
        product=product,
        gpu_gib=gpu_memory_gib,
        tensor_parallel=tensor_parallel,
        scheduled_sequences=scheduled_sequences,
        extra_gib=extra_gib,
        lora=lora,
    )
    if overhead_gib is not None:
        # runtimeOverheadGiB stands for the engine's own overhead; the adapters the spec
        # adds are not in it.
        costs = Overhead(0.0, 0.0, 0.0, 0.0, overhead_gib + extra_gib, lora=costs.lora)
    outside = cuda_context_gib(memory, tensor_parallel)
    inside = costs.total + (outside if memory.budget == "freeAfterWarmup" else 0.0)
    kv_per_gpu = (budget - weights / tensor_parallel - inside) * min(kv_correction, 1.0)
    kv_bytes = kv_per_gpu * tensor_parallel * GIB if kv_per_gpu > 0 else 0.0
    batch = memory.batch(product=product, gpu_gib=gpu_memory_gib)
    length, needed = _length(model, kv_bytes, concurrency, max_model_len, batch.tokens)
    per_sequence = _sequence_bytes(model, length, batch.tokens)
    sequences = int(kv_bytes // per_sequence) if per_sequence > 0 else 0
    tokens = _tokens(kv_bytes, per_sequence, length, memory.blockSize)
    feasible = (
        kv_per_gpu > 0
        and length >= needed
        and length <= model.max_context
        and sequences >= concurrency
    )
    needed_kv = concurrency * per_sequence / GIB / tensor_parallel
    return Fit(
        weights_gib=weights,
        usable_per_gpu_gib=budget,
        kv_cache_gib=max(kv_bytes / GIB, 0.0),
        kv_cache_tokens=tokens,
        max_model_len=max(length, 0),
        max_sequences=sequences,
        estimated_per_gpu_gib=weights / tensor_parallel + inside + needed_kv,
        feasible=feasible,
        gpu_gib=gpu_memory_gib,
        memory_fraction=fraction,
        outside_gib=outside,
        overhead=costs,
        needed_kv_gib=needed_kv,
    )


def _sequence_bytes(model: facts.ModelFacts, length: int, batched_tokens: int) -> float:
    """One sequence's KV cache. vLLM reserves a windowed layer's window plus one batch of
    new tokens (``cdiv(min(chunk + max_num_batched_tokens, L), block)`` blocks for
    chunked-local attention, vllm/v1/core/single_type_kv_cache_manager.py, 0.34.0)."""
    if length <= 0:
        return 0.0
    if not model.windowed_layers or not model.attention_window:
        return float(model.kv_bytes_per_token(KV_BYTES) * length)
    widened = dataclasses.replace(model, attention_window=model.attention_window + batched_tokens)
    return float(widened.kv_bytes_per_sequence(length, KV_BYTES))


def _tokens(kv_bytes: float, per_sequence: float, length: int, block: int) -> int:
    """What vLLM logs as "GPU KV cache size": requests of ``length`` that fit, times
    ``length`` (get_max_concurrency_for_kv_cache_config, vllm/v1/core/kv_cache_utils.py),
    which for full attention is every cached token; rounded down to whole blocks."""
    if per_sequence <= 0 or kv_bytes <= 0:
        return 0
    tokens = int(kv_bytes / per_sequence * length)
    return tokens - tokens % block


def _length(
    model: facts.ModelFacts,
    kv_bytes: float,
    concurrency: int,
    max_model_len: int | None,
    batched_tokens: int,
) -> tuple[int, int]:
    """(context planned, context needed): the pinned one, or the longest that lets
    ``concurrency`` sequences share ``kv_bytes``."""
    if max_model_len is not None:
        return max_model_len, max_model_len
    share = kv_bytes / concurrency if concurrency > 0 else 0.0
    per_layer = model.kv_bytes_per_layer_token(KV_BYTES)
    windowed = model.windowed_layers if model.attention_window else 0
    window = model.attention_window + batched_tokens
    if windowed and share >= model.layers * per_layer * window:
        full = model.layers - windowed
        rest = share - windowed * per_layer * window
        length = model.max_context if full == 0 else int(rest // (full * per_layer))
    else:
        length = int(share // (model.layers * per_layer)) if per_layer else 0
    if length >= model.max_context:
        length = model.max_context
    elif length > CONTEXT_GRANULARITY:
        length -= length % CONTEXT_GRANULARITY  # engines like round block multiples
    return length, min_context(model)


def min_tensor_parallel(  # noqa: PLR0913 - fit's inputs but the degree it bounds
    *,
    model: facts.ModelFacts,
    quantization: api.Quantization,
    gpu_memory_gib: float,
    memory_fraction: float,
    memory: engine_profiles.MemoryFacts,
    max_model_len: int | None,
    concurrency: int,
    product: str = "",
    scheduled_sequences: int = DEFAULT_SCHEDULED_SEQUENCES,
    overhead_gib: float | None = None,
    extra_gib: float = 0.0,
    kv_correction: float = 1.0,
    lora: LoraLoad | None = None,
) -> int | None:
    """A GPU count below which no degree can fit, so the planner can skip those degrees.

    Solves budget x tp - overhead x tp - weights >= the KV cache needed, with the
    overhead at its smallest over every degree (its TP-1 terms without communication,
    the forward pass's per-GPU share at zero, LoRA's sharded terms at zero) and the
    largest budget: a lower bound.
    """
    _, budget = budget_gib(
        memory=memory, gpu_gib=gpu_memory_gib, fraction=memory_fraction, tensor_parallel=1
    )
    if overhead_gib is not None:
        least = overhead_gib + extra_gib
    else:
        costs = overhead(
            model=model,
            memory=memory,
            product=product,
            gpu_gib=gpu_memory_gib,
            tensor_parallel=1,
            scheduled_sequences=scheduled_sequences,
            extra_gib=extra_gib,
        )
        least = costs.non_torch + costs.cuda_graphs + costs.extra
    # The LoRA slots at their least over every degree (their sharded terms at zero).
    least += lora_gib(model=model, lora=lora, tensor_parallel=None)
    if memory.budget == "freeAfterWarmup":
        least += cuda_context_gib(memory, 1)
    per_gpu = (budget - least) * min(kv_correction, 1.0)
    if per_gpu <= 0:
        return None
    batch = memory.batch(product=product, gpu_gib=gpu_memory_gib)
    length = max_model_len if max_model_len is not None else min_context(model)
    needed = (
        weights_gib(model, quantization) * min(kv_correction, 1.0)
        + concurrency * _sequence_bytes(model, length, batch.tokens) / GIB
    )
    return max(1, math.ceil(needed / per_gpu - 1e-9))
