"""Observed-capacity benchmark: planned vs observed KV tokens on fake engines, and the
cost of reading them, each beside a reference measured in the same run.

1. Planned vs observed. Each row is planned by the real planner (the bundled pools,
   placement pinned to one pool), then served by a fake vLLM 0.34.0 pod
   (``tests/podserver.py``, 127.0.0.1) whose ``vllm:cache_config_info`` reports the
   row's blocks of 64 tokens, read back by the operator's own reader
   (``autoscaling_loop.capacity_per_pod``: ``capacity.due``, one HTTP GET, ``capacity.parse``).
   ``capacity.observe`` and ``capacity.condition`` give the verdict and the correction;
   the correction goes back into the planner (``planner.Request.kv_corrections``, by
   GPU product) and the next plan's promise is shown beside what the engine gave.
   Rows:

   - ``real``: Llama 3.1 8B on 1x L40S, 16-bit, maxModelLen 32768, fraction 0.9. vLLM
     logged "GPU KV cache size: 158,656 tokens" for it (vllm-project/vllm pull request
     17122, ``pr17122-llama31-8b-l40s`` in tests/fixtures/engine-memory/
     vllm-startup-logs.yaml); the pod reports 2479 blocks of 64 (158,656 tokens).
   - ``modelled``: plans of the bundled pools as the planner makes them, each pod
     reporting the plan's own figure times an ASSUMED factor, not a measurement: 1.04
     (the engine gives more than the plan's lower bound), 0.99 (inside the 2 %
     tolerance), 0.93 (the 4-8 % over-promise issue 16 measured at TP >= 2 before the
     memory model was calibrated) and 0.45 (something else holds the GPU: too far below
     to be the memory model's error, so not recorded).

   The reference is the plan itself: planned tokens, the verdict the operator reached,
   and whether the next plan promises no more than the engine gave.

2. Parse cost per page: ``capacity.parse`` (the lines of one family, then
   prometheus_client's parser) against the reference a naive reader would use,
   ``prometheus_client.parser.text_string_to_metric_families`` over the whole page,
   best of ROUNDS rounds of PARSES parses, on the fixture page (vLLM 0.34.0's shape) and
   on the padded page of ``bench_scaler_loop.py`` (the fixture plus synthetic histograms,
   an ASSUMED size of a real page, about 36 KB).

3. Reading cost per reconcile with READ_PODS ready pods: ``capacity_per_pod`` when the
   set of ready pods changed (one GET per pod) against the same call once they were read
   (``capacity.due`` says no: no request at all), requests counted on the fake pods.

No wall time is asserted. Exits 1 only if the loop is broken: a pod's figure is not read
back exactly, a verdict is not the one its factor implies, a correction is not recorded
(or recorded when it must not be), the next plan does not carry it, or a reading that is
not due makes a request.

Run: ``.venv/bin/python benchmarks/bench_observed_capacity.py`` (about 10 s).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import string
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# tests/ (podserver) and tests/contract/ (kube, which bench_scaler_loop imports).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "contract"))

from prometheus_client.parser import text_string_to_metric_families

import bench_scaler_loop
import podserver
from llama_operator import api
from llama_operator.operations import capacity
from llama_operator.planning import catalog, config, planner
from llama_operator.runtime import autoscaling_loop

ROUNDS = 5
PARSES = 200
READ_PODS = 20
NOW = "2026-01-01T00:00:00Z"
MODEL_8B = "meta-llama/Llama-3.1-8B-Instruct"


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    source: str  # "real" (a logged figure) or "modelled" (an assumed factor)
    spec: dict[str, Any]
    tokens: Callable[[api.Plan], int]  # what the engine allocates, given the plan
    factor: float | None = None  # the assumed factor, for modelled rows


def pinned(model: str, pool: str, **placement: Any) -> dict[str, Any]:
    return {"model": {"id": model}, "placement": {"pools": [pool], **placement}}


def modelled(label: str, spec: dict[str, Any], factor: float) -> Row:
    def tokens(plan: api.Plan) -> int:
        return int((plan.kvCacheTokens or 0) * factor)

    return Row(label, "modelled", spec, tokens, factor)


ROWS = (
    Row(
        "8B bf16 L40S 32k",
        "real",
        pinned(
            MODEL_8B,
            "l40s",
            quantization="none",
            tensorParallel=1,
            maxModelLen=32768,
            gpuMemoryUtilization=0.9,
        ),
        lambda plan: 158_656,
    ),
    modelled("8B on L4", pinned(MODEL_8B, "l4"), 1.04),
    modelled("8B on A10G", pinned(MODEL_8B, "a10g"), 0.99),
    modelled("70B on H100", pinned("meta-llama/Llama-3.1-70B-Instruct", "h100"), 0.93),
    modelled("3B on L4", pinned("meta-llama/Llama-3.2-3B-Instruct", "l4"), 0.45),
)


def request(spec: Mapping[str, Any]) -> planner.Request:
    parsed = api.parse_spec(dict(spec))
    model = catalog.lookup(parsed.model.id)
    assert model is not None, parsed.model.id
    settings = config.OperatorConfig()
    return planner.request_for(
        spec=parsed, model=model, available=config.default_pools(), settings=settings
    )


@contextlib.contextmanager
def pods(count: int) -> Iterator[list[podserver.FakePod]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(podserver.FakePod()) for _ in range(count)]


def slices(served: list[podserver.FakePod], name: str) -> list[dict[str, Any]]:
    """EndpointSlice-shaped dicts (the llama_endpointslices index) of ready pods."""
    return [
        {
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": pod.port}],
            "endpoints": [
                {
                    "addresses": ["127.0.0.1"],
                    "conditions": {"ready": True},
                    "targetRef": {"name": f"{name}-primary-{index}"},
                }
            ],
        }
        for index, pod in enumerate(served)
    ]


def planned_vs_observed() -> list[str]:
    """Part 1; the failures found."""
    failures: list[str] = []
    print("1. Planned vs observed KV tokens per replica (fake vLLM 0.34.0 pods)\n")
    header = (
        f"{'row':<18} {'source':<9} {'factor':>6} {'planned':>9} {'observed':>9} "
        f"{'ratio':>6} {'verdict':<15} {'correction':>10} {'next plan':>9} {'next<=obs':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in ROWS:
        base = request(row.spec)
        plan = planner.plan(base)
        if plan.kvCacheTokens is None:
            failures.append(f"{row.label}: the planner gives no kvCacheTokens")
            continue
        allocated = row.tokens(plan)
        with pods(1) as (pod,):
            pod.max_model_len = plan.maxModelLen
            # Whole blocks, and a max_model_len the blocks divide, so the page's
            # kv_cache_size_tokens is exactly the row's figure rounded down to a block.
            pod.num_gpu_blocks = allocated // podserver.VLLM_BLOCK_SIZE
            expected, _ = podserver.vllm_kv_tokens(pod.num_gpu_blocks, pod.max_model_len)
            readings = autoscaling_loop.capacity_per_pod(slices([pod], "bench"), plan=plan)
        if readings is None or len(readings) != 1:
            failures.append(f"{row.label}: the pod was not read ({readings})")
            continue
        observed = capacity.observe(readings, plan=plan, now=NOW)
        if observed.kvCacheTokens != expected:
            failures.append(f"{row.label}: read {observed.kvCacheTokens}, served {expected}")
        with_observation = plan.model_copy(update={"observed": observed})
        check = capacity.condition(with_observation, not_recorded=None)
        verdict = f"{check.status} {check.reason}" if check is not None else "-"
        record = capacity.correction(with_observation, model=row.spec["model"]["id"], source="b")
        ratio = (observed.kvCacheTokens or 0) / plan.kvCacheTokens
        wanted_verdict = "True" if ratio >= 1 - capacity.TOLERANCE else "False"
        if check is None or check.status != wanted_verdict:
            failures.append(f"{row.label}: verdict {verdict}, expected {wanted_verdict}")
        wants_record = capacity.MIN_CORRECTION <= ratio < 1 - capacity.TOLERANCE
        if (record is not None) != wants_record:
            failures.append(f"{row.label}: correction {record}, expected one: {wants_record}")
        next_tokens, next_ok = "-", "-"
        if record is not None:
            found = capacity.records({record.key: record.value()})
            ratios = capacity.ratios(
                found,
                model=record.model,
                engine=plan.engine,
                version=base.engine_version,
                gpu_products=[p.gpuProduct for p in base.pools],
            )
            again = planner.plan(dataclasses.replace(base, kv_corrections=ratios))
            if again.kvCorrection != record.ratio:
                failures.append(f"{row.label}: next plan carries {again.kvCorrection}")
            next_tokens = f"{again.kvCacheTokens:,}" if again.kvCacheTokens else "-"
            next_ok = "yes" if (again.kvCacheTokens or 0) <= (observed.kvCacheTokens or 0) else "NO"
        factor = f"{row.factor:.2f}" if row.factor is not None else "-"
        print(
            f"{row.label:<18} {row.source:<9} {factor:>6} {plan.kvCacheTokens:>9,} "
            f"{observed.kvCacheTokens or 0:>9,} {ratio:>6.3f} {verdict:<15} "
            f"{record.ratio if record else '-':>10} {next_tokens:>9} {next_ok:>9}"
        )
    print(
        "\nplanned: the plan's kvCacheTokens; observed: the pod's kv_cache_size_tokens, read "
        "over HTTP;\nnext plan: the same request planned with the recorded correction for "
        "its GPU product.\n"
    )
    return failures


def best(action: Callable[[], object], repeats: int) -> float:
    """Seconds per call: the best of ROUNDS rounds of ``repeats`` calls."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeats):
            action()
        times.append((time.perf_counter() - started) / repeats)
    return min(times)


