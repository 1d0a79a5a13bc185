"""The planner: every plan fits its own memory model, obeys policy and pins, and is optimal.

Property tests draw model shapes, pool sets, policies, pins and engines, and check each
plan against the sizing model, against ``plan_exhaustive`` and against a brute force
written here (so a shared bug in the planner's candidate search cannot hide). Example
tests pin the behaviour people see with catalog models on the bundled pool catalogue.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.planning import catalog, config, facts, gpus, planner, pools, sizing

SETTINGS = hypothesis.settings(
    max_examples=200, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
EPSILON_GIB = 0.011  # plans round GiB figures to 2 decimals

# Independent of the planner's own tables: what each policy, engine and GPU allows.
POLICY_ALLOWS: dict[str, frozenset[str]] = {
    "quality": frozenset({"none"}),
    "balanced": frozenset({"none", "fp8", "eetq", "bitsandbytes-int8"}),
    "cost": frozenset({"none", "fp8", "eetq", "bitsandbytes-int8", "bitsandbytes-nf4"}),
}
# What each engine's default release serves (data/engines.yaml): vLLM 0.34.0 no longer
# has bitsandbytes (QuantizationMethods, vllm/model_executor/layers/quantization/
# __init__.py, dropped it in 0.28.0); TGI 3.3.7's launcher enum Quantization.
ENGINE_SERVES: dict[str, frozenset[str]] = {
    "vllm": frozenset({"none", "fp8", "awq", "gptq"}),
    "tgi": frozenset(
        {"none", "fp8", "eetq", "bitsandbytes-int8", "awq", "gptq", "bitsandbytes-nf4"}
    ),
}
# The lowest compute capability each engine serves fp8 on: vLLM's Fp8Config asks for 7.5
# (weight-only through Marlin below 8.9, W8A8 from there), TGI's Marlin fp8 path for 8.0.
FP8_MIN_CAPABILITY = {"vllm": 7.5, "tgi": 8.0}
BITS_BYTES = {16: 2.0, 8: 1.0, 4: 0.5}  # bytes per parameter before scales
FIELD_OF_PIN = {
    "tensor_parallel": "spec.placement.tensorParallel",
    "max_model_len": "spec.placement.maxModelLen",
    "quantization": "spec.placement.quantization",
}
QUANTIZATION_CHOICES: tuple[api.QuantizationChoice, ...] = typing.get_args(api.QuantizationChoice)

# ---------------------------------------------------------------------------- strategies

HEADS = (8, 16, 24, 32, 40, 48, 64, 96, 128)
CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


@st.composite
def model_facts(draw: st.DrawFn) -> facts.ModelFacts:
    heads = draw(st.sampled_from(HEADS))
    kv_heads = draw(st.sampled_from([kv for kv in (1, 2, 4, 8, 16, 32, 64) if heads % kv == 0]))
    head_dim = draw(st.sampled_from((64, 128)))
    layers = draw(st.integers(8, 128))
    # Now and then Llama 4's layout: three layers in four attend over a bounded window.
    windowed = draw(st.sampled_from((0, 0, 0, layers // 4 * 3)))
    return facts.ModelFacts(
        id="example/generated",
        # Log-uniform, so 1B-class models are drawn as often as 100B-class ones.
        parameters=10 ** draw(st.floats(math.log10(0.5e9), math.log10(500e9))),
        layers=layers,
        hidden_size=heads * head_dim,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        max_context=draw(st.one_of(st.sampled_from(CONTEXTS), st.integers(2048, 131072))),
        source="spec",
        # 0: a vocabulary (and intermediate size) the config did not give.
        vocab_size=draw(st.sampled_from((0, 32000, 128256, 202048))),
        tied_embeddings=draw(st.booleans()),
        intermediate_size=draw(st.sampled_from((0, 8192, 14336, 28672))),
        windowed_layers=windowed,
        attention_window=8192 if windowed else 0,
    )


COSTS = st.one_of(
    st.none(),
    st.just(0.0),
    st.sampled_from((0.35, 0.8, 1.0, 2.0, 4.0)),
    st.floats(0.01, 20.0, allow_nan=False, allow_infinity=False),
)


@st.composite
def pool_sets(draw: st.DrawFn) -> tuple[pools.Pool, ...]:
    count = draw(st.integers(1, 5))
    return tuple(
        pools.Pool(
            name=f"pool-{index}",
            gpuProduct=draw(st.sampled_from(sorted(gpus.KNOWN))),
            gpusPerNode=draw(st.sampled_from((1, 2, 4, 8))),
            costPerGPUHour=draw(COSTS),
        )
        for index in range(count)
    )


@st.composite
def requests(draw: st.DrawFn, *, pins: bool = True) -> planner.Request:
    model = draw(model_facts())
    # Mostly ordinary checkpoints; now and then a pre-quantized one.
    checkpoint: api.CheckpointQuantization = draw(
        st.sampled_from(("none", "none", "none", "awq", "gptq"))
    )
    quantization: api.QuantizationChoice = "auto"
    tensor_parallel = None
    max_model_len = None
    if pins:
        if checkpoint == "none":
            quantization = draw(st.one_of(st.just("auto"), st.sampled_from(QUANTIZATION_CHOICES)))
        else:  # the API only lets a pre-quantized checkpoint pin its own format
            quantization = draw(st.sampled_from(("auto", checkpoint)))
        tensor_parallel = draw(st.one_of(st.none(), st.sampled_from(planner.TP_DEGREES)))
        max_model_len = draw(
            st.one_of(
                st.none(),
                st.sampled_from((2048, 4096, 8192, 32768, 131072)),
                st.integers(128, 2 * model.max_context),
            )
        )
    chosen = draw(pool_sets())
    # A KV correction observed on running pods, for one product of the pools, or none.
    corrections = draw(
        st.one_of(
            st.just({}),
            st.builds(
                lambda pool, ratio: {pool.gpuProduct: ratio},
                st.sampled_from(chosen),
                st.sampled_from((0.8, 0.95)),
            ),
        )
    )
    return planner.Request(
        model=model,
        engine=draw(st.sampled_from(("vllm", "tgi"))),
        optimize=draw(st.sampled_from(("cost", "balanced", "quality"))),
        pools=chosen,
        quantization=quantization,
        tensor_parallel=tensor_parallel,
        max_model_len=max_model_len,
        concurrency=draw(st.sampled_from((1, 2, 4, 8, 32))),
        checkpoint=checkpoint,
        memory_fraction=draw(st.sampled_from((0.5, 0.8, 0.9, 0.95, 0.98))),
        # None (mostly): the engine profile's calibrated overhead; a number replaces it.
        overhead_gib=draw(st.sampled_from((None, None, None, 0.0, 1.5, 3.0))),
        headroom_gib=draw(st.sampled_from((0.0, 0.0, 2.0))),
        scheduled_sequences=draw(st.sampled_from((256, 1024))),
        kv_corrections=corrections,
    )


# ------------------------------------------------------------------------------- helpers


def attempt(
    strategy: typing.Callable[[planner.Request], api.Plan], request: planner.Request
) -> api.Plan | planner.PlanError:
    """The plan, or the refusal as a value (so it can be inspected outside ``except``)."""
    try:
        return strategy(request)
    except planner.PlanError as error:
        return error


def plan_or_none(request: planner.Request) -> api.Plan | None:
    try:
        return planner.plan(request)
    except planner.PlanError:
        hypothesis.event("infeasible")
        return None


def pool_of(request: planner.Request, plan: api.Plan) -> pools.Pool:
    (pool,) = [pool for pool in request.pools if pool.name == plan.pool]
    return pool


def memory_terms(request: planner.Request, pool: pools.Pool) -> dict[str, typing.Any]:
    """What ``sizing.fit`` needs of the request and pool beyond the candidate (written
    out here, not taken from the planner, so a slip in either shows)."""
    return {
        "memory_fraction": request.memory_fraction,
        "memory": request.profile.memory,
        "product": pool.gpuProduct,
        "scheduled_sequences": request.scheduled_sequences,
        "overhead_gib": request.overhead_gib,
        "extra_gib": request.headroom_gib,
        "kv_correction": request.kv_corrections.get(pool.gpuProduct, 1.0),
    }


def refit(request: planner.Request, plan: api.Plan) -> sizing.Fit:
    pool = pool_of(request, plan)
    return sizing.fit(
        model=request.model,
        quantization=plan.quantization,
        gpu_memory_gib=pool.memory_gib,
        tensor_parallel=plan.tensorParallel,
        max_model_len=request.max_model_len,
        concurrency=request.concurrency,
        **memory_terms(request, pool),
    )


def brute_force(request: planner.Request) -> tuple[float, int, float] | None:
    """(cost, precision rank, -KV GiB) of the best feasible candidate, sized one by one."""
    best: tuple[float, int, float] | None = None
    for pool in request.pools:
        for quantization in planner.quantizations(request, pool):
            for tp in planner.degrees(request, pool):
                fit = sizing.fit(
                    model=request.model,
                    quantization=quantization,
                    gpu_memory_gib=pool.memory_gib,
                    tensor_parallel=tp,
                    max_model_len=request.max_model_len,
                    concurrency=request.concurrency,
                    **memory_terms(request, pool),
                )
                if not fit.feasible:
                    continue
                key = (
                    tp * pool.rank_price,
                    sizing.PRECISION_ORDER.index(quantization),
                    -fit.kv_cache_gib,
                )
                if best is None or key < best:
                    best = key
    return best


def pinned_fields(request: planner.Request) -> dict[str, str]:
    """Pinned request attribute -> the spec field a user would change."""
    pinned = {}
    if request.tensor_parallel is not None:
        pinned["tensor_parallel"] = FIELD_OF_PIN["tensor_parallel"]
    if request.max_model_len is not None:
        pinned["max_model_len"] = FIELD_OF_PIN["max_model_len"]
    if request.quantization != "auto":
        pinned["quantization"] = FIELD_OF_PIN["quantization"]
    return pinned


def release(request: planner.Request, attribute: str) -> planner.Request:
    auto: dict[str, object] = {"tensor_parallel": None, "max_model_len": None}
    auto["quantization"] = "auto"
    return dataclasses.replace(request, **{attribute: auto[attribute]})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ properties


@SETTINGS
@hypothesis.given(requests())
def test_every_plan_fits_its_own_memory_model(request: planner.Request) -> None:
    plan = plan_or_none(request)
    if plan is None:
        return
    pool = pool_of(request, plan)
    fit = refit(request, plan)
    memory = request.profile.memory
    tp = plan.tensorParallel

    assert fit.feasible
    # The fraction planned is the one asked for, capped (vLLM) so that the budget and the
    # CUDA context fit on the GPU together.
    assert plan.gpuMemoryUtilization == fit.memory_fraction <= request.memory_fraction
    usable = pool.memory_gib * plan.gpuMemoryUtilization
    if memory.budget == "freeAfterWarmup":
        usable *= memory.wiggleRoom
    else:
        assert usable + fit.outside_gib <= pool.memory_gib - sizing.CAP_MARGIN_GIB + 1e-9
        if plan.gpuMemoryUtilization < request.memory_fraction:
            assert "capped" in plan.reason
    assert fit.usable_per_gpu_gib == pytest.approx(usable)
    assert plan.maxModelLen == fit.max_model_len
    assert plan.maxConcurrentSequences == fit.max_sequences >= request.concurrency
    assert plan.kvCacheTokens == fit.kv_cache_tokens
    assert plan.kvCacheTokens is not None
    assert plan.kvCacheTokens % memory.blockSize == 0
    assert plan.estimatedGPUMemoryGiB <= usable + EPSILON_GIB
    # Weights, KV cache and overhead (TGI: the CUDA context too) fill at most the budget.
    assert fit.overhead is not None
    overhead = fit.overhead.total + (fit.outside_gib if memory.budget == "freeAfterWarmup" else 0)
    if request.overhead_gib is not None:
        assert fit.overhead.total == pytest.approx(request.overhead_gib + request.headroom_gib)
    else:
        assert fit.overhead.extra == request.headroom_gib
    assert plan.weightsGiB / tp + plan.kvCacheGiB / tp + overhead <= usable + EPSILON_GIB
    # ... exactly, but for a KV correction that keeps part of the budget back.
    correction = request.kv_corrections.get(pool.gpuProduct)
    kv = (usable - fit.weights_gib / tp - overhead) * tp * min(correction or 1.0, 1.0)
    assert fit.kv_cache_gib == pytest.approx(kv)
    assert plan.kvCorrection == (correction if correction is not None and correction < 1 else None)
    # The KV cache really holds the promised sequences of maxModelLen tokens: every token
    # of a full-attention layer, a windowed layer's window plus one batch of new tokens.
    model = request.model
    batch = memory.batch(product=pool.gpuProduct, gpu_gib=pool.memory_gib)
    window = model.attention_window + batch.tokens if model.attention_window else 0
    per_sequence = dataclasses.replace(model, attention_window=window).kv_bytes_per_sequence(
        plan.maxModelLen, 2
    )
    kv_needed = per_sequence * request.concurrency / sizing.GIB
    assert kv_needed <= plan.kvCacheGiB + EPSILON_GIB
    if not model.attention_window:
        full = plan.maxModelLen * request.concurrency * model.kv_bytes_per_token(2) / sizing.GIB
        assert kv_needed == pytest.approx(full)
    # status.plan.memory: one GPU of the same arithmetic, with a margin that is never
    # negative.
    assert plan.memory is not None
    assert plan.memory.gpuGiB == pytest.approx(pool.memory_gib, abs=EPSILON_GIB)
    assert plan.memory.budgetGiB == pytest.approx(usable, abs=EPSILON_GIB)
    assert plan.memory.outsideBudgetGiB == pytest.approx(fit.outside_gib, abs=EPSILON_GIB)
    assert plan.memory.neededKVCacheGiB == pytest.approx(kv_needed / tp, abs=EPSILON_GIB)
    assert plan.memory.marginGiB >= -EPSILON_GIB
    # Weights: the layers at the precision's bytes per parameter plus at most a few % of
    # scales, the embeddings and LM head at 16-bit.
    embeddings = min(model.embedding_parameters, model.parameters)
    layers = (model.parameters - embeddings) * BITS_BYTES[sizing.BITS[plan.quantization]]
    floor = (layers + embeddings * 2.0) / sizing.GIB
    ceiling = (layers * 1.15 + embeddings * 2.0) / sizing.GIB
    assert floor - EPSILON_GIB <= plan.weightsGiB <= ceiling + EPSILON_GIB


@SETTINGS
@hypothesis.given(requests())
def test_tensor_parallel_is_a_valid_degree(request: planner.Request) -> None:
    plan = plan_or_none(request)
    if plan is None:
        return
    tp = plan.tensorParallel
    assert tp >= 1
    assert tp & (tp - 1) == 0, "a power of two"
    assert request.model.attention_heads % tp == 0
    assert request.model.kv_heads % tp == 0
    assert tp <= pool_of(request, plan).gpusPerNode
    assert plan.gpusPerReplica == tp


@SETTINGS
@hypothesis.given(requests())
def test_quantization_is_allowed_by_policy_engine_gpu_and_checkpoint(
    request: planner.Request,
) -> None:
    plan = plan_or_none(request)
    if plan is None:
        return
    pool = pool_of(request, plan)
    q = plan.quantization
    if request.checkpoint != "none":
        assert q == request.checkpoint
    elif request.quantization != "auto":
        assert q == request.quantization
    else:
        assert q in POLICY_ALLOWS[request.optimize]
    assert q in ENGINE_SERVES[request.engine]
    if q == "fp8":
        assert pool.capability >= FP8_MIN_CAPABILITY[request.engine]
    if q in ("awq", "gptq"):
        assert request.checkpoint == q
    # awq/gptq kernels compute in fp16; everything else uses bf16 where the GPU has it.
    bf16 = pool.capability >= 8.0 and q not in ("awq", "gptq")
    assert plan.dtype == ("bfloat16" if bf16 else "float16")


def expected_quantizations(request: planner.Request, pool: pools.Pool) -> set[str]:
    wanted: set[str]
    if request.checkpoint != "none":
        wanted = {request.checkpoint}
    elif request.quantization in ("awq", "gptq"):
        wanted = set()  # needs a pre-quantized checkpoint
    elif request.quantization != "auto":
        wanted = {request.quantization}
    else:
        wanted = set(POLICY_ALLOWS[request.optimize])
    wanted &= ENGINE_SERVES[request.engine]
    if pool.capability < FP8_MIN_CAPABILITY[request.engine]:
        wanted.discard("fp8")
    return wanted


@SETTINGS
@hypothesis.given(requests())
def test_candidate_space_matches_policy_engine_gpu_and_shape(request: planner.Request) -> None:
    for pool in request.pools:
        assert set(planner.quantizations(request, pool)) == expected_quantizations(request, pool)
        assert planner.degrees(request, pool) == [
            tp
            for tp in (1, 2, 4, 8)
            if tp <= pool.gpusPerNode
            and request.model.attention_heads % tp == 0
            and request.model.kv_heads % tp == 0
            and request.tensor_parallel in (None, tp)
        ]


def test_a_free_pool_keeps_the_degree_with_the_most_kv_cache_not_the_largest() -> None:
    # Found by test_plan_is_optimal: on a free pool the pruned search took the largest
    # feasible degree, but two GPUs each hold the TP >= 2 CUDA context and communication
    # buffers, so this small model keeps more KV cache on one L4 than on two.
    model = facts.ModelFacts(
        id="example/small",
        parameters=1e9,
        layers=8,
        hidden_size=512,
        attention_heads=8,
        kv_heads=2,
        head_dim=64,
        max_context=2048,
        source="spec",
        vocab_size=128256,
    )
    free = pools.Pool(name="free", gpuProduct="NVIDIA-L4", gpusPerNode=2, costPerGPUHour=0.0)
    request = planner.Request(
        model=model,
        engine="tgi",
        optimize="cost",
        pools=(free,),
        concurrency=1,
        memory_fraction=0.5,
        scheduled_sequences=1024,
    )
    ours = planner.plan(request)
    assert ours == planner.plan_exhaustive(request)
    assert ours.tensorParallel == 1
    two = planner.plan(dataclasses.replace(request, tensor_parallel=2))
    assert two.kvCacheGiB < ours.kvCacheGiB


@SETTINGS
@hypothesis.given(requests())
def test_plan_is_optimal(request: planner.Request) -> None:
    ours = attempt(planner.plan, request)
    reference = attempt(planner.plan_exhaustive, request)
    best = brute_force(request)
    if isinstance(ours, planner.PlanError):
        assert isinstance(reference, planner.PlanError)
        assert reference.field == ours.field
        assert best is None
        return
    assert reference == ours
    assert best is not None
    cost, precision, negative_kv = best
    assert ours.tensorParallel * pool_of(request, ours).rank_price == pytest.approx(cost)
    assert sizing.PRECISION_ORDER.index(ours.quantization) == precision
    assert ours.kvCacheGiB == pytest.approx(-negative_kv, abs=EPSILON_GIB)


@SETTINGS
@hypothesis.given(requests())
def test_pins_are_honoured_or_refused_naming_what_fits(request: planner.Request) -> None:
    pinned = pinned_fields(request)
    outcome = attempt(planner.plan, request)
    if isinstance(outcome, api.Plan):
        if request.tensor_parallel is not None:
            assert outcome.tensorParallel == request.tensor_parallel
        if request.max_model_len is not None:
            assert outcome.maxModelLen == request.max_model_len
        if request.quantization != "auto":
            assert outcome.quantization == request.quantization
        return

    message = str(outcome)
    asked = request.checkpoint if request.checkpoint != "none" else request.quantization
    if asked != "auto" and not request.profile.serves(asked):
        # Refused for what the engine release lacks, not for memory: the message names
        # the release and what would serve it.
        assert outcome.field in ("spec.placement.quantization", "spec.model.checkpointQuantization")
        assert f"{request.profile.displayName} {request.engine_version} cannot serve" in message
        return
    assert outcome.field in (set(pinned.values()) if pinned else {"spec.placement"})
    unpinned = dataclasses.replace(
        request, tensor_parallel=None, max_model_len=None, quantization="auto"
    )
    if plan_or_none(unpinned) is not None:
        assert "Would fit" in message
    # Blame lands on a pin whose release alone fits, whenever one exists.
    fixes = {
        field
        for attribute, field in pinned.items()
        if plan_or_none(release(request, attribute)) is not None
    }
    if fixes:
        assert outcome.field in fixes
        assert "Would fit" in message


# Independent of the planner's tables: the lowest compute capability each pinned
# quantization runs on, per engine, where some GPU in gpus.KNOWN falls below it (TGI's
# fp8 needs 8.0, so not the T4; the others, vLLM's fp8 included, run on every known
# product, the T4 at 7.5 included).
CAPABILITY_FLOOR = {engine: {"fp8": floor} for engine, floor in FP8_MIN_CAPABILITY.items()}
REFUSAL_REASONS = {
    "NoGPUPools",
    "UnknownPool",
    "QuantizationUnsupported",
    "GPUCapabilityTooLow",
    "HeadsNotDivisible",
    "TooFewGPUsPerNode",
    "ContextTooLong",
    "NoFeasiblePlan",
    "InvalidSpec",
}


def honours_every_pin(request: planner.Request, pool: pools.Pool) -> bool:
    """Whether some candidate on ``pool`` keeps every pin, memory aside."""
    model, tp = request.model, request.tensor_parallel
    asked = request.checkpoint if request.checkpoint != "none" else request.quantization
    if request.checkpoint == "none" and asked in ("awq", "gptq"):
        return False  # a checkpoint format without the checkpoint
    if asked != "auto" and pool.capability < CAPABILITY_FLOOR[request.engine].get(asked, 0.0):
        return False
    if tp is not None and (
        tp > pool.gpusPerNode or model.attention_heads % tp or model.kv_heads % tp
    ):
        return False
    return request.max_model_len is None or request.max_model_len <= model.max_context


@SETTINGS
@hypothesis.given(requests())
def test_memory_is_blamed_exactly_when_a_pool_honours_every_pin(
    request: planner.Request,
) -> None:
    outcome = attempt(planner.plan, request)
    if isinstance(outcome, api.Plan):
        return
    assert outcome.reason in REFUSAL_REASONS
    if outcome.reason == "QuantizationUnsupported":
        return
    hypothesis.event(f"refused: {outcome.reason}")
    honoured = [pool for pool in request.pools if honours_every_pin(request, pool)]
    assert (outcome.reason == "NoFeasiblePlan") == bool(honoured), str(outcome)
    tp, model = request.tensor_parallel, request.model
    match outcome.reason:
        case "HeadsNotDivisible":
            assert tp is not None
            assert model.attention_heads % tp or model.kv_heads % tp
            assert f"{model.attention_heads} attention heads" in str(outcome)
        case "TooFewGPUsPerNode":
            assert tp is not None
            assert any(pool.gpusPerNode < tp for pool in request.pools)
        case "ContextTooLong":
            assert request.max_model_len is not None
            assert request.max_model_len > model.max_context
        case "GPUCapabilityTooLow":
            assert request.quantization == "fp8"
            floor = FP8_MIN_CAPABILITY[request.engine]
            assert any(pool.capability < floor for pool in request.pools)
        case "NoFeasiblePlan":
            assert "GiB" in str(outcome)


@SETTINGS
@hypothesis.given(requests(pins=False))
def test_auto_max_model_len_is_healthy_and_within_the_model(request: planner.Request) -> None:
    plan = plan_or_none(request)
    if plan is None:
        return
    context = request.model.max_context
    assert min(4096, context) <= plan.maxModelLen <= context


# -------------------------------------------------------------------------------- examples


def request_for(
    model_id: str,
    *,
    available: tuple[pools.Pool, ...] | None = None,
    checkpoint: str = "none",
    engine: str = "auto",
    **placement: object,
) -> planner.Request:
    """A request built the way the operator builds one: spec -> catalog -> planner."""
    spec = api.parse_spec(
        {
            "model": {"id": model_id, "checkpointQuantization": checkpoint},
            "engine": engine,
            "placement": placement,
        }
    )
    model = catalog.lookup(model_id)
    assert model is not None
    return planner.request_for(
        spec=spec,
        model=model,
        available=config.default_pools() if available is None else available,
        settings=config.OperatorConfig(),
    )


def pool(name: str, product: str, *, per_node: int = 8, cost: float | None = 1.0) -> pools.Pool:
    return pools.Pool(name=name, gpuProduct=product, gpusPerNode=per_node, costPerGPUHour=cost)


def test_8b_on_quality_is_bf16_on_two_l4s_not_one() -> None:
    """One L4 no longer holds Llama-3.1-8B at bf16 with four 4096-token sequences.

    vLLM sees 21.74 GiB of an L4; at 0.9 the budget is 19.57 GiB, the weights take 14.96
    (embeddings included) and the calibrated overhead 2.94 (0.15 non-torch, 1.51 activation
    peak, 1.28 CUDA graphs): 1.67 GiB of KV cache, four sequences of 3328 tokens. The
    cheapest bf16 plan on the default pools is then 2x L4 ($1.60/h), below one L40S
    ($1.80/h), the cheapest single GPU that fits.
    """
    request = request_for("meta-llama/Llama-3.1-8B-Instruct", optimize="quality")
    plan = planner.plan(request)
    assert (plan.pool, plan.gpusPerReplica, plan.tensorParallel) == ("l4", 2, 2)
    assert plan.quantization == "none"
    assert plan.dtype == "bfloat16"
    assert plan.engine == "vllm"
    (l4,) = [pool for pool in request.pools if pool.name == "l4"]
    one = planner.size(request, l4, 0, "none", 1).fit
    assert not one.feasible
    assert one.max_model_len < 4096
    # On its own, a GPU of 40 GiB or more serves it at bf16 on one GPU.
    for name, product in (("l40s", "NVIDIA-L40S"), ("a100", "NVIDIA-A100-SXM4-80GB")):
        single = planner.plan(
            request_for("meta-llama/Llama-3.1-8B-Instruct", available=(pool(name, product),))
        )
        assert (single.tensorParallel, single.quantization, single.dtype) == (1, "none", "bfloat16")


def test_70b_on_quality_needs_at_least_two_gpus_at_16_bit() -> None:
    plan = planner.plan(request_for("meta-llama/Llama-3.1-70B-Instruct", optimize="quality"))
    assert plan.quantization == "none"
    assert plan.gpusPerReplica >= 2
    assert plan.weightsGiB > 130


def test_70b_on_quality_takes_four_a100s_or_two_at_a_higher_memory_fraction() -> None:
    """facts.md's "FP16 70B needs about 140 GB (2x A100 80GB)" holds only above 0.9.

    At the default gpuMemoryUtilization 0.9 an A100 80GB (79.25 GiB seen) budgets 71.33
    GiB; at TP 2 each GPU holds 65.75 GiB of weights and 5.52 of overhead (0.15 non-torch,
    0.6 communication, 1.57 activation peak, 3.2 CUDA graphs for 80 layers): 0.1 GiB of KV
    cache, where four 4096-token sequences need 2.5 per GPU. So the plan takes 4 GPUs.
    At 0.95 two GPUs leave 8 GiB of KV cache, and the plan is facts.md's 2x A100.
    """
    available = (pool("a100", "NVIDIA-A100-SXM4-80GB", cost=2.2),)
    request = request_for("meta-llama/Llama-3.1-70B", available=available, optimize="quality")
    plan = planner.plan(request)
    assert (plan.pool, plan.tensorParallel, plan.quantization) == ("a100", 4, "none")
    two = planner.size(request, available[0], 0, "none", 2).fit
    assert not two.feasible
    assert two.kv_cache_gib < 4 * 4096 * 320 * 1024 / sizing.GIB
    higher = planner.plan(
        request_for(
            "meta-llama/Llama-3.1-70B",
            available=available,
            optimize="quality",
            gpuMemoryUtilization=0.95,
        )
    )
    assert (higher.tensorParallel, higher.quantization) == (2, "none")
    assert higher.gpuMemoryUtilization == 0.95
    assert higher.maxModelLen >= 4096


@pytest.mark.parametrize(("engine", "floor"), [("vllm", 7.5), ("tgi", 8.0)])
def test_fp8_needs_capability_7_5_on_vllm_and_8_0_on_tgi(engine: str, floor: float) -> None:
    """vLLM serves fp8 weights from 7.5 (Marlin weight-only below 8.9), TGI from 8.0."""
    for gpu in gpus.KNOWN.values():
        available = (pool("only", gpu.product),)
        request = request_for(
            "meta-llama/Llama-3.1-8B", available=available, engine=engine, optimize="balanced"
        )
        allowed = planner.quantizations(request, available[0])
        assert ("fp8" in allowed) == (gpu.compute_capability >= floor), gpu.product
    # On the T4 (7.5) vLLM plans fp8 at fp16 compute; TGI falls back to its int8 path.
    t4 = (pool("t4", "Tesla-T4", cost=0.35),)
    plan = planner.plan(
        request_for(
            "meta-llama/Llama-3.1-8B",
            available=t4,
            engine=engine,
            optimize="balanced",
            concurrentSequences=1,
        )
    )
    expected = (1, "fp8") if floor <= 7.5 else (1, "eetq")
    assert (plan.tensorParallel, plan.quantization) == expected
    assert plan.dtype == "float16"
    # The A100 (8.0) now serves 70B at fp8 on both. Not on one GPU: 68.03 GiB of weights
    # (embeddings at 16-bit) and the overhead do not fit a 71.3 GiB budget, so two.
    a100 = (pool("a100", "NVIDIA-A100-SXM4-80GB", cost=2.2),)
    plan = planner.plan(
        request_for(
            "meta-llama/Llama-3.1-70B",
            available=a100,
            engine=engine,
            optimize="balanced",
            concurrentSequences=1,
        )
    )
    assert (plan.tensorParallel, plan.quantization, plan.dtype) == (2, "fp8", "bfloat16")


def test_405b_at_16_bit_does_not_fit_8_a100s_but_fp8_fits_8_h100s() -> None:
    a100 = (pool("a100", "NVIDIA-A100-SXM4-80GB", cost=2.2),)
    with pytest.raises(planner.PlanError):
        planner.plan(request_for("meta-llama/Llama-3.1-405B", available=a100, optimize="quality"))
    h100 = (pool("h100", "NVIDIA-H100-80GB-HBM3", cost=4.0),)
    plan = planner.plan(
        request_for("meta-llama/Llama-3.1-405B", available=h100, optimize="balanced")
    )
    assert (plan.tensorParallel, plan.quantization) == (8, "fp8")


def test_405b_on_quality_is_infeasible_and_names_a_relaxation() -> None:
    with pytest.raises(planner.PlanError) as error:
        planner.plan(request_for("meta-llama/Llama-3.1-405B-Instruct", optimize="quality"))
    message = str(error.value)
    assert error.value.field == "spec.placement"
    assert "Would fit" in message
    assert "optimize: cost" in message
    assert "Llama-3.1-405B" in message


@pytest.mark.parametrize("optimize", ["quality", "balanced", "cost"])
@pytest.mark.parametrize(
    "model_id",
    ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-2-13b-hf"],
)
@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_t4_plans_use_float16_never_bf16(model_id: str, optimize: str, engine: str) -> None:
    t4 = (pool("t4", "Tesla-T4", cost=0.35),)
    plan = planner.plan(request_for(model_id, available=t4, optimize=optimize, engine=engine))
    assert plan.dtype == "float16"
    # vLLM serves fp8 weights on the T4 (Marlin, 16-bit compute); TGI's fp8 needs 8.0.
    if engine == "tgi":
        assert plan.quantization != "fp8"
    assert "bf16" not in plan.reason
    if plan.quantization == "none":
        assert "fp16" in plan.reason


@pytest.mark.parametrize("optimize", ["quality", "balanced", "cost"])
@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_prequantized_awq_checkpoint_only_plans_awq(optimize: str, engine: str) -> None:
    request = request_for(
        "meta-llama/Llama-3.1-70B-Instruct", checkpoint="awq", optimize=optimize, engine=engine
    )
    assert planner.plan(request).quantization == "awq"
    for candidate in planner.candidates_exhaustive(request):
        assert candidate.quantization == "awq"


def test_awq_pin_without_a_prequantized_checkpoint_is_refused() -> None:
    # The API refuses this spec; a request built around it must not plan awq either.
    model = catalog.lookup("meta-llama/Llama-3.1-8B")
    assert model is not None
    request = planner.Request(
        model=model, engine="vllm", pools=config.default_pools(), quantization="awq"
    )
    with pytest.raises(planner.PlanError) as error:
        planner.plan(request)
    assert error.value.field == "spec.placement.quantization"
    assert "Would fit: quantization: auto" in str(error.value)


def test_blame_goes_to_the_pin_whose_release_fits() -> None:
    # tensorParallel=1 fits; maxModelLen beyond Llama-2's 4096-token context never does.
    request = request_for("meta-llama/Llama-2-7b-hf", tensorParallel=1, maxModelLen=8192)
    with pytest.raises(planner.PlanError) as error:
        planner.plan(request)
    assert error.value.field == "spec.placement.maxModelLen"
    assert "maxModelLen: auto" in str(error.value)


def test_pinned_tensor_parallel_too_small_is_refused_on_that_field() -> None:
    request = request_for("meta-llama/Llama-3.1-70B", optimize="quality", tensorParallel=1)
    with pytest.raises(planner.PlanError) as error:
        planner.plan(request)
    assert error.value.field == "spec.placement.tensorParallel"
    assert "Would fit: tensorParallel: auto" in str(error.value)


@pytest.mark.parametrize("allow", [[], ["no-such-pool"]])
def test_no_pool_is_refused_on_placement_pools(allow: list[str]) -> None:
    available: tuple[pools.Pool, ...] = () if not allow else config.default_pools()
    request = request_for("meta-llama/Llama-3.1-8B", available=available, pools=allow)
    assert request.pools == ()
    with pytest.raises(planner.PlanError) as error:
        planner.plan(request)
    assert error.value.field == "spec.placement.pools"
    with pytest.raises(planner.PlanError):
        planner.plan_exhaustive(request)


@pytest.mark.parametrize(
    ("allow", "expected"), [(["left", "right"], "left"), (["right", "left"], "right")]
)
def test_allow_list_order_is_the_final_tie_break(allow: list[str], expected: str) -> None:
    twins = (pool("left", "NVIDIA-L4", cost=0.8), pool("right", "NVIDIA-L4", cost=0.8))
    request = request_for("meta-llama/Llama-3.1-8B", available=twins, pools=allow)
    assert planner.plan(request).pool == expected
    assert planner.plan_exhaustive(request).pool == expected


def test_free_pool_takes_the_largest_feasible_degree() -> None:
    free = (pool("free", "NVIDIA-H100-80GB-HBM3", cost=0.0),)
    plan = planner.plan(request_for("meta-llama/Llama-3.1-8B", available=free))
    assert plan.tensorParallel == 8  # divides 32 heads and 8 KV heads, fills the node
    assert plan.costPerHour == 0.0
    assert plan == planner.plan_exhaustive(request_for("meta-llama/Llama-3.1-8B", available=free))
    priced = (pool("priced", "NVIDIA-H100-80GB-HBM3", cost=4.0),)
    plan = planner.plan(request_for("meta-llama/Llama-3.1-8B", available=priced))
    assert plan.tensorParallel == 1


def test_free_pool_degree_is_bounded_by_the_heads() -> None:
    # 12 heads: 8 does not divide them, so 4 is the largest degree even on a free pool.
    model = facts.ModelFacts(
        id="example/12-heads",
        parameters=3e9,
        layers=28,
        hidden_size=1536,
        attention_heads=12,
        kv_heads=4,
        head_dim=128,
        max_context=32768,
    )
    free = (pool("free", "NVIDIA-L4", cost=0.0),)
    request = planner.Request(model=model, engine="vllm", pools=free)
    assert planner.plan(request).tensorParallel == 4
    assert planner.plan_exhaustive(request).tensorParallel == 4


def test_reason_names_product_precision_and_price() -> None:
    plan = planner.plan(request_for("meta-llama/Llama-3.1-8B-Instruct", optimize="quality"))
    assert plan.gpuProduct in plan.reason
    assert "bf16" in plan.reason
    assert plan.costPerHour is not None
    assert f"${plan.costPerHour:.2f}/h" in plan.reason


def test_reason_has_no_price_when_the_pool_has_none() -> None:
    unpriced = (pool("h100", "NVIDIA-H100-80GB-HBM3", cost=None),)
    plan = planner.plan(
        request_for("meta-llama/Llama-3.1-70B", available=unpriced, optimize="cost")
    )
    assert plan.costPerHour is None
    assert "$" not in plan.reason
    assert (plan.quantization if plan.quantization != "none" else "bf16") in plan.reason
    assert "NVIDIA-H100-80GB-HBM3" in plan.reason


def test_pinned_max_model_len_is_served_exactly() -> None:
    plan = planner.plan(request_for("meta-llama/Llama-3.1-8B", maxModelLen=16384))
    assert plan.maxModelLen == 16384
    assert plan.maxConcurrentSequences >= 4


def test_auto_context_is_capped_at_the_models_maximum() -> None:
    plan = planner.plan(request_for("meta-llama/Llama-2-7b-chat-hf", optimize="quality"))
    assert plan.maxModelLen == 4096
    assert math.isclose(plan.weightsGiB, 6.74e9 * 2 / sizing.GIB, abs_tol=0.01)
