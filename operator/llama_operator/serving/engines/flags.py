"""Spelling a planned quantization as an engine flag value, shared by both engines."""

from __future__ import annotations

from llama_operator import api
from llama_operator.planning import engine_profiles


def quantization(*, profile: engine_profiles.Profile, quantization: api.Quantization) -> str | None:
    """The flag value for ``quantization`` (None: no flag), or ValueError naming the engine.

    The planner never plans what the release cannot serve; this guards a plan read back
    from status that was made for another release.
    """
    if not profile.serves(quantization):
        supported = ", ".join(sorted(profile.quantizations))
        raise ValueError(
            f"{profile.displayName} {profile.since}+ cannot serve quantization "
            f"{quantization!r}; supported: {supported}"
        )
    return profile.quantizations[quantization].flag
