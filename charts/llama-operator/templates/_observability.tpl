{{- /*
PromQL shared by the PrometheusRule (prometheusrule.yaml). Engine metric names are those of
the engine profiles (operator/llama_operator/data/engines.yaml, `metrics:` and `outcomes:`,
each with its source in the engine's release): vLLM first, TGI after `or`, so one alert
covers both engines. tests/observability checks every name against the profiles, the
operator's registry and kube-state-metrics' list.
*/}}

{{- /* Whether the cluster serves the Prometheus Operator's PrometheusRule. Helm fills
.Capabilities.APIVersions with both "group/version" and "group/version/Kind" from the
cluster's discovery; `helm template --api-versions` sets only what is given, so accept
either form. */}}
{{- define "llama-operator.hasPrometheusRule" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end -}}
{{- end }}

{{- /* One objective of each LlamaDeployment's spec.slo, by namespace and llama_deployment
(the operator's gauges say "name"). max: several operator replicas may export it. */}}
{{- define "llama-operator.promql.objective" -}}
max by (namespace, llama_deployment) (label_replace(llama_operator_slo_objective{objective="{{ . }}"}, "llama_deployment", "$1", "name", "(.*)"))
{{- end }}

{{- /* Requests finished per second over a window: every outcome (vLLM's
vllm:request_success carries all of them in finished_reason; TGI counts failures apart). */}}
{{- define "llama-operator.promql.requests" -}}
sum by (namespace, llama_deployment) (rate(vllm:request_success_total[{{ . }}]) or rate(tgi_request_success[{{ . }}]) or rate(tgi_request_failure[{{ . }}]))
{{- end }}

{{- /* The share of requests the server failed over a window: the profiles' serverFailures
(vLLM finished_reason "error"; TGI err "generation", "incomplete"). A client's abort, a
validation error or our own 429 is not the endpoint failing. */}}
{{- define "llama-operator.promql.errorRatio" -}}
(sum by (namespace, llama_deployment) (rate(vllm:request_success_total{finished_reason="error"}[{{ . }}]) or rate(tgi_request_failure{err=~"generation|incomplete"}[{{ . }}])) / {{ include "llama-operator.promql.requests" . }})
{{- end }}

{{- /* The pods the operator manages, by namespace and pod, with the LlamaDeployment and
variant they serve, from kube-state-metrics' kube_pod_labels (which needs
--metric-labels-allowlist for these labels: docs/operations/observability.md). */}}
{{- define "llama-operator.promql.managedPods" -}}
max by (namespace, pod, llama_deployment, variant) (label_replace(label_replace(label_replace(kube_pod_labels{label_app_kubernetes_io_managed_by="llama-operator"}, "llama_deployment", "$1", "label_llamaops_dev_deployment", "(.+)"), "llama_deployment", "$1", "label_llamaops_dev_fallback_of", "(.+)"), "variant", "$1", "label_llamaops_dev_variant", "(.+)"))
{{- end }}

{{- /* runbook_url of one alert: the observability page plus its anchor. */}}
{{- define "llama-operator.runbook" -}}
{{ $.root.Values.observability.alerts.runbookURL }}#{{ $.anchor }}
{{- end }}
