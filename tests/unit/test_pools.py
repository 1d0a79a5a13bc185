"""GPU pools: the YAML catalogue, discovery from GPU Feature Discovery labels, allow-lists.

Catalogue errors must name the line to fix (duplicate, unknown product, typo'd key);
discovery is a pure function of node dicts shaped like the API server returns them.
"""

from __future__ import annotations

from typing import Any

import pytest

from llama_operator.planning import config, gpus, pools

CATALOGUE = """
pools:
- name: h100
  gpuProduct: NVIDIA-H100-80GB-HBM3
  gpuMemoryGiB: 79.6
  gpusPerNode: 8
  costPerGPUHour: 4.0
  computeCapability: "9.0"
  nodeSelector:
    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    cloud.google.com/gke-accelerator: nvidia-h100-80gb
  tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
- name: l4-spot
  gpuProduct: NVIDIA-L4
  gpusPerNode: 4
- name: mi-custom
  gpuProduct: Custom-Accelerator-96GB
  gpuMemoryGiB: 96
  gpusPerNode: 2
  costPerGPUHour: 0
  computeCapability: "8.9"
"""


def test_catalogue_yaml_is_parsed_with_every_field() -> None:
    h100, l4, custom = pools.load_catalogue(CATALOGUE)
    assert h100.name == "h100"
    assert h100.gpuProduct == "NVIDIA-H100-80GB-HBM3"
    assert h100.memory_gib == 79.6
    assert h100.gpusPerNode == 8
    assert h100.costPerGPUHour == 4.0
    assert h100.capability == 9.0
    assert h100.nodeSelector["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert (h100.bf16, h100.fp8, h100.rank_price) == (True, True, 4.0)

    # A known product takes memory, capability and a ranking price from the GPU table.
    known = gpus.KNOWN["NVIDIA-L4"]
    assert l4.memory_gib == known.memory_gib
    assert l4.capability == known.compute_capability
    assert l4.costPerGPUHour is None
    assert l4.rank_price == known.list_price_per_hour
    assert (l4.nodeSelector, l4.tolerations) == ({}, [])

    # An unknown product is usable when it describes itself; free means free.
    assert (custom.memory_gib, custom.capability, custom.rank_price) == (96, 8.9, 0.0)
    assert custom.fp8


def test_empty_or_missing_catalogue_is_no_pools() -> None:
    assert pools.load_catalogue("") == ()
    assert pools.load_catalogue("pools: []") == ()


def test_bundled_catalogue_parses_and_has_prices() -> None:
    bundled = config.default_pools()
    assert [pool.name for pool in bundled] == ["l4", "a10g", "l40s", "a100-80", "h100"]
    assert all(pool.costPerGPUHour for pool in bundled)
    assert all(pool.gpuProduct in gpus.KNOWN for pool in bundled)


def test_duplicate_names_are_refused_clearly() -> None:
    text = """
pools:
- {name: gpu, gpuProduct: NVIDIA-L4, gpusPerNode: 8}
- {name: big, gpuProduct: NVIDIA-H200, gpusPerNode: 8}
- {name: gpu, gpuProduct: NVIDIA-A10G, gpusPerNode: 4}
"""
    with pytest.raises(pools.CatalogueError) as error:
        pools.load_catalogue(text, origin="values.yaml")
    message = str(error.value)
    assert message.startswith("values.yaml: ")
    assert "unique" in message
    assert "repeated: gpu" in message
    assert ": :" not in message


def test_unknown_product_without_description_names_the_fields() -> None:
    text = "pools:\n- {name: mystery, gpuProduct: Mystery-GPU, gpusPerNode: 4}\n"
    with pytest.raises(pools.CatalogueError) as error:
        pools.load_catalogue(text)
    message = str(error.value)
    assert "Mystery-GPU" in message
    assert "gpuMemoryGiB" in message
    assert "computeCapability" in message
    assert "pools.0" in message


@pytest.mark.parametrize(
    ("entry", "typo"),
    [
        ("{name: a, gpuProduct: NVIDIA-L4, gpusPerNode: 8, costPerGpuHour: 1}", "costPerGpuHour"),
        ("{name: a, gpuProduct: NVIDIA-L4, gpusPerNode: 8, nodeselector: {}}", "nodeselector"),
        # A typo in a required key must be named, not just the key it leaves missing.
        ("{name: a, gpuProduct: NVIDIA-L4, gpusPerNod: 8}", "gpusPerNod"),
    ],
)
def test_typod_key_is_refused_naming_it(entry: str, typo: str) -> None:
    with pytest.raises(pools.CatalogueError) as error:
        pools.load_catalogue(f"pools:\n- {entry}\n")
    assert f"pools.0.{typo}: Extra inputs are not permitted" in str(error.value)


def test_typod_top_level_key_is_refused() -> None:
    with pytest.raises(pools.CatalogueError, match="pool:"):
        pools.load_catalogue("pool:\n- {name: a, gpuProduct: NVIDIA-L4, gpusPerNode: 8}\n")


@pytest.mark.parametrize(
    "entry",
    [
        "{name: Bad_Name, gpuProduct: NVIDIA-L4, gpusPerNode: 8}",
        "{name: a, gpuProduct: NVIDIA-L4, gpusPerNode: 0}",
        "{name: a, gpuProduct: NVIDIA-L4, gpusPerNode: 8, costPerGPUHour: -1}",
        "{name: a, gpuProduct: X, gpusPerNode: 8, gpuMemoryGiB: 16, computeCapability: '9'}",
    ],
)
def test_invalid_values_are_refused(entry: str) -> None:
    with pytest.raises(pools.CatalogueError, match=r"pools\.0"):
        pools.load_catalogue(f"pools:\n- {entry}\n")


# ----------------------------------------------------------------------------- discovery


def node(
    name: str,
    *,
    product: str | None,
    memory_mib: int | None = None,
    count: int | None = None,
    capability: tuple[int, int] | None = None,
    allocatable: str | None = None,
    capacity: str | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A Node as the API server returns it, labelled like GPU Feature Discovery does."""
    labels = {"kubernetes.io/hostname": name}
    if product is not None:
        labels[pools.PRODUCT_LABEL] = product
        labels["nvidia.com/gpu.family"] = "hopper"
    if memory_mib is not None:
        labels[pools.MEMORY_LABEL] = str(memory_mib)
    if count is not None:
        labels[pools.COUNT_LABEL] = str(count)
    if capability is not None:
        labels[pools.MAJOR_LABEL] = str(capability[0])
        labels[pools.MINOR_LABEL] = str(capability[1])
    status: dict[str, Any] = {"allocatable": {"cpu": "31", "memory": "250Gi"}, "capacity": {}}
    if allocatable is not None:
        status["allocatable"][pools.GPU_RESOURCE] = allocatable
    if capacity is not None:
        status["capacity"][pools.GPU_RESOURCE] = capacity
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints} if taints is not None else {},
        "status": status,
    }


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def test_discover_one_pool_per_product_with_the_most_gpus_per_node() -> None:
    nodes = [
        node(
            "h100-a",
            product="NVIDIA-H100-80GB-HBM3",
            memory_mib=81559,
            count=8,
            capability=(9, 0),
            allocatable="8",
            taints=[GPU_TAINT],
        ),
        node(
            "h100-b",
            product="NVIDIA-H100-80GB-HBM3",
            memory_mib=81559,
            count=4,
            capability=(9, 0),
            allocatable="4",
            taints=[GPU_TAINT],
        ),
        node(
            "l4-a",
            product="NVIDIA-L4",
            memory_mib=23034,
            count=1,
            capability=(8, 9),
            allocatable="1",
        ),
        node("cpu-only", product=None),
    ]
    h100, l4 = pools.discover(nodes)

    assert h100.name == "nvidia-h100-80gb-hbm3"
    assert h100.gpuProduct == "NVIDIA-H100-80GB-HBM3"
    assert h100.gpusPerNode == 8
    # A product in the table is taken at the memory its engine sees (vLLM logs 79.18 GiB
    # of an H100), not at the label's 81559 MiB (79.65 GiB, nvidia-smi's total).
    assert h100.memory_gib == pytest.approx(79.18)
    assert h100.memory_gib < 81559 / 1024
    assert h100.capability == 9.0
    assert h100.nodeSelector == {pools.PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}
    assert h100.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert h100.costPerGPUHour is None

    assert (l4.name, l4.gpusPerNode, l4.capability) == ("nvidia-l4", 1, 8.9)
    # The L4 has no logged figure: the table's label figure less the 0.75 GiB gap.
    assert l4.memory_gib == pytest.approx(22.49 - 0.75)
    assert l4.memory_gib < 23034 / 1024
    assert l4.tolerations == []


def test_discover_ignores_nodes_without_gpus() -> None:
    assert pools.discover([node("cpu", product=None), {"metadata": {}}]) == ()
    # A labelled node whose GPUs are not allocatable (device plugin down) offers none.
    broken = node("h100", product="NVIDIA-H100-80GB-HBM3", count=8, allocatable="0", capacity="8")
    assert pools.discover([broken]) == ()


def test_discover_falls_back_to_capacity_then_the_count_label() -> None:
    by_capacity = node("a", product="NVIDIA-L40S", count=8, capacity="4")
    assert pools.discover([by_capacity])[0].gpusPerNode == 4
    by_label = node("b", product="NVIDIA-L40S", count=2)
    assert pools.discover([by_label])[0].gpusPerNode == 2


def test_discover_uses_the_gpu_table_when_labels_are_missing() -> None:
    (pool,) = pools.discover([node("t4", product="Tesla-T4", allocatable="1")])
    assert pool.memory_gib == gpus.KNOWN["Tesla-T4"].memory_gib
    assert pool.capability == 7.5
    assert not pool.bf16


def test_discover_unknown_product_needs_a_memory_label() -> None:
    unknown = node("x", product="Mystery-GPU", allocatable="2")
    assert pools.discover([unknown]) == ()
    (pool,) = pools.discover([node("y", product="Mystery-GPU", memory_mib=49152, allocatable="2")])
    # The label is nvidia-smi's total (48 GiB); the engine is taken to see 0.75 GiB less.
    assert pool.memory_gib == pytest.approx(48.0 - 0.75)
    assert pool.memory_gib == gpus.seen_from_label(49152)
    assert not pool.bf16  # no capability label: assume the oldest, never over-promise


def test_discover_tolerates_every_nvidia_taint_and_only_those() -> None:
    taints = [
        GPU_TAINT,
        {"key": "nvidia.com/gpu.deploy", "effect": "NoExecute"},
        {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
    ]
    (pool,) = pools.discover(
        [node("h200", product="NVIDIA-H200", allocatable="8", capability=(9, 0), taints=taints)]
    )
    assert pool.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu.deploy", "operator": "Exists", "effect": "NoExecute"},
    ]


# -------------------------------------------------------------------------------- restrict


def test_restrict_follows_the_allow_list_order() -> None:
    bundled = config.default_pools()
    chosen = pools.restrict(bundled, ["h100", "l4", "not-a-pool", "a10g"])
    assert [pool.name for pool in chosen] == ["h100", "l4", "a10g"]


def test_restrict_without_allow_list_keeps_every_pool_in_order() -> None:
    bundled = config.default_pools()
    assert pools.restrict(bundled, []) == bundled
    assert pools.restrict(iter(bundled), []) == bundled
