{{/*
The operator's RBAC rules, derived from the code (docs/how-to/run-against-a-cluster.md):
handlers.py (Kopf handlers and indexes), k8s.py (the operator's own API calls) and the
Kopf framework. Every rule says why it exists. Children go away through owner
references when their LlamaDeployment is deleted; the only deletes are of children that
must go while it lives on: a ScaledObject or HPA left over when spec.autoscaling.engine
changes, a canary's Deployment, Service and licence ConfigMap once the canary is promoted
or rolled back, a fallback's once spec.fallbacks no longer has it, the HTTPRoute
when spec.traffic.gatewayRef is removed, and the NetworkPolicy when spec.network.policy
is false.

"llama-operator.rules.namespaced": what the operator needs wherever LlamaDeployments live.
A ClusterRole in all-namespaces mode, a Role per watched namespace otherwise.
*/}}
{{- define "llama-operator.rules.namespaced" -}}
# Application: the custom resource. Kopf watches it and patches its metadata (the
# finalizer and its bookkeeping annotations).
- apiGroups: [llamaops.dev]
  resources: [llamadeployments]
  verbs: [list, watch, patch]
# Application: status (plan, conditions, replicas) is written through the status subresource.
- apiGroups: [llamaops.dev]
  resources: [llamadeployments/status]
  verbs: [patch]
# Application: the built-in autoscaler sets replicas through the scale subresource, as
# kubectl scale, an HPA or KEDA would.
- apiGroups: [llamaops.dev]
  resources: [llamadeployments/scale]
  verbs: [patch]
# Application: spec.autoscaling.engine keda or hpa: the KEDA ScaledObject or the
# autoscaling/v2 HorizontalPodAutoscaler on the LlamaDeployment's /scale, applied like
# the other children; deleted when the engine changes, so two scalers never fight.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [create, patch, delete]
# Application: the HorizontalPodAutoscaler of engine: hpa, the same way.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [create, patch, delete]
# Application: spec.traffic.gatewayRef: the Gateway API HTTPRoute <name> that splits
# traffic by weight between the Services <name>-primary and <name>-canary, applied like
# the other children; deleted when gatewayRef is removed.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [create, patch, delete]
# Application: the built-in autoscaler finds the ready serving pods (and their
# addresses) in the EndpointSlices of the <name>-primary Service. Watched: a Kopf
# index, filtered to the Service labels the slices mirror.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# Application: pods, listed by label selector in the LlamaDeployment's namespace, never
# watched: a canary's while it is checked (crash loops and OOM kills fail it at once), and
# the primary's while its Deployment reports fewer ready pods than it asks for or a
# fallback serves (failover triggers, re-planning on another pool or with more memory).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Application: children carry ownerReferences with blockOwnerDeletion, which clusters
# with the OwnerReferencesPermissionEnforcement admission plugin (OpenShift) check.
- apiGroups: [llamaops.dev]
  resources: [llamadeployments/finalizers]
  verbs: [update]
# Application: serving Deployments. Watched (a Kopf index, filtered to the label
# app.kubernetes.io/managed-by=llama-operator in the operator) and written with
# server-side apply: a PATCH, which needs create when the object is new. Deleted only
# for a canary (<name>-canary) once it is promoted or rolled back, and a fallback
# (<name>-fallback-N) the spec no longer has; other children go away through their owner
# references.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
# Application: serving Services, watched and applied like the Deployments; a canary's or
# removed fallback's is deleted with its Deployment.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# Application: the model licence's NOTICE, links and obligations (<name>-license),
# mounted into every serving pod. Written with server-side apply and never read: not
# watched, because watching every ConfigMap in the cluster to find ours costs more
# than re-applying it every few minutes. A canary's or removed fallback's licence is
# deleted with its Deployment.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch, delete]
# Application: the NetworkPolicy <name> in front of each LlamaDeployment's serving pods,
# applied like the other unwatched children (server-side apply, never read); deleted
# when spec.network.policy is false.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, patch, delete]
# Application: the Hugging Face token of spec.model.tokenSecretRef, read by name only
# when the Hub is asked: model facts or the card of a model not yet looked up, and the
# gated-access check, made on each reconcile while serving pods wait to be created or
# changed (never while the endpoint serves unchanged). The API key Secret of
# spec.auth.apiKeySecretRef, read by name only at those same times, to check that it
# holds its key (the value is never used). No list/watch.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Application: Events on LlamaDeployments (Planned, Applied, failures) for kubectl describe.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
# Framework (Kopf peering, namespaced mode): watch the KopfPeering of each namespace and
# patch this pod's keep-alive into it.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end }}

{{/*
"llama-operator.rules.cluster": what is cluster-scoped and therefore always in a
ClusterRole, also in namespaced mode.
*/}}
{{- define "llama-operator.rules.cluster" -}}
# Application: GPU nodes (label nvidia.com/gpu.product) for pool discovery. Nodes are
# cluster-scoped. Needed even when config.pools is set: Kopf runs no handler until every
# index, this one included, has been filled.
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
# Framework (Kopf): notice CRDs added or removed at runtime (without it Kopf warns and
# scans only once, at startup).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
# Framework (Kopf, -n mode only): follow the watched namespaces being created and
# deleted (without it Kopf warns and assumes they exist).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
# Framework (Kopf peering, all-namespaces mode): watch the ClusterKopfPeering and patch
# this pod's keep-alive into it.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end }}

{{/*
"llama-operator.rules.releaseFinalizers": the uninstall hook's (templates/uninstall.yaml),
`llama-operator release-finalizers`: nothing but the finalizer of the LlamaDeployments.
*/}}
{{- define "llama-operator.rules.releaseFinalizers" -}}
# Application (uninstall hook): list the LlamaDeployments, read one again when its
# finalizers changed meanwhile, and JSON-patch llamaops.dev/finalizer out of
# metadata.finalizers. No delete: the hook removes nothing else.
- apiGroups: [llamaops.dev]
  resources: [llamadeployments]
  verbs: [list, get, patch]
{{- end }}

{{/*
"llama-operator.rules.calibration": the calibration ConfigMap in the release's own
namespace (templates/rbac/calibration.yaml), and nothing else there.
*/}}
{{- define "llama-operator.rules.calibration" -}}
# Application: KV-cache corrections learnt from running pods, one ConfigMap in the
# operator's namespace: read when a LlamaDeployment is planned anew, one key merged in
# (a merge patch) when a pod reports less KV cache than its plan, created by server-side
# apply when missing. By name only, create too: a create through apply is authorised with
# the object's name (createAuthorizerAttributes in
# staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go), unlike a POST. No
# list/watch, no delete: deleting it is the user's reset.
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "llama-operator.calibrationName" . }}]
  verbs: [get, patch, create]
{{- end }}
