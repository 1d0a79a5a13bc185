"""The chart lints and every value set renders objects Kubernetes would accept.

Objects are validated with the official OpenAPI schemas of ``kubernetes-validate``,
strict (unknown fields fail), for 1.30 (the oldest supported) and the newest shipped.
Kinds those schemas do not know (Prometheus Operator monitors, Kopf's peering objects)
are checked field by field instead; CRDs validate as apiextensions/v1 objects.
"""

from __future__ import annotations

import pathlib
from typing import Any

import chartkit
import kubernetes_validate
import pytest

from llama_operator.serving import builders, engines

OLDEST = "1.30"
NEWEST = kubernetes_validate.latest_version()
VERSIONS = sorted({OLDEST, NEWEST})
# Not in the Kubernetes schemas: asserted explicitly below.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "ClusterKopfPeering", "KopfPeering"}


def crd_names(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(
        crd["metadata"]["name"] for crd in chartkit.of_kind(objects, "CustomResourceDefinition")
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: chartkit.render(values) for name, values in chartkit.VALUE_SETS.items()}


def test_lint_strict() -> None:
    result = chartkit.helm("lint", "--strict", str(chartkit.CHART))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_lint_strict_with_value_set(name: str, tmp_path: pathlib.Path) -> None:
    values = chartkit.values_file(tmp_path, chartkit.VALUE_SETS[name])
    result = chartkit.helm("lint", "--strict", str(chartkit.CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_newest_version_is_newer_than_oldest() -> None:
    assert tuple(int(part) for part in NEWEST.split(".")[:2]) > (1, 30)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_objects_validate(
    rendered: dict[str, list[dict[str, Any]]], name: str, version: str
) -> None:
    objects = rendered[name]
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        checked = kubernetes_validate.validate(obj, version, strict=True)
        assert checked == ".".join(version.split(".")[:2])


@pytest.mark.parametrize("version", VERSIONS)
def test_validator_rejects_a_broken_workload(
    rendered: dict[str, list[dict[str, Any]]], version: str
) -> None:
    # The validation above is only worth something if the schemas refuse bad objects.
    deployment = chartkit.workload(rendered["default"])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_custom_kinds_only_where_enabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {name: {obj["kind"] for obj in objects} for name, objects in rendered.items()}
    assert not kinds["default"] & CUSTOM_KINDS
    assert kinds["monitors"] & CUSTOM_KINDS == {"ServiceMonitor", "PodMonitor"}
    assert kinds["peering"] & CUSTOM_KINDS == {"ClusterKopfPeering"}
    assert kinds["peering-namespaced"] & CUSTOM_KINDS == {"KopfPeering"}


def test_workload_kind_and_replicas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    default = chartkit.workload(rendered["default"])
    assert default["kind"] == "Deployment"
    assert default["spec"]["replicas"] == 1
    # Never two standalone operators at once, not even during a rollout.
    assert default["spec"]["strategy"] == {"type": "Recreate"}
    peering = chartkit.workload(rendered["peering"])
    assert peering["kind"] == "StatefulSet"
    assert peering["spec"]["replicas"] == 2
    assert peering["spec"]["podManagementPolicy"] == "Parallel"


def test_service_monitor_selects_the_metrics_service(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["monitors"]
    monitor = chartkit.find(objects, "ServiceMonitor")
    service = chartkit.find(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == chartkit.NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert set(spec["selector"]) == {"matchLabels"}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # honorLabels: the per-endpoint gauges keep their own namespace (test_chart_observability).
    assert spec["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]
    assert [port["name"] for port in service["spec"]["ports"]] == ["metrics"]
    # The only Service in the namespace that the selector picks is the metrics Service.
    others = [s for s in chartkit.of_kind(objects, "Service") if s is not service]
    assert not [s for s in others if selector.items() <= s["metadata"]["labels"].items()]


def test_metrics_service_reaches_the_operator_pod(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, port in (("default", 9090), ("custom", 9191)):
        objects = rendered[name]
        service = chartkit.find(objects, "Service")
        pod_labels = chartkit.workload(objects)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
        ]
        container = chartkit.container(objects)
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["LLAMA_OPERATOR_METRICS_PORT"] == str(port)


def test_pod_monitor_selects_the_serving_pods(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    monitor = chartkit.find(rendered["monitors"], "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "podMetricsEndpoints"}
    assert spec["namespaceSelector"] == {"any": True}
    # The label every serving pod carries (llama_operator.serving.builders.labels).
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "llama-operator"}}
    [endpoint] = spec["podMetricsEndpoints"]
    # The relabelings (namespace, llama_deployment, variant): test_chart_observability.
    assert {key: value for key, value in endpoint.items() if key != "relabelings"} == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
    }
    # The operator's own pods are not serving pods.
    operator_labels = chartkit.workload(rendered["monitors"])["spec"]["template"]["metadata"]
    assert operator_labels["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_pod_monitor_follows_the_serving_pods_contract() -> None:
    labels = builders.labels(name="chat", variant="primary")
    assert labels["app.kubernetes.io/managed-by"] == "llama-operator"
    assert engines.PORT_NAME == "http"
    assert engines.METRICS_PATH == "/metrics"


def test_pod_monitor_in_namespaced_mode_watches_those_namespaces() -> None:
    values = {**chartkit.VALUE_SETS["namespaced"], **chartkit.VALUE_SETS["monitors"]}
    monitor = chartkit.find(chartkit.render(values), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ai", "team-b"]}


def test_crds_render_as_apiextensions_objects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    crds = {name: crd_names(objects) for name, objects in rendered.items()}
    assert crds["default"] == ["llamadeployments.llamaops.dev"]
    assert crds["no-crds"] == []
    peering_crds = [
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
        "llamadeployments.llamaops.dev",
    ]
    assert crds["peering"] == peering_crds
    assert crds["peering-namespaced"] == peering_crds
    for objects in rendered.values():
        for crd in chartkit.of_kind(objects, "CustomResourceDefinition"):
            assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
            annotations = crd["metadata"]["annotations"]
            assert annotations["argocd.argoproj.io/sync-wave"] == "-1"
            assert annotations["helm.sh/resource-policy"] == "keep"


def test_crds_keep_is_optional() -> None:
    objects = chartkit.render({"crds": {"keep": False}, "peering": {"enabled": True}})
    for crd in chartkit.of_kind(objects, "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"


def test_peering_crds_can_be_left_to_another_release() -> None:
    objects = chartkit.render({"peering": {"enabled": True, "crds": False}})
    assert crd_names(objects) == ["llamadeployments.llamaops.dev"]


def test_peering_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    cluster = chartkit.find(rendered["peering"], "ClusterKopfPeering")
    assert cluster["apiVersion"] == "kopf.dev/v1"
    assert cluster["metadata"]["name"] == "llama-operator"
    assert "namespace" not in cluster["metadata"]
    namespaced = chartkit.of_kind(rendered["peering-namespaced"], "KopfPeering")
    assert sorted(obj["metadata"]["namespace"] for obj in namespaced) == ["ai", "team-b"]
    for obj in [cluster, *namespaced]:
        assert set(obj) == {"apiVersion", "kind", "metadata"}
        assert obj["apiVersion"] == "kopf.dev/v1"
        # Created after the release's objects: the kinds only exist once the CRDs do.
        hook = obj["metadata"]["annotations"]["helm.sh/hook"]
        assert hook == "post-install,post-upgrade"
    assert {obj["metadata"]["name"] for obj in namespaced} == {"llm"}


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("default", ["--all-namespaces", "--standalone"]),
        ("namespaced", ["-n", "ai", "-n", "team-b", "--standalone"]),
        ("peering", ["--all-namespaces", "--peering=llama-operator", "--priority=$(POD_INDEX)"]),
        (
            "peering-namespaced",
            ["-n", "ai", "-n", "team-b", "--peering=llm", "--priority=$(POD_INDEX)"],
        ),
        ("custom", ["--all-namespaces", "--standalone", "--log-format=json"]),
    ],
)
def test_kopf_arguments(
    rendered: dict[str, list[dict[str, Any]]], name: str, args: list[str]
) -> None:
    container = chartkit.container(rendered[name])
    assert "command" not in container  # the image's entrypoint is `llama-operator run`
    liveness = "--liveness=http://0.0.0.0:8080/healthz"
    assert liveness in container["args"]
    assert [arg for arg in container["args"] if arg != liveness] == args


def test_peering_priority_is_the_pod_ordinal(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Kopf pauses every operator that shares a priority: each replica needs its own.
    env = {item["name"]: item for item in chartkit.container(rendered["peering"])["env"]}
    assert env["POD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    standalone = chartkit.container(rendered["default"])["env"]
    assert "POD_INDEX" not in {item["name"] for item in standalone}


def test_config_change_rolls_the_pod(rendered: dict[str, list[dict[str, Any]]]) -> None:
    def checksum(objects: list[dict[str, Any]]) -> str:
        annotations = chartkit.workload(objects)["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    assert len(checksum(rendered["default"])) == 64
    assert checksum(rendered["default"]) != checksum(rendered["custom"])
    # The security section is part of the file: auth and networkPolicy roll the pod too.
    assert checksum(rendered["default"]) != checksum(rendered["security"])
    assert checksum(rendered["default"]) == checksum(rendered["monitors"])


def test_namespace_only_when_asked(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not chartkit.of_kind(rendered["default"], "Namespace")
    namespace = chartkit.find(rendered["custom"], "Namespace")
    assert namespace["metadata"]["name"] == chartkit.NAMESPACE
    # It enforces the Pod Security Standard the operator's pod meets (test_chart_pss.py).
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_object_has_the_standard_labels(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, objects in rendered.items():
        for obj in objects:
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "Helm", (name, obj["kind"])
            assert labels["app.kubernetes.io/instance"] == chartkit.RELEASE
            assert labels["app.kubernetes.io/name"] == "llama-operator"
            assert labels["app.kubernetes.io/part-of"] == "llama-operator"
            assert labels["app.kubernetes.io/version"] == "0.10.0"
            assert labels["helm.sh/chart"] == "llama-operator-0.10.0"


def test_namespaced_objects_land_in_the_release_namespace(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    in_release = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "StatefulSet"}
    for objects in rendered.values():
        for obj in objects:
            if obj["kind"] in in_release:
                assert obj["metadata"]["namespace"] == chartkit.NAMESPACE


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_notes_render(name: str, tmp_path: pathlib.Path) -> None:
    # `install --dry-run=client` renders NOTES.txt without a cluster.
    values = chartkit.values_file(tmp_path, chartkit.VALUE_SETS[name])
    result = chartkit.helm(
        "install",
        chartkit.RELEASE,
        str(chartkit.CHART),
        "--namespace",
        chartkit.NAMESPACE,
        "--dry-run=client",
        "--values",
        str(values),
        "--kubeconfig",
        str(tmp_path / "no-kubeconfig"),
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:\n", 1)[1]
    assert "kind: LlamaDeployment" in notes
    assert "describe llama chat" in notes
    assert "logs " in notes
    # API keys: the example endpoint has one, and the default mode is said.
    assert "create secret generic chat-api-key" in notes
    assert "apiKeySecretRef: {name: chat-api-key}" in notes
    mode = chartkit.VALUE_SETS[name].get("auth", {}).get("defaultMode", "required")
    assert f"API keys are {mode} (auth.defaultMode)" in notes
