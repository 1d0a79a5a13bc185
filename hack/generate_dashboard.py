"""Generate the chart's Grafana dashboard JSON from the engine profiles and our metrics.

One source: the engines' metric names come from the engine profiles
(``operator/llama_operator/data/engines.yaml``, read through
``llama_operator.planning.engine_profiles``: every release of vLLM, then TGI, joined with
``or`` so one panel shows either engine), the operator's from
``llama_operator.runtime.operator_metrics``. The chart ships the output,
``charts/llama-operator/files/dashboards/llama-deployments.json``, in a ConfigMap that
Grafana's dashboard sidecar loads (``templates/dashboard.yaml``, ``observability.*``).

Series of the engines carry ``namespace``, ``llama_deployment`` and ``variant`` from the
chart's PodMonitor relabelings; the operator's gauges say ``name`` for the
LlamaDeployment. Output is deterministic; ``--check`` fails with a diff when the file on
disk differs (``make drift``).

Usage: python hack/generate_dashboard.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from llama_operator.planning import engine_profiles

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "charts" / "llama-operator" / "files" / "dashboards" / "llama-deployments.json"
UID = "llama-operator-endpoints"
ENGINES = ("vllm", "tgi")

# The dashboard's variables, as every engine query selects them.
ENGINE_SELECTOR = (
    'namespace=~"$namespace", llama_deployment=~"$llama_deployment", variant=~"$variant"'
)
OPERATOR_SELECTOR = 'namespace=~"$namespace", name=~"$llama_deployment"'
RATE = "[$__rate_interval]"
BY_VARIANT = "namespace, llama_deployment, variant"


def names(signal: engine_profiles.Signal) -> list[str]:
    """Every metric name of ``signal`` over every release of each engine, in order."""
    found: list[str] = []
    for engine in ENGINES:
        for profile in engine_profiles.profiles(engine):
            found.extend(name for name in profile.metrics.get(signal, ()) if name not in found)
    return found


def select(metric: str, selector: str = ENGINE_SELECTOR) -> str:
    return f"{metric}{{{selector}}}"


def any_of(metrics: Sequence[str], selector: str = ENGINE_SELECTOR, window: str = "") -> str:
    """Each metric's series (its rate, with ``window``), joined with ``or``."""
    if window:
        return " or ".join(f"rate({select(m, selector)}{window})" for m in metrics)
    return " or ".join(select(m, selector) for m in metrics)


def rate_sum(by: str, metrics: Sequence[str], selector: str = ENGINE_SELECTOR) -> str:
    return f"sum by ({by}) ({any_of(metrics, selector, RATE)})"


def gauge(by: str, signal: engine_profiles.Signal, how: str = "sum") -> str:
    return f"{how} by ({by}) ({any_of(names(signal))})"


def ours(metric: str, by: str = "namespace, name") -> str:
    """One of the operator's per-endpoint gauges, for the selected endpoints."""
    return f"max by ({by}) ({select(metric, OPERATOR_SELECTOR)})"


def quantile(q: float, signal: engine_profiles.Signal) -> str:
    buckets = [f"{name}_bucket" for name in names(signal)]
    return f"histogram_quantile({q}, {rate_sum(BY_VARIANT + ', le', buckets)})"


def objective(name: str) -> str:
    selector = f'{OPERATOR_SELECTOR}, objective="{name}"'
    return f"max by (namespace, name) ({select('llama_operator_slo_objective', selector)})"


def requests() -> list[str]:
    return names("finished") + names("failed")


def errors_by_kind() -> list[dict[str, str]]:
    """Finished requests that did not end normally, by the engine's own kind label."""
    targets = []
    for engine in ENGINES:
        profile = engine_profiles.profiles(engine)[-1]
        label = profile.outcomes.label
        normal = "|".join([*profile.outcomes.normal, ""])
        failed = profile.metrics.get("failed", ())
        # Only counters that carry the label: TGI's success counter has none.
        metrics = [*failed] if failed else [*profile.metrics.get("finished", ())]
        selector = f'{ENGINE_SELECTOR}, {label}!~"{normal}"'
        legend = f"{{{{llama_deployment}}}}/{{{{variant}}}} {profile.displayName} {{{{{label}}}}}"
        targets.append(target(rate_sum(f"{BY_VARIANT}, {label}", metrics, selector), legend))
    return targets


