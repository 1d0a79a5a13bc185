"""External autoscalers: the KEDA ScaledObject or the HPA for ``spec.autoscaling.engine``.

Pipeline position: api (``spec.autoscaling``) + config (Prometheus address, PromQL,
custom-metrics names) -> **scalers** -> clients.k8s (server-side apply), beside
``builders``. Pure: spec, engine and operator settings in, one object out, no I/O.

With ``engine: builtin`` the operator scales itself (``operations.autoscaling``, run by
``runtime.autoscaling_loop``) and nothing is built here. With ``keda`` or ``hpa``
another controller does the scaling, and both act on the LlamaDeployment's own
``/scale`` subresource, never on the Deployment: the operator keeps owning the
Deployment's replicas, and a later canary or fallback split keeps working whoever
decides the total. Both carry the built-in scaler's policy as HPA ``behavior`` (scale up
at once by at most ``scaleUpStep`` a decision, scale down only after
``scaleDownDelaySeconds``), so switching engines changes who measures, not how the
endpoint reacts.
"""

from __future__ import annotations

import decimal
import string
from typing import Any

from llama_operator import api
from llama_operator.planning import config, engine_profiles
from llama_operator.serving import builders

KEDA_API_VERSION = "keda.sh/v1alpha1"
HPA_API_VERSION = "autoscaling/v2"
VARIANT = "autoscaler"

# Bounds the autoscaling/v2 API validation puts on ``behavior``; the published OpenAPI
# schema does not carry them, so an object past them passes every schema check and is
# refused only by the API server (or, for KEDA, left unreconciled with an error).
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600

_ENGINE_NAMES: dict[str, str] = {"vllm": "vLLM", "tgi": "TGI"}
_METRIC_NAMES: dict[str, str] = {"queue": "queue", "inflight": "in-flight", "kvCache": "KV-cache"}
_AUTOSCALING_METRICS: tuple[engine_profiles.Signal, ...] = ("queue", "inflight", "kvCache")

# Kubernetes quantity suffixes by power of ten (decimal SI), smallest first.
_SUFFIXES: tuple[tuple[int, str], ...] = (
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
)


class ScalerError(ValueError):
    """Nothing can be built for this autoscaling spec; ``field`` names where to fix it.

    ``field`` is a spec path (``spec.autoscaling.metric``) when the user must change the
    LlamaDeployment, or an operator-config key (``autoscaling.queries.vllm.queue``) when
    the platform team must.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def pod_regex(name: str) -> str:
    """A regular expression matching the names of the primary variant's pods.

    Deployment pods are named ``<deployment>-<pod-template-hash>-<suffix>``, and the
    primary Deployment is ``<name>-primary``. Prometheus anchors ``=~`` at both ends, so
    ``chatbot-primary-...`` and ``chat-canary-...`` do not match ``chat``.

    Limit: Kubernetes cuts a generated pod name's prefix to 58 characters, so for a
    LlamaDeployment name longer than about 38 characters the pods no longer match.
    """
    # A dot is the only character of a Kubernetes name that means something in a
    # regex; "[.]" keeps it literal without a backslash, which a PromQL string would
    # need doubled.
    return f"{name.replace('.', '[.]')}-{builders.PRIMARY}-[a-z0-9]+-[a-z0-9]+"


def quantity(value: float) -> str:
    """``value`` as a canonical Kubernetes quantity: 8 -> ``8``, 0.8 -> ``800m``, 1000 -> ``1k``.

    The canonical form is what the API server stores and returns, so the applied object
    reads back unchanged (``0.8`` would come back as ``800m`` and look like drift).
    Like the API server, precision below ``1n`` is rounded up.
    """
    number = _decimal(value)
    if number <= 0:
        raise ValueError(f"a target quantity must be positive, got {value!r}")
    # Round up to whole nano units first, as the API server does; then exact integer
    # arithmetic (scaleb only moves the exponent, so no digits are lost to the context).
    nanos = int(number.scaleb(9).to_integral_value(rounding=decimal.ROUND_CEILING))
    # The largest suffix that leaves a whole number, as in the API server's own output.
    exponent, suffix = max(
        (exponent, suffix) for exponent, suffix in _SUFFIXES if nanos % 10 ** (exponent + 9) == 0
    )
    return f"{nanos // 10 ** (exponent + 9)}{suffix}"


def decimal_string(value: float) -> str:
    """``value`` as a plain decimal number string: 8 -> ``8``, 0.8 -> ``0.8``, 1e-05 -> ``0.00001``.

    KEDA trigger metadata is a map of strings that each scaler parses itself; the
    Prometheus scaler reads ``threshold`` and ``activationThreshold`` as floats.
    """
    text = format(_decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _decimal(value: float) -> decimal.Decimal:
    # repr() is the shortest text that round-trips the float, so 0.8 becomes
    # Decimal("0.8") rather than the binary 0.8000000000000000444...
    return decimal.Decimal(repr(float(value)))


def behavior(autoscaling: api.Autoscaling) -> dict[str, Any]:
    """The built-in scaler's policy as HPA ``behavior``: up at once and bounded, down late."""
    window = autoscaling.scaleDownDelaySeconds
    if window > MAX_STABILIZATION_WINDOW_SECONDS:
        raise ScalerError(
            "spec.autoscaling.scaleDownDelaySeconds",
            f"{window} is more than {MAX_STABILIZATION_WINDOW_SECONDS}, the longest "
            "stabilization window a HorizontalPodAutoscaler accepts (engine: keda and hpa "
            "both scale through one); use engine: builtin for a longer delay",
        )
    period = min(max(autoscaling.intervalSeconds, 1), MAX_PERIOD_SECONDS)
    return {
        "scaleUp": {
            # No window: a recommendation above the current count acts at the next
            # evaluation, as the built-in scaler does; the policy below bounds the step.
            "stabilizationWindowSeconds": 0,
            "policies": [
                {"type": "Pods", "value": autoscaling.scaleUpStep, "periodSeconds": period}
            ],
        },
        # Only the window: the default down policy (100% per 15 s) is no rate limit, so
        # replicas drop to the highest recommendation of the window, as built-in does.
        "scaleDown": {"stabilizationWindowSeconds": window},
    }


