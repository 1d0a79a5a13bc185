"""The LlamaDeployment status: what the operator observed and decided, as pydantic models.

The plan of each variant (``Plan``, ``PlanMemory``, ``ObservedCapacity``), the
conditions, and what each state machine keeps across restarts: the built-in autoscaler,
the canary rollout (with its phases, ``ROLLOUT_IN_PROGRESS`` and ``ROLLOUT_UNDER_TEST``),
failover and re-planning, and the live serving figures (``ServingStatus``).
``reconcile.status`` computes it; ``crd`` generates the CRD's
status schema from ``LlamaDeploymentStatus``.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field

from llama_operator.api.adapter_spec import AdapterStatus
from llama_operator.api.base import Engine, Model, Phase, Quantization


class ObservedCapacity(Model):
    """The KV cache the running engine reports, beside what the plan promised."""

    kvCacheTokens: int | None = Field(
        default=None,
        description=(
            "Tokens the KV cache holds per replica, as the engine reports it: the lowest of "
            "the pods read. vLLM: the kv_cache_size_tokens label of vllm:cache_config_info "
            '(its "GPU KV cache size: N tokens"), else num_gpu_blocks x block_size. '
            "Absent: the pods were read but report no capacity."
        ),
    )
    blockSize: int | None = Field(
        default=None, description="Tokens per KV-cache block (vLLM block_size)."
    )
    gpuBlocks: int | None = Field(
        default=None, description="KV-cache blocks of the lowest pod (vLLM num_gpu_blocks)."
    )
    pods: list[str] = Field(
        default_factory=list,
        description=(
            "The ready pods of <name>-primary read, by name. Read again only when the set of "
            "ready pods changes: an engine's capacity is fixed for its life."
        ),
    )
    plannedKVCacheTokens: int | None = Field(
        default=None, description="The plan's kvCacheTokens when this was observed."
    )
    ratio: float | None = Field(
        default=None, description="kvCacheTokens / plannedKVCacheTokens (absent: no figure)."
    )
    correction: float | None = Field(
        default=None,
        description=(
            "Observed / planned KV cache before any correction: recorded for the next plans "
            "of this model, engine release and GPU product when the reading is below the "
            "plan (KVCacheCapacity BelowPlan)."
        ),
    )
    recordedIn: str | None = Field(
        default=None,
        description="Where the correction was recorded: <namespace>/<ConfigMap>, key <key>.",
    )
    engineVersion: str | None = Field(
        default=None, description="The engine release the pods run (the plan's)."
    )
    observedAt: str = Field(description="When the pods were read (RFC 3339).")


class PlanMemory(Model):
    """One GPU of a plan, in GiB: the engine's budget and what fills it."""

    gpuGiB: float = Field(description="Memory the engine sees on each GPU (CUDA total).")
    budgetGiB: float = Field(description="gpuGiB x gpuMemoryUtilization: what the engine plans in.")
    outsideBudgetGiB: float = Field(
        description="CUDA context and other memory outside the budget (must fit beside it)."
    )
    weightsGiB: float = Field(description="This GPU's share of the weights.")
    overheadGiB: float = Field(
        description=(
            "Activation peak, communication buffers, CUDA graphs and LoRA weights charged "
            "to the budget."
        )
    )
    kvCacheGiB: float = Field(
        description="What is left for the KV cache: budget - weights - overhead."
    )
    neededKVCacheGiB: float = Field(
        description="KV cache this GPU needs for concurrentSequences x maxModelLen tokens."
    )
    marginGiB: float = Field(
        description="kvCacheGiB - neededKVCacheGiB: how much slack the plan leaves (>= 0)."
    )


