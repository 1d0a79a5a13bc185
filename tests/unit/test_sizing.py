"""The sizing model: KV bytes, weights per precision, and how ``fit`` behaves in TP.

Numbers are checked against ``facts.md`` (KV cache per token, bytes per parameter, the
seeds' reference points); the shape of ``fit`` (monotone in GPUs, ``min_tensor_parallel``
a lower bound) is checked with generated models and GPUs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.planning import catalog, engine_profiles, facts, gpus, sizing

KIB = 1024
GB = 1e9
QUANTIZATIONS: tuple[api.Quantization, ...] = typing.get_args(api.Quantization)
SETTINGS = hypothesis.settings(max_examples=200, deadline=None)
VLLM = engine_profiles.get("vllm").memory
TGI = engine_profiles.get("tgi").memory


def model(repo_id: str) -> facts.ModelFacts:
    entry = catalog.lookup(repo_id)
    assert entry is not None
    return entry


@pytest.mark.parametrize(
    ("repo_id", "kib"),
    [
        ("meta-llama/Llama-3.1-8B", 128),
        ("meta-llama/Llama-3.1-70B", 320),
        ("meta-llama/Llama-3.1-405B", 504),
        ("meta-llama/Llama-2-7b-hf", 512),
    ],
)
def test_kv_bytes_per_token_match_facts_md(repo_id: str, kib: int) -> None:
    assert model(repo_id).kv_bytes_per_token(2) == kib * KIB
    assert sizing.kv_gib_per_token(model(repo_id)) * sizing.GIB == kib * KIB


@pytest.mark.parametrize(
    ("bits", "low", "high"),
    [(16, 2.0, 2.0), (8, 1.0, 1.1), (4, 0.5, 0.6)],  # facts.md: plus a few % for scales
)
def test_bytes_per_parameter_by_bits(bits: int, low: float, high: float) -> None:
    members = [q for q in QUANTIZATIONS if sizing.BITS[q] == bits]
    assert members
    for q in members:
        assert low <= sizing.BYTES_PER_PARAMETER[q] <= high


def test_every_quantization_has_bytes_bits_and_a_precision_rank() -> None:
    assert set(sizing.BYTES_PER_PARAMETER) == set(QUANTIZATIONS)
    assert set(sizing.BITS) == set(QUANTIZATIONS)
    assert sorted(sizing.PRECISION_ORDER) == sorted(QUANTIZATIONS)
    bits = [sizing.BITS[q] for q in sizing.PRECISION_ORDER]
    assert bits == sorted(bits, reverse=True), "higher precision first"


@pytest.mark.parametrize("q", QUANTIZATIONS)
def test_weights_are_parameters_times_bytes(q: api.Quantization) -> None:
    # The layers at the format's width, the embeddings and LM head (vocabulary x hidden,
    # twice when untied) at 16-bit whatever the format.
    llama = model("meta-llama/Llama-3.1-8B")
    embeddings = 128256 * 4096 * 2
    assert llama.embedding_parameters == embeddings
    assert sizing.weights_gib(llama, q) == pytest.approx(
        ((8.03e9 - embeddings) * sizing.BYTES_PER_PARAMETER[q] + embeddings * 2.0) / sizing.GIB
    )
    # A model without a known vocabulary keeps the plain rule: parameters x bytes.
    bare = dataclasses.replace(llama, vocab_size=0)
    assert bare.embedding_parameters == 0
    assert sizing.weights_gib(bare, q) == pytest.approx(
        8.03e9 * sizing.BYTES_PER_PARAMETER[q] / sizing.GIB
    )
    # 16-bit embeddings only ever add to the quantized weights, never to 16-bit ones.
    assert sizing.weights_gib(llama, q) >= sizing.weights_gib(bare, q) - 1e-9
    if q == "none":
        assert sizing.weights_gib(llama, q) == pytest.approx(sizing.weights_gib(bare, q))


def test_weights_reference_points_from_facts_md() -> None:
    # "FP16 70B needs about 140 GB", "405B FP16 about 810 GB", "70B [4-bit] about 35-45 GB".
    gib_to_gb = sizing.GIB / GB
    assert 138 <= sizing.weights_gib(model("meta-llama/Llama-3.1-70B"), "none") * gib_to_gb <= 145
    assert 800 <= sizing.weights_gib(model("meta-llama/Llama-3.1-405B"), "none") * gib_to_gb <= 820
    assert 35 <= sizing.weights_gib(model("meta-llama/Llama-3.1-70B"), "awq") * gib_to_gb <= 45


def test_fit_arithmetic_on_one_l4() -> None:
    """The documented arithmetic, term by term, for Llama-3.1-8B at bf16 on one L4.

    budget = the GPU the engine sees x the fraction (capped so the CUDA context fits
    beside it); KV = budget - weights / TP - overhead.total; tokens = KV / bytes per
    token, rounded down to whole blocks.
    """
    llama = model("meta-llama/Llama-3.1-8B")
    l4 = gpus.lookup("NVIDIA-L4")
    assert l4 is not None
    seen = l4.memory_gib
    assert seen == pytest.approx(22.49 - 0.75)  # the label less the gap to what CUDA reports

    def on_l4(fraction: float) -> sizing.Fit:
        return sizing.fit(
            model=llama,
            quantization="none",
            gpu_memory_gib=seen,
            tensor_parallel=1,
            memory_fraction=fraction,
            memory=VLLM,
            product=l4.product,
            max_model_len=None,
            concurrency=4,
        )

    fit = on_l4(0.9)
    embeddings = 128256 * 4096 * 2
    weights = ((8.03e9 - embeddings) * 2.0 + embeddings * 2.0) / sizing.GIB
    assert fit.weights_gib == pytest.approx(weights)
    # 0.9 leaves room for the 0.65 GiB context (and the 0.1 margin): not capped.
    assert fit.memory_fraction == 0.9
    assert fit.outside_gib == VLLM.cudaContextGiB.single == 0.65
    assert fit.usable_per_gpu_gib == pytest.approx(seen * 0.9)
    # Overhead on a 24 GB card at TP 1: 2048 batched tokens, 256 sequences.
    assert fit.overhead is not None
    sampler = 256 * 128256 * VLLM.samplerBytesPerLogit
    forward = 2048 * (3 * 14336 + 4 * 4096) * 2
    assert fit.overhead.non_torch == VLLM.nonTorchGiB
    assert fit.overhead.communication == 0.0  # no communication buffers at TP 1
    assert fit.overhead.activation == pytest.approx((sampler + forward) / sizing.GIB)
    assert fit.overhead.cuda_graphs == pytest.approx(32 * VLLM.cudaGraphGiBPerLayer)
    assert fit.overhead.extra == 0.0
    kv = seen * 0.9 - weights - fit.overhead.total
    assert fit.kv_cache_gib == pytest.approx(kv)
    per_token = 128 * KIB
    tokens = int(kv * sizing.GIB / per_token)
    assert fit.kv_cache_tokens == tokens - tokens % VLLM.blockSize
    assert fit.kv_cache_tokens % VLLM.blockSize == 0
    # Four sequences share it: the longest context, in steps of 256.
    share = int(kv * sizing.GIB / 4 / per_token)
    assert fit.max_model_len == share - share % sizing.CONTEXT_GRANULARITY
    # 1.67 GiB of KV cache holds four sequences of 3328 tokens, not of 4096: one L4 at
    # the default fraction is too small for an 8B model at bf16 under this model.
    assert fit.max_model_len < sizing.MIN_AUTO_CONTEXT
    assert not fit.feasible

    # At 0.98 the context would not fit beside the budget: the fraction is capped to what
    # leaves it (and the margin) free, in hundredths, and the larger budget then fits.
    capped = on_l4(0.98)
    fraction = math.floor((seen - 0.65 - sizing.CAP_MARGIN_GIB) / seen * 100) / 100
    assert capped.memory_fraction == fraction == 0.96
    assert capped.usable_per_gpu_gib == pytest.approx(seen * 0.96)
    assert capped.usable_per_gpu_gib + capped.outside_gib <= seen - sizing.CAP_MARGIN_GIB
    assert capped.kv_cache_gib == pytest.approx(seen * 0.96 - weights - fit.overhead.total)
    assert capped.feasible
    assert capped.max_model_len % sizing.CONTEXT_GRANULARITY == 0
    assert 4096 <= capped.max_model_len < llama.max_context
    assert capped.max_sequences >= 4
    assert capped.estimated_per_gpu_gib <= capped.usable_per_gpu_gib


def test_overhead_gib_replaces_the_calibrated_overhead() -> None:
    llama = model("meta-llama/Llama-3.1-8B")
    shape: dict[str, typing.Any] = {
        "model": llama,
        "quantization": "none",
        "gpu_memory_gib": 21.74,
        "tensor_parallel": 1,
        "memory_fraction": 0.9,
        "memory": VLLM,
        "max_model_len": None,
        "concurrency": 4,
    }
    fixed = sizing.fit(overhead_gib=1.5, **shape)
    assert fixed.overhead == sizing.Overhead(0.0, 0.0, 0.0, 0.0, 1.5)
    assert fixed.kv_cache_gib == pytest.approx(21.74 * 0.9 - fixed.weights_gib - 1.5)
    # extra_gib (re-planning's headroom) adds to either.
    more = sizing.fit(overhead_gib=1.5, extra_gib=2.0, **shape)
    assert more.kv_cache_gib == pytest.approx(fixed.kv_cache_gib - 2.0)


def test_pinned_length_beyond_the_model_is_infeasible() -> None:
    fit = sizing.fit(
        model=model("meta-llama/Llama-2-7b-hf"),
        quantization="none",
        gpu_memory_gib=80,
        tensor_parallel=8,
        memory_fraction=0.9,
        memory=VLLM,
        max_model_len=8192,
        concurrency=1,
    )
    assert not fit.feasible


def test_a_model_that_does_not_fit_has_no_kv_cache() -> None:
    fit = sizing.fit(
        model=model("meta-llama/Llama-3.1-405B"),
        quantization="none",
        gpu_memory_gib=80,
        tensor_parallel=8,
        memory_fraction=0.9,
        memory=VLLM,
        max_model_len=None,
        concurrency=4,
    )
    assert not fit.feasible
    assert fit.kv_cache_gib == 0.0
    assert fit.max_sequences == 0


# ------------------------------------------------------------------------------ properties


@st.composite
def model_facts(draw: st.DrawFn) -> facts.ModelFacts:
    heads = draw(st.sampled_from((8, 16, 32, 40, 64, 128)))
    kv_heads = draw(st.sampled_from([kv for kv in (1, 2, 4, 8, 16) if heads % kv == 0]))
    layers = draw(st.integers(8, 128))
    # Some with Llama 4's layout: a share of the layers attend over a bounded window.
    windowed = draw(st.sampled_from((0, 0, layers // 4 * 3, layers)))
    return facts.ModelFacts(
        id="example/generated",
        parameters=10 ** draw(st.floats(math.log10(0.5e9), math.log10(500e9))),
        layers=layers,
        hidden_size=heads * 128,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=draw(st.sampled_from((64, 128))),
        max_context=draw(st.integers(2048, 131072)),
        vocab_size=draw(st.sampled_from((0, 32000, 128256, 202048))),
        tied_embeddings=draw(st.booleans()),
        intermediate_size=draw(st.sampled_from((0, 8192, 14336, 28672))),
        windowed_layers=windowed,
        attention_window=draw(st.sampled_from((4096, 8192))) if windowed else 0,
    )


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, typing.Any]:
    """Keyword arguments of ``sizing.fit`` other than the tensor-parallel degree."""
    llama = draw(model_facts())
    # A product in the table at the memory its engine sees, or a discovered one at its
    # label less the gap (pools.discover).
    product, gpu_gib = draw(
        st.one_of(
            st.sampled_from(sorted((gpu.product, gpu.memory_gib) for gpu in gpus.KNOWN.values())),
            st.tuples(
                st.just("NVIDIA-Unknown"),
                st.sampled_from((16384, 24576, 49152, 81559)).map(gpus.seen_from_label),
            ),
        )
    )
    return {
        "model": llama,
        "quantization": draw(st.sampled_from(QUANTIZATIONS)),
        "memory": draw(st.sampled_from((VLLM, TGI))),
        "product": product,
        "gpu_memory_gib": gpu_gib,
        "memory_fraction": draw(st.sampled_from((0.5, 0.8, 0.9, 0.98))),
        "scheduled_sequences": draw(st.sampled_from((256, 1024))),
        # None: the calibrated overhead; a number: the operator config's replacement.
        "overhead_gib": draw(st.sampled_from((None, None, 0.0, 1.5, 4.0))),
        "extra_gib": draw(st.sampled_from((0.0, 0.0, 2.0))),
        "kv_correction": draw(st.sampled_from((1.0, 1.0, 0.8))),
        "max_model_len": draw(st.one_of(st.none(), st.integers(128, llama.max_context + 4096))),
        "concurrency": draw(st.sampled_from((1, 2, 4, 16, 64))),
    }


def room_per_gpu(fit: sizing.Fit, memory: engine_profiles.MemoryFacts) -> float:
    """A GPU's budget less everything charged to it but weights and KV cache."""
    assert fit.overhead is not None
    inside = fit.outside_gib if memory.budget == "freeAfterWarmup" else 0.0
    return fit.usable_per_gpu_gib - fit.overhead.total - inside


