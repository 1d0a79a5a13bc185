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
    memory_gib: float
    compute_capability: float
    bf16: bool
    fp8: bool
    # A rough on-demand price per GPU-hour, used only to *rank* plans on pools whose
    # price the operator config does not give; never reported as a cost.
    list_price_per_hour: float


_GPUS = (
    GPU("Tesla-T4", 15.0, 7.5, bf16=False, fp8=False, list_price_per_hour=0.35),
    GPU("NVIDIA-A10G", 22.5, 8.6, bf16=True, fp8=False, list_price_per_hour=1.0),
    GPU("NVIDIA-L4", 22.5, 8.9, bf16=True, fp8=True, list_price_per_hour=0.8),
    GPU("NVIDIA-L40S", 45.0, 8.9, bf16=True, fp8=True, list_price_per_hour=1.8),
    GPU("NVIDIA-A100-SXM4-40GB", 40.0, 8.0, bf16=True, fp8=False, list_price_per_hour=1.6),
    GPU("NVIDIA-A100-SXM4-80GB", 80.0, 8.0, bf16=True, fp8=False, list_price_per_hour=2.2),
    GPU("NVIDIA-A100-80GB-PCIe", 80.0, 8.0, bf16=True, fp8=False, list_price_per_hour=2.0),
    GPU("NVIDIA-H100-80GB-HBM3", 79.6, 9.0, bf16=True, fp8=True, list_price_per_hour=4.0),
    GPU("NVIDIA-H100-NVL", 93.0, 9.0, bf16=True, fp8=True, list_price_per_hour=4.5),
    GPU("NVIDIA-H200", 140.0, 9.0, bf16=True, fp8=True, list_price_per_hour=5.0),
    GPU("NVIDIA-B200", 179.0, 10.0, bf16=True, fp8=True, list_price_per_hour=7.0),
)
KNOWN: dict[str, GPU] = {gpu.product: gpu for gpu in _GPUS}

# fp8 *compute* (W8A8) needs Ada or Hopper tensor cores.
FP8_MIN_CAPABILITY = 8.9
BF16_MIN_CAPABILITY = 8.0
# Memory-proportional fallback for products missing from the table, in $/GiB-hour.
PRICE_PER_GIB_HOUR = 0.05


def lookup(product: str) -> GPU | None:
    return KNOWN.get(product)


def supports_bf16(compute_capability: float) -> bool:
    return compute_capability >= BF16_MIN_CAPABILITY


def supports_fp8(compute_capability: float) -> bool:
    return compute_capability >= FP8_MIN_CAPABILITY