class PlanAdapter(Model):
    """One LoRA adapter the plan serves on the base model (from spec.adapters)."""

    name: str = Field(description="spec.adapters[].name.")
    model: str = Field(
        description=(
            "What clients send as `model` to reach it: its name (vLLM), or for a Hub "
            "adapter on TGI its repository id (TGI addresses Hub adapters by id)."
        )
    )
    source: str = Field(description="The Hub repository id, or the path inside the pods.")
    revision: str | None = Field(default=None, description="The Hub revision; none for a path.")
    rank: int = Field(description="Its LoRA rank.")
    targetModules: list[str] = Field(default_factory=list, description="The modules it changes.")


class PlanLora(Model):
    """The engine's LoRA settings and the memory they take on each GPU."""

    maxLoras: int = Field(
        description=(
            "Adapters on the GPU at once (vLLM --max-loras): one slot per adapter, at most "
            "8; the rest wait in host memory (maxCpuLoras) and are swapped in when asked for."
        )
    )
    maxLoraRank: int = Field(
        description="The slots' rank (vLLM --max-lora-rank): the smallest allowed >= every rank."
    )
    maxCpuLoras: int = Field(description="Adapters kept in host memory (vLLM --max-cpu-loras).")
    loraGiB: float = Field(
        description="Memory the LoRA weights take on each GPU, inside the engine's budget."
    )
    revision: str | None = Field(
        default=None,
        description=(
            "Runtime updates: changes when an adapter already served gets a new version (its "
            "id or path), and only then, so that change rolls out through the canary while "
            "adding or removing an adapter does not restart a pod."
        ),
    )
    runtime: bool = Field(
        default=False,
        description=(
            "Whether the operator loads the adapters into the running pods "
            "(spec.adapterUpdates.mode Runtime on an engine that can), instead of the pods "
            "taking them at start."
        ),
    )


class Plan(Model):
    """What the planner chose for one variant, and why."""

    engine: Engine = Field(description="Serving engine.")
    engineVersion: str | None = Field(
        default=None,
        description=(
            "The engine release planned for, from the image tag or the operator config's "
            "images.versions: which quantizations, flags and metrics it has. Absent: the "
            "image names no version and the engine's default release was assumed."
        ),
    )
    pool: str = Field(description="GPU pool name.")
    gpuProduct: str = Field(description="GPU product of the pool.")
    gpusPerReplica: int = Field(description="GPUs each serving pod requests.")
    tensorParallel: int = Field(description="Tensor-parallel degree.")
    quantization: Quantization = Field(description="Serving quantization (none = 16-bit).")
    dtype: Literal["bfloat16", "float16"] = Field(description="Activation / 16-bit weight type.")
    maxModelLen: int = Field(description="Maximum context in tokens.")
    maxConcurrentSequences: int = Field(
        description="Sequences of maxModelLen tokens the KV cache holds at once."
    )
    gpuMemoryUtilization: float = Field(description="Engine memory fraction per GPU.")
    weightsGiB: float = Field(description="Weights, per replica.")
    estimatedGPUMemoryGiB: float = Field(description="Planned use of each GPU.")
    kvCacheGiB: float = Field(description="KV cache, per replica.")
    checkpointGiB: float | None = Field(
        default=None,
        description=(
            "Size of the checkpoint the engine downloads: the 16-bit weights when it "
            "quantizes at load time (fp8, eetq, bitsandbytes). Sizes the model cache."
        ),
    )
    kvCacheTokens: int | None = Field(
        default=None,
        description=(
            "Tokens the KV cache holds, per replica: what the engine is expected to report "
            'at start-up (vLLM: "GPU KV cache size: N tokens"). A lower bound: the '
            "memory model errs on the side of promising less than the engine allocates."
        ),
    )
    memory: PlanMemory | None = Field(
        default=None,
        description="Per-GPU memory arithmetic: the engine's budget and what fills it.",
    )
    kvCorrection: float | None = Field(
        default=None,
        description=(
            "Observed/planned KV-cache ratio recorded from running pods of the same model, "
            "engine release and GPU product, applied to this plan's KV cache (absent: none "
            "recorded). See docs/concepts/planning.md, 'Learning from running pods'."
        ),
    )
    observed: ObservedCapacity | None = Field(
        default=None,
        description=(
            "The KV cache the primary's ready pods report, against kvCacheTokens (the "
            "KVCacheCapacity condition). Absent until a ready pod was read, and for engines "
            "that publish no capacity (TGI). See docs/concepts/observed-capacity.md."
        ),
    )
    costPerHour: float | None = Field(
        default=None, description="Cost per replica per hour, when the pool has a price."
    )
    adapters: list[PlanAdapter] = Field(
        default_factory=list,
        description="The LoRA adapters served on the base model (spec.adapters that may serve).",
    )
    lora: PlanLora | None = Field(
        default=None, description="The engine's LoRA settings; absent without adapters."
    )
    reason: str = Field(description="One line a person can read: why this plan.")
    inputsHash: str | None = Field(
        default=None,
        description=(
            "Hash of the spec fields the plan was made from (model, engine, placement, adapters). "
            "The plan is kept while they are unchanged and it still fits its pool: "
            "replicas, prices or new pools never move a running endpoint."
        ),
    )