def tokens_per_second(by: str, selector: str = ENGINE_SELECTOR) -> str:
    return rate_sum(by, names("generatedTokens"), selector)


def cost_per_million_tokens() -> str:
    """The plan's price x ready replicas per hour, over the tokens of that hour (millions)."""
    cost = select("llama_operator_endpoint_cost_per_hour", OPERATOR_SELECTOR)
    per_endpoint = (
        "max by (namespace, llama_deployment) "
        f'(label_replace({cost}, "llama_deployment", "$1", "name", "(.*)"))'
    )
    selector = 'namespace=~"$namespace", llama_deployment=~"$llama_deployment"'
    tokens = tokens_per_second("namespace, llama_deployment", selector)
    return f"{per_endpoint} / on (namespace, llama_deployment) ({tokens} * 3600 / 1e6)"


def target(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legendFormat": legend}


def panel(title: str, unit: str, targets: list[dict[str, str]], description: str) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                **t,
            }
            for index, t in enumerate(targets)
        ],
    }


ENDPOINT = "{{llama_deployment}}/{{variant}}"
OPERATOR_ENDPOINT = "{{namespace}}/{{name}}"


def panels() -> list[dict[str, Any]]:
    found = [
        panel(
            "Requests per second",
            "reqps",
            [target(rate_sum(BY_VARIANT, requests()), ENDPOINT)],
            "Requests finished per second, every outcome, per variant.",
        ),
        panel(
            "End-to-end latency",
            "s",
            [
                *(
                    target(quantile(q, "e2eLatency"), f"{ENDPOINT} p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ),
                target(objective("p95_latency_seconds"), "objective p95 " + OPERATOR_ENDPOINT),
            ],
            "Latency percentiles from the engines' histograms, and spec.slo.maxP95LatencySeconds.",
        ),
        panel(
            "Time to first token",
            "s",
            [
                *(
                    target(quantile(q, "timeToFirstToken"), f"{ENDPOINT} p{round(q * 100)}")
                    for q in (0.5, 0.95)
                ),
                target(
                    objective("p95_time_to_first_token_seconds"),
                    "objective p95 " + OPERATOR_ENDPOINT,
                ),
            ],
            "vLLM's time to first token; TGI has none and shows its queue time instead.",
        ),
        panel(
            "Generated tokens per second",
            "short",
            [
                target(tokens_per_second(BY_VARIANT), ENDPOINT),
                target(objective("min_tokens_per_second"), "floor " + OPERATOR_ENDPOINT),
            ],
            "Tokens the engines generated per second, and spec.slo.minTokensPerSecond.",
        ),
        panel(
            "Errors by kind",
            "reqps",
            errors_by_kind(),
            "Requests that did not finish normally, by the engine's own kind (vLLM "
            "finished_reason, TGI err); which count as server failures: docs/concepts/engines.md.",
        ),
        panel(
            "Queue",
            "short",
            [
                target(
                    gauge(BY_VARIANT, "queue"),
                    f"{ENDPOINT} waiting",
                ),
                target(
                    gauge(BY_VARIANT, "inflight"),
                    f"{ENDPOINT} running",
                ),
            ],
            "Requests waiting for and in the engines' batches.",
        ),
        panel(
            "KV cache use",
            "percentunit",
            [
                target(
                    gauge(BY_VARIANT + ", pod", "kvCache", "max"),
                    "{{pod}}",
                )
            ],
            "Share of each pod's KV cache in use (vLLM; TGI exports none).",
        ),
        panel(
            "Replicas and autoscaler",
            "short",
            [
                target(
                    ours("llama_operator_endpoint_replicas", "namespace, name, state"),
                    OPERATOR_ENDPOINT + " {{state}}",
                ),
                target(
                    ours("llama_operator_autoscaler_desired_replicas"),
                    OPERATOR_ENDPOINT + " autoscaler desired",
                ),
                target(
                    "sum by (direction) "
                    "(increase(llama_operator_autoscaler_scale_events_total[$__rate_interval]))",
                    "scale {{direction}} (all endpoints)",
                ),
            ],
            "The primary's replicas, the built-in autoscaler's last decision, and its scale "
            "events.",
        ),
        panel(
            "Canary weight and rollouts",
            "short",
            [
                target(
                    ours("llama_operator_endpoint_canary_weight"),
                    OPERATOR_ENDPOINT + " canary %",
                ),
                target(
                    "sum by (outcome) (increase(llama_operator_rollouts_total[$__rate_interval]))",
                    "rollouts {{outcome}} (all endpoints)",
                ),
            ],
            "Percent of traffic on the canary while a rollout runs, and rollout transitions.",
        ),
        panel(
            "Fallback and SLO",
            "short",
            [
                target(
                    ours("llama_operator_endpoint_on_fallback"),
                    OPERATOR_ENDPOINT + " on fallback",
                ),
                target(
                    ours("llama_operator_slo_met"),
                    OPERATOR_ENDPOINT + " SLO met",
                ),
            ],
            "1 while the endpoint serves from a fallback model; 1/0 while its SLOMet condition "
            "is True/False.",
        ),
        panel(
            "Cost per million tokens",
            "currencyUSD",
            [target(cost_per_million_tokens(), "{{namespace}}/{{llama_deployment}}")],
            "The plan's GPU price x ready replicas per hour, over the tokens generated in that "
            "hour (millions). Absent without prices in the pool catalogue.",
        ),
        panel(
            "Cost per hour",
            "currencyUSD",
            [
                target(
                    ours("llama_operator_endpoint_cost_per_hour"),
                    OPERATOR_ENDPOINT,
                )
            ],
            "The plan's GPU price x ready replicas.",
        ),
        panel(
            "LoRA adapters",
            "short",
            [
                target(
                    ours("llama_operator_adapter_pods", "namespace, name, adapter, state"),
                    OPERATOR_ENDPOINT + " {{adapter}} {{state}}",
                )
            ],
            "Per adapter, the pods that have it loaded (runtime updates) and the pods where "
            "it had running and waiting requests when last read (vLLM's "
            "vllm:lora_requests_info; no engine counts requests, latency or errors per "
            "adapter). Waiting requests while the GPU slots are taken: raise "
            "spec.adapterUpdates.gpuSlots.",
        ),
    ]
    for index, item in enumerate(found):
        item["id"] = index + 1
        item["gridPos"] = {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)}
    return found


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    # `up` of the serving pods' targets carries the PodMonitor's labels even while an
    # engine exports nothing yet, so the variables list every endpoint being scraped.
    return {
        "uid": UID,
        "title": "LlamaDeployments",
        "description": "Serving endpoints managed by llama-operator: traffic, latency, tokens, "
        "errors, queue, KV cache, replicas, rollouts, fallbacks and cost. Generated by "
        "hack/generate_dashboard.py.",
        "tags": ["llama-operator", "llm"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                variable("namespace", 'label_values(up{llama_deployment!=""}, namespace)'),
                variable(
                    "llama_deployment",
                    'label_values(up{namespace=~"$namespace", llama_deployment!=""}, '
                    "llama_deployment)",
                ),
                variable(
                    "variant",
                    'label_values(up{namespace=~"$namespace", '
                    'llama_deployment=~"$llama_deployment"}, variant)',
                ),
            ]
        },
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                str(OUTPUT.relative_to(ROOT)),
                "generated",
            )
            sys.stdout.writelines(diff)
            print(f"{OUTPUT.relative_to(ROOT)} drifted: run 'make generate'", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
