"""The LlamaDeployment API, v1alpha1: the single source of truth for the CRD.

Everything a user can write in a ``LlamaDeployment`` and everything the operator
reports back is declared here as frozen pydantic models with camelCase aliases.
``crd.py`` turns these models into the CustomResourceDefinition (structural schema,
descriptions from the ``Field(description=...)`` texts, CEL rules from
``CEL_RULES``), and the reconcile loop parses every object through them, so the
schema the API server enforces and the one the operator trusts cannot drift apart.

Fields that later capabilities will act on are declared and validated before they
are acted on, so the API is designed once; ``NOT_YET_ACTIVE`` lists them (none
today), and the reconciler reports a warning condition when one is set, never
accepting it silently.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import re
from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import Field

GROUP = "llamaops.dev"
VERSION = "v1alpha1"
KIND = "LlamaDeployment"
PLURAL = "llamadeployments"
SINGULAR = "llamadeployment"
SHORT_NAMES = ("llama",)
CATEGORIES = ("all", "llm")
API_VERSION = f"{GROUP}/{VERSION}"

Engine = Literal["vllm", "tgi"]
EngineChoice = Literal["auto", "vllm", "tgi"]
Optimize = Literal["cost", "balanced", "quality"]
# "none" means the checkpoint's own 16-bit precision (bf16, or fp16 where the GPU lacks bf16).
Quantization = Literal[
    "none", "fp8", "eetq", "bitsandbytes-int8", "awq", "gptq", "bitsandbytes-nf4"
]
QuantizationChoice = Literal[
    "auto", "none", "fp8", "eetq", "bitsandbytes-int8", "awq", "gptq", "bitsandbytes-nf4"
]
CheckpointQuantization = Literal["none", "awq", "gptq"]
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]

PARAMETERS_PATTERN = r"^[0-9]+(\.[0-9]+)?[MBT]$"
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Gateway API's Hostname: lower-case DNS labels, optionally behind one leading wildcard.
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
# IPv4 or IPv6 CIDR, loosely: the API server checks the address itself.
CIDR_PATTERN = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"
# What the Kubernetes API accepts as the name of an object the spec refers to (a Secret, a
# PersistentVolumeClaim, a Gateway): an RFC 1123 subdomain. Validated before the name
# reaches an API path, where "../x" would name another resource under the operator's
# identity; k8s.path_for escapes each segment as well.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A namespace (an RFC 1123 label).
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A key of a Secret's data, as the API server validates it.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# An image reference, by the distribution reference grammar (ReferenceRegexp of
# https://github.com/distribution/reference/blob/main/regexp.go, read at 00a09fa):
# [host[:port]/]path-component[/path-component...][:tag][@digest], where a path component is
# lower-case letters and digits joined by ".", "_", "__" or dashes, a tag is at most 128 word
# characters, "." and "-", and a digest is algorithm:hex (32 or more hex digits). Go's \w and
# [[:xdigit:]] are spelled out as classes: Kubernetes checks the CRD's pattern as ECMA-262
# (the API server with RE2) and pydantic with Rust's regex, which read \w as Unicode; these
# classes mean the same to all three. Not checked here: the name's 255-character limit
# (NameTotalLengthMax, reference.go); the field's maxLength bounds the whole reference.
_IMAGE_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_HOST = (
    rf"(?:{_IMAGE_HOST_COMPONENT}(?:\.{_IMAGE_HOST_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
)
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^(?:{_IMAGE_HOST}/)?{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# What a failed match means, for the names above; other patterns keep pydantic's message.
PATTERN_HINTS = {
    OBJECT_NAME_PATTERN: (
        "must be a Kubernetes object name: lower-case letters, digits, '-' and '.', "
        "starting and ending with a letter or digit (RFC 1123 subdomain)"
    ),
    NAMESPACE_PATTERN: (
        "must be a namespace name: lower-case letters, digits and '-', starting and ending "
        "with a letter or digit, at most 63 characters (RFC 1123 label)"
    ),
    SECRET_KEY_PATTERN: "must be a Secret key: letters, digits, '-', '_' and '.'",
    IMAGE_PATTERN: (
        "must be an image reference, [registry[:port]/]repository[:tag][@digest] (e.g. "
        "vllm/vllm-openai:v0.34.0, registry:5000/team/vllm@sha256:<64 hex digits>): a "
        "lower-case repository path, a tag of at most 128 letters, digits, '_', '.' and '-', "
        "and no spaces or shell characters"
    ),
}

# The LlamaDeployment's own name: what its children can be called ---------------------
#
# The operator names every child after the LlamaDeployment: ``<name>`` (the entry Service,
# the HTTPRoute, the NetworkPolicy, the ScaledObject or HPA), ``<name>-<variant>`` (the
# Deployment and Service of ``primary``, ``canary`` and each ``fallback-N``) and
# ``<name>[-<variant>]-license`` (the licence ConfigMaps). Which of these names Kubernetes
# limits to 63 characters, and which it lets grow to 253:
#
# - A Service name must be a DNS-1035 label: [a-z]([-a-z0-9]*[a-z0-9])?, at most 63
#   characters (it becomes a DNS name, <service>.<namespace>.svc). Services are
#   ``<name>``, ``<name>-primary``, ``<name>-canary`` and ``<name>-fallback-N``.
#   https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names
#   (ValidateServiceName = NameIsDNS1035Label in k8s.io/kubernetes pkg/apis/core/validation).
# - A label value is at most 63 characters: every child carries ``<name>`` in
#   app.kubernetes.io/instance and llamaops.dev/deployment (or fallback-of), KEDA labels
#   its HPA with the ScaledObject's name ``<name>``, the EndpointSlice controller labels
#   slices kubernetes.io/service-name=<service>.
#   https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
# - Deployments, ConfigMaps, HTTPRoutes, NetworkPolicies, ScaledObjects and HPAs are DNS-1123
#   subdomains, up to 253 characters, so ``<name>-fallback-7-license`` does not bind. A
#   Deployment's pods are named by generateName from ``<deployment>-<pod-template-hash>-``,
#   which the API server cuts to 58 characters before the 5 random ones (names.
#   SimpleNameGenerator, maxGeneratedNameLength = 63 - 5), so a long Deployment name never
#   makes an invalid pod or host name.
#
# So the binding limit is the longest Service name: ``<name>-fallback-7`` with the most
# fallbacks a spec may have. tests/unit/test_child_names.py renders every child of a spec
# with every feature on at this length and checks each name and label value against the
# rule of its kind, so a new, longer suffix fails a test instead of an apply.
DNS_LABEL_MAX_LENGTH = 63
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PRIMARY = "primary"
CANARY = "canary"
FALLBACK_PREFIX = "fallback-"
MAX_FALLBACKS = 8


def fallback_variant(index: int) -> str:
    """The variant name of fallback ``index`` (``fallback-0``, ``fallback-1``, ...).

    The one place a fallback's name is made; ``fallback_index`` is the one place it is read.
    """
    return f"{FALLBACK_PREFIX}{index}"


def fallback_index(variant: str) -> int | None:
    """The index of a fallback variant, or None for any other name (``primary``, ``canary``).

    Status written by an older or a hand-edited object may hold any string, so a name
    that is not ``fallback-<n>`` reads as no fallback rather than raising.
    """
    suffix = variant.removeprefix(FALLBACK_PREFIX)
    if suffix == variant or not suffix.isdigit():
        return None
    return int(suffix)


# Suffixes of the children whose names must be DNS-1035 labels (the Services).
SERVICE_SUFFIXES = (
    "",
    f"-{PRIMARY}",
    f"-{CANARY}",
    *(f"-{FALLBACK_PREFIX}{index}" for index in range(MAX_FALLBACKS)),
)
MAX_NAME_LENGTH = DNS_LABEL_MAX_LENGTH - max(len(suffix) for suffix in SERVICE_SUFFIXES)
NAME_FIX = (
    "delete it and create it again under a name of at most "
    f"{MAX_NAME_LENGTH} characters: lower-case letters, digits and '-', starting with a "
    "letter and ending with a letter or digit (a DNS-1035 label)"
)


def name_problem(name: str) -> str | None:
    """Why no child of a LlamaDeployment called ``name`` could exist, or None when all can.

    The CRD refuses such names on create (``ROOT_CEL_RULES``); this is the operator's own
    check, for objects created under an older CRD or by an API server that skipped CEL.
    """
    if not re.fullmatch(DNS_1035_LABEL_PATTERN, name):
        why = (
            f"metadata.name {name!r} is not a DNS-1035 label, which the name of its Service "
            f"{name!r} must be"
        )
    elif len(name) > MAX_NAME_LENGTH:
        why = (
            f"metadata.name has {len(name)} characters; at most {MAX_NAME_LENGTH} leave room "
            "for the suffixes of its children (the longest Service name is "
            f"<name>-{FALLBACK_PREFIX}{MAX_FALLBACKS - 1}, and a Service name is a DNS-1035 "
            f"label of at most {DNS_LABEL_MAX_LENGTH} characters)"
        )
    else:
        return None
    return f"{why}. No child is created; {NAME_FIX}"


AuthMode = Literal["required", "optional"]
# Engine flags that would put a secret into the Deployment's arguments, where `kubectl
# describe`, the ReplicaSet history and anyone with read access to Deployments see it: every
# engine's secretFlags (data/engines.yaml; tests/unit/test_silent_contradictions.py holds
# the two together).
SECRET_FLAGS = ("--api-key", "--hf-token", "--ngrok-authtoken")
# An engineArg naming one of them in any spelling an engine's parser takes: alone or as
# --flag=value, with "_" for "-" (vLLM's FlexibleArgumentParser reads --api_key as --api-key),
# or cut to a prefix Python's argparse expands to the flag (vLLM leaves allow_abbrev on):
# --api-k and --hf-t are the shortest prefixes no other flag of `vllm serve` starts with
# (tests/engines/test_vllm_source.py checks that against every verified release); shorter
# ones are ambiguous, which argparse refuses itself. TGI's launcher (clap) takes long names
# exactly. ECMA-262 and RE2 alike: the CEL rule below uses it with matches().
SECRET_FLAG_PATTERN = r"^--(api[-_]k(e(y)?)?|hf[-_]t(o(k(e(n)?)?)?)?|ngrok[-_]authtoken)(=|$)"


class Model(pydantic.BaseModel):
    """Base for every API model: frozen, and unknown keys are refused (typos fail loudly)."""

    # strict: "4" is not 4 here, exactly as the CRD's schema refuses a string where an
    # integer belongs, so the CLI and the API server agree on what is valid.
    model_config = pydantic.ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
    )


class SecretKeyRef(Model):
    """A key in a Secret in the LlamaDeployment's namespace; the value is never copied."""

    name: str = Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret.",
    )


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


