"""Sample objects shared by unit tests (imported as ``samples``)."""

from __future__ import annotations

from typing import Any

from llama_operator import api
from llama_operator.reconcile import status

# What the planner chooses for Llama-3.1-8B on the bundled L4 pool.
PLAN = api.Plan(
    engine="vllm",
    pool="l4",
    gpuProduct="NVIDIA-L4",
    gpusPerReplica=1,
    tensorParallel=1,
    quantization="none",
    dtype="bfloat16",
    maxModelLen=7680,
    maxConcurrentSequences=4,
    gpuMemoryUtilization=0.9,
    weightsGiB=14.96,
    estimatedGPUMemoryGiB=20.2,
    kvCacheGiB=3.8,
    costPerHour=0.8,
    reason="8.03B at 16-bit needs 15 GiB of weights; 1x NVIDIA-L4 (l4) at bf16 fits",
)

NOW = "2026-01-01T00:00:00Z"


def deployment(
    *,
    replicas: int = 1,
    ready: int = 0,
    updated: int | None = None,
    generation: int = 1,
    observed: int = 1,
    deadline: bool = False,
) -> dict[str, Any]:
    """A primary Deployment as the Deployment controller would report it."""
    conds = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    return {
        "metadata": {"generation": generation},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
            "observedGeneration": observed,
            "conditions": conds if deadline else [],
        },
    }


def observe(**overrides: Any) -> status.Observation:
    """What status.compute sees for a planned, not yet deployed LlamaDeployment ``chat``."""
    values: dict[str, Any] = {
        "generation": 1,
        "previous": {},
        "plan": PLAN,
        "failure": None,
        "deployment": None,
        "desired_replicas": 1,
        "selector": "llamaops.dev/deployment=chat,llamaops.dev/variant=primary",
        "not_yet_active": (),
        "now": NOW,
    }
    values.update(overrides)
    return status.Observation(**values)
