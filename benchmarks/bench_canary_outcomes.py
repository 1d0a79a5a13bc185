"""Canary outcome benchmark: what the analysis counts as failed, ours against v0.6's rule.

A decision-quality benchmark, deterministic (seeded), about 2 s. Every window is read as
the operator reads a real scrape: Prometheus text in the engines' own shape (vLLM's
``vllm:request_success_total{finished_reason=...}``, TGI's ``tgi_request_success`` and
``tgi_request_failure{err=...}``; label values from the engine profiles, each with its
source in data/engines.yaml) goes through ``engine_metrics.traffic``, two scrapes make an
``canary_analysis.window``, and ``canary_analysis.judge`` gives the verdict at the default threshold
(``maxErrorRate`` 0.02, ``minRequests`` 20).

Ours: the release's server failures count (vLLM ``error``; TGI ``generation``,
``incomplete``), plus any kind the profile does not know. The reference is the rule the
operator had up to v0.6, measured in the same run with the same judge configured to
reproduce it: every vLLM reason but stop, length and abort counted (so ``repetition``),
and every TGI failure counted (``countAsErrors`` set to every other kind the profile
lists, ``abort`` excepted).

Windows of 1,000 finished requests per canary, ``WINDOWS`` per scenario, each request's
outcome drawn from the scenario's shares (``random.Random(SEED)``):

- healthy-overloaded (TGI): 0-8 % answered 429 by our own ``--max-concurrent-requests``
  (``overloaded``), 0-2 % ``validation`` (bad client input), 0-1 % ``dropped`` (the
  client went away), 0.1 % ``generation``: a canary that is fine and busy.
- healthy-repetitive (vLLM): 0-4 % ``repetition`` (vLLM's repetition detector), 0-5 %
  ``abort`` (cancelled by the client), 0.1 % ``error``.
- broken (TGI and vLLM): 3-6 % server failures on top of the healthy mix: a canary that
  must be rolled back.

A false rollback is a Failed verdict on a healthy canary; a miss is a Passed verdict on a
broken one. The closing line says whether ours missed nothing the reference caught and
rolled back no healthy canary.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping

from llama_operator import api
from llama_operator.operations import canary_analysis
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

SEED = 20261206
WINDOWS = 200
REQUESTS = 1000
ANALYSIS = api.Analysis()  # the defaults: maxErrorRate 0.02, minRequests 20


def page(engine: api.Engine, counts: Mapping[str, int]) -> str:
    """A /metrics page with these cumulative outcome counts, in the engine's own shape."""
    if engine == "vllm":
        lines = ["# TYPE vllm:request_success_total counter"]
        lines += [
            f'vllm:request_success_total{{engine="0",finished_reason="{kind}",'
            f'model_name="m"}} {count}'
            for kind, count in counts.items()
        ]
        return "\n".join(lines) + "\n"
    success = counts.get("success", 0)
    lines = ["# TYPE tgi_request_success counter", f"tgi_request_success {success}"]
    failures = {kind: count for kind, count in counts.items() if kind != "success"}
    if failures:
        lines.append("# TYPE tgi_request_failure counter")
        lines += [f'tgi_request_failure{{err="{k}"}} {v}' for k, v in failures.items()]
    return "\n".join(lines) + "\n"


def draw(rng: random.Random, shares: Mapping[str, float], normal: str) -> dict[str, int]:
    """``REQUESTS`` outcomes: each kind at its share, the rest ``normal``."""
    counts = dict.fromkeys(shares, 0)
    counts[normal] = 0
    for _ in range(REQUESTS):
        roll, edge = rng.random(), 0.0
        for kind, share in shares.items():
            edge += share
            if roll < edge:
                counts[kind] += 1
                break
        else:
            counts[normal] += 1
    return counts


def verdict(engine: api.Engine, counts: Mapping[str, int], rule: api.Analysis) -> str:
    before = engine_metrics.traffic(page(engine, dict.fromkeys(counts, 0)), engine=engine)
    after = engine_metrics.traffic(page(engine, counts), engine=engine)
    assert before is not None
    assert after is not None
    window = canary_analysis.window({"pod": before}, {"pod": after})
    judged = canary_analysis.judge(
        canary=window,
        stable=None,
        analysis=rule,
        outcomes=engine_profiles.get(engine).outcomes,
    )
    return judged.result


def reference_rule(engine: api.Engine) -> api.Analysis:
    """v0.6: every non-normal outcome but vLLM's abort was a failure."""
    other = [kind for kind in engine_profiles.get(engine).outcomes.other if kind != "abort"]
    return ANALYSIS.model_copy(update={"countAsErrors": other})


SCENARIOS: list[tuple[str, api.Engine, bool, dict[str, tuple[float, float]], str]] = [
    (
        "healthy-overloaded",
        "tgi",
        True,
        {
            "overloaded": (0.0, 0.08),
            "validation": (0.0, 0.02),
            "dropped": (0.0, 0.01),
            "generation": (0.001, 0.001),
        },
        "success",
    ),
    (
        "healthy-repetitive",
        "vllm",
        True,
        {"repetition": (0.0, 0.04), "abort": (0.0, 0.05), "error": (0.001, 0.001)},
        "stop",
    ),
    (
        "broken-tgi",
        "tgi",
        False,
        {
            "generation": (0.02, 0.04),
            "incomplete": (0.01, 0.02),
            "overloaded": (0.0, 0.08),
            "validation": (0.0, 0.02),
        },
        "success",
    ),
    (
        "broken-vllm",
        "vllm",
        False,
        {"error": (0.03, 0.06), "repetition": (0.0, 0.04), "abort": (0.0, 0.05)},
        "stop",
    ),
]


def main() -> int:
    rng = random.Random(SEED)
    print(
        f"canary verdicts over {WINDOWS} windows of {REQUESTS} requests each, "
        f"maxErrorRate {ANALYSIS.maxErrorRate:g}"
    )
    header = (
        f"{'scenario':20} {'engine':6} {'canary':8} {'ours: wrong':>12} {'v0.6 rule: wrong':>17}"
    )
    print(header)
    print("-" * len(header))
    ours_worse = False
    healthy_rolled_back = 0
    for name, engine, healthy, ranges, normal in SCENARIOS:
        wrong_ours = wrong_reference = 0
        for _ in range(WINDOWS):
            shares = {kind: rng.uniform(low, high) for kind, (low, high) in ranges.items()}
            counts = draw(rng, shares, normal)
            bad = "Failed" if healthy else "Passed"
            wrong_ours += verdict(engine, counts, ANALYSIS) == bad
            wrong_reference += verdict(engine, counts, reference_rule(engine)) == bad
        kind = "healthy" if healthy else "broken"
        what = "rolled back" if healthy else "passed"
        print(
            f"{name:20} {engine:6} {kind:8} {wrong_ours:>4} {what:>7} "
            f"{wrong_reference:>9} {what:>7}"
        )
        if healthy:
            healthy_rolled_back += wrong_ours
        else:
            ours_worse |= wrong_ours > wrong_reference
    ok = not ours_worse and healthy_rolled_back == 0
    print(
        "ours: no healthy canary rolled back and no broken one passed that the v0.6 rule "
        f"caught: {'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
