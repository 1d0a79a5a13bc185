"""promtool unit-test cases of the chart's alerts: synthetic series, and what must fire.

Each alert has at least one case where it fires and one where it does not; an alert of
the chart without both fails ``test_every_alert_has_cases``. The engine series are
labelled as the chart's PodMonitor labels them (namespace, llama_deployment, variant, pod)
and named as the engine profiles name them (operator/llama_operator/data/engines.yaml):
vLLM 0.34.0's ``vllm:*`` families and TGI v3.3.7's ``tgi_*``, so each SLO alert is shown
to work for both engines. Thresholds are the chart's defaults (window 5m, for 10m, ...).
The series notation is promtool's: ``a+bxN`` is a, a+b, ... N+1 samples, one a minute.
"""

from __future__ import annotations

import dataclasses

NS = 'namespace="ai"'
POD = f'{NS}, llama_deployment="chat", variant="primary", pod="chat-primary-0"'
VLLM = f'{POD}, engine="0", model_name="meta-llama/Llama-3.1-8B-Instruct"'
ENDPOINT = {"namespace": "ai", "llama_deployment": "chat"}
OPERATOR_ENDPOINT = {"namespace": "ai", "name": "chat"}
OPERATOR_NS = 'namespace="llama-operator"'


def objective(name: str, value: float) -> dict[str, str]:
    key = f'llama_operator_slo_objective{{{NS}, name="chat", objective="{name}"}}'
    return {key: f"{value}x200"}


def histogram(family: str, labels: str, bounds: dict[str, str]) -> dict[str, str]:
    """Bucket series of one histogram: le -> values."""
    return {f'{family}_bucket{{{labels}, le="{le}"}}': values for le, values in bounds.items()}


@dataclasses.dataclass(frozen=True)
class Case:
    alert: str
    shows: str
    series: dict[str, str]
    eval_time: str
    # (labels of the alert, its value), severity and the chart's ruleLabels left out;
    # empty: the alert must not fire.
    fires: tuple[tuple[dict[str, str], float], ...] = ()


# 10 requests/s, all between 2.5 s and 5 s: p95 = 2.5 + 0.95 x 2.5 = 4.875 s.
SLOW_VLLM = histogram(
    "vllm:e2e_request_latency_seconds",
    VLLM,
    {"2.5": "0x30", "5.0": "0+600x30", "+Inf": "0+600x30"},
)
# TGI v3.3.7's duration buckets (0.0001 s x 1.5 per bucket, router/src/server.rs; as
# tests/podserver.py computes them) around there: 3.79 s and 5.68 s.
TGI_LOW, TGI_HIGH = "3.787675244106352", "5.681512866159528"
SLOW_TGI = histogram(
    "tgi_request_duration",
    POD,
    {TGI_LOW: "0x30", TGI_HIGH: "0+600x30", "+Inf": "0+600x30"},
)
# 10 requests/s between 0.5 s and 1 s to the first token: p95 0.975 s.
SLOW_FIRST_TOKEN = histogram(
    "vllm:time_to_first_token_seconds",
    VLLM,
    {"0.5": "0x30", "1.0": "0+600x30", "+Inf": "0+600x30"},
)
SLOW_TGI_QUEUE = histogram(
    "tgi_request_queue_duration",
    POD,
    {"0.5": "0x30", "1.0": "0+600x30", "+Inf": "0+600x30"},
)


def vllm_requests(stop: str, error: str) -> dict[str, str]:
    return {
        f'vllm:request_success_total{{{VLLM}, finished_reason="stop"}}': stop,
        f'vllm:request_success_total{{{VLLM}, finished_reason="error"}}': error,
        f'vllm:request_success_total{{{VLLM}, finished_reason="abort"}}': "0x200",
    }


