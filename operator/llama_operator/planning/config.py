"""The operator's own configuration: engine images, the GPU pool catalogue, defaults.

Lives in one YAML file, read from ``$LLAMA_OPERATOR_CONFIG`` or, in a cluster, from a
ConfigMap mounted at ``/etc/llama-operator/config.yaml`` (built-in defaults when absent).
Nothing here is per-LlamaDeployment: a platform team sets it once for the cluster.

The layers above planning read it: serving (engine images, security and NetworkPolicy
defaults, the scalers' settings), the reconciler, and the Kopf handlers and the CLI,
which load it. It sits in planning, the lowest layer that needs it, because its pools
and engine images are the planner's inputs (``plan_request.request_for``): planning
never reaches up a layer for them.
"""

from __future__ import annotations

import importlib.resources
import os
from typing import Any, Literal

import pydantic
import yaml
from pydantic import Field

from llama_operator.planning import engine_profiles
from llama_operator.planning import pools as pools_mod

CONFIG_ENV = "LLAMA_OPERATOR_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/llama-operator/config.yaml"


class Images(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # Pinned tags: an engine upgrade is a deliberate operator-config change, never a
    # surprise from a moving "latest". The defaults are the engines' default releases in
    # data/engines.yaml, the releases whose facts the operator was checked against.
    vllm: str = Field(default=engine_profiles.get("vllm").image(), min_length=1)
    tgi: str = Field(default=engine_profiles.get("tgi").image(), min_length=1)
    # The engine release of an image whose tag names none (a digest, a custom build, a
    # mirror with its own tags): image reference, exactly as in vllm/tgi above or in a
    # spec.image, -> release ("0.34.0"). The operator plans with that release's profile.
    versions: dict[str, str] = Field(default_factory=dict)

    @pydantic.field_validator("versions", mode="after")
    @classmethod
    def _versions(cls, value: dict[str, str]) -> dict[str, str]:
        for image, version in value.items():
            if engine_profiles.parse_version(version) is None:
                raise ValueError(
                    f"images.versions[{image!r}]: {version!r} is not a release like 0.34.0"
                )
        return value


class Hub(pydantic.BaseModel):
    """How the operator talks to the Hugging Face Hub (endpoint: $HF_ENDPOINT)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # A refused gated-access check is asked again after this long, doubling up to the
    # maximum, so a grant given later is picked up without hammering the Hub.
    accessRetrySeconds: float = Field(default=30.0, ge=0.1, le=3600)
    accessMaxRetrySeconds: float = Field(default=600.0, ge=0.1, le=86400)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Hub:
        if self.accessRetrySeconds > self.accessMaxRetrySeconds:
            raise ValueError(
                f"accessRetrySeconds ({self.accessRetrySeconds:g}) must not exceed "
                f"accessMaxRetrySeconds ({self.accessMaxRetrySeconds:g})"
            )
        return self


# PromQL per engine and autoscaling metric, for engine: keda. string.Template
# placeholders: ${namespace} and ${pods} (a regular expression matching the names of
# the primary variant's pods). Each must sum to one number over the deployment's pods.
DEFAULT_QUERIES: dict[str, dict[str, str]] = {
    "vllm": {
        "queue": 'sum(vllm:num_requests_waiting{namespace="${namespace}",pod=~"${pods}"})',
        "inflight": (
            'sum(vllm:num_requests_waiting{namespace="${namespace}",pod=~"${pods}"})'
            ' + sum(vllm:num_requests_running{namespace="${namespace}",pod=~"${pods}"})'
        ),
        # Per pod, the higher of the current and the older metric name (vLLM renamed it);
        # then summed over the pods, as the queue is.
        "kvCache": (
            'sum(max by (pod) (vllm:kv_cache_usage_perc{namespace="${namespace}",pod=~"${pods}"}'
            ' or vllm:gpu_cache_usage_perc{namespace="${namespace}",pod=~"${pods}"}))'
        ),
    },
    "tgi": {
        "queue": 'sum(tgi_queue_size{namespace="${namespace}",pod=~"${pods}"})',
        "inflight": (
            'sum(tgi_queue_size{namespace="${namespace}",pod=~"${pods}"})'
            ' + sum(tgi_batch_current_size{namespace="${namespace}",pod=~"${pods}"})'
        ),
    },
}
# Custom-metrics API names per engine and metric, for engine: hpa: what your
# prometheus-adapter rules expose for pods (colons are not allowed in those names).
DEFAULT_POD_METRICS: dict[str, dict[str, str]] = {
    "vllm": {
        "queue": "vllm_num_requests_waiting",
        "inflight": "vllm_num_requests_inflight",
        "kvCache": "vllm_kv_cache_usage_perc",
    },
    "tgi": {"queue": "tgi_queue_size", "inflight": "tgi_requests_inflight"},
}


class Autoscaling(pydantic.BaseModel):
    """Operator-wide settings of the keda and hpa autoscaling engines."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # Where KEDA's Prometheus scaler sends the queries.
    prometheusAddress: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090", min_length=1
    )
    queries: dict[str, dict[str, str]] = Field(default_factory=lambda: DEFAULT_QUERIES)
    podMetrics: dict[str, dict[str, str]] = Field(default_factory=lambda: DEFAULT_POD_METRICS)
    # Scale to zero (engine: keda, minReplicas: 0) needs a signal that exists while no
    # pod runs: the pods' own metrics vanish with the pods. A PromQL query, summed over
    # what sits in front of the endpoint (a gateway's or ingress's request rate or
    # pending requests), with ${namespace} and ${name} (the LlamaDeployment) and
    # ${service} (its entry Service). None: scale to zero is refused.
    activationQuery: str | None = Field(default=None, min_length=1)

    @pydantic.field_validator("queries", "podMetrics", mode="after")
    @classmethod
    def _over_defaults(
        cls, value: dict[str, dict[str, str]], info: pydantic.ValidationInfo
    ) -> dict[str, dict[str, str]]:
        # What the config sets is laid over the defaults, engine by engine and metric by
        # metric: overriding vLLM's queue query keeps every other default.
        defaults = DEFAULT_QUERIES if info.field_name == "queries" else DEFAULT_POD_METRICS
        merged = {engine: dict(entries) for engine, entries in defaults.items()}
        for engine, entries in value.items():
            merged.setdefault(engine, {}).update(entries)
        return merged