def scaled_object(
    *,
    name: str,
    namespace: str,
    uid: str,
    autoscaling: api.Autoscaling,
    engine: api.Engine,
    settings: config.OperatorConfig,
) -> dict[str, Any]:
    """A KEDA ``ScaledObject`` on the LlamaDeployment's ``/scale``, from a Prometheus query."""
    _check_engine_exposes(autoscaling=autoscaling, engine=engine)
    query = _query(
        name=name, namespace=namespace, metric=autoscaling.metric, engine=engine, settings=settings
    )
    activation = autoscaling.activationTarget if autoscaling.activationTarget is not None else 0
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": autoscaling.metric,
            # The query sums over all pods; AverageValue makes the HPA divide by the
            # replica count, so the threshold is the per-replica target.
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": settings.autoscaling.prometheusAddress,
                "query": query,
                "threshold": decimal_string(autoscaling.effective_target()),
                "activationThreshold": decimal_string(activation),
                # KEDA's default (true, "ignoring the empty value list from Prometheus",
                # keda.sh/docs/latest/scalers/prometheus/) reads a query that returns
                # nothing (a scrape gap, a renamed metric) as 0: an idle endpoint, scaled
                # down. "false": "the scaler will return error when Prometheus target is
                # lost", and the HPA keeps the replica count it has. The built-in scaler
                # never scales down on a missing scrape either.
                "ignoreNullValues": "false",
            },
        }
    ]
    if autoscaling.minReplicas == 0:
        triggers.append(_activation_trigger(name=name, namespace=namespace, settings=settings))
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": _metadata(name=name, namespace=namespace, uid=uid),
        "spec": {
            "scaleTargetRef": _scale_target_ref(name),
            # How often KEDA itself queries; it is also what decides waking from zero.
            "pollingInterval": autoscaling.intervalSeconds,
            # KEDA uses this only for the last step, 1 -> 0 replicas; 1 <-> N is the
            # HPA's, bounded by the behavior below.
            "cooldownPeriod": autoscaling.scaleDownDelaySeconds,
            "minReplicaCount": autoscaling.minReplicas,
            "maxReplicaCount": autoscaling.maxReplicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(autoscaling)}},
            "triggers": triggers,
        },
    }


# So high that the activation trigger never asks for more than one replica: from one
# replica up, the engine's own metric decides.
_ACTIVATION_ONLY_THRESHOLD = "1000000000"


def _activation_trigger(
    *, name: str, namespace: str, settings: config.OperatorConfig
) -> dict[str, Any]:
    """What wakes a deployment scaled to zero: demand seen in front of the pods."""
    template = settings.autoscaling.activationQuery
    key = "autoscaling.activationQuery"
    if not template:
        raise ScalerError(
            "spec.autoscaling.minReplicas",
            "0 needs a signal that exists while no pod runs, and the engine's own metrics "
            "vanish with its pods: set autoscaling.activationQuery in the operator config to "
            "a PromQL query of the requests arriving in front of the endpoint (a gateway's or "
            "ingress's), or use minReplicas: 1",
        )
    try:
        query = string.Template(template).substitute(namespace=namespace, name=name, service=name)
    except (KeyError, ValueError) as exc:
        raise ScalerError(
            key, f"the query may use only ${{namespace}}, ${{name}} and ${{service}}: {exc}"
        ) from exc
    return {
        "type": "prometheus",
        "name": "activation",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": settings.autoscaling.prometheusAddress,
            "query": query,
            "threshold": _ACTIVATION_ONLY_THRESHOLD,
            "activationThreshold": "0",
        },
    }


