"""values.yaml and values.schema.json: documented, strict, and in step with the operator.

A typo, a wrong type or an unsafe combination must fail ``helm template`` (and so
``helm install``) instead of being ignored; the schema's ``config`` section must accept
exactly what ``llama_operator.planning.config.OperatorConfig`` accepts.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from typing import Any

import chartkit
import pytest
import yaml

from llama_operator.planning import config, pools

SCHEMA: dict[str, Any] = json.loads(
    (chartkit.CHART / "values.schema.json").read_text(encoding="utf-8")
)
VALUES_TEXT = (chartkit.CHART / "values.yaml").read_text(encoding="utf-8")
# Pass-through Kubernetes types the API server validates: their insides are open.
PASS_THROUGH = {"/properties/affinity/properties"}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"replicaCout": 2}, "additional properties 'replicaCout' not allowed"),
        ({"image": {"tagg": "v1"}}, "at '/image': additional properties 'tagg' not allowed"),
        ({"crds": {"enable": False}}, "at '/crds': additional properties 'enable' not allowed"),
        (
            {"metrics": {"serviceMonitor": {"enabeld": True}}},
            "at '/metrics/serviceMonitor': additional properties 'enabeld' not allowed",
        ),
        (
            {"config": {"gpuMemoryUtilisation": 0.8}},
            "additional properties 'gpuMemoryUtilisation' not allowed",
        ),
        (
            {"config": {"pools": [{"name": "l4", "gpuProduct": "NVIDIA-L4", "gpusPernode": 8}]}},
            "additional properties 'gpusPernode' not allowed",
        ),
        ({"replicaCount": "2"}, "at '/replicaCount': got string, want integer"),
        ({"crds": {"enabled": "yes"}}, "at '/crds/enabled': got string, want boolean"),
        ({"watchNamespaces": "ai"}, "at '/watchNamespaces': got string, want array"),
        ({"config": {"gpuMemoryUtilization": 0.99}}, "/config/gpuMemoryUtilization"),
        ({"config": {"imagePullPolicy": "Sometimes"}}, "/config/imagePullPolicy"),
        ({"config": {"pools": [{"name": "L4", "gpuProduct": "x", "gpusPerNode": 1}]}}, "name"),
        ({"config": {"pools": [{"name": "l4", "gpuProduct": "NVIDIA-L4"}]}}, "gpusPerNode"),
        ({"watchNamespaces": ["ai", "ai"]}, "/watchNamespaces"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        (
            {"auth": {"defaultMode": "Required"}},
            "at '/auth/defaultMode': value must be one of 'required', 'optional'",
        ),
        ({"auth": {"mode": "optional"}}, "at '/auth': additional properties 'mode' not allowed"),
        (
            {"networkPolicy": {"enable": False}},
            "at '/networkPolicy': additional properties 'enable' not allowed",
        ),
        (
            {"networkPolicy": {"enabled": "false"}},
            "at '/networkPolicy/enabled': got string, want boolean",
        ),
        (
            {"networkPolicy": {"monitoringNamespace": "Monitoring"}},
            "at '/networkPolicy/monitoringNamespace'",
        ),
        (
            {"networkPolicy": {"monitoringNamespace": "m" * 64}},
            "at '/networkPolicy/monitoringNamespace'",
        ),
        (
            {"networkPolicy": {"monitoringNamespace": False}},
            "at '/networkPolicy/monitoringNamespace': got boolean, want string",
        ),
        (
            {"networkPolicy": {"monitoringPodLabels": {"app": 1}}},
            "at '/networkPolicy/monitoringPodLabels/app': got number, want string",
        ),
        (
            {"networkPolicy": {"monitoringPodLabels": ["app=prometheus"]}},
            "at '/networkPolicy/monitoringPodLabels': got array, want object",
        ),
        # The chart fills in the operator's own namespace and pod labels.
        (
            {"networkPolicy": {"operatorNamespace": "ops"}},
            "at '/networkPolicy': additional properties 'operatorNamespace' not allowed",
        ),
        (
            {"networkPolicy": {"operatorPodLabels": {"app": "x"}}},
            "at '/networkPolicy': additional properties 'operatorPodLabels' not allowed",
        ),
        # The security section is built from auth and networkPolicy, not set directly.
        (
            {"config": {"security": {"defaultAuthMode": "optional"}}},
            "at '/config': additional properties 'security' not allowed",
        ),
    ],
)
def test_schema_refuses(values: dict[str, Any], error: str) -> None:
    stderr = chartkit.refused(values)
    assert "values don't meet the specifications of the schema" in stderr
    assert error in stderr


@pytest.mark.parametrize(
    "values",
    [
        {"auth": {"defaultMode": "optional"}},
        {"auth": {"defaultMode": "required"}},
        {"networkPolicy": {"enabled": False}},
        {"networkPolicy": {"monitoringNamespace": ""}},
        {"networkPolicy": {"monitoringNamespace": "m" * 63}},
        {"networkPolicy": {"monitoringNamespace": "kube-prometheus-stack"}},
        {"networkPolicy": {"monitoringPodLabels": {"app.kubernetes.io/name": "prometheus"}}},
        chartkit.VALUE_SETS["security"],
    ],
)
def test_schema_accepts_the_security_values(values: dict[str, Any]) -> None:
    objects = chartkit.render(values)
    data = yaml.safe_load(chartkit.find(objects, "ConfigMap")["data"]["config.yaml"])
    config.parse(data, origin="chart ConfigMap")


def test_replicas_need_peering() -> None:
    stderr = chartkit.refused({"replicaCount": 2})
    assert "replicaCount 2 needs peering.enabled=true" in stderr
    # With peering the same count is fine, and so is a single replica without it.
    chartkit.render({"replicaCount": 2, "peering": {"enabled": True}})
    chartkit.render({"replicaCount": 1})


def test_pool_names_must_be_unique() -> None:
    pool = {"name": "l4", "gpuProduct": "NVIDIA-L4", "gpusPerNode": 8}
    stderr = chartkit.refused({"config": {"pools": [pool, pool]}})
    assert 'pool names must be unique; "l4" is repeated' in stderr


def test_service_account_name_required_when_not_created() -> None:
    stderr = chartkit.refused({"serviceAccount": {"create": False}})
    assert "serviceAccount.name is required" in stderr
    objects = chartkit.render({"serviceAccount": {"create": False, "name": "existing"}})
    assert not chartkit.of_kind(chartkit.release_objects(objects), "ServiceAccount")
    pod = chartkit.workload(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing"


def _objects(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield path, schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{path}/{index}")


def test_schema_is_closed_at_every_level() -> None:
    checked = 0
    for path, node in _objects(SCHEMA):
        if path.rsplit("/", 1)[0] in PASS_THROUGH:
            continue
        checked += 1
        # Either a record (fixed keys, nothing else) or a map whose values are typed.
        extra = node.get("additionalProperties")
        assert extra is False or isinstance(extra, dict), f"{path or '/'} is open"
        if "properties" in node:
            assert extra is False, f"{path or '/'} has properties but allows others"
    assert checked >= 19  # every object schema in the file, affinity's insides aside


def _leaf_paths(data: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _leaf_paths(value, (*prefix, key))
    else:
        yield prefix


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        resolved: dict[str, Any] = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return resolved
    return node


def test_schema_covers_every_value() -> None:
    # Each value is a declared property, or a key of a typed map (resources.requests).
    for path in _leaf_paths(yaml.safe_load(VALUES_TEXT)):
        node = SCHEMA
        for key in path:
            if key in node.get("properties", {}):
                node = _resolve(node["properties"][key])
            else:
                assert isinstance(node.get("additionalProperties"), dict), path
                node = _resolve(node["additionalProperties"])
        assert node, path


def test_every_value_is_documented() -> None:
    """Each value has a comment right above its key, or above the block it belongs to."""
    leaves = set(_leaf_paths(yaml.safe_load(VALUES_TEXT)))
    key_line = re.compile(r"^( *)([A-Za-z][A-Za-z0-9]*):")
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented) of the open blocks
    documented: set[tuple[str, ...]] = set()
    lines = VALUES_TEXT.splitlines()
    for index, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = index > 0 and lines[index - 1].lstrip().startswith("#")
        is_documented = commented or any(entry[2] for entry in stack)
        stack.append((indent, key, is_documented))
        path = tuple(entry[1] for entry in stack)
        if path in leaves:
            assert is_documented, f"values.yaml line {index + 1}: {'.'.join(path)} undocumented"
            documented.add(path)
    assert documented == leaves


def test_crd_deletion_warning_is_in_values() -> None:
    assert "Deleting a CRD deletes EVERY LlamaDeployment" in VALUES_TEXT


def test_config_schema_matches_the_operator_config() -> None:
    section = SCHEMA["properties"]["config"]
    # security is the chart's to write, from the auth and networkPolicy values; calibration
    # too, naming the release's namespace and the ConfigMap its Role grants.
    chart_written = {"security", "calibration"}
    assert set(section["properties"]) == set(config.OperatorConfig.model_fields) - chart_written
    assert set(section["properties"]["images"]["properties"]) == set(config.Images.model_fields)
    values_config = yaml.safe_load(VALUES_TEXT)["config"]
    # The chart's defaults are the operator's defaults.
    assert config.parse(values_config) == config.OperatorConfig()


# Set by the chart itself: the operator's own pods, this release's.
CHART_FILLED = {"operatorNamespace", "operatorPodLabels"}


def test_security_values_match_the_operator_config() -> None:
    assert set(config.Security.model_fields) == {"defaultAuthMode", "networkPolicy"}
    auth = SCHEMA["properties"]["auth"]["properties"]
    assert set(auth) == {"defaultMode"}
    modes = typing.get_args(config.Security.model_fields["defaultAuthMode"].annotation)
    assert auth["defaultMode"]["enum"] == list(modes)
    policy = SCHEMA["properties"]["networkPolicy"]["properties"]
    assert set(policy) | CHART_FILLED == set(config.NetworkPolicy.model_fields)
    assert not set(policy) & CHART_FILLED
    namespace = config.NetworkPolicy.model_fields["monitoringNamespace"]
    max_length = next(
        meta.max_length for meta in namespace.metadata if getattr(meta, "max_length", None)
    )
    assert policy["monitoringNamespace"]["maxLength"] == max_length
    # The chart's defaults are the operator's defaults.
    values = yaml.safe_load(VALUES_TEXT)
    defaults = config.Security()
    assert values["auth"] == {"defaultMode": defaults.defaultAuthMode}
    assert values["networkPolicy"] == defaults.networkPolicy.model_dump(exclude=CHART_FILLED)


def test_pool_schema_matches_the_pool_model() -> None:
    pool = SCHEMA["$defs"]["pool"]
    fields = pools.Pool.model_fields
    assert set(pool["properties"]) == set(fields)
    assert set(pool["required"]) == {name for name, field in fields.items() if field.is_required()}
    name_pattern = next(
        meta.pattern for meta in fields["name"].metadata if getattr(meta, "pattern", None)
    )
    assert SCHEMA["$defs"]["dnsLabel"]["pattern"] == name_pattern
    cc_pattern = next(
        meta.pattern
        for meta in fields["computeCapability"].metadata
        if getattr(meta, "pattern", None)
    )
    assert pool["properties"]["computeCapability"]["pattern"] == cc_pattern


def test_schema_accepts_what_the_operator_accepts() -> None:
    # Every pool of the operator's bundled catalogue is a valid chart value.
    catalogue = [
        pool.model_dump(exclude_defaults=True, mode="json") for pool in config.default_pools()
    ]
    objects = chartkit.render({"config": {"pools": catalogue}})
    data = yaml.safe_load(chartkit.find(objects, "ConfigMap")["data"]["config.yaml"])
    assert config.parse(data).pools == config.default_pools()
