"""Input limits of a serving engine: spec.limits over defaults derived from the plan.

Pure, and shared by both engine modules (each spells the limits as its own flags) and by
the reconciler, which refuses a limit the plan cannot serve before anything is built.
"""

from __future__ import annotations

import dataclasses

from llama_operator import api

# Default of spec.limits.maxConcurrentSequences: the sequences the planned KV cache holds
# when each uses this many tokens (a typical chat turn, not the full context), never fewer
# than the full-length sequences it was planned for, and at most vLLM's own default.
TYPICAL_SEQUENCE_TOKENS = 1024
MAX_DEFAULT_SEQUENCES = 256


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one engine is told to enforce (spec.limits, defaults from the plan)."""

    max_tokens_per_request: int  # prompt + generated tokens of one request
    max_concurrent_sequences: int  # requests one replica works on at once


def limits(*, spec: api.LlamaDeploymentSpec, plan: api.Plan) -> Limits:
    """spec.limits over the plan's defaults. A token limit above the planned context is
    held to the context (``check_limits`` refuses it for the variant it was written for;
    a fallback with a shorter context simply gets its own)."""
    tokens = spec.limits.maxTokensPerRequest
    sequences = spec.limits.maxConcurrentSequences
    if sequences is None:
        held = plan.maxModelLen * plan.maxConcurrentSequences // TYPICAL_SEQUENCE_TOKENS
        sequences = max(plan.maxConcurrentSequences, min(MAX_DEFAULT_SEQUENCES, held))
    return Limits(
        max_tokens_per_request=plan.maxModelLen
        if tokens is None
        else min(tokens, plan.maxModelLen),
        max_concurrent_sequences=sequences,
    )


def check_limits(*, spec: api.LlamaDeploymentSpec, plan: api.Plan) -> None:
    """``api.SpecError`` when spec.limits asks for more than the plan can serve."""
    tokens = spec.limits.maxTokensPerRequest
    if tokens is not None and tokens > plan.maxModelLen:
        raise api.SpecError(
            "spec.limits.maxTokensPerRequest",
            f"{tokens} is more than the planned context of {plan.maxModelLen} tokens: lower "
            "it, or raise spec.placement.maxModelLen so the KV cache is sized for it",
        )