class Condition(Model):
    """A Kubernetes-convention condition: one per type."""

    type: str = Field(description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail.")
    lastTransitionTime: str = Field(description="When status last changed (RFC 3339).")
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation this condition reflects."
    )


class LicenseStatus(Model):
    """The licence the model is served under, and what the operator carries for it."""

    id: str | None = Field(default=None, description="Licence id; absent when unknown.")
    name: str | None = Field(default=None, description="Licence name.")
    source: Literal["spec", "card", "base-model", "catalog", "pattern", "unknown"] = Field(
        description=(
            "Where the licence was found: spec.license.id, the Hugging Face card, a base "
            "model the card names, the built-in catalog, the repository name, or unknown."
        )
    )
    detail: str = Field(default="", description="Why this licence, in one line.")
    notice: str | None = Field(
        default=None, description="The NOTICE sentence every serving pod carries."
    )
    attribution: str | None = Field(
        default=None, description='The attribution to display, e.g. "Built with Llama".'
    )
    licenseURL: str | None = Field(default=None, description="The licence text.")
    aupURL: str | None = Field(default=None, description="The Acceptable Use Policy.")
    acceptanceRequired: bool = Field(
        default=False, description="Whether serving waits for spec.license.accept."
    )
    accepted: bool = Field(
        default=False,
        description="Whether the pods serve under an acceptance given in spec.license.accept.",
    )
    configMap: str | None = Field(
        default=None, description="The ConfigMap mounted at /licenses in every serving pod."
    )


class AutoscalingDecision(Model):
    """One replica change the built-in autoscaler made."""

    time: str = Field(description="When (RFC 3339).")
    fromReplicas: int = Field(description="Replicas before.")
    toReplicas: int = Field(description="Replicas after.")
    reason: str = Field(description="ScaleUp, ScaleDown or Bounds.")
    metric: str = Field(description="The metric scaled on.")
    target: float = Field(description="Its per-replica target.")
    load: float | None = Field(default=None, description="The metric summed over the ready pods.")
    message: str = Field(default="", description="The inputs and the rule that decided.")


class AutoscalingStatus(Model):
    """What the built-in autoscaler remembers (it survives an operator restart)."""

    recommendations: list[list[float]] = Field(
        default_factory=list,
        description=(
            "The stabilisation window's recommendations, run-length encoded: [since, "
            "replicas] pairs, oldest first (since: seconds since the Unix epoch)."
        ),
    )
    capacity: float | None = Field(
        default=None,
        description=(
            "Requests one replica runs when saturated, learned from pods that had a queue; "
            "with the queue metric, replicas never go below what the running requests need."
        ),
    )
    decisions: list[AutoscalingDecision] = Field(
        default_factory=list, description="The last replica changes, newest last."
    )
    lastScaleTime: str | None = Field(default=None, description="When replicas last changed.")