def horizontal_pod_autoscaler(
    *,
    name: str,
    namespace: str,
    uid: str,
    autoscaling: api.Autoscaling,
    engine: api.Engine,
    settings: config.OperatorConfig,
) -> dict[str, Any]:
    """An ``autoscaling/v2`` HPA on the LlamaDeployment's ``/scale``, from a Pods metric."""
    _check_engine_exposes(autoscaling=autoscaling, engine=engine)
    if autoscaling.minReplicas < 1:
        # The API refuses this (CEL); repeated here because this object would be refused
        # by the API server, and a spec that bypassed the CEL rules must fail readably.
        raise ScalerError(
            "spec.autoscaling.minReplicas",
            "0 needs engine: keda; a HorizontalPodAutoscaler needs minReplicas of at least 1",
        )
    metric_name = _pod_metric(metric=autoscaling.metric, engine=engine, settings=settings)
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name=name, namespace=namespace, uid=uid),
        "spec": {
            "scaleTargetRef": _scale_target_ref(name),
            "minReplicas": autoscaling.minReplicas,
            "maxReplicas": autoscaling.maxReplicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": metric_name},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": quantity(autoscaling.effective_target()),
                        },
                    },
                }
            ],
            "behavior": behavior(autoscaling),
        },
    }


def for_spec(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: api.LlamaDeploymentSpec,
    engine: api.Engine,
    settings: config.OperatorConfig,
) -> list[dict[str, Any]]:
    """The external autoscaler the spec asks for, hashed; empty for none or builtin."""
    autoscaling = spec.autoscaling
    if autoscaling is None or autoscaling.engine == "builtin":
        return []
    build = scaled_object if autoscaling.engine == "keda" else horizontal_pod_autoscaler
    obj = build(
        name=name,
        namespace=namespace,
        uid=uid,
        autoscaling=autoscaling,
        engine=engine,
        settings=settings,
    )
    return [builders.with_hash(obj)]


def _metadata(*, name: str, namespace: str, uid: str) -> dict[str, Any]:
    # Named like the LlamaDeployment: one autoscaler per endpoint, found without a lookup.
    return {
        "name": name,
        "namespace": namespace,
        "labels": builders.labels(name=name, variant=VARIANT),
        "ownerReferences": [builders.owner_reference(name=name, uid=uid)],
    }


def _scale_target_ref(name: str) -> dict[str, str]:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name}


def _check_engine_exposes(*, autoscaling: api.Autoscaling, engine: api.Engine) -> None:
    exposed = engine_profiles.get(engine).metrics
    if exposed[autoscaling.metric]:
        return
    offered = [m for m in _AUTOSCALING_METRICS if exposed[m]]
    raise ScalerError(
        "spec.autoscaling.metric",
        f"{_ENGINE_NAMES[engine]} exposes no {_METRIC_NAMES[autoscaling.metric]} metric; "
        f"use {' or '.join(offered)}",
    )


def _query(
    *,
    name: str,
    namespace: str,
    metric: api.AutoscalingMetric,
    engine: api.Engine,
    settings: config.OperatorConfig,
) -> str:
    key = f"autoscaling.queries.{engine}.{metric}"
    template = settings.autoscaling.queries.get(engine, {}).get(metric)
    if not template:
        raise ScalerError(
            key,
            f"the operator config has no PromQL query for {_ENGINE_NAMES[engine]}'s {metric} "
            f"metric; set {key} (placeholders ${{namespace}} and ${{pods}})",
        )
    try:
        return string.Template(template).substitute(namespace=namespace, pods=pod_regex(name))
    except (KeyError, ValueError) as exc:
        # A typo in the config's template must name the key, not surface as a KeyError.
        raise ScalerError(
            key, f"the query may use only ${{namespace}} and ${{pods}} (and $$): {exc}"
        ) from exc


def _pod_metric(
    *, metric: api.AutoscalingMetric, engine: api.Engine, settings: config.OperatorConfig
) -> str:
    key = f"autoscaling.podMetrics.{engine}.{metric}"
    metric_name = settings.autoscaling.podMetrics.get(engine, {}).get(metric)
    if not metric_name:
        raise ScalerError(
            key,
            f"the operator config names no custom-metrics API metric for "
            f"{_ENGINE_NAMES[engine]}'s {metric} metric; set {key} to the name your "
            "prometheus-adapter rules expose for pods",
        )
    return metric_name
