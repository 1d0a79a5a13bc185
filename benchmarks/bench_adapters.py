"""Adapter benchmark: what LoRA adapters cost the plan phase, and what they cost the plan.

Setup. One spec (``meta-llama/Llama-3.1-8B-Instruct`` on the bundled pools, the planner
choosing everything) with 0, 1, 4, 8, 16 and 32 adapters in ``spec.adapters``, each with
``rank`` and ``targetModules`` in the spec (rank 16 on q/k/v/o, rank 64 on every linear
module for every fourth one), so no Hub is asked. For each count, in this one process:

- ours: ``reconcile.desired`` (what the operator's plan phase and ``llama-operator render``
  run: spec parse, the adapter decisions of ``operations.adapters``, the planner with the
  servable adapters, the children), timed over ``REPEATS`` calls, median and p90;
- the reference, the same minute: ``planner.plan`` alone on the same request **without**
  adapters, i.e. the planning the spec would cost if it had none, and ``reconcile.desired``
  with ``spec.adapters`` removed.

The same counts again with ``spec.adapterUpdates.mode: Runtime`` (``maxRank: 64``, the
default four GPU slots): the slots come from the spec, so the plan's memory must not move
with the count, while the time still grows with the adapters decided.

What the plan says is printed beside the time: the pool and degree chosen, the overhead
per GPU (which includes the LoRA memory) and the KV-cache tokens per replica, so the
cost of adapters in GPU memory is seen next to the cost in CPU time.

How to read it. Times are this machine's (2 shared cores here) and are not asserted; the
ratio to the reference in the same run is the portable number. The plan figures are
deterministic.

Run: ``.venv/bin/python benchmarks/bench_adapters.py`` (a few seconds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from llama_operator import api, reconcile
from llama_operator.planning import catalog, config, planner

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
COUNTS = (0, 1, 4, 8, 16, 32)
REPEATS = 30
ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapters(count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"a{index}",
            "id": f"example-org/adapter-{index}",
            "rank": 64 if index % 4 == 3 else 16,
            "targetModules": ALL_MODULES if index % 4 == 3 else ALL_MODULES[:4],
        }
        for index in range(count)
    ]


def spec(count: int, *, runtime: bool = False) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": {"id": MODEL},
        "license": {"accept": True},
        "adapters": adapters(count),
    }
    if runtime:
        raw["adapterUpdates"] = {"mode": "Runtime", "maxRank": 64}
        raw["auth"] = {"apiKeySecretRef": {"name": "chat-api-key"}}
    return raw


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Median and p90 of ``REPEATS`` calls, in milliseconds (one warm-up call first)."""
    call()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main() -> None:
    settings = config.OperatorConfig()
    pools = config.default_pools()

    def desired(raw: dict[str, Any]) -> reconcile.Desired:
        return reconcile.desired(
            name="chat",
            namespace="ai",
            uid="00000000-0000-4000-8000-000000000000",
            raw_spec=raw,
            settings=settings,
            available=pools,
            fetch=None,
        )

    model = catalog.lookup(MODEL)
    assert model is not None
    bare = planner.request_for(
        spec=api.parse_spec(spec(0)), model=model, available=pools, settings=settings
    )
    ref_plan = timed(lambda: planner.plan(bare))
    ref_desired = timed(lambda: desired(spec(0)))
    print(
        f"reference (no adapters): planner.plan {ref_plan[0]:.2f} ms (p90 {ref_plan[1]:.2f}), "
        f"reconcile.desired {ref_desired[0]:.2f} ms (p90 {ref_desired[1]:.2f})"
    )
    header = (
        f"{'adapters':>8} {'served':>6} {'desired ms':>10} {'p90':>7} {'x ref':>6} "
        f"{'pool':>8} {'tp':>3} {'overhead GiB':>12} {'KV tokens':>10}"
    )
    for runtime in (False, True):
        print("adapters in the pod template (mode Rollout)" if not runtime else "")
        if runtime:
            print("slots for adapters loaded at runtime (mode Runtime, 4 x rank 64)")
        print(header)
        table(desired, ref_desired[0], runtime=runtime)


def table(
    desired: Callable[[dict[str, Any]], reconcile.Desired], reference: float, *, runtime: bool
) -> None:
    for count in COUNTS:
        raw = spec(count, runtime=runtime)
        wanted = desired(raw)
        median, p90 = timed(lambda raw=raw: desired(raw))
        plan = wanted.plan
        memory = plan.memory
        overhead = f"{memory.overheadGiB:.2f}" if memory is not None else "-"
        print(
            f"{count:>8} {len(wanted.adapter_decisions.servable):>6} {median:>10.2f} "
            f"{p90:>7.2f} {median / reference:>6.2f} {plan.pool:>8} "
            f"{plan.tensorParallel:>3} {overhead:>12} {plan.kvCacheTokens or 0:>10}"
        )


if __name__ == "__main__":
    main()
