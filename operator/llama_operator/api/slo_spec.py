"""spec.slo: the service level an endpoint is held to, and the one source of its thresholds.

``SLO`` is what a user writes; ``reconcile.serving_slo`` compares the primary's measured
window (``operations.slo``) with it for the ``SLOMet`` condition, and ``spec.analysis_for``
derives the canary analysis' defaults from it (docs/concepts/slo.md). Omitted: no objective
at all; ``status.serving`` still shows the figures.

The defaults (p95 latency under 2 s, errors under 1 %) are the operations guidance of the
project's seed documents (not part of this repository); they apply only where a user opts
in by setting ``spec.slo``.
"""

from __future__ import annotations

from pydantic import Field

from llama_operator.api.base import Model
from llama_operator.api.names import DURATION_PATTERN

# The seeds' operations guidance: "P95 < 2 s", "errors < 1 %".
DEFAULT_MAX_P95_LATENCY_SECONDS = 2.0
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_WINDOW = "5m"
# The longest window the operator keeps scrapes for (in memory, per pod).
MAX_WINDOW_SECONDS = 24 * 3600.0


class SLO(Model):
    """The objectives of the endpoint, measured on the primary's engines (docs/concepts/slo.md)."""

    maxP95LatencySeconds: float = Field(
        default=DEFAULT_MAX_P95_LATENCY_SECONDS,
        gt=0,
        description=(
            "Largest p95 end-to-end request latency over the window (default 2, the "
            "operations guidance's P95 < 2 s). Also the canary's maxP95LatencySeconds "
            "unless spec.rollout.analysis sets it."
        ),
    )
    maxP95TimeToFirstTokenSeconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Largest p95 time to first token over the window (TGI: its queue time, the "
            "nearest metric it has); omitted: not an objective. Also the canary's "
            "maxP95TimeToFirstTokenSeconds unless spec.rollout.analysis sets it."
        ),
    )
    maxErrorRate: float = Field(
        default=DEFAULT_MAX_ERROR_RATE,
        ge=0,
        le=1,
        description=(
            "Largest share of the finished requests that may fail over the window (default "
            "0.01, the operations guidance's errors < 1 %): the engine's server failures and "
            "any kind the operator does not know. Also the canary's maxErrorRate unless "
            "spec.rollout.analysis sets it."
        ),
    )
    minTokensPerSecond: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Lowest rate of generated tokens the endpoint must serve over the window, summed "
            "over the primary's ready pods; omitted: not an objective."
        ),
    )
    window: str = Field(
        default=DEFAULT_WINDOW,
        pattern=DURATION_PATTERN,
        description=(
            "The span the figures are measured over (default 5m, at most 24h); the pods are "
            "read every fifth of it, never more often than the operator's resync (15s)."
        ),
    )
