"""The LlamaDeployment spec: what a user writes, as frozen pydantic models.

The model to serve (``ModelSpec``), how the planner may size it (``Placement``), the
model cache, autoscaling, fallbacks and failover, the licence acceptance, and the whole
``LlamaDeploymentSpec`` with the rollout (``rollout_spec``) and security
(``security_spec``) fields beside them; ``LlamaDeployment`` is the object as read from
the API, spec and status (``status``). ``crd`` generates the CRD's schema from these
models, and ``validation`` parses raw specs through them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from llama_operator.api.adapter_spec import MAX_ADAPTERS, Adapter, AdapterUpdates
from llama_operator.api.base import (
    CheckpointQuantization,
    EngineChoice,
    Model,
    Optimize,
    QuantizationChoice,
    SecretKeyRef,
)
from llama_operator.api.names import (
    DURATION_PATTERN,
    IMAGE_PATTERN,
    MAX_FALLBACKS,
    MODEL_ID_PATTERN,
    OBJECT_NAME_PATTERN,
    PARAMETERS_PATTERN,
    QUANTITY_PATTERN,
)
from llama_operator.api.rollout_spec import Analysis, Rollout, Traffic
from llama_operator.api.security_spec import Auth, Limits, Network
from llama_operator.api.slo_spec import SLO
from llama_operator.api.status import LlamaDeploymentStatus


class ModelSpec(Model):
    """Which model to serve, and facts about it when it is not in the built-in catalog."""

    id: str = Field(
        min_length=1,
        max_length=256,
        pattern=MODEL_ID_PATTERN,
        description="Hugging Face repository id, e.g. meta-llama/Llama-3.1-8B-Instruct.",
    )
    revision: str = Field(
        default="main",
        min_length=1,
        max_length=128,
        description="Branch, tag or commit of the repository to serve.",
    )
    parameters: str | None = Field(
        default=None,
        pattern=PARAMETERS_PATTERN,
        description=(
            "Total parameter count, e.g. 8B, 70.6B, 1.24B, 400M. For a mixture-of-experts "
            "model give the total, not the active, count. Needed only when the model is "
            "neither in the built-in catalog nor reachable on the Hub."
        ),
    )
    layers: int | None = Field(
        default=None, ge=1, le=1024, description="Override: number of transformer layers."
    )
    hiddenSize: int | None = Field(default=None, ge=1, description="Override: hidden size.")
    attentionHeads: int | None = Field(
        default=None, ge=1, le=4096, description="Override: number of attention heads."
    )
    kvHeads: int | None = Field(
        default=None, ge=1, le=4096, description="Override: number of key/value heads (GQA)."
    )
    headDim: int | None = Field(
        default=None, ge=1, le=4096, description="Override: dimension of one attention head."
    )
    maxContext: int | None = Field(
        default=None, ge=128, description="Override: the model's maximum context in tokens."
    )
    checkpointQuantization: CheckpointQuantization = Field(
        default="none",
        description=(
            "How the checkpoint itself is quantized. awq and gptq checkpoints are "
            "pre-quantized repositories and can only be served at that precision."
        ),
    )
    servedName: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "Model name clients send in OpenAI-compatible requests (default: id). vLLM only; "
            "TGI always serves under the model id."
        ),
    )
    tokenSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding a Hugging Face token, for gated or private repositories.",
    )


IntOrAuto = Annotated[int | Literal["auto"], Field(union_mode="left_to_right")]


class Placement(Model):
    """How the planner may size the deployment; every field is optional."""

    optimize: Optimize = Field(
        default="balanced",
        description=(
            "Which precisions the planner may use: quality = 16-bit only; balanced = also "
            "8-bit (about 1-2% quality cost); cost = also 4-bit (about 3-5%)."
        ),
    )
    pools: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Allow-list of GPU pool names, in order of preference. Empty means every pool "
            "in the operator's catalogue."
        ),
    )
    quantization: QuantizationChoice = Field(
        default="auto", description="Pin the serving quantization, or auto to let the planner pick."
    )
    tensorParallel: IntOrAuto = Field(
        default="auto",
        description="Pin the tensor-parallel degree (1, 2, 4 or 8), or auto.",
    )
    maxModelLen: IntOrAuto = Field(
        default="auto",
        description=(
            "Pin the maximum context in tokens, or auto for the largest context that still "
            "leaves room for concurrentSequences sequences in the KV cache."
        ),
    )
    concurrentSequences: int = Field(
        default=4,
        ge=1,
        le=1024,
        description=(
            "How many sequences of maxModelLen tokens the KV cache must hold at once; the "
            "planner sizes memory for at least this many."
        ),
    )
    gpuMemoryUtilization: float | None = Field(
        default=None,
        ge=0.5,
        le=0.98,
        description="Fraction of each GPU's memory the engine may use (default 0.9).",
    )

    @pydantic.field_validator("tensorParallel")
    @classmethod
    def _tp_power_of_two(cls, value: int | str) -> int | str:
        if value != "auto" and value not in (1, 2, 4, 8):
            raise ValueError("tensorParallel must be auto, 1, 2, 4 or 8")
        return value

    @pydantic.field_validator("maxModelLen")
    @classmethod
    def _max_model_len(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 128:
            raise ValueError("maxModelLen must be auto or at least 128 tokens")
        return value


class ModelCache(Model):
    """Where the engine keeps downloaded weights."""

    volume: Literal["emptyDir", "persistentVolumeClaim"] = Field(
        default="emptyDir",
        description=(
            "emptyDir downloads the weights on every pod start; persistentVolumeClaim "
            "reuses an existing claim (ReadWriteMany for more than one replica)."
        ),
    )
    claimName: str | None = Field(
        default=None,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="The PersistentVolumeClaim to mount.",
    )
    sizeLimit: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description=(
            "Size limit of the emptyDir (default: twice the size of the checkpoint the "
            "engine downloads)."
        ),
    )


AutoscalingMetric = Literal["queue", "inflight", "kvCache"]
# The per-replica target of each metric when none is given: waiting requests, waiting plus
# running requests, and the fraction of the KV cache in use.
DEFAULT_TARGETS: dict[str, float] = {"queue": 8.0, "inflight": 32.0, "kvCache": 0.8}


class Autoscaling(Model):
    """Autoscaling on what LLM serving queues (docs/concepts/autoscaling.md)."""

    minReplicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description=(
            "Lowest replica count. 0 (scale to zero) only with engine: keda, whose activation "
            "trigger can bring the endpoint back; nothing else sees requests while no pod runs."
        ),
    )
    maxReplicas: int = Field(default=4, ge=1, le=1000, description="Highest replica count.")
    metric: AutoscalingMetric = Field(
        default="queue",
        description=(
            "Per-replica signal to scale on: queue (requests waiting), inflight (waiting plus "
            "running), or kvCache (fraction of the KV cache in use; vLLM only)."
        ),
    )
    target: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Target value of the metric per replica (default: 8 for queue, 32 for inflight, "
            "0.8 for kvCache, which must be at most 1)."
        ),
    )
    targetQueueLength: float | None = Field(
        default=None,
        gt=0,
        description="Same as target, under the name the queue metric reads best with.",
    )
    scaleUpStep: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Most replicas one decision adds: a burst is met fast but bounded.",
    )
    scaleDownDelaySeconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description=(
            "Stabilisation window: replicas go down only to the highest recommendation of the "
            "whole window, so a lower recommendation must hold this long first."
        ),
    )
    intervalSeconds: int = Field(
        default=5, ge=1, le=600, description="How often the built-in scaler evaluates."
    )
    engine: Literal["builtin", "keda", "hpa"] = Field(
        default="builtin",
        description=(
            "Who scales: builtin (the operator scrapes the pods, no extra components), keda "
            "(a ScaledObject on this resource's /scale) or hpa (an autoscaling/v2 HPA on "
            "/scale, for clusters running prometheus-adapter)."
        ),
    )
    activationTarget: float | None = Field(
        default=None,
        ge=0,
        description=(
            "keda only: the metric value above which a deployment scaled to zero is woken "
            "(KEDA's activationThreshold; default 0, any queued request)."
        ),
    )

    def effective_target(self) -> float:
        """target, else targetQueueLength, else the metric's default."""
        if self.target is not None:
            return self.target
        if self.targetQueueLength is not None:
            return self.targetQueueLength
        return DEFAULT_TARGETS[self.metric]