MANAGED_PRIMARY = {
    "kube_pod_labels{"
    f'{NS}, pod="chat-primary-0", uid="u1", '
    'label_app_kubernetes_io_managed_by="llama-operator", '
    'label_llamaops_dev_deployment="chat", label_llamaops_dev_variant="primary"}': "1x30"
}
MANAGED_FALLBACK = {
    "kube_pod_labels{"
    f'{NS}, pod="chat-fallback-0-x", uid="u2", '
    'label_app_kubernetes_io_managed_by="llama-operator", '
    'label_llamaops_dev_fallback_of="chat", label_llamaops_dev_variant="fallback-0"}': "1x30"
}
UNMANAGED = {f'kube_pod_labels{{{NS}, pod="chat-primary-0", uid="u1", label_app="other"}}': "1x30"}
OOM = {
    f'kube_pod_container_status_restarts_total{{{NS}, pod="chat-primary-0", '
    'container="engine"}': "0 0 0 0 0 1 1 1 1",
    f'kube_pod_container_status_last_terminated_reason{{{NS}, pod="chat-primary-0", '
    'container="engine", reason="OOMKilled"}': "1x8",
}
CRASH_LOOP = {
    f'kube_pod_container_status_waiting_reason{{{NS}, pod="chat-fallback-0-x", '
    'container="engine", reason="CrashLoopBackOff"}': "1x30"
}
ENGINE_POD = {"container": "engine"}