class RolloutStep(Model):
    """One canary step: send this share of traffic, then wait."""

    weight: int = Field(ge=1, le=99, description="Percent of traffic on the canary.")
    pause: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description=(
            "How long to hold this step (e.g. 5m) while the analysis runs; omit it to wait for "
            "a manual promote (annotation llamaops.dev/rollout=next or =promote)."
        ),
    )


# How a request that did not fail on the server's side may still have ended, by engine
# (each profile's outcomes.other in data/engines.yaml; tests/unit/test_analysis.py checks
# that these are exactly those): vLLM's finished_reason, TGI's err label.
VllmOutcomeKind = Literal["abort", "repetition"]
TgiOutcomeKind = Literal["validation", "overloaded", "template", "dropped"]
OutcomeKind = Literal[VllmOutcomeKind, TgiOutcomeKind]


class Analysis(Model):
    """Thresholds a canary must meet at every step, measured on the engines' own metrics."""

    maxErrorRate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description=(
            "Largest share of the canary's finished requests that may fail. Failed: the "
            "engine's server failures (vLLM: finished_reason error; TGI: tgi_request_failure "
            "with err generation or incomplete), any kind the operator does not know, and "
            "the kinds of countAsErrors."
        ),
    )
    countAsErrors: list[OutcomeKind] = Field(
        default_factory=list,
        description=(
            "Other ways a request ends that count as failed too. vLLM (finished_reason): "
            "abort (the client cancelled), repetition (a repetitive token pattern was "
            "detected). TGI (tgi_request_failure err): validation (the client's bad input), "
            "overloaded (429 from --max-concurrent-requests), template (the chat template "
            "failed on the input), dropped (the client went away: its response channel "
            "closed). Server failures always count; a kind the engine does not report "
            "changes nothing. E.g. [abort] or [dropped] where clients never cancel."
        ),
    )
    countAborted: bool = Field(
        default=False,
        description=(
            "Deprecated: use countAsErrors: [abort]. true means the same: vLLM requests that "
            "finished with reason abort count as failed."
        ),
    )
    maxP95LatencySeconds: float | None = Field(
        default=None, gt=0, description="Largest p95 end-to-end request latency of the canary."
    )
    maxP95TimeToFirstTokenSeconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Largest p95 time to first token of the canary (TGI: its queue time, the nearest "
            "metric it has)."
        ),
    )
    maxLatencyRatio: float | None = Field(
        default=None,
        ge=1,
        description=(
            "Largest p95 latency of the canary as a multiple of the stable variant's, measured "
            "over the same window (e.g. 1.2: at most 20% slower than what serves now)."
        ),
    )
    minRequests: int = Field(
        default=20,
        ge=0,
        description=(
            "Canary requests a judgement needs: a window with fewer grows until it has them. "
            "0 judges every interval, and lets a step pass on time alone with no traffic."
        ),
    )
    interval: str = Field(
        default="30s",
        pattern=DURATION_PATTERN,
        description=(
            "How often the canary and stable pods are scraped and judged (at most as often "
            "as the operator's resync, 15s by default)."
        ),
    )
    failureLimit: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Failed judgements, over the whole rollout, that abort it.",
    )

    @pydantic.field_validator("countAsErrors", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        # Before the type's own check, for a message that says which engine has which kind.
        allowed = get_args(OutcomeKind)
        for kind in value if isinstance(value, list) else ():
            if isinstance(kind, str) and kind not in allowed:
                raise ValueError(
                    f"countAsErrors takes {', '.join(get_args(VllmOutcomeKind))} (vLLM) and "
                    f"{', '.join(get_args(TgiOutcomeKind))} (TGI), not {kind!r}; server "
                    "failures (vLLM error; TGI generation, incomplete) always count"
                )
        return value

    def counted_outcomes(self) -> frozenset[str]:
        """The kinds counted as failed beyond the server failures (countAborted: abort)."""
        return frozenset((*self.countAsErrors, *(("abort",) if self.countAborted else ())))


DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {"weight": 10, "pause": "5m"},
    {"weight": 50, "pause": "10m"},
)


