"""GPU pools: the classes of GPU nodes a plan can land on.

A pool comes either from the operator config's catalogue (YAML, see
``docs/reference/pools.md``) or, when none is configured, from the cluster's nodes
as labelled by NVIDIA GPU Feature Discovery. Both paths end in the same frozen
``Pool``; discovery is a pure function of node objects so it is tested without a
cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic
import yaml
from pydantic import Field

from llama_operator.planning import gpus

PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB
COUNT_LABEL = "nvidia.com/gpu.count"
MAJOR_LABEL = "nvidia.com/gpu.compute.major"
MINOR_LABEL = "nvidia.com/gpu.compute.minor"
GPU_RESOURCE = "nvidia.com/gpu"


class Pool(pydantic.BaseModel):
    """One class of GPU nodes."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    gpuProduct: str = Field(min_length=1)
    # Memory the engine sees per GPU (CUDA's total, below nvidia-smi's); None: the table's.
    gpuMemoryGiB: float | None = Field(default=None, gt=0)
    gpusPerNode: int = Field(ge=1, le=64)
    costPerGPUHour: float | None = Field(default=None, ge=0)
    computeCapability: str | None = Field(default=None, pattern=r"^[0-9]+\.[0-9]+$")
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _known_or_described(self) -> Pool:
        known = gpus.lookup(self.gpuProduct)
        if known is None and (self.gpuMemoryGiB is None or self.computeCapability is None):
            raise ValueError(
                f"pool {self.name!r}: GPU product {self.gpuProduct!r} is not in the built-in "
                "table; set gpuMemoryGiB and computeCapability"
            )
        return self

    @property
    def memory_gib(self) -> float:
        if self.gpuMemoryGiB is not None:
            return self.gpuMemoryGiB
        known = gpus.lookup(self.gpuProduct)
        assert known is not None  # guaranteed by the validator
        return known.memory_gib

    @property
    def capability(self) -> float:
        if self.computeCapability is not None:
            return float(self.computeCapability)
        known = gpus.lookup(self.gpuProduct)
        assert known is not None
        return known.compute_capability

    @property
    def bf16(self) -> bool:
        return gpus.supports_bf16(self.capability)

    @property
    def fp8(self) -> bool:
        return gpus.supports_fp8(self.capability)

    @property
    def rank_price(self) -> float:
        """Price per GPU-hour used to rank plans: the configured one, else an estimate."""
        if self.costPerGPUHour is not None:
            return self.costPerGPUHour
        known = gpus.lookup(self.gpuProduct)
        if known is not None:
            return known.list_price_per_hour
        return self.memory_gib * gpus.PRICE_PER_GIB_HOUR


class Catalogue(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    pools: list[Pool] = Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> Catalogue:
        names = [pool.name for pool in self.pools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(duplicates)}")
        return self


class CatalogueError(ValueError):
    pass


def parse_catalogue(
    data: Mapping[str, Any] | None, *, origin: str = "pool catalogue"
) -> tuple[Pool, ...]:
    try:
        return tuple(Catalogue.model_validate(data or {}).pools)
    except pydantic.ValidationError as exc:
        # A misspelt key also makes the key it was meant to be "missing"; name the
        # misspelling first, since that is the line to fix.
        errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        details = []
        for error in errors:
            loc = ".".join(str(part) for part in error["loc"])
            # Our own validators' messages read better without pydantic's "Value error, ".
            cause = (error.get("ctx") or {}).get("error")
            msg = str(cause) if error["type"] == "value_error" and cause else error["msg"]
            details.append(f"{loc}: {msg}" if loc else msg)
        raise CatalogueError(f"{origin}: {'; '.join(details)}") from exc


def load_catalogue(text: str, *, origin: str = "pool catalogue") -> tuple[Pool, ...]:
    return parse_catalogue(yaml.safe_load(text), origin=origin)


def discover(nodes: Iterable[Mapping[str, Any]]) -> tuple[Pool, ...]:
    """Pools from nodes labelled by GPU Feature Discovery, one per GPU product.

    gpusPerNode is the largest allocatable ``nvidia.com/gpu`` seen on any node of the
    product (what one pod can get at most); tolerations cover every ``nvidia.com/*``
    taint those nodes carry, so pods land where the GPUs are.
    """
    by_product: dict[str, dict[str, Any]] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        labels: Mapping[str, str] = meta.get("labels") or {}
        product = labels.get(PRODUCT_LABEL)
        if not product:
            continue
        status = node.get("status") or {}
        allocatable = _int((status.get("allocatable") or {}).get(GPU_RESOURCE))
        capacity = _int((status.get("capacity") or {}).get(GPU_RESOURCE))
        # Allocatable is what a pod can actually get: when the kubelet reports it, even
        # as 0 (device plugin down, GPUs unhealthy), it wins over capacity and labels.
        if allocatable is not None:
            count = allocatable
        else:
            count = capacity if capacity is not None else _int(labels.get(COUNT_LABEL)) or 0
        if count <= 0:
            continue
        entry = by_product.setdefault(
            product, {"gpus": 0, "memory": None, "cc": None, "taints": {}}
        )
        entry["gpus"] = max(entry["gpus"], count)
        memory_mib = _int(labels.get(MEMORY_LABEL))
        if memory_mib:
            # The label is nvidia-smi's total; the engine budgets from less (gpus.py).
            entry["memory"] = gpus.seen_from_label(memory_mib)
        major, minor = _int(labels.get(MAJOR_LABEL)), _int(labels.get(MINOR_LABEL))
        if major is not None:
            entry["cc"] = f"{major}.{minor or 0}"
        for taint in (node.get("spec") or {}).get("taints") or []:
            if str(taint.get("key", "")).startswith("nvidia.com/"):
                key = (taint["key"], taint.get("effect", ""))
                entry["taints"][key] = {
                    "key": taint["key"],
                    "operator": "Exists",
                    **({"effect": taint["effect"]} if taint.get("effect") else {}),
                }
    result = []
    for product in sorted(by_product):
        entry = by_product[product]
        known = gpus.lookup(product)
        # A product in the table is taken at the memory its engine was seen to have.
        memory = known.memory_gib if known else entry["memory"]
        if memory is None:
            continue  # an unknown product without a memory label cannot be sized
        # Without a compute-capability label, assume the oldest capability we plan for
        # (no bf16, no fp8) rather than promise precisions the GPU may not have.
        capability = entry["cc"] or (f"{known.compute_capability:.1f}" if known else "7.0")
        result.append(
            Pool(
                name=_pool_name(product),
                gpuProduct=product,
                gpuMemoryGiB=memory,
                gpusPerNode=entry["gpus"],
                computeCapability=capability,
                nodeSelector={PRODUCT_LABEL: product},
                tolerations=[entry["taints"][key] for key in sorted(entry["taints"])],
            )
        )
    return tuple(result)


def _pool_name(product: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", product.lower()).strip("-")
    return (name or "gpu")[:63].rstrip("-")


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def restrict(pools: Iterable[Pool], allowed: list[str]) -> tuple[Pool, ...]:
    """Pools in the user's preference order when an allow-list is given."""
    pools = tuple(pools)
    if not allowed:
        return pools
    by_name = {pool.name: pool for pool in pools}
    return tuple(by_name[name] for name in allowed if name in by_name)