CASES: tuple[Case, ...] = (
    Case(
        "LlamaDeploymentLatencyHigh",
        "vLLM p95 4.875 s over a 2 s objective",
        {**SLOW_VLLM, **objective("p95_latency_seconds", 2)},
        "20m",
        ((ENDPOINT, 4.875),),
    ),
    Case(
        "LlamaDeploymentLatencyHigh",
        "TGI p95 between its 3.79 s and 5.68 s buckets, over a 2 s objective",
        {**SLOW_TGI, **objective("p95_latency_seconds", 2)},
        "20m",
        ((ENDPOINT, float(TGI_LOW) + 0.95 * (float(TGI_HIGH) - float(TGI_LOW))),),
    ),
    Case(
        "LlamaDeploymentLatencyHigh",
        "p95 4.875 s within a 5 s objective",
        {**SLOW_VLLM, **objective("p95_latency_seconds", 5)},
        "20m",
    ),
    Case(
        "LlamaDeploymentLatencyHigh",
        "no objective: no SLO",
        SLOW_VLLM,
        "20m",
    ),
    Case(
        "LlamaDeploymentTimeToFirstTokenHigh",
        "vLLM p95 TTFT 0.975 s over 0.5 s",
        {**SLOW_FIRST_TOKEN, **objective("p95_time_to_first_token_seconds", 0.5)},
        "20m",
        ((ENDPOINT, 0.975),),
    ),
    Case(
        "LlamaDeploymentTimeToFirstTokenHigh",
        "TGI p95 queue time 0.975 s over 0.5 s",
        {**SLOW_TGI_QUEUE, **objective("p95_time_to_first_token_seconds", 0.5)},
        "20m",
        ((ENDPOINT, 0.975),),
    ),
    Case(
        "LlamaDeploymentTimeToFirstTokenHigh",
        "p95 TTFT 0.975 s within 1 s",
        {**SLOW_FIRST_TOKEN, **objective("p95_time_to_first_token_seconds", 1)},
        "20m",
    ),
    Case(
        "LlamaDeploymentErrorRateHigh",
        "vLLM: 10 % of requests end in error, objective 1 %",
        {**vllm_requests("0+540x30", "0+60x30"), **objective("error_rate", 0.01)},
        "20m",
        ((ENDPOINT, 0.1),),
    ),
    Case(
        "LlamaDeploymentErrorRateHigh",
        "TGI: 10 % generation failures, objective 1 %",
        {
            f"tgi_request_success{{{POD}}}": "0+540x30",
            f'tgi_request_failure{{{POD}, err="generation"}}': "0+60x30",
            **objective("error_rate", 0.01),
        },
        "20m",
        ((ENDPOINT, 0.1),),
    ),
    Case(
        "LlamaDeploymentErrorRateHigh",
        "TGI: 10 % validation errors are the clients', not the endpoint's",
        {
            f"tgi_request_success{{{POD}}}": "0+540x30",
            f'tgi_request_failure{{{POD}, err="validation"}}': "0+60x30",
            **objective("error_rate", 0.01),
        },
        "20m",
    ),
    Case(
        "LlamaDeploymentErrorRateHigh",
        "vLLM: 0.5 % errors within 1 %",
        {**vllm_requests("0+597x30", "0+3x30"), **objective("error_rate", 0.01)},
        "20m",
    ),
    Case(
        "LlamaDeploymentErrorBudgetBurnFast",
        "half the requests fail for 2 h: 50 x the 1 % budget",
        {**vllm_requests("0+300x150", "0+300x150"), **objective("error_rate", 0.01)},
        "120m",
        ((ENDPOINT, 0.5),),
    ),
    Case(
        "LlamaDeploymentErrorBudgetBurnFast",
        "10 % fail: 10 x the budget, under 14.4",
        {**vllm_requests("0+540x150", "0+60x150"), **objective("error_rate", 0.01)},
        "120m",
    ),
    Case(
        "LlamaDeploymentErrorBudgetBurnSlow",
        "10 % fail for 2 h: 10 x the 1 % budget, over 6",
        {**vllm_requests("0+540x150", "0+60x150"), **objective("error_rate", 0.01)},
        "120m",
        ((ENDPOINT, 0.1),),
    ),
    Case(
        "LlamaDeploymentErrorBudgetBurnSlow",
        "5 % fail: 5 x the budget, under 6",
        {**vllm_requests("0+570x150", "0+30x150"), **objective("error_rate", 0.01)},
        "120m",
    ),
    Case(
        "LlamaDeploymentThroughputLow",
        "vLLM: 50 tokens/s while serving, floor 100",
        {
            f"vllm:generation_tokens_total{{{VLLM}}}": "0+3000x30",
            **vllm_requests("0+60x30", "0x30"),
            **objective("min_tokens_per_second", 100),
        },
        "20m",
        ((ENDPOINT, 50),),
    ),
    Case(
        "LlamaDeploymentThroughputLow",
        "TGI: 50 tokens/s while serving, floor 100",
        {
            f"tgi_request_generated_tokens_sum{{{POD}}}": "0+3000x30",
            f"tgi_request_success{{{POD}}}": "0+60x30",
            **objective("min_tokens_per_second", 100),
        },
        "20m",
        ((ENDPOINT, 50),),
    ),
    Case(
        "LlamaDeploymentThroughputLow",
        "no traffic: no tokens is no breach",
        {
            f"vllm:generation_tokens_total{{{VLLM}}}": "0x30",
            **vllm_requests("0x30", "0x30"),
            **objective("min_tokens_per_second", 100),
        },
        "20m",
    ),
    Case(
        "LlamaEngineOOMKilled",
        "the primary's engine restarted after OOMKilled",
        {**OOM, **MANAGED_PRIMARY},
        "8m",
        (
            (
                {**ENDPOINT, **ENGINE_POD, "variant": "primary", "pod": "chat-primary-0"},
                1,
            ),
        ),
    ),
    Case(
        "LlamaEngineOOMKilled",
        "a pod the operator does not manage",
        {**OOM, **UNMANAGED},
        "8m",
    ),
    Case(
        "LlamaEngineCrashLooping",
        "a fallback's engine in CrashLoopBackOff for 20 minutes",
        {**CRASH_LOOP, **MANAGED_FALLBACK},
        "20m",
        (
            (
                {**ENDPOINT, **ENGINE_POD, "variant": "fallback-0", "pod": "chat-fallback-0-x"},
                1,
            ),
        ),
    ),
    Case(
        "LlamaEngineCrashLooping",
        "in CrashLoopBackOff for 5 minutes: pending",
        {**CRASH_LOOP, **MANAGED_FALLBACK},
        "5m",
    ),
    Case(
        "LlamaKVCacheSaturated",
        "vLLM 0.34 KV cache 95 % full",
        {f"vllm:kv_cache_usage_perc{{{VLLM}}}": "0.95x30"},
        "20m",
        (({**ENDPOINT, "variant": "primary", "pod": "chat-primary-0"}, 0.95),),
    ),
    Case(
        "LlamaKVCacheSaturated",
        "an older vLLM's gpu_cache_usage_perc 97 %",
        {f"vllm:gpu_cache_usage_perc{{{VLLM}}}": "0.97x30"},
        "20m",
        (({**ENDPOINT, "variant": "primary", "pod": "chat-primary-0"}, 0.97),),
    ),
    Case(
        "LlamaKVCacheSaturated",
        "half full",
        {f"vllm:kv_cache_usage_perc{{{VLLM}}}": "0.5x30"},
        "20m",
    ),
    Case(
        "LlamaQueueGrowing",
        "vLLM queue growing by 2 a minute",
        {f"vllm:num_requests_waiting{{{VLLM}}}": "0+2x30"},
        "25m",
        (({**ENDPOINT, "variant": "primary"}, 50),),
    ),
    Case(
        "LlamaQueueGrowing",
        "TGI queue growing by 2 a minute",
        {f"tgi_queue_size{{{POD}}}": "0+2x30"},
        "25m",
        (({**ENDPOINT, "variant": "primary"}, 50),),
    ),
    Case(
        "LlamaQueueGrowing",
        "a long queue that does not grow",
        {f"vllm:num_requests_waiting{{{VLLM}}}": "40x30"},
        "25m",
    ),
    Case(
        "LlamaDeploymentOnFallback",
        "on a fallback for 10 minutes",
        {f'llama_operator_endpoint_on_fallback{{{NS}, name="chat"}}': "1x20"},
        "10m",
        ((OPERATOR_ENDPOINT, 1),),
    ),
    Case(
        "LlamaDeploymentOnFallback",
        "on the primary",
        {f'llama_operator_endpoint_on_fallback{{{NS}, name="chat"}}': "0x20"},
        "10m",
    ),
    Case(
        "LlamaCanaryRolledBack",
        "the last rollout rolled back",
        {f'llama_operator_endpoint_rolled_back{{{NS}, name="chat"}}': "0 1 1"},
        "2m",
        ((OPERATOR_ENDPOINT, 1),),
    ),
    Case(
        "LlamaCanaryRolledBack",
        "no rollout rolled back",
        {f'llama_operator_endpoint_rolled_back{{{NS}, name="chat"}}': "0x5"},
        "2m",
    ),
    Case(
        "LlamaOperatorReconcileErrors",
        "10 % of reconciles raise",
        {
            f'llama_operator_reconciles_total{{{OPERATOR_NS}, outcome="error"}}': "0+6x40",
            f'llama_operator_reconciles_total{{{OPERATOR_NS}, outcome="unchanged"}}': "0+54x40",
        },
        "35m",
        (({"namespace": "llama-operator"}, 0.1),),
    ),
    Case(
        "LlamaOperatorReconcileErrors",
        "none raise",
        {
            f'llama_operator_reconciles_total{{{OPERATOR_NS}, outcome="error"}}': "0x40",
            f'llama_operator_reconciles_total{{{OPERATOR_NS}, outcome="unchanged"}}': "0+54x40",
        },
        "35m",
    ),
    Case(
        "LlamaOperatorDown",
        "no operator metrics at all",
        {},
        "10m",
        (({"namespace": "llama-operator"}, 1),),
    ),
    Case(
        "LlamaOperatorDown",
        "the operator is scraped",
        {f'llama_operator_build_info{{{OPERATOR_NS}, version="0.10.0"}}': "1x20"},
        "10m",
    ),
)
