{{/*
Names, labels and checks shared by every template.
*/}}

{{/* The chart name, as used in app.kubernetes.io/name. */}}
{{- define "llama-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: the release name, plus the chart name unless the release
name already contains it. Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "llama-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "llama-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels on every object. Never app.kubernetes.io/managed-by=llama-operator: that
label marks the operator's own children, which it watches and re-applies.
*/}}
{{- define "llama-operator.labels" -}}
helm.sh/chart: {{ include "llama-operator.chart" . }}
{{ include "llama-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llama-operator
{{- end }}

{{/* The labels that select the operator pods (immutable in the workload selector). */}}
{{- define "llama-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llama-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "llama-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llama-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "llama-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ConfigMap key and where the operator reads it ($LLAMA_OPERATOR_CONFIG). */}}
{{- define "llama-operator.configDir" -}}/etc/llama-operator{{- end }}
{{- define "llama-operator.configFile" -}}config.yaml{{- end }}

{{/*
Checks the schema cannot express. Included by the workload template, so every render
runs them.
*/}}
{{- define "llama-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail (printf "replicaCount %d needs peering.enabled=true: without Kopf peering every replica would reconcile every LlamaDeployment" (int .Values.replicaCount)) }}
{{- end }}
{{- $names := dict }}
{{- range .Values.config.pools }}
{{- if hasKey $names .name }}
{{- fail (printf "config.pools: pool names must be unique; %q is repeated" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- end }}
{{- end }}

{{/*
The ConfigMap the operator records KV-cache corrections in (docs/concepts/observed-capacity.md):
created by the operator, not by the chart, so it outlives upgrades and is yours to reset.
*/}}
{{- define "llama-operator.calibrationName" -}}
{{ include "llama-operator.fullname" . }}-calibration
{{- end }}
