"""The memory model against real vLLM start-up logs, and against the model it replaced.

For every log in tests/fixtures/engine-memory/vllm-startup-logs.yaml that prints a KV
figure or a refusal for a catalogued Llama model, this sizes the log's configuration
(its GPU, TP degree, quantization, memory fraction and context; vLLM's default batch on
that GPU) with ``sizing.fit`` and prints the KV cache per GPU it plans, the engine's, and
the same figure from the v0.7 model measured in the same run: a flat 1.5 GiB of
overhead, the GPU at nvidia-smi's size, every parameter at the format's bytes
(2 / 1.03 / 0.56). "ours <= engine" is the promise the planner makes: the KV cache in
status.plan is a lower bound of what the engine reports.

Rows marked "old accounting" are logs of vLLM releases that drew the budget differently
(CUDA graphs captured outside it before 0.21, non-torch memory counted from the device
total in 0.5/0.6): shown for reference, not part of the promise.

Also times ``sizing.fit`` against the old formula, since the planner sizes every
candidate with it. Usage: .venv/bin/python benchmarks/bench_memory_model.py
"""

from __future__ import annotations

import pathlib
import sys
import time
from typing import Any

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "operator"))

from llama_operator import api
from llama_operator.planning import catalog, engine_profiles, facts, gpus, sizing

FIXTURE = (
    pathlib.Path(__file__).parents[1]
    / "tests"
    / "fixtures"
    / "engine-memory"
    / "vllm-startup-logs.yaml"
)
OLD_BYTES: dict[str, float] = {"none": 2.0, "fp8": 1.03, "awq": 0.56, "bitsandbytes-nf4": 0.56}
OLD_OVERHEAD_GIB = 1.5
# (log id, catalog id, quantization, GPU product or None, TP, context, sequences,
# accounting the supported releases share)
CASES: list[tuple[str, str, api.Quantization, str | None, int, int, int, bool]] = [
    (
        "llmd-llama31-8b-tp1-h100",
        "meta-llama/Llama-3.1-8B",
        "none",
        "NVIDIA-H100-80GB-HBM3",
        1,
        16000,
        1024,
        True,
    ),
    (
        "llmd-llama33-70b-fp8-tp2-h100",
        "meta-llama/Llama-3.3-70B-Instruct",
        "fp8",
        "NVIDIA-H100-80GB-HBM3",
        2,
        16000,
        1024,
        True,
    ),
    (
        "llmd-llama33-70b-fp8-tp1-h100-refused",
        "meta-llama/Llama-3.3-70B-Instruct",
        "fp8",
        "NVIDIA-H100-80GB-HBM3",
        1,
        16000,
        1024,
        True,
    ),
    (
        "issue10517c-llama31-8b-rtx3090-len20000",
        "meta-llama/Llama-3.1-8B",
        "none",
        None,
        1,
        20000,
        256,
        True,
    ),
    (
        "issue10517c-llama31-8b-rtx3090-len29000-refused",
        "meta-llama/Llama-3.1-8B",
        "none",
        None,
        1,
        29000,
        256,
        True,
    ),
    (
        "issue10517-llama31-70b-tp2-h100-len20000-refused",
        "meta-llama/Llama-3.1-70B",
        "none",
        "NVIDIA-H100-80GB-HBM3",
        2,
        20000,
        256,
        True,
    ),
    (
        "pr10511-meta-llama3-8b-tp1",
        "meta-llama/Meta-Llama-3-8B",
        "none",
        "NVIDIA-H100-80GB-HBM3",
        1,
        8192,
        256,
        False,
    ),
    (
        "issue10702-llama31-70b-tp8-util095",
        "meta-llama/Llama-3.1-70B",
        "none",
        "NVIDIA-H200",
        8,
        131072,
        256,
        False,
    ),
]


def old_kv_per_gpu(
    model: facts.ModelFacts, q: str, label_gib: float, tp: int, fraction: float
) -> float:
    weights = model.parameters * OLD_BYTES[q] / sizing.GIB
    return ((label_gib * fraction - OLD_OVERHEAD_GIB) * tp - weights) / tp


def engine_kv_per_gpu(log: dict[str, Any]) -> str:
    figures = log.get("figures") or {}
    if log["outcome"] == "refused":
        return "refused"
    if "kvCacheGiB" in figures:
        return f"{figures['kvCacheGiB']:.2f}"
    return "?"


def main() -> None:
    logs = {entry["id"]: entry for entry in yaml.safe_load(FIXTURE.read_text())}
    memory = engine_profiles.get("vllm").memory
    print("KV cache per GPU (GiB): ours (v0.8), the engine's log, the v0.7 model (reference)")
    header = f"{'log':48} {'ours':>9} {'engine':>9} {'v0.7':>9}  verdict"
    print(header)
    print("-" * len(header))
    kept = 0
    promised = 0
    for log_id, repo, q, product, tp, length, sequences, supported in CASES:
        log = logs[log_id]
        model = catalog.lookup(repo)
        assert model is not None
        gpu = gpus.KNOWN.get(product or "")
        seen = gpu.memory_gib if gpu else float(log["figures"]["totalGpuMemoryGiB"])
        label = gpu.label_gib if gpu else seen + gpus.LABEL_GAP_GIB
        fraction = float(log.get("gpuMemoryUtilization") or 0.9)
        fit = sizing.fit(
            model=model,
            quantization=q,
            gpu_memory_gib=seen,
            product=product or "",
            tensor_parallel=tp,
            memory_fraction=fraction,
            memory=memory,
            max_model_len=length,
            concurrency=1,
            scheduled_sequences=sequences,
        )
        ours = f"{fit.kv_cache_gib / tp:.2f}" if fit.feasible else "refused"
        old = old_kv_per_gpu(model, q, label, tp, fraction)
        old_fits = old * tp >= length * sizing.kv_gib_per_token(model)
        engine = engine_kv_per_gpu(log)
        if engine == "refused":
            verdict = "refused by both" if not fit.feasible else "OURS STARTS, ENGINE REFUSED"
            good = not fit.feasible
        elif engine == "?":
            verdict = "started"
            good = fit.feasible
        else:
            ratio = fit.kv_cache_gib / tp / float(engine)
            good = fit.feasible and 0.8 <= ratio <= 1.0
            verdict = f"{ratio:.0%} of the engine's"
        if supported:
            promised += 1
            kept += good
        else:
            verdict += " (old accounting)"
        shown_old = f"{old:.2f}" if old_fits else "refused"
        print(f"{log_id:48} {ours:>9} {engine:>9} {shown_old:>9}  {verdict}")
    print(
        f"\npromise kept (planned <= engine, within a fifth; refusals refused): {kept}/{promised}"
    )

    model = catalog.lookup("meta-llama/Llama-3.1-70B")
    assert model is not None
    rounds = 20000
    start = time.perf_counter()
    for _ in range(rounds):
        sizing.fit(
            model=model,
            quantization="fp8",
            gpu_memory_gib=79.18,
            product="NVIDIA-H100-80GB-HBM3",
            tensor_parallel=2,
            memory_fraction=0.9,
            memory=memory,
            max_model_len=None,
            concurrency=4,
        )
    ours_us = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for _ in range(rounds):
        old_kv_per_gpu(model, "fp8", 79.65, 2, 0.9)
    old_us = (time.perf_counter() - start) / rounds * 1e6
    print(
        f"\nsizing one candidate: ours {ours_us:.1f} us, the v0.7 formula {old_us:.2f} us "
        f"(the KV arithmetic alone; ours also sizes the context and the overhead terms)"
    )


if __name__ == "__main__":
    main()
