"""The sizing model: KV bytes, weights per precision, and how ``fit`` behaves in TP.

Numbers are checked against ``facts.md`` (KV cache per token, bytes per parameter, the
seeds' reference points); the shape of ``fit`` (monotone in GPUs, ``min_tensor_parallel``
a lower bound) is checked with generated models and GPUs.
"""

from __future__ import annotations

import itertools
import math
import typing

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api, catalog, facts, sizing

KIB = 1024
GB = 1e9
QUANTIZATIONS: tuple[api.Quantization, ...] = typing.get_args(api.Quantization)
SETTINGS = hypothesis.settings(max_examples=200, deadline=None)


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
    llama = model("meta-llama/Llama-3.1-8B")
    assert sizing.weights_gib(llama, q) == pytest.approx(
        8.03e9 * sizing.BYTES_PER_PARAMETER[q] / sizing.GIB
    )


def test_weights_reference_points_from_facts_md() -> None:
    # "FP16 70B needs about 140 GB", "405B FP16 about 810 GB", "70B [4-bit] about 35-45 GB".
    gib_to_gb = sizing.GIB / GB
    assert 138 <= sizing.weights_gib(model("meta-llama/Llama-3.1-70B"), "none") * gib_to_gb <= 145
    assert 800 <= sizing.weights_gib(model("meta-llama/Llama-3.1-405B"), "none") * gib_to_gb <= 820
    assert 35 <= sizing.weights_gib(model("meta-llama/Llama-3.1-70B"), "awq") * gib_to_gb <= 45


def test_fit_arithmetic_on_one_l4() -> None:
    llama = model("meta-llama/Llama-3.1-8B")
    fit = sizing.fit(
        model=llama,
        quantization="none",
        gpu_memory_gib=22.5,
        tensor_parallel=1,
        memory_fraction=0.9,
        overhead_gib=1.5,
        max_model_len=None,
        concurrency=4,
    )
    weights = 8.03e9 * 2 / sizing.GIB
    assert fit.weights_gib == pytest.approx(weights)
    assert fit.usable_per_gpu_gib == pytest.approx(20.25)
    assert fit.kv_cache_gib == pytest.approx(20.25 - 1.5 - weights)
    assert fit.feasible
    assert fit.max_model_len % sizing.CONTEXT_GRANULARITY == 0
    assert 4096 <= fit.max_model_len < llama.max_context
    assert fit.max_sequences >= 4
    assert fit.estimated_per_gpu_gib <= fit.usable_per_gpu_gib


def test_pinned_length_beyond_the_model_is_infeasible() -> None:
    fit = sizing.fit(
        model=model("meta-llama/Llama-2-7b-hf"),
        quantization="none",
        gpu_memory_gib=80,
        tensor_parallel=8,
        memory_fraction=0.9,
        overhead_gib=1.5,
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
        overhead_gib=1.5,
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
    return facts.ModelFacts(
        id="example/generated",
        parameters=10 ** draw(st.floats(math.log10(0.5e9), math.log10(500e9))),
        layers=draw(st.integers(8, 128)),
        hidden_size=heads * 128,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=draw(st.sampled_from((64, 128))),
        max_context=draw(st.integers(2048, 131072)),
    )


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, typing.Any]:
    """Keyword arguments of ``sizing.fit`` other than the tensor-parallel degree."""
    llama = draw(model_facts())
    return {
        "model": llama,
        "quantization": draw(st.sampled_from(QUANTIZATIONS)),
        "gpu_memory_gib": draw(st.sampled_from((15.0, 22.5, 40.0, 45.0, 79.6, 80.0, 140.0, 179.0))),
        "memory_fraction": draw(st.sampled_from((0.5, 0.8, 0.9, 0.98))),
        "overhead_gib": draw(st.sampled_from((0.0, 1.5, 4.0))),
        "max_model_len": draw(st.one_of(st.none(), st.integers(128, llama.max_context + 4096))),
        "concurrency": draw(st.sampled_from((1, 2, 4, 16, 64))),
    }


@SETTINGS
@hypothesis.given(shapes())
def test_more_gpus_never_reduce_kv_cache_or_feasibility(shape: dict[str, typing.Any]) -> None:
    fits = [sizing.fit(tensor_parallel=tp, **shape) for tp in (1, 2, 4, 8, 16, 32, 64)]
    pinned = shape["max_model_len"] is not None
    for fewer, more in itertools.pairwise(fits):
        assert more.kv_cache_gib >= fewer.kv_cache_gib
        if fewer.feasible:
            assert more.feasible
            assert more.max_model_len >= fewer.max_model_len
        if pinned:
            # At a fixed length more GPUs hold more sequences and use less of each GPU;
            # with auto the extra room goes to a longer context instead.
            assert more.max_sequences >= fewer.max_sequences
            assert more.estimated_per_gpu_gib <= fewer.estimated_per_gpu_gib + 1e-9


@SETTINGS
@hypothesis.given(shapes())
def test_feasible_fits_fit(shape: dict[str, typing.Any]) -> None:
    for tp in (1, 2, 4, 8):
        fit = sizing.fit(tensor_parallel=tp, **shape)
        if not fit.feasible:
            continue
        llama = shape["model"]
        assert fit.estimated_per_gpu_gib <= fit.usable_per_gpu_gib + 1e-9
        assert fit.max_sequences >= shape["concurrency"]
        assert fit.max_model_len <= llama.max_context
        if shape["max_model_len"] is None:
            assert fit.max_model_len >= min(4096, llama.max_context)
        else:
            assert fit.max_model_len == shape["max_model_len"]
        needed = fit.max_model_len * shape["concurrency"] * sizing.kv_gib_per_token(llama)
        assert needed <= fit.kv_cache_gib + 1e-9


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
    # ... and a tight one: one GPU more is always enough when the length is servable.
    length = shape["max_model_len"]
    if length is None or length <= shape["model"].max_context:
        assert sizing.fit(tensor_parallel=lowest + 1, **shape).feasible
