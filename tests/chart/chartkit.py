"""Shared by the chart tests: the real helm binary, rendering the chart, the value sets.

Everything goes through ``hack/generate_chart.py``'s helm runner (throwaway helm homes,
pinned Kubernetes version), so the tests render exactly as ``make generate`` does. A
missing helm fails the tests: it is part of ``make setup``, never optional.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml
from hack import generate_chart as generator

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
RELEASE = "llama-operator"
NAMESPACE = "llama-operator"


def helm_path() -> pathlib.Path:
    path: pathlib.Path = generator.DEFAULT_HELM
    if not path.exists():
        pytest.fail(f"helm not found at {path}: run make setup", pytrace=False)
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = generator.helm(*args, helm_path=helm_path())
    return result


def values_file(directory: pathlib.Path, values: Mapping[str, Any]) -> pathlib.Path:
    """``values`` as a file for ``--values``. JSON is YAML, and keeps the exact types."""
    path = directory / "values.json"
    path.write_text(json.dumps(dict(values)), encoding="utf-8")
    return path


def template(
    values: Mapping[str, Any] | None = None, *extra: str, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart with ``values`` (as a values file), not checked."""
    with tempfile.TemporaryDirectory(prefix="values-") as directory:
        path = values_file(pathlib.Path(directory), values or {})
        return helm(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            generator.KUBE_VERSION,
            "--values",
            str(path),
            *extra,
        )


def render(values: Mapping[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included) for ``values``."""
    result = template(values, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(values: Mapping[str, Any]) -> str:
    """The error of a ``helm template`` that must fail for ``values``."""
    result = template(values)
    assert result.returncode != 0, f"helm template accepted {values}"
    return result.stderr


def find(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {len(matches)}"
    return matches[0]


def of_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def release_objects(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of the release itself: without hooks (the uninstall hook's own
    ServiceAccount, RBAC and Job), which Helm creates only at their hook's event."""
    return [obj for obj in objects if not is_hook(obj)]


def workload(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The operator's Deployment (standalone) or StatefulSet (peering)."""
    [found] = [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    [found] = workload(objects)["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = found
    return result


CUSTOM_POOLS: list[dict[str, Any]] = [
    {
        "name": "l4",
        "gpuProduct": "NVIDIA-L4",
        "gpusPerNode": 8,
        "costPerGPUHour": 0.8,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    {
        # Not in the operator's GPU table: memory and compute capability are given.
        "name": "acme-x1",
        "gpuProduct": "ACME-X1",
        "gpuMemoryGiB": 48,
        "computeCapability": "8.9",
        "gpusPerNode": 4,
    },
]

CUSTOM_CONFIG: dict[str, Any] = {
    "images": {
        "vllm": "registry.example.com/mirror/vllm-openai:v0.11.0",
        "tgi": "registry.example.com/mirror/text-generation-inference:3.3.6",
    },
    "pools": CUSTOM_POOLS,
    "gpuMemoryUtilization": 0.92,
    "runtimeOverheadGiB": 2,
    "fieldManager": "llama-operator-prod",
    "imagePullPolicy": "Always",
}

# Named value sets every render test runs against.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["ai", "team-b"]},
    "peering": {"peering": {"enabled": True}, "replicaCount": 2},
    "peering-namespaced": {
        "peering": {"enabled": True, "name": "llm"},
        "replicaCount": 3,
        "watchNamespaces": ["ai", "team-b"],
    },
    "monitors": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "podMonitor": {"enabled": True, "interval": "15s"},
        }
    },
    "no-crds": {"crds": {"enabled": False}, "rbac": {"userRoles": False}},
    # API keys optional, no NetworkPolicy unless a LlamaDeployment asks, and a narrowed
    # monitoring rule: the operator config's security section.
    "security": {
        "auth": {"defaultMode": "optional"},
        "networkPolicy": {
            "enabled": False,
            "monitoringNamespace": "prometheus",
            "monitoringPodLabels": {"app.kubernetes.io/name": "prometheus"},
        },
    },
    "custom": {
        "config": CUSTOM_CONFIG,
        "image": {
            "repository": "registry.example.com/llama-operator",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccount": {"annotations": {"example.com/role": "llama"}},
        "extraArgs": ["--log-format=json"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}],
        "resyncSeconds": 30,
        "metrics": {"port": 9191},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"example.com/tier": "control"},
        "namespace": {"create": True},
        "fullnameOverride": "llm-ops",
    },
}
