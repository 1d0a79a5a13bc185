"""Known GPU products: memory, compute capability, precision support and list price.

Keyed by the product name NVIDIA GPU Feature Discovery puts in the
``nvidia.com/gpu.product`` node label. Pools name a product; the planner asks here
what that product can do (bf16? fp8 compute?) so a pool entry only has to carry
what is specific to the cluster (node selector, tolerations, its own price).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GPU:
    product: str
    # What the engine sees and budgets from: torch.cuda.mem_get_info()'s total, in GiB
    # (vLLM logs it as total_gpu_memory). Less than nvidia-smi's total, the figure GPU
    # Feature Discovery puts in the nvidia.com/gpu.memory label (``label_gib``).
    memory_gib: float
    compute_capability: float
    bf16: bool
    fp8: bool
    # A rough on-demand price per GPU-hour, used only to *rank* plans on pools whose
    # price the operator config does not give; never reported as a cost.
    list_price_per_hour: float
    label_gib: float


# The gap between the label and what the engine sees: H100 80GB labelled 81559 MiB
# (79.65 GiB; facts.md, GPU Feature Discovery) and seen at 79.18 GiB (0.47); against the
# products' nominal memory, A100 80GB 80 GiB and 79.25 seen (0.75). Products without a
# logged figure, and discovered products the table lacks, are taken at the label less
# the larger gap.
LABEL_GAP_GIB = 0.75


def _gpu(
    product: str,
    label_gib: float,
    capability: float,
    price: float,
    *,
    seen_gib: float | None = None,
) -> GPU:
    return GPU(
        product,
        memory_gib=seen_gib if seen_gib is not None else round(label_gib - LABEL_GAP_GIB, 2),
        compute_capability=capability,
        bf16=capability >= BF16_MIN_CAPABILITY,
        fp8=capability >= FP8_MIN_CAPABILITY,
        list_price_per_hour=price,
        label_gib=label_gib,
    )


# fp8 *compute* (W8A8) needs Ada or Hopper tensor cores.
FP8_MIN_CAPABILITY = 8.9
BF16_MIN_CAPABILITY = 8.0

# seen_gib: the total_gpu_memory of a real vLLM start-up log
# (tests/fixtures/engine-memory/vllm-startup-logs.yaml, by fixture id):
# H100 79.18 (llmd-llama31-8b-tp1-h100; 79.22 in older logs, the lower is taken),
# A100 80GB 79.25 (kvcached110-llama31-8b-a100-refused), A10G 21.99
# (issue15360-qwen25-7b-a10g-v0), H200 139.72 (issue15394-opt125m-h200-v0), A100 40GB
# 39.50 (issue12330-llama3-8b-a100-40gb), T4 14.74 (hfcookbook-llama32-3b-t4-v0-fallback).
# L40S: 44.31 logged (issue15196-deepseek-coder-v2-lite-l40s-cpu-offload); the table keeps
# label - gap, 44.24, 0.07 below it.
# label_gib: the label figure in GiB (H100: the recorded 81559 MiB; the others their
# nominal memory, which nvidia-smi reports within a few hundred MiB).
_GPUS = (
    _gpu("Tesla-T4", 15.0, 7.5, 0.35, seen_gib=14.74),
    _gpu("NVIDIA-A10G", 22.49, 8.6, 1.0, seen_gib=21.99),
    _gpu("NVIDIA-L4", 22.49, 8.9, 0.8),
    _gpu("NVIDIA-L40S", 44.99, 8.9, 1.8),
    _gpu("NVIDIA-A100-SXM4-40GB", 40.0, 8.0, 1.6, seen_gib=39.5),
    _gpu("NVIDIA-A100-SXM4-80GB", 80.0, 8.0, 2.2, seen_gib=79.25),
    _gpu("NVIDIA-A100-80GB-PCIe", 80.0, 8.0, 2.0, seen_gib=79.25),
    _gpu("NVIDIA-H100-80GB-HBM3", 79.65, 9.0, 4.0, seen_gib=79.18),
    _gpu("NVIDIA-H100-NVL", 93.58, 9.0, 4.5),
    _gpu("NVIDIA-H200", 140.4, 9.0, 5.0, seen_gib=139.72),
    _gpu("NVIDIA-B200", 179.06, 10.0, 7.0),
)
KNOWN: dict[str, GPU] = {gpu.product: gpu for gpu in _GPUS}

# Memory-proportional fallback for products missing from the table, in $/GiB-hour.
PRICE_PER_GIB_HOUR = 0.05


def seen_from_label(label_mib: int) -> float:
    """What the engine will see on a GPU labelled ``label_mib`` (nvidia.com/gpu.memory)."""
    return round(label_mib / 1024 - LABEL_GAP_GIB, 2)


def lookup(product: str) -> GPU | None:
    return KNOWN.get(product)


def supports_bf16(compute_capability: float) -> bool:
    return compute_capability >= BF16_MIN_CAPABILITY


def supports_fp8(compute_capability: float) -> bool:
    return compute_capability >= FP8_MIN_CAPABILITY