def charge_growth_bound(shape: dict[str, typing.Any], tp: int) -> float:
    """How much more a GPU may be charged at 2 x ``tp`` GPUs than at ``tp`` (model constants).

    Each doubling adds ``communicationGiBPerDoubling`` of buffers (the forward pass's share
    only shrinks); the first also moves the CUDA context from its TP-1 to its TP>=2 figure:
    inside TGI's budget, and beside vLLM's, whose fraction is capped in hundredths so it fits.
    """
    memory: engine_profiles.MemoryFacts = shape["memory"]
    growth = memory.communicationGiBPerDoubling if shape["overhead_gib"] is None else 0.0
    if tp == 1:
        context = memory.cudaContextGiB.parallel - memory.cudaContextGiB.single
        if memory.budget == "fraction":
            context += 0.01 * shape["gpu_memory_gib"]  # the capped fraction's rounding
        growth += context
    return growth


@SETTINGS
@hypothesis.given(shapes())
def test_more_gpus_never_reduce_kv_cache_or_feasibility(shape: dict[str, typing.Any]) -> None:
    """Doubling the GPUs of a replica halves each GPU's share of the weights and KV cache.

    It does not always give the replica more KV cache any more: every GPU is charged a
    little more at the larger degree (communication buffers per doubling, and the TP>=2
    CUDA context at the first), so KV(2tp) - KV(tp) = tp x (2 x room(2tp) - room(tp)),
    room being a GPU's budget less its overhead. The replica gains a whole GPU's room and
    each GPU gives up at most ``charge_growth_bound``: so the KV cache grows (and a
    feasible plan stays feasible) whenever the larger degree leaves each GPU at least
    what it gave up, and never shrinks by more than tp x that. With a fixed
    runtimeOverheadGiB nothing grows beyond the first doubling: the old property exactly.
    (Counterexample to the unconditional form, found by this test: a 1B model, 8 layers,
    hidden 1024, vocabulary 128256, 1024 scheduled sequences, on vLLM on a GPU labelled
    16384 MiB (15.25 GiB seen) at fraction 0.5: a 7.625 GiB budget, 6.83 GiB of overhead
    per GPU at TP 4 and 7.43 at TP 8, so TP 4 is feasible with 1.30 GiB of KV cache and
    TP 8 has none.)
    """
    degrees = (1, 2, 4, 8, 16, 32, 64)
    fits = [sizing.fit(tensor_parallel=tp, **shape) for tp in degrees]
    memory: engine_profiles.MemoryFacts = shape["memory"]
    correction = min(shape["kv_correction"], 1.0)
    pinned = shape["max_model_len"] is not None
    for tp, (fewer, more) in zip(degrees, itertools.pairwise(fits), strict=False):
        room_fewer, room_more = room_per_gpu(fewer, memory), room_per_gpu(more, memory)
        growth = room_fewer - room_more
        assert growth <= charge_growth_bound(shape, tp) + 1e-9
        if shape["overhead_gib"] is not None and tp >= 2:
            assert growth == pytest.approx(0.0, abs=1e-9)
        # Never shrinks by more than what the GPUs it had give up.
        assert more.kv_cache_gib >= fewer.kv_cache_gib - correction * tp * max(growth, 0.0) - 1e-9
        if room_more >= growth:
            assert more.kv_cache_gib >= fewer.kv_cache_gib - 1e-9
            if fewer.feasible:
                assert more.feasible
                assert more.max_model_len >= fewer.max_model_len
            if pinned:
                # At a fixed length more GPUs hold more sequences; with auto the extra
                # room goes to a longer context instead.
                assert more.max_sequences >= fewer.max_sequences
        if pinned:
            # Each GPU holds a smaller share of the weights and of the KV cache needed.
            share_fewer = fewer.estimated_per_gpu_gib - (fewer.usable_per_gpu_gib - room_fewer)
            share_more = more.estimated_per_gpu_gib - (more.usable_per_gpu_gib - room_more)
            assert share_more <= share_fewer + 1e-9