class Rollout(Model):
    """How a change of the serving pod template reaches users (docs/concepts/rollouts.md)."""

    strategy: Literal["Canary", "Rolling"] = Field(
        default="Canary",
        description=(
            "Canary: a change of the pod template on a Ready endpoint runs as <name>-canary "
            "beside the untouched stable pods, walks the steps under analysis, then is "
            "promoted or rolled back. Rolling: the Deployment's own rolling update."
        ),
    )
    steps: list[RolloutStep] = Field(
        default_factory=lambda: [RolloutStep(**step) for step in DEFAULT_STEPS],
        max_length=20,
        description=(
            "Canary steps, in order of increasing weight; empty means the default steps "
            "(10% for 5m, then 50% for 10m)."
        ),
    )
    analysis: Analysis = Field(default_factory=Analysis, description="Canary thresholds.")
    paused: bool = Field(
        default=False,
        description=(
            "Hold the canary at its current step (analysis goes on, and still aborts a failing "
            "canary); set back to false to resume."
        ),
    )
    readyTimeout: str = Field(
        default="1h",
        pattern=DURATION_PATTERN,
        description=(
            "How long the canary may take to become Ready (it downloads the model) before the "
            "rollout is aborted."
        ),
    )
    maxSurge: int = Field(
        default=1,
        ge=0,
        le=100,
        description=(
            "Extra pods a rolling update (strategy Rolling, and the promotion of a canary) may "
            "start beyond the replica count: each costs a pod's GPUs."
        ),
    )
    maxUnavailable: int = Field(
        default=0,
        ge=0,
        le=100,
        description=(
            "Pods a rolling update may take down before their replacements are ready: 1 with "
            "maxSurge 0 updates without any spare GPU, at the cost of one replica's capacity."
        ),
    )