class Fallback(Model):
    """A model to serve when the primary cannot (docs/concepts/fallbacks.md)."""

    model: ModelSpec = Field(
        description="The fallback model, planned and sized like the primary (same placement)."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=100,
        description=(
            "Warm standby replicas, running all the time; 0 = cold: started (one replica) "
            "only when a failover needs it, which takes as long as a first start."
        ),
    )
    license: License | None = Field(
        default=None,
        description=(
            "Acceptance of this model's licence. Omitted: accepted when the licence is the "
            "primary's and spec.license.accept is true. A fallback whose licence is not "
            "accepted, or whose gated repository the token cannot read, is reported and "
            "never used."
        ),
    )


class Failover(Model):
    """When traffic moves to a fallback, and when the primary is re-planned."""

    onUnavailable: bool = Field(
        default=True, description="Fail over when the primary has no ready replica."
    )
    onUnschedulable: bool = Field(
        default=True,
        description=(
            "Fail over when primary pods stay unschedulable (PodScheduled=False, reason "
            "Unschedulable) for gracePeriod."
        ),
    )
    onFailing: bool = Field(
        default=True,
        description="Fail over when a primary pod crash-loops or is OOM-killed.",
    )
    overloadQueuePerReplica: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Optional: fail over when the primary's waiting requests per ready replica stay "
            "above this for gracePeriod (scraped from the engines' queue metric)."
        ),
    )
    gracePeriod: str = Field(
        default="5m",
        pattern=DURATION_PATTERN,
        description=(
            "How long pods must stay unschedulable (or the primary overloaded) before acting."
        ),
    )
    holdDown: str = Field(
        default="5m",
        pattern=DURATION_PATTERN,
        description=(
            "How long the primary must be healthy without a break before traffic returns "
            "to it (no flapping)."
        ),
    )
    replanOnUnschedulable: bool = Field(
        default=True,
        description=(
            "Re-plan the primary on the next feasible GPU pool (spec.placement.pools order) "
            "when its pods stay unschedulable for gracePeriod."
        ),
    )
    replanOnOutOfMemory: bool = Field(
        default=True,
        description=(
            "Re-plan the primary with more memory headroom (shorter context, more GPUs or "
            "more quantization, within spec.placement) when it is OOM-killed or its engine "
            "exits for lack of GPU memory."
        ),
    )
    retryPoolsAfter: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description=(
            "Optional: try a pool excluded for lack of capacity again after this long, so "
            "the primary returns to the preferred pool (through a rollout) once it has "
            "room. Omitted: excluded pools stay excluded until the spec changes."
        ),
    )


