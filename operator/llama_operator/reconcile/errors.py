"""A reconcile that raised: what status and Events say, and when Kopf tries again.

Kopf retries a reconcile that raised (a transient error heals: an API server restarting, a
webhook briefly down, a conflict), after ``retry_delay``; meanwhile ``Reconciled`` is False
with the error, and a Warning Event says so once per distinct error (again after
REPEAT_WARNING_SECONDS while it lasts: Events expire after an hour by default). The
handlers call ``failed`` when ``reconcile.reconcile`` raises; this is the only path that
does not end in ``report``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.clients import k8s
from llama_operator.reconcile import status

REPEAT_WARNING_SECONDS = 1800.0
# Retries wait the resync interval, doubling with each failure in a row, up to this many
# intervals (5 minutes at the default 15 s).
MAX_RETRY_INTERVALS = 20
ERROR_MESSAGE_LIMIT = 400
# The Reconciled=False reasons: an answer of the API server, or anything else.
ErrorReason = Literal["APIError", "UnexpectedError"]
API_ERROR: ErrorReason = "APIError"
UNEXPECTED_ERROR: ErrorReason = "UnexpectedError"


@dataclasses.dataclass(frozen=True)
class Failed:
    """What to report of a reconcile that raised, and when to try again."""

    status_patch: dict[str, Any]
    events: list[Event]
    message: str  # the condition's message: what the log line says too
    log_traceback: bool  # an unexpected error seen for the first time (or again, later)
    retry_in: float


def describe_error(error: BaseException) -> tuple[ErrorReason, str]:
    """The ``Reconciled`` condition's reason and message for ``error``.

    An API error names the request it answered (the child and what was done to it) and
    what the API server said; anything else, its type and the first line of its text. No
    request body is ever included, and the objects the operator sends carry no secret
    (Secrets are referenced by name), so neither does the API server's answer about them.
    """
    if isinstance(error, k8s.APIError):
        where = f"{error.request}: " if error.request else ""
        text = f"{where}the API server answered {error.status} {error.reason}: {error.message}"
        return API_ERROR, _short(text)
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return UNEXPECTED_ERROR, _short(f"{text} (the operator's log has the traceback)")


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= ERROR_MESSAGE_LIMIT:
        return text
    return text[: ERROR_MESSAGE_LIMIT - 3].rstrip() + "..."


def retry_delay(attempt: int, interval: float) -> float:
    """Seconds before retry ``attempt`` (0: the first) of a reconcile that raised."""
    return float(interval * min(2 ** min(attempt, 16), MAX_RETRY_INTERVALS))


def failed(
    *,
    body: Mapping[str, Any],
    error: BaseException,
    now: str,
    instant: float,
    reported: MutableMapping[str, float],
    attempt: int,
    interval: float,
) -> Failed:
    """What a reconcile that raised ``error`` leaves: ``Reconciled`` False with the error,
    and a Warning Event, rate-limited.

    The Warning is posted when the condition turns False or its error changes, and again
    when the same error has lasted REPEAT_WARNING_SECONDS; never once per retry.
    ``reported`` (the object's memo, cleared by a reconcile that succeeds) remembers when
    this process last posted the current error, so two retries that both read a status
    from before the first one's write (a change handler and the timer) post it once.
    """
    meta = body.get("metadata") or {}
    previous = body.get("status") or {}
    reason, message = describe_error(error)
    before = conditions.find(previous.get("conditions") or [], conditions.RECONCILED)
    changed = (
        before is None
        or before.get("status") != "False"
        or before.get("reason") != reason
        or before.get("message") != message
    )
    key = f"{reason}: {message}"
    last = reported.get(key)
    post = changed if last is None else instant - last >= REPEAT_WARNING_SECONDS
    if last is None or post:
        reported.clear()
        reported[key] = instant
    new_status = status.failed(
        previous, reason=reason, message=message, generation=meta.get("generation"), now=now
    )
    return Failed(
        status_patch=status.diff(previous, new_status),
        events=[Event("Warning", reason, message)] if post else [],
        message=f"{reason}: {message}",
        log_traceback=reason == UNEXPECTED_ERROR and (last is None or post),
        retry_in=retry_delay(attempt, interval),
    )