def default_steps() -> list[RolloutStep]:
    """The canary steps of a policy that names none."""
    return [RolloutStep(**step) for step in DEFAULT_STEPS]


class ObjectRef(Model):
    """A reference to a Gateway API parent."""

    name: str = Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Gateway name."
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="Gateway namespace (default: this one).",
    )
    sectionName: str | None = Field(
        default=None, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Listener name."
    )


class Traffic(Model):
    """How traffic reaches the variants (docs/concepts/rollouts.md#traffic)."""

    gatewayRef: ObjectRef | None = Field(
        default=None,
        description=(
            "A Gateway API Gateway: an HTTPRoute <name> attached to it carries exact weights "
            "between <name>-primary and <name>-canary. Without it the Service <name> selects "
            "both variants' pods and the weight follows their replica counts."
        ),
    )
    hostnames: list[
        Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]
    ] = Field(
        default_factory=list,
        max_length=16,
        description="Hostnames of the HTTPRoute (gatewayRef only); empty matches any.",
    )


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


class APIKeySecretRef(Model):
    """The Secret key holding an endpoint's API key; the value is never copied."""

    name: str = Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        default="api-key",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret.",
    )


class Auth(Model):
    """Who may call the endpoint's API (docs/operations/security.md#api-keys)."""

    mode: AuthMode | None = Field(
        default=None,
        description=(
            "required: serve only with an API key; without apiKeySecretRef no serving pod is "
            "created and the Authenticated condition says what to set. optional: a key when "
            "apiKeySecretRef is set, an open endpoint otherwise. Omitted: the operator's "
            "default (Helm value auth.defaultMode; required unless changed)."
        ),
    )
    apiKeySecretRef: APIKeySecretRef | None = Field(
        default=None,
        description=(
            "The API key clients send as `Authorization: Bearer <key>`. The engine reads it "
            "from the Secret (vLLM: VLLM_API_KEY, TGI: API_KEY), so it never appears in the "
            "Deployment; /health and /metrics stay open for probes and scraping. A changed "
            "key reaches running pods when they restart."
        ),
    )