class AnalysisNumbers(Model):
    """What one variant served over one analysis window."""

    pods: int = Field(description="Pods scraped.")
    requests: float = Field(description="Requests finished in the window.")
    errorRate: float | None = Field(default=None, description="Failed share; none: no requests.")
    p95LatencySeconds: float | None = Field(default=None, description="p95 end-to-end latency.")
    p95TimeToFirstTokenSeconds: float | None = Field(
        default=None, description="p95 time to first token."
    )
    outcomes: dict[str, float] | None = Field(
        default=None,
        description=(
            "Requests in the window that did not finish normally, by the engine's own kind "
            "(vLLM: finished_reason; TGI: tgi_request_failure's err), those with none left "
            "out. Which of them count toward errorRate: the engine's server failures, kinds "
            "the operator does not know, and spec.rollout.analysis.countAsErrors."
        ),
    )


class AnalysisRun(Model):
    """One judgement of the canary against the thresholds (and the stable variant)."""

    time: str = Field(description="When (RFC 3339).")
    step: int = Field(description="The step it was made at (0 = the first).")
    result: Literal["Passed", "Failed", "Inconclusive"] = Field(description="The verdict.")
    canary: AnalysisNumbers = Field(description="The canary's numbers.")
    stable: AnalysisNumbers | None = Field(
        default=None, description="The stable variant's numbers over the same window."
    )
    message: str = Field(default="", description="Each threshold and the measured value.")


RolloutPhase = Literal[
    "Starting", "Progressing", "Paused", "Promoting", "Completed", "RolledBack", "Cancelled"
]
# A rollout in one of these phases is not finished: it owns a canary Deployment.
ROLLOUT_IN_PROGRESS: frozenset[RolloutPhase] = frozenset(
    {"Starting", "Progressing", "Paused", "Promoting"}
)
# ... and in these its canary is still under test (before promotion), so its pods are
# watched for crashes and its metrics judged.
ROLLOUT_UNDER_TEST: frozenset[RolloutPhase] = frozenset({"Starting", "Progressing", "Paused"})


class RolloutStatus(Model):
    """Where the current (or last) canary rollout is; it survives an operator restart."""

    phase: RolloutPhase = Field(
        description=(
            "Starting (canary created, not Ready yet), Progressing (walking the steps), Paused "
            "(spec.rollout.paused, a step without pause, or too few requests to judge), "
            "Promoting (the primary takes the canary's template), Completed, RolledBack, or "
            "Cancelled (the spec went back to the stable template, or strategy to Rolling)."
        )
    )
    reason: str = Field(default="", description="CamelCase reason of the phase.")
    message: str = Field(default="", description="What is happening, for a person.")
    stableRevision: str | None = Field(
        default=None, description="Hash of the pod template the primary runs."
    )
    canaryRevision: str | None = Field(
        default=None, description="Hash of the pod template under test (the newest spec)."
    )
    step: int = Field(default=0, description="Index of the current step (0 = the first).")
    steps: int = Field(default=0, description="How many steps the rollout has.")
    weight: int = Field(default=0, description="Intended percent of traffic on the canary.")
    effectiveWeight: float | None = Field(
        default=None,
        description=(
            "Percent of traffic the canary actually gets: the route's weight with a Gateway, "
            "else its share of the ready pods behind the Service."
        ),
    )
    canaryReplicas: int = Field(default=0, description="Replicas of <name>-canary.")
    stableReplicas: int = Field(default=0, description="Replicas of <name>-primary.")
    failures: int = Field(default=0, description="Failed judgements so far.")
    stepPasses: int = Field(default=0, description="Passed judgements at the current step.")
    canaryPlan: Plan | None = Field(default=None, description="The canary's plan.")
    startedAt: str | None = Field(default=None, description="When the rollout started.")
    stepStartedAt: str | None = Field(default=None, description="When the current step began.")
    lastTransitionTime: str | None = Field(default=None, description="When phase last changed.")
    analysis: list[AnalysisRun] = Field(
        default_factory=list, description="The last judgements, newest last."
    )


