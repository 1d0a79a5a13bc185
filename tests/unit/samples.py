"""Sample objects shared by unit tests (imported as ``samples``)."""

from __future__ import annotations

from llama_operator import api

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