class License(Model):
    """The model licence: acceptance of its use policy, and an optional override of its id."""

    accept: bool = Field(
        default=False,
        description=(
            "Accept the model's licence and its Acceptable Use Policy. Licences with a use "
            "policy (every Llama version, Gemma) are served only once this is true; "
            "`llama-operator licenses` lists which. Setting it back to false on a serving "
            "deployment is refused and reported, never acted on by tearing the endpoint down."
        ),
    )
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Override the detected licence id (e.g. llama3.1), for a model whose card and name "
            "do not say. Must be an id `llama-operator licenses` lists."
        ),
    )


class LlamaDeploymentSpec(Model):
    """The desired endpoint: which model, which service level."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineChoice = Field(
        default="auto",
        description="Serving engine: vllm, tgi, or auto (vLLM; TGI is in maintenance mode).",
    )
    placement: Placement = Field(
        default_factory=Placement, description="Sizing policy and optional pins."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Serving replicas when autoscaling is off; the /scale subresource sets it.",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=IMAGE_PATTERN,
        description=(
            "Override the engine image from the operator config: an image reference, "
            "[registry[:port]/]repository[:tag][@digest], e.g. vllm/vllm-openai:v0.34.0."
        ),
    )
    engineArgs: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Extra engine arguments appended after the planned ones. One that sets a planned "
            "flag is reported by the EngineArgs condition: a warning where it wins, a hold for "
            "flags the operator owns (docs/concepts/engines.md). Flags carrying a secret "
            "(--api-key, --hf-token, --ngrok-authtoken) are refused."
        ),
    )
    modelCache: ModelCache = Field(
        default_factory=ModelCache, description="Where downloaded weights live."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Queue-based autoscaling.")
    rollout: Rollout | None = Field(
        default=None,
        description=(
            "How template changes roll out; omitted means a canary with the default steps "
            "and analysis (docs/concepts/rollouts.md)."
        ),
    )
    traffic: Traffic | None = Field(
        default=None, description="Traffic splitting: Service-based, or a Gateway API route."
    )
    fallbacks: list[Fallback] = Field(
        default_factory=list,
        max_length=MAX_FALLBACKS,
        description="Fallback models, in order of preference (docs/concepts/fallbacks.md).",
    )
    failover: Failover | None = Field(
        default=None,
        description=(
            "Failover triggers, hold-down and re-planning; omitted means the defaults "
            "(re-planning applies with or without fallbacks)."
        ),
    )
    license: License | None = Field(default=None, description="Licence acceptance.")
    auth: Auth = Field(
        default_factory=Auth,
        description="API keys (docs/operations/security.md#api-keys).",
    )
    network: Network = Field(
        default_factory=Network,
        description="The NetworkPolicy in front of the serving pods.",
    )
    limits: Limits = Field(
        default_factory=Limits,
        description="Input limits the engines enforce; omitted fields follow the plan.",
    )
    slo: SLO | None = Field(
        default=None,
        description=(
            "Service-level objectives of the endpoint (p95 latency, p95 time to first token, "
            "error rate, a throughput floor), measured over a window on the primary's "
            "engines: the SLOMet condition, and the canary analysis' default thresholds "
            "(docs/concepts/slo.md). Omitted: no objective; status.serving still shows the "
            "figures."
        ),
    )
    adapters: list[Adapter] = Field(
        default_factory=list,
        max_length=MAX_ADAPTERS,
        description=(
            "LoRA adapters served on the base model: clients pick one by sending its name "
            "as `model` (docs/concepts/adapters.md). The base model's licence covers them."
        ),
    )
    adapterUpdates: AdapterUpdates | None = Field(
        default=None,
        description=(
            "How adding, removing or changing an adapter reaches the serving pods: "
            "Rollout (default; a pod change through the canary) or Runtime (loaded into "
            "the running pods, vLLM only)."
        ),
    )

    def runtime_adapters(self) -> bool:
        """Whether spec.adapterUpdates asks for adapters loaded into running pods."""
        return self.adapterUpdates is not None and self.adapterUpdates.mode == "Runtime"


# Spec fields that are validated now but whose behaviour ships in later releases.
NOT_YET_ACTIVE: tuple[str, ...] = ()


class LlamaDeployment(Model):
    """The whole object, as read from the API."""

    apiVersion: Literal["llamaops.dev/v1alpha1"] = "llamaops.dev/v1alpha1"
    kind: Literal["LlamaDeployment"] = "LlamaDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: LlamaDeploymentSpec
    status: LlamaDeploymentStatus = Field(default_factory=LlamaDeploymentStatus)

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")


def failover_policy(spec: LlamaDeploymentSpec) -> Failover:
    """spec.failover, or its defaults when omitted (re-planning is on by default)."""
    return spec.failover if spec.failover is not None else Failover()


# The thresholds a canary analysis takes from spec.slo where spec.rollout.analysis does not
# set them itself: (analysis field, SLO field).
_SLO_THRESHOLDS = (
    ("maxErrorRate", "maxErrorRate"),
    ("maxP95LatencySeconds", "maxP95LatencySeconds"),
    ("maxP95TimeToFirstTokenSeconds", "maxP95TimeToFirstTokenSeconds"),
)


def analysis_for(spec: LlamaDeploymentSpec) -> Analysis:
    """The canary analysis of ``spec``: spec.rollout.analysis, its unset thresholds taken
    from spec.slo (one source of thresholds; a value set in the analysis wins, even when it
    is the analysis' own default). Without spec.slo, the analysis as written."""
    analysis = spec.rollout.analysis if spec.rollout is not None else Analysis()
    slo = spec.slo
    if slo is None:
        return analysis
    explicit = analysis.model_fields_set
    update = {
        mine: getattr(slo, theirs)
        for mine, theirs in _SLO_THRESHOLDS
        if mine not in explicit and getattr(slo, theirs) is not None
    }
    return analysis.model_copy(update=update) if update else analysis