class FallbackStatus(Model):
    """One fallback variant, as the operator keeps it."""

    name: str = Field(description="Its Deployment and Service, <name>-fallback-N.")
    model: str = Field(description="The model it serves.")
    replicas: int = Field(default=0, description="Replicas asked for now.")
    readyReplicas: int = Field(default=0, description="Replicas ready.")
    servable: bool = Field(default=False, description="Whether traffic may go to it.")
    reason: str = Field(default="", description="Why it may not serve, when it may not.")
    pool: str | None = Field(default=None, description="The GPU pool it is planned on.")


class FailoverStatus(Model):
    """Which variant the entry point serves from, and why (it survives a restart)."""

    active: str = Field(
        default="primary", description="primary, or fallback-N: where the entry point points."
    )
    reason: str = Field(
        default="",
        description="The trigger that moved traffic: Unavailable, Unschedulable, Failing, "
        "Overloaded; empty on the primary.",
    )
    message: str = Field(default="", description="What happened, for a person.")
    since: str | None = Field(default=None, description="When the active variant took over.")
    primaryHealthySince: str | None = Field(
        default=None, description="Since when the primary is healthy without a break."
    )
    overloadedSince: str | None = Field(
        default=None, description="Since when the primary is overloaded without a break."
    )
    started: list[int] = Field(
        default_factory=list,
        description="Cold fallbacks (by index) started for this failover.",
    )
    fallbacks: list[FallbackStatus] = Field(
        default_factory=list, description="Every fallback, in spec order."
    )


class ExcludedPool(Model):
    """A GPU pool the primary was moved away from."""

    pool: str = Field(description="The pool.")
    since: str = Field(description="When it was excluded.")
    reason: str = Field(description="Unschedulable (no free GPUs).")
    message: str = Field(default="", description="What the scheduler said.")


class PlanChange(Model):
    """One re-planning of the primary, newest last in status.planHistory."""

    time: str = Field(description="When.")
    reason: Literal["Unschedulable", "OutOfMemory", "PoolRetried"] = Field(
        description="Why the plan changed."
    )
    fromPool: str | None = Field(default=None, description="The pool before.")
    toPool: str | None = Field(default=None, description="The pool after (none: no plan).")
    message: str = Field(default="", description="The evidence and the new plan.")


class RecoveryStatus(Model):
    """Re-planning state: excluded pools and memory headroom (it survives a restart)."""

    inputsHash: str | None = Field(
        default=None, description="Spec inputs this state is for; a spec change resets it."
    )
    excludedPools: list[ExcludedPool] = Field(
        default_factory=list, description="Pools the planner leaves out."
    )
    headroom: int = Field(
        default=0, description="Memory headroom steps added after out-of-memory failures."
    )
    lastChange: str | None = Field(default=None, description="When it last re-planned.")


class ExternalScalerRef(Model):
    """The KEDA ScaledObject or HPA the operator created for spec.autoscaling."""

    kind: Literal["ScaledObject", "HorizontalPodAutoscaler"] = Field(description="Its kind.")
    name: str = Field(description="Its name (the LlamaDeployment's).")


class AdapterActivity(Model):
    """One LoRA adapter in the primary's pods when they were last read (vLLM's
    vllm:lora_requests_info: which adapters have running and waiting requests)."""

    name: str = Field(description="The adapter (spec.adapters[].name).")
    runningPods: int = Field(
        default=0, description="Pods where requests for it were running (it held a GPU slot)."
    )
    waitingPods: int = Field(
        default=0,
        description=(
            "Pods where requests for it were waiting: for a GPU slot (all maxLoras taken by "
            "other adapters) or for room in the batch."
        ),
    )