class LabelSelectorRequirement(Model):
    """One requirement of a label selector, as in Kubernetes."""

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list,
        max_length=64,
        description="Values for In and NotIn (at least one); empty for Exists and DoesNotExist.",
    )


class LabelSelector(Model):
    """A Kubernetes label selector; an empty one selects everything."""

    matchLabels: dict[
        Annotated[str, Field(min_length=1, max_length=317)],
        Annotated[str, Field(max_length=63)],
    ] = Field(default_factory=dict, max_length=32, description="Labels that must all match.")
    matchExpressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements that must all hold."
    )


class NetworkPeer(Model):
    """Pods allowed to connect: by namespace, by pod, or both (those pods in those namespaces)."""

    namespaceSelector: LabelSelector | None = Field(
        default=None, description="Namespaces, by their labels ({} = every namespace)."
    )
    podSelector: LabelSelector | None = Field(
        default=None, description="Pods, by their labels ({} = every pod)."
    )


class IPBlock(Model):
    """A CIDR range, minus some of it."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    cidr: str = Field(
        min_length=1, max_length=64, pattern=CIDR_PATTERN, description="e.g. 0.0.0.0/0."
    )
    except_: list[Annotated[str, Field(max_length=64, pattern=CIDR_PATTERN)]] = Field(
        default_factory=list,
        max_length=32,
        alias="except",
        description="Ranges inside cidr that are not allowed.",
    )


class EgressRule(Model):
    """Where serving pods may connect when egress is restricted."""

    namespaceSelector: LabelSelector | None = Field(
        default=None, description="Namespaces, by their labels."
    )
    podSelector: LabelSelector | None = Field(default=None, description="Pods, by their labels.")
    ipBlock: IPBlock | None = Field(
        default=None, description="Addresses (outside the cluster's pod network)."
    )
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443],
        min_length=1,
        max_length=16,
        description="TCP ports.",
    )


class Egress(Model):
    """Outbound connections of the serving pods."""

    restrict: bool = Field(
        default=False,
        description=(
            "Allow only DNS and allowTo. Off by default: engines download weights from the "
            "model hub on first start."
        ),
    )
    allowTo: list[EgressRule] | None = Field(
        default=None,
        max_length=16,
        description=(
            "With restrict: where pods may connect besides DNS. Omitted: the model hub, as "
            "HTTPS (443) to addresses outside the private, shared and link-local ranges (so "
            "no other workload in the cluster and no cloud metadata endpoint)."
        ),
    )


class Network(Model):
    """The NetworkPolicy <name> in front of the serving pods (docs/operations/security.md)."""

    policy: bool | None = Field(
        default=None,
        description=(
            "Create the NetworkPolicy. Omitted: the operator's default (Helm value "
            "networkPolicy.enabled; on unless changed). false removes it."
        ),
    )
    allowFrom: list[NetworkPeer] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Who may connect to the serving port, besides the operator and the monitoring "
            "namespace. Omitted: every pod in this namespace. [] : nobody else."
        ),
    )
    egress: Egress = Field(default_factory=Egress, description="Outbound connections.")


class Limits(Model):
    """Per-request and per-replica limits the engines enforce (docs/operations/security.md)."""

    maxTokensPerRequest: int | None = Field(
        default=None,
        ge=128,
        le=10_000_000,
        description=(
            "Prompt plus generated tokens one request may use; longer requests are refused "
            "by the engine. Omitted: the planned context (status.plan.maxModelLen); larger "
            "than that is refused."
        ),
    )
    maxConcurrentSequences: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=(
            "Requests one replica works on at once (vLLM --max-num-seqs; TGI "
            "--max-concurrent-requests, which refuses more). Omitted: what the planned KV "
            "cache holds at 1024 tokens each, within [planned full-length sequences, 256]."
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


# Spec fields that are validated now but whose behaviour ships in later releases.
NOT_YET_ACTIVE: tuple[str, ...] = ()


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
            "Activation peak, communication buffers and CUDA graphs charged to the budget."
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
    reason: str = Field(description="One line a person can read: why this plan.")
    inputsHash: str | None = Field(
        default=None,
        description=(
            "Hash of the spec fields the plan was made from (model, engine, placement). "
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
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation last reconciled."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")

    model_config = pydantic.ConfigDict(frozen=True, extra="allow")


class LlamaDeployment(Model):
    """The whole object, as read from the API."""

    apiVersion: Literal["llamaops.dev/v1alpha1"] = "llamaops.dev/v1alpha1"
    kind: Literal["LlamaDeployment"] = "LlamaDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: LlamaDeploymentSpec
    status: LlamaDeploymentStatus = Field(default_factory=LlamaDeploymentStatus)

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")


# Cross-field rules the API server enforces with CEL (x-kubernetes-validations).
# Keyed by the dotted path of the model they attach to ("" = spec root). Each entry is
# (rule, message). The same rules are also checked in Python by ``validate_spec`` so
# the CLI refuses what the API server would.
CEL_RULES: dict[str, list[tuple[str, str]]] = {
    "autoscaling": [
        (
            "self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must be less than or equal to maxReplicas",
        ),
        (
            "self.minReplicas > 0 || self.engine == 'keda'",
            "spec.autoscaling.minReplicas: 0 needs engine: keda, whose activation trigger can "
            "wake a deployment with no pods; builtin and hpa see no requests without a pod",
        ),
        (
            "!has(self.target) || !has(self.targetQueueLength)",
            "spec.autoscaling: set target or targetQueueLength, not both",
        ),
        (
            "self.metric != 'kvCache' || ((!has(self.target) || self.target <= 1.0) && "
            "(!has(self.targetQueueLength) || self.targetQueueLength <= 1.0))",
            "spec.autoscaling.target: the kvCache metric is a fraction, so the target must be "
            "at most 1",
        ),
        (
            "!has(self.activationTarget) || self.engine == 'keda'",
            "spec.autoscaling.activationTarget applies to engine: keda only",
        ),
        (
            "self.engine == 'builtin' || self.scaleDownDelaySeconds <= 3600",
            "spec.autoscaling.scaleDownDelaySeconds: keda and hpa scale through a "
            "HorizontalPodAutoscaler, whose stabilization window is at most 3600 seconds",
        ),
    ],
    "placement": [
        # Int-or-string fields are dyn in CEL: branch on the runtime type instead of comparing
        # an int with a string, which only heterogeneous-equality evaluators accept.
        (
            "!has(self.tensorParallel) || (type(self.tensorParallel) == string ? "
            "self.tensorParallel == 'auto' : self.tensorParallel in [1, 2, 4, 8])",
            "spec.placement.tensorParallel must be auto, 1, 2, 4 or 8",
        ),
        (
            "!has(self.maxModelLen) || (type(self.maxModelLen) == string ? "
            "self.maxModelLen == 'auto' : self.maxModelLen >= 128)",
            "spec.placement.maxModelLen must be auto or an integer of at least 128",
        ),
    ],
    "modelCache": [
        (
            "!has(self.volume) || self.volume != 'persistentVolumeClaim' || "
            "(has(self.claimName) && self.claimName != '')",
            "spec.modelCache.claimName is required when volume is persistentVolumeClaim",
        ),
    ],
    "rollout": [
        (
            # CEL macros iterate values, not indexes, and has no range(): list the indexes of
            # every adjacent pair instead (steps holds at most 20 items).
            "!has(self.steps) || "
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18].all(i, "
            "i + 1 >= size(self.steps) || self.steps[i].weight < self.steps[i + 1].weight)",
            "spec.rollout.steps weights must increase from step to step",
        ),
        (
            "!has(self.maxSurge) || !has(self.maxUnavailable) || "
            "self.maxSurge + self.maxUnavailable >= 1",
            "spec.rollout: maxSurge and maxUnavailable cannot both be 0, or a rolling update "
            "could never replace a pod",
        ),
    ],
    "network": [
        (
            "!has(self.allowFrom) || self.allowFrom.all(p, has(p.namespaceSelector) || "
            "has(p.podSelector))",
            "spec.network.allowFrom: each entry needs namespaceSelector, podSelector or both",
        ),
    ],
    "network.egress": [
        (
            "!has(self.allowTo) || self.allowTo.all(r, has(r.ipBlock) != "
            "(has(r.namespaceSelector) || has(r.podSelector)))",
            "spec.network.egress.allowTo: each entry needs either ipBlock or "
            "namespaceSelector/podSelector, not both",
        ),
        (
            "!has(self.allowTo) || (has(self.restrict) && self.restrict)",
            "spec.network.egress.allowTo applies only with restrict: true",
        ),
    ],
    "": [
        (
            "!has(self.model.checkpointQuantization) || self.model.checkpointQuantization == "
            "'none' || !has(self.placement) || !has(self.placement.quantization) || "
            "self.placement.quantization in ['auto', self.model.checkpointQuantization]",
            "spec.placement.quantization must be auto or match spec.model.checkpointQuantization "
            "for a pre-quantized checkpoint",
        ),
        (
            "!has(self.placement) || !has(self.placement.quantization) || "
            "!(self.placement.quantization in ['awq', 'gptq']) || "
            "(has(self.model.checkpointQuantization) && "
            "self.model.checkpointQuantization == self.placement.quantization)",
            "spec.placement.quantization awq/gptq needs a pre-quantized checkpoint: set "
            "spec.model.checkpointQuantization and point spec.model.id at that repository",
        ),
        (
            f"!has(self.engineArgs) || self.engineArgs.all(a, !a.matches('{SECRET_FLAG_PATTERN}'))",
            "spec.engineArgs must not carry --api-key, --hf-token or --ngrok-authtoken (in any "
            "spelling: --api_key, --api-k, --flag=value): arguments show in kubectl describe; "
            "use spec.auth.apiKeySecretRef and spec.model.tokenSecretRef",
        ),
    ],
}

# Rules at the root of the object, where ``self`` is the whole LlamaDeployment: the only
# place CEL can read ``self.metadata.name``. Emitted with ``optionalOldSelf: true`` and
# passing whenever ``oldSelf`` has a value, so they apply on create only: a name cannot
# change afterwards, and a root rule checked on updates would refuse every status and
# metadata patch of an object created under an older CRD (the operator could then not
# even report InvalidName on it). ``name_problem`` is the same check in Python.
ROOT_CEL_RULES: list[tuple[str, str]] = [
    (
        f"oldSelf.hasValue() || (size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
        f"self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}'))",
        f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
        "(lower-case letters, digits and '-', starting with a letter and ending with a letter "
        f"or digit): the operator names the Services <name> to <name>-{FALLBACK_PREFIX}"
        f"{MAX_FALLBACKS - 1} after it, and a Service name is a DNS-1035 label of at most "
        f"{DNS_LABEL_MAX_LENGTH} characters; choose a shorter name",
    ),
]


class SpecError(ValueError):
    """A spec the operator cannot act on; ``field`` names where to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_spec(raw: dict[str, Any]) -> LlamaDeploymentSpec:
    """Parse and cross-validate a spec, raising ``SpecError`` naming the first bad field."""
    try:
        spec = LlamaDeploymentSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"] if not _is_union_tag(part))
        message = first["msg"]
        hint = PATTERN_HINTS.get(str((first.get("ctx") or {}).get("pattern")))
        if first["type"] == "string_pattern_mismatch" and hint is not None:
            message = f"{hint}, not {first['input']!r}"
        raise SpecError(f"spec.{loc}" if loc else "spec", message) from exc
    validate_spec(spec)
    return spec


