"""spec.rollout and spec.traffic: how a new pod template reaches users.

The canary steps and the analysis thresholds (``Rollout``, ``Analysis``) and the traffic
split (``Traffic``). ``operations.rollout`` and ``operations.canary_analysis`` act on
them; ``spec.LlamaDeploymentSpec`` holds them (docs/concepts/rollouts.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import Field

from llama_operator.api.base import Model
from llama_operator.api.names import (
    DURATION_PATTERN,
    HOSTNAME_PATTERN,
    NAMESPACE_PATTERN,
    OBJECT_NAME_PATTERN,
)


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
# (each profile's outcomes.other in data/engines.yaml; tests/unit/test_canary_analysis.py checks
# that these are exactly those): vLLM's finished_reason, TGI's err label.
VllmOutcomeKind = Literal["abort", "repetition"]
TgiOutcomeKind = Literal["validation", "overloaded", "template", "dropped"]
OutcomeKind = Literal[VllmOutcomeKind, TgiOutcomeKind]


def _no_schema_default(schema: dict[str, Any]) -> None:
    """Leaves a field's default out of the CRD (the models still apply it)."""
    schema.pop("default", None)


class Analysis(Model):
    """Thresholds a canary must meet at every step, measured on the engines' own metrics."""

    maxErrorRate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        # No default in the CRD: the API server would write 0.02 into every stored analysis,
        # and spec.slo.maxErrorRate could then never tell an unset threshold from a set one
        # (api.analysis_for). The operator applies the default itself.
        json_schema_extra=_no_schema_default,
        description=(
            "Largest share of the canary's finished requests that may fail (default 0.02, or "
            "spec.slo.maxErrorRate when spec.slo is set). Failed: the "
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
        default=None,
        gt=0,
        description=(
            "Largest p95 end-to-end request latency of the canary (default: "
            "spec.slo.maxP95LatencySeconds when spec.slo is set, else none)."
        ),
    )
    maxP95TimeToFirstTokenSeconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Largest p95 time to first token of the canary (TGI: its queue time, the nearest "
            "metric it has; default: spec.slo.maxP95TimeToFirstTokenSeconds when set)."
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