class ServingStatus(Model):
    """What the primary's ready pods served over the last window (docs/concepts/slo.md)."""

    window: str | None = Field(
        default=None,
        description=(
            "The span the figures cover, between the two scrapes they are computed from: "
            "spec.slo.window (default 5m) once the operator has watched that long; shorter "
            "after a start or a restart of the operator."
        ),
    )
    observedAt: str | None = Field(default=None, description="When the pods were last read.")
    pods: int | None = Field(
        default=None, description="Ready pods of <name>-primary read at both ends of the window."
    )
    requestsPerSecond: float | None = Field(
        default=None, description="Finished requests per second, however they ended."
    )
    generatedTokensPerSecond: float | None = Field(
        default=None,
        description=(
            "Tokens generated per second (vLLM: vllm:generation_tokens; TGI: the sum of "
            "tgi_request_generated_tokens). Absent: the engine does not expose it."
        ),
    )
    p95LatencySeconds: float | None = Field(
        default=None, description="p95 end-to-end request latency (absent: no request)."
    )
    p95TimeToFirstTokenSeconds: float | None = Field(
        default=None,
        description="p95 time to first token (TGI: its queue time); absent: no request.",
    )
    errorRate: float | None = Field(
        default=None,
        description=(
            "Failed share of the finished requests: the engine's server failures and kinds "
            "the operator does not know (absent: no request)."
        ),
    )
    costPerMillionTokens: float | None = Field(
        default=None,
        description=(
            "status.plan.costPerHour x the primary's ready replicas / generated tokens per "
            "hour x 1,000,000. Absent: the pool has no price, or no token was generated."
        ),
    )
    adapters: list[AdapterActivity] | None = Field(
        default=None,
        description=(
            "The LoRA adapters with requests in the pods when last read, from the engine's "
            "own metric (vLLM vllm:lora_requests_info; no engine labels request counts, "
            "latency or errors by adapter). Absent: the engine exports none, or no adapter "
            "had requests."
        ),
    )


class LlamaDeploymentStatus(Model):
    """What the operator observed and decided."""

    phase: Phase | None = Field(default=None, description="Summary state.")
    plan: Plan | None = Field(default=None, description="The primary variant's plan.")
    license: LicenseStatus | None = Field(
        default=None, description="The model licence and its obligations."
    )
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The built-in autoscaler's window and last decisions."
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="The current or last canary rollout."
    )
    httpRoute: str | None = Field(
        default=None,
        description="The HTTPRoute the operator keeps for spec.traffic.gatewayRef.",
    )
    networkPolicy: str | None = Field(
        default=None,
        description="The NetworkPolicy the operator keeps in front of the serving pods.",
    )
    activeModel: str | None = Field(
        default=None, description="The model the entry point serves now."
    )
    failover: FailoverStatus | None = Field(
        default=None, description="Fallback variants and which one serves."
    )
    recovery: RecoveryStatus | None = Field(
        default=None, description="Pools excluded and headroom added by re-planning."
    )
    planHistory: list[PlanChange] = Field(
        default_factory=list, description="The last re-plannings of the primary, newest last."
    )
    externalScaler: ExternalScalerRef | None = Field(
        default=None,
        description=(
            "The ScaledObject or HPA created for engine: keda or hpa; removed again when "
            "the engine changes."
        ),
    )
    replicas: int = Field(default=0, description="Serving pods that exist (for /scale).")
    readyReplicas: int = Field(default=0, description="Serving pods that are ready.")
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods (for /scale)."
    )
    adapters: list[AdapterStatus] = Field(
        default_factory=list,
        description="Each spec.adapters entry: its facts, and whether the pods serve it.",
    )
    serving: ServingStatus | None = Field(
        default=None,
        description=(
            "The last window's live figures of the primary: requests and tokens per second, "
            "p95 latency and time to first token, error rate, cost per million tokens "
            "(docs/concepts/slo.md)."
        ),
    )
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation last reconciled."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")

    model_config = pydantic.ConfigDict(frozen=True, extra="allow")