def _is_union_tag(part: int | str) -> bool:
    # pydantic names union branches in error locations ("int", "literal['auto']"); users
    # only need the field path.
    return isinstance(part, str) and (part in ("int", "str") or part.startswith("literal["))


def validate_spec(spec: LlamaDeploymentSpec) -> None:
    """The CEL rules of ``CEL_RULES``, in Python, for input that bypassed the API server."""
    a = spec.autoscaling
    if a is not None:
        _validate_autoscaling(a)
    if spec.modelCache.volume == "persistentVolumeClaim" and not spec.modelCache.claimName:
        raise SpecError(
            "spec.modelCache.claimName", "is required when volume is persistentVolumeClaim"
        )
    if spec.rollout is not None:
        weights = [step.weight for step in spec.rollout.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise SpecError("spec.rollout.steps", "weights must increase from step to step")
        if spec.rollout.maxSurge + spec.rollout.maxUnavailable < 1:
            raise SpecError(
                "spec.rollout.maxSurge",
                "maxSurge and maxUnavailable cannot both be 0, or a rolling update could never "
                "replace a pod",
            )
    _validate_security(spec)
    ckpt, quant = spec.model.checkpointQuantization, spec.placement.quantization
    if ckpt != "none" and quant not in ("auto", ckpt):
        raise SpecError(
            "spec.placement.quantization",
            f"must be auto or {ckpt}: the checkpoint is pre-quantized with {ckpt}",
        )
    if quant in ("awq", "gptq") and ckpt != quant:
        raise SpecError(
            "spec.placement.quantization",
            f"{quant} needs a pre-quantized checkpoint: set spec.model.checkpointQuantization: "
            f"{quant} and point spec.model.id at that repository",
        )


def _validate_security(spec: LlamaDeploymentSpec) -> None:
    for arg in spec.engineArgs:
        flag = arg.split("=", 1)[0]
        if re.match(SECRET_FLAG_PATTERN, arg):
            raise SpecError(
                "spec.engineArgs",
                f"must not carry {flag}: arguments show in kubectl describe and the "
                "Deployment's history; use spec.auth.apiKeySecretRef for the API key and "
                "spec.model.tokenSecretRef for the Hub token",
            )
    network = spec.network
    for index, peer in enumerate(network.allowFrom or ()):
        where = f"spec.network.allowFrom[{index}]"
        if peer.namespaceSelector is None and peer.podSelector is None:
            raise SpecError(where, "needs namespaceSelector, podSelector or both")
        _validate_selector(f"{where}.namespaceSelector", peer.namespaceSelector)
        _validate_selector(f"{where}.podSelector", peer.podSelector)
    if network.egress.allowTo is not None and not network.egress.restrict:
        raise SpecError("spec.network.egress.allowTo", "applies only with restrict: true")
    for index, rule in enumerate(network.egress.allowTo or ()):
        where = f"spec.network.egress.allowTo[{index}]"
        selectors = rule.namespaceSelector is not None or rule.podSelector is not None
        if (rule.ipBlock is not None) == selectors:
            raise SpecError(
                where, "needs either ipBlock or namespaceSelector/podSelector, not both"
            )
        _validate_selector(f"{where}.namespaceSelector", rule.namespaceSelector)
        _validate_selector(f"{where}.podSelector", rule.podSelector)


def _validate_selector(where: str, selector: LabelSelector | None) -> None:
    # What the API server checks of a NetworkPolicy's selectors, so a bad one is reported
    # on the LlamaDeployment (naming its field) rather than as a refused apply.
    for index, requirement in enumerate(selector.matchExpressions if selector else ()):
        takes_values = requirement.operator in ("In", "NotIn")
        if takes_values and not requirement.values:
            raise SpecError(
                f"{where}.matchExpressions[{index}].values",
                f"operator {requirement.operator} needs at least one value",
            )
        if not takes_values and requirement.values:
            raise SpecError(
                f"{where}.matchExpressions[{index}].values",
                f"must be empty for operator {requirement.operator}",
            )


def _validate_autoscaling(a: Autoscaling) -> None:
    if a.minReplicas > a.maxReplicas:
        raise SpecError("spec.autoscaling.minReplicas", "must be less than or equal to maxReplicas")
    if a.minReplicas == 0 and a.engine != "keda":
        raise SpecError(
            "spec.autoscaling.minReplicas",
            "0 needs engine: keda, whose activation trigger can wake a deployment with no pods; "
            "builtin and hpa see no requests without a pod",
        )
    if a.target is not None and a.targetQueueLength is not None:
        raise SpecError("spec.autoscaling", "set target or targetQueueLength, not both")
    if a.metric == "kvCache" and a.effective_target() > 1:
        raise SpecError(
            "spec.autoscaling.target",
            "the kvCache metric is a fraction, so the target must be at most 1",
        )
    if a.activationTarget is not None and a.engine != "keda":
        raise SpecError("spec.autoscaling.activationTarget", "applies to engine: keda only")
    if a.engine != "builtin" and a.scaleDownDelaySeconds > 3600:
        raise SpecError(
            "spec.autoscaling.scaleDownDelaySeconds",
            "keda and hpa scale through a HorizontalPodAutoscaler, whose stabilization window "
            "is at most 3600 seconds",
        )


def plan_inputs_hash(spec: LlamaDeploymentSpec) -> str:
    """Fingerprint of what the planner decides from; see ``Plan.inputsHash``."""
    data = spec.model_dump(mode="json", include={"model", "engine", "placement"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_parameters(text: str) -> float:
    """``"70.6B"`` -> 70.6e9."""
    match = re.fullmatch(PARAMETERS_PATTERN, text)
    if match is None:
        raise SpecError("spec.model.parameters", f"{text!r} is not like 8B, 70.6B or 400M")
    scale = {"M": 1e6, "B": 1e9, "T": 1e12}[text[-1]]
    return float(text[:-1]) * scale


def parse_duration(text: str) -> float:
    """``"1m30s"`` -> 90.0 seconds (``DURATION_PATTERN``)."""
    if re.fullmatch(DURATION_PATTERN, text) is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    )


def stamp(now: float) -> str:
    """RFC 3339, with milliseconds when ``now`` has a fraction: periods (pauses, grace,
    hold-down) are timed from these, and a start truncated to the second would end them
    up to 1 s early."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    if now == int(now):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch(text: object) -> float | None:
    """``stamp``'s (or any RFC 3339) time in seconds since the epoch; None when absent or
    unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def failover_policy(spec: LlamaDeploymentSpec) -> Failover:
    """spec.failover, or its defaults when omitted (re-planning is on by default)."""
    return spec.failover if spec.failover is not None else Failover()