@SETTINGS
@hypothesis.given(shapes())
def test_feasible_fits_fit(shape: dict[str, typing.Any]) -> None:
    memory: engine_profiles.MemoryFacts = shape["memory"]
    for tp in (1, 2, 4, 8):
        fit = sizing.fit(tensor_parallel=tp, **shape)
        if not fit.feasible:
            continue
        llama = shape["model"]
        assert fit.estimated_per_gpu_gib <= fit.usable_per_gpu_gib + 1e-9
        # The budget and the CUDA context fit on the GPU together (vLLM's start-up check).
        if memory.budget == "fraction":
            assert fit.memory_fraction <= shape["memory_fraction"]
            assert fit.usable_per_gpu_gib + fit.outside_gib <= fit.gpu_gib - sizing.CAP_MARGIN_GIB
        assert fit.max_sequences >= shape["concurrency"]
        assert fit.max_model_len <= llama.max_context
        if shape["max_model_len"] is None:
            assert fit.max_model_len >= min(4096, llama.max_context)
        else:
            assert fit.max_model_len == shape["max_model_len"]
        # Full-attention layers keep every token; a windowed layer at most its window
        # plus one batch of new tokens (what vLLM reserves).
        batch = memory.batch(product=shape["product"], gpu_gib=shape["gpu_memory_gib"])
        window = llama.attention_window + batch.tokens if llama.attention_window else 0
        per_sequence = dataclasses.replace(llama, attention_window=window).kv_bytes_per_sequence(
            fit.max_model_len, sizing.KV_BYTES
        )
        needed = shape["concurrency"] * per_sequence / sizing.GIB
        assert needed <= fit.kv_cache_gib + 1e-9
        assert needed <= fit.max_model_len * shape["concurrency"] * sizing.kv_gib_per_token(llama)
        assert fit.needed_kv_gib * tp == pytest.approx(needed)
        # The tokens reported: whole blocks, and never more than the cache holds.
        assert fit.kv_cache_tokens % memory.blockSize == 0
        if not llama.attention_window:
            assert fit.kv_cache_tokens * sizing.kv_gib_per_token(llama) <= fit.kv_cache_gib + 1e-9


@SETTINGS
@hypothesis.given(shapes())
def test_min_tensor_parallel_is_a_lower_bound(shape: dict[str, typing.Any]) -> None:
    lowest = sizing.min_tensor_parallel(**shape)
    if lowest is None:
        assert not any(sizing.fit(tensor_parallel=tp, **shape).feasible for tp in range(1, 129))
        return
    assert lowest >= 1
    for tp in range(1, lowest):
        assert not sizing.fit(tensor_parallel=tp, **shape).feasible
    # ... and a tight one where the overhead does not depend on the degree: a fixed
    # runtimeOverheadGiB on vLLM, with the fraction below both caps. Then one GPU more is
    # always enough when the length is servable. (With the calibrated overhead the bound
    # takes the overhead at its smallest over every degree, so it may be lower.)
    length = shape["max_model_len"]
    constant = (
        shape["overhead_gib"] is not None
        and shape["memory"].budget == "fraction"
        and sizing.fit(tensor_parallel=2, **shape).memory_fraction == shape["memory_fraction"]
    )
    if constant and (length is None or length <= shape["model"].max_context):
        assert sizing.fit(tensor_parallel=lowest + 1, **shape).feasible
