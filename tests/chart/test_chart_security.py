"""The operator pod is locked down, and the config it is given is one it accepts.

The pod meets Pod Security "restricted": non-root 65532, read-only root filesystem, no
capabilities, RuntimeDefault seccomp; its only writable path is an emptyDir at /tmp.
The ConfigMap's file parses with ``llama_operator.config.parse``, the operator's own
loader, and is mounted where ``$LLAMA_OPERATOR_CONFIG`` says.
"""

from __future__ import annotations

from typing import Any

import chartkit
import pytest
import yaml

from llama_operator import config

WORKLOAD_SETS = ["default", "peering", "peering-namespaced", "custom"]


@pytest.fixture(scope="module", params=WORKLOAD_SETS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return chartkit.render(chartkit.VALUE_SETS[request.param])


def test_pod_security_context(objects: list[dict[str, Any]]) -> None:
    pod = chartkit.workload(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod


def test_container_security_context(objects: list[dict[str, Any]]) -> None:
    container = chartkit.container(objects)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_only_tmp_is_writable(objects: list[dict[str, Any]]) -> None:
    pod = chartkit.workload(objects)["spec"]["template"]["spec"]
    container = chartkit.container(objects)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert set(mounts) == {"/etc/llama-operator", "/tmp"}
    assert mounts["/etc/llama-operator"]["readOnly"] is True
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"sizeLimit": "256Mi"}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["HF_HOME"] == "/tmp/huggingface"


def test_probes_on_kopf_health_endpoint(objects: list[dict[str, Any]]) -> None:
    container = chartkit.container(objects)
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}


def test_resources_are_set(objects: list[dict[str, Any]]) -> None:
    resources = chartkit.container(objects)["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def _config_file(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The ConfigMap's config.yaml, parsed, and the path the operator reads it from."""
    container = chartkit.container(objects)
    pod = chartkit.workload(objects)["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    path = env[config.CONFIG_ENV]
    directory, _, filename = path.rpartition("/")
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = chartkit.find(objects, "ConfigMap", volume["configMap"]["name"])
    data: dict[str, Any] = yaml.safe_load(configmap["data"][filename])
    return data, path


def test_config_is_mounted_where_the_operator_reads_it(objects: list[dict[str, Any]]) -> None:
    _, path = _config_file(objects)
    assert path == config.DEFAULT_CONFIG_PATH == "/etc/llama-operator/config.yaml"


def test_default_config_is_accepted_by_the_operator() -> None:
    data, _ = _config_file(chartkit.render())
    assert config.parse(data, origin="chart ConfigMap") == config.OperatorConfig()


def test_custom_config_is_accepted_by_the_operator() -> None:
    data, _ = _config_file(chartkit.render(chartkit.VALUE_SETS["custom"]))
    parsed = config.parse(data, origin="chart ConfigMap")
    expected = chartkit.CUSTOM_CONFIG
    assert parsed.images.vllm == expected["images"]["vllm"]
    assert parsed.images.tgi == expected["images"]["tgi"]
    assert parsed.gpuMemoryUtilization == expected["gpuMemoryUtilization"]
    assert parsed.runtimeOverheadGiB == expected["runtimeOverheadGiB"]
    assert parsed.fieldManager == expected["fieldManager"]
    assert parsed.imagePullPolicy == expected["imagePullPolicy"]
    assert [pool.name for pool in parsed.pools] == ["l4", "acme-x1"]
    acme = parsed.pools[1]
    assert acme.computeCapability == "8.9"  # a string, not the float 8.9
    assert acme.gpuMemoryGiB == 48
    assert acme.gpusPerNode == 4
    assert parsed.pools[0].tolerations == expected["pools"][0]["tolerations"]
    assert parsed.pools[0].nodeSelector == {"nvidia.com/gpu.product": "NVIDIA-L4"}


def test_environment_of_the_operator() -> None:
    container = chartkit.container(chartkit.render(chartkit.VALUE_SETS["custom"]))
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["LLAMA_OPERATOR_RESYNC_SECONDS"] == "30"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert container["image"] == "registry.example.com/llama-operator@sha256:" + "ab" * 32
    assert container["imagePullPolicy"] == "Always"


def test_image_defaults_to_the_app_version() -> None:
    container = chartkit.container(chartkit.render())
    assert container["image"] == "llama-operator:0.5.0"
    tagged = chartkit.container(chartkit.render({"image": {"tag": "0.1.1"}}))
    assert tagged["image"] == "llama-operator:0.1.1"
