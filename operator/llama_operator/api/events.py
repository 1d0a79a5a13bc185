"""The Event a decision asks to be posted on its LlamaDeployment: one type for all.

Pure data. The reconcile, the autoscaler's loop and the rollout state machine return
these; the handlers post them with ``kopf.event``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