def parse_cost() -> list[str]:
    """Part 2; the failures found."""
    failures: list[str] = []
    print(f"2. Parse cost per page (best of {ROUNDS} rounds of {PARSES})\n")
    pod = podserver.FakePod()
    fixture = pod.text()
    pod.template = string.Template(
        bench_scaler_loop.padded_template(
            (podserver.FIXTURES / "vllm.prom").read_text(encoding="utf-8")
        )
    )
    padded = pod.text()
    print(f"{'page':<8} {'size':>8} {'capacity.parse':>15} {'full parse':>12} {'ratio':>7}")
    for label, text in (("fixture", fixture), ("padded", padded)):
        found = capacity.parse(text, engine="vllm", version="0.34.0")
        if (
            found is None
            or found.tokens != podserver.vllm_kv_tokens(pod.num_gpu_blocks, pod.max_model_len)[0]
        ):
            failures.append(f"{label}: parsed {found}")
        ours = best(lambda page=text: capacity.parse(page, engine="vllm"), PARSES)

        def reference(page: str = text) -> object:
            families = text_string_to_metric_families(page)
            return [f for f in families if f.name == "vllm:cache_config_info"]

        full = best(reference, PARSES)
        print(
            f"{label:<8} {len(text) / 1024:>6.1f}KB {ours * 1e6:>13.0f}us {full * 1e6:>10.0f}us "
            f"{full / ours:>6.1f}x"
        )
    print(
        "\nfull parse: prometheus_client's text_string_to_metric_families over the whole "
        "page, keeping the one family.\n"
    )
    return failures


