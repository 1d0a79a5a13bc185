"""The operator pod is locked down, and the config it is given is one it accepts.

The pod meets Pod Security "restricted": non-root 65532, read-only root filesystem, no
capabilities, RuntimeDefault seccomp; its only writable path is an emptyDir at /tmp.
The ConfigMap's file parses with ``llama_operator.planning.config.parse``, the operator's own
loader, and is mounted where ``$LLAMA_OPERATOR_CONFIG`` says. Its ``security`` section
comes from the auth and networkPolicy values, plus what only the chart knows: the
operator's namespace and pod labels, which every LlamaDeployment's NetworkPolicy lets in.
"""

from __future__ import annotations

from typing import Any

import chartkit
import pytest
import yaml

from llama_operator import api
from llama_operator.planning import config
from llama_operator.serving import builders

WORKLOAD_SETS = ["default", "peering", "peering-namespaced", "custom", "security"]


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


def _selector(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The labels that select the operator's pods (the workload's selector)."""
    labels: dict[str, str] = chartkit.workload(objects)["spec"]["selector"]["matchLabels"]
    return labels


def test_default_config_is_accepted_by_the_operator() -> None:
    objects = chartkit.render()
    data, _ = _config_file(objects)
    # The operator's defaults, and the operator's own pods filled in.
    assert config.parse(data, origin="chart ConfigMap") == config.OperatorConfig(
        security=config.Security(
            networkPolicy=config.NetworkPolicy(
                operatorNamespace=chartkit.NAMESPACE, operatorPodLabels=_selector(objects)
            )
        ),
        calibration=config.Calibration(
            namespace=chartkit.NAMESPACE, configMap=f"{chartkit.RELEASE}-calibration"
        ),
    )


def test_default_security_section() -> None:
    data, _ = _config_file(chartkit.render())
    assert data["security"] == {
        "defaultAuthMode": "required",
        "networkPolicy": {
            "enabled": True,
            "operatorNamespace": chartkit.NAMESPACE,
            "operatorPodLabels": {
                "app.kubernetes.io/name": "llama-operator",
                "app.kubernetes.io/instance": chartkit.RELEASE,
            },
            "monitoringNamespace": "monitoring",
            "monitoringPodLabels": {},
        },
    }


def test_operator_pods_are_the_workloads(objects: list[dict[str, Any]]) -> None:
    data, _ = _config_file(objects)
    policy = config.parse(data).security.networkPolicy
    assert policy.operatorNamespace == chartkit.NAMESPACE
    # Exactly the selector: labels every operator pod has, immutable, and no others
    # (podLabels and the chart/version labels change; the selector does not).
    assert policy.operatorPodLabels == _selector(objects)
    pod_labels = chartkit.workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert policy.operatorPodLabels.items() <= pod_labels.items()
    assert "example.com/tier" not in policy.operatorPodLabels
    assert "helm.sh/chart" not in policy.operatorPodLabels


def test_operator_pods_follow_the_release() -> None:
    result = chartkit.template(
        {"nameOverride": "llm", "fullnameOverride": "llm-ops"}, namespace="platform"
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    data, _ = _config_file(objects)
    policy = config.parse(data).security.networkPolicy
    assert policy.operatorNamespace == "platform"
    assert policy.operatorPodLabels == _selector(objects)
    assert policy.operatorPodLabels == {
        "app.kubernetes.io/name": "llm",
        "app.kubernetes.io/instance": chartkit.RELEASE,
    }


def test_security_values_flow_through() -> None:
    data, _ = _config_file(chartkit.render(chartkit.VALUE_SETS["security"]))
    security = config.parse(data, origin="chart ConfigMap").security
    assert security.defaultAuthMode == "optional"
    assert security.networkPolicy.enabled is False
    assert security.networkPolicy.monitoringNamespace == "prometheus"
    assert security.networkPolicy.monitoringPodLabels == {"app.kubernetes.io/name": "prometheus"}


@pytest.mark.parametrize("namespace", ["", None])
def test_no_monitoring_namespace(namespace: str | None) -> None:
    # "" (or null, which Helm drops) is written as null: left out, the operator would
    # use its default namespace, monitoring.
    values = {"networkPolicy": {"monitoringNamespace": namespace}}
    data, _ = _config_file(chartkit.render(values))
    assert "monitoringNamespace" in data["security"]["networkPolicy"]
    assert data["security"]["networkPolicy"]["monitoringNamespace"] is None
    assert config.parse(data).security.networkPolicy.monitoringNamespace is None


def _ingress_peers(values: dict[str, Any]) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """A LlamaDeployment's NetworkPolicy ingress peers under the chart's config."""
    objects = chartkit.render(values)
    data, _ = _config_file(objects)
    policy = builders.network_policy(
        name="chat",
        namespace="ai",
        uid="0000",
        network=api.Network(allowFrom=[]),
        settings=config.parse(data).security.networkPolicy,
    )
    pod_labels = chartkit.workload(objects)["spec"]["template"]["metadata"]["labels"]
    return pod_labels, [rule["from"] for rule in policy["spec"]["ingress"]]


def test_network_policy_lets_the_operator_pods_in() -> None:
    pod_labels, peers = _ingress_peers({})
    operator, monitoring = peers
    [peer] = operator
    namespace = peer["namespaceSelector"]["matchLabels"]
    assert namespace == {builders.NAMESPACE_NAME_LABEL: chartkit.NAMESPACE}
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert monitoring == [
        {"namespaceSelector": {"matchLabels": {builders.NAMESPACE_NAME_LABEL: "monitoring"}}}
    ]


def test_network_policy_without_monitoring_namespace() -> None:
    _, peers = _ingress_peers({"networkPolicy": {"monitoringNamespace": ""}})
    [operator] = peers
    assert operator[0]["namespaceSelector"]["matchLabels"] == {
        builders.NAMESPACE_NAME_LABEL: chartkit.NAMESPACE
    }


def test_environment_of_the_operator() -> None:
    container = chartkit.container(chartkit.render(chartkit.VALUE_SETS["custom"]))
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["LLAMA_OPERATOR_RESYNC_SECONDS"] == "30"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert container["image"] == "registry.example.com/llama-operator@sha256:" + "ab" * 32
    assert container["imagePullPolicy"] == "Always"


def test_image_defaults_to_the_app_version() -> None:
    container = chartkit.container(chartkit.render())
    assert container["image"] == "llama-operator:0.10.0"
    tagged = chartkit.container(chartkit.render({"image": {"tag": "0.1.1"}}))
    assert tagged["image"] == "llama-operator:0.1.1"
