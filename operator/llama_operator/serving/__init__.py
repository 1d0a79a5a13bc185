"""Serving: what a plan becomes on the cluster, as plain Kubernetes objects.

``engines`` turns a plan into the engine container (vLLM or TGI) and reads what engines
export (``engine_metrics``); ``builders`` builds the Deployments, Services, licence
ConfigMap, HTTPRoute and NetworkPolicy; ``scalers`` the KEDA ScaledObject or HPA;
``security`` the API-key gate and the pods' security context. Pure: objects out, no I/O.
"""
