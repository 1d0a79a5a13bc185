"""Reading the API's strings as numbers: parameter counts, durations and timestamps.

``parse_parameters`` and ``parse_duration`` read what the spec's patterns
(``names.PARAMETERS_PATTERN``, ``names.DURATION_PATTERN``) admit; ``stamp`` writes the
RFC 3339 times the status keeps and ``epoch`` reads them back. Used by planning, the
state machines in ``operations`` and the reconciler.
"""

from __future__ import annotations

import datetime
import re

from llama_operator.api.names import DURATION_PATTERN, PARAMETERS_PATTERN
from llama_operator.api.validation import SpecError


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