def read_cost() -> list[str]:
    """Part 3; the failures found."""
    failures: list[str] = []
    print(f"3. Reading {READ_PODS} ready pods in one reconcile\n")
    plan = planner.plan(request(pinned(MODEL_8B, "l4")))
    with pods(READ_PODS) as served:
        for pod in served:
            pod.max_model_len = plan.maxModelLen
        ready = slices(served, "bench")
        before = sum(p.scrapes for p in served)
        started = time.perf_counter()
        readings = autoscaling_loop.capacity_per_pod(ready, plan=plan)
        due_seconds = time.perf_counter() - started
        due_requests = sum(p.scrapes for p in served) - before
        if readings is None or len(readings) != READ_PODS:
            failures.append(f"due: read {0 if readings is None else len(readings)} pods")
            return failures
        kept = plan.model_copy(update={"observed": capacity.observe(readings, plan=plan, now=NOW)})
        before = sum(p.scrapes for p in served)
        started = time.perf_counter()
        skipped = autoscaling_loop.capacity_per_pod(ready, plan=kept)
        skip_seconds = time.perf_counter() - started
        skip_requests = sum(p.scrapes for p in served) - before
    if skipped is not None or skip_requests:
        failures.append(f"not due: {skip_requests} requests, {skipped}")
    print(f"{'case':<34} {'requests':>8} {'wall':>10}")
    print(f"{'new set of ready pods (due)':<34} {due_requests:>8} {due_seconds * 1e3:>8.1f}ms")
    print(f"{'same pods again (not due)':<34} {skip_requests:>8} {skip_seconds * 1e3:>8.3f}ms")
    print(
        "\nAn engine sizes its KV cache once: a steady endpoint is read once per set of ready "
        "pods,\nnot on every reconcile.\n"
    )
    return failures


def main() -> int:
    failures = planned_vs_observed() + parse_cost() + read_cost()
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