class NetworkPolicy(pydantic.BaseModel):
    """The NetworkPolicy each LlamaDeployment gets (spec.network), operator-wide parts."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # Default of spec.network.policy.
    enabled: bool = True
    # The operator's own pods, let in to scrape the engines' /metrics (canary analysis,
    # the built-in autoscaler, failover on overload). The chart fills both in; None (the
    # operator runs outside the cluster, where it cannot reach pod IPs anyway): no rule.
    operatorNamespace: str | None = Field(default=None, min_length=1, max_length=63)
    operatorPodLabels: dict[str, str] = Field(default_factory=dict)
    # Where Prometheus runs, let in to scrape /metrics; None: no rule.
    monitoringNamespace: str | None = Field(default="monitoring", min_length=1, max_length=63)
    # Narrows the monitoring rule to these pods of that namespace; empty: all of them.
    monitoringPodLabels: dict[str, str] = Field(default_factory=dict)


class Security(pydantic.BaseModel):
    """Operator-wide security defaults (docs/operations/security.md)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # Default of spec.auth.mode: required refuses to serve without an API key.
    defaultAuthMode: Literal["required", "optional"] = "required"
    networkPolicy: NetworkPolicy = Field(default_factory=NetworkPolicy)


class Calibration(pydantic.BaseModel):
    """Where corrections learnt from running pods are kept (docs/concepts/observed-capacity.md).

    One ConfigMap in the operator's own namespace, one key per model, engine release and
    GPU product: a user reads and resets it there. The chart fills in both fields.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # The operator's namespace. None (the operator runs outside a cluster, with no home
    # namespace): corrections are neither recorded nor read; status still shows what the
    # pods report.
    namespace: str | None = Field(default=None, min_length=1, max_length=63)
    configMap: str = Field(default="llama-operator-calibration", min_length=1, max_length=253)


class OperatorConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    images: Images = Field(default_factory=Images)
    pools: tuple[pools_mod.Pool, ...] = ()
    gpuMemoryUtilization: float = Field(default=0.9, ge=0.5, le=0.98)
    # Per-GPU memory the engine charges beside weights and KV cache. Unset (the default):
    # the engine profile's calibrated memory model works it out per GPU, TP degree and
    # model (docs/concepts/planning.md). Set: this figure replaces it, for every plan.
    runtimeOverheadGiB: float | None = Field(default=None, ge=0, le=16)
    fieldManager: str = "llama-operator"
    imagePullPolicy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    hub: Hub = Field(default_factory=Hub)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    security: Security = Field(default_factory=Security)
    calibration: Calibration = Field(default_factory=Calibration)


class ConfigError(ValueError):
    pass


def parse(data: dict[str, Any] | None, *, origin: str = "operator config") -> OperatorConfig:
    try:
        return OperatorConfig.model_validate(data or {})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{origin}: {loc}: {first['msg']}") from exc


def load(path: str | None = None) -> OperatorConfig:
    """Read the config file (``path``, ``$LLAMA_OPERATOR_CONFIG``, else the mounted default).

    Only the default location may be absent (built-in defaults then apply); a path the
    user named that does not exist is an error, never silently ignored.
    """
    explicit = path or os.environ.get(CONFIG_ENV)
    path = explicit or DEFAULT_CONFIG_PATH
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(f"operator config {path!r} does not exist")
        return OperatorConfig()
    with open(path, encoding="utf-8") as stream:
        return parse(yaml.safe_load(stream), origin=path)


def default_pools() -> tuple[pools_mod.Pool, ...]:
    """The bundled example catalogue used by the CLI when no --pools file is given."""
    text = importlib.resources.files("llama_operator").joinpath("data/pools.yaml").read_text()
    return pools_mod.load_catalogue(text, origin="bundled pools.yaml")
