"""The generated CRD: pinned to the committed files, structural, valid, and its rules right.

The API server cannot run here, so its admission of a LlamaDeployment is emulated the way
it works: structural defaulting, then OpenAPI validation (with strict field validation,
so unknown keys fail), then the CEL rules of every non-null node, which see null fields as
absent. Every verdict is compared with what the operator's own parser says of the spec.
"""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Iterator
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import jsonschema
import kubernetes_validate
import pytest
import yaml

from llama_operator import api
from llama_operator.api import crd

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "llamadeployments.llamaops.dev.yaml"
API_DOC = ROOT / "docs" / "reference" / "api.md"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))

CRD = crd.render()
OPENAPI: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC_SCHEMA: dict[str, Any] = OPENAPI["properties"]["spec"]
STATUS_SCHEMA: dict[str, Any] = OPENAPI["properties"]["status"]
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
REGENERATE = "is out of date with llama_operator/api/: run `make generate` and commit the result"


# -- helpers: walking the schema ----------------------------------------------------------


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node reachable through properties and items, with its field path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def all_dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping anywhere in the schema, anyOf branches and rule entries included."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from all_dicts(child)
    elif isinstance(value, list):
        for child in value:
            yield from all_dicts(child)


def spec_node(path: str) -> dict[str, Any]:
    node = SPEC_SCHEMA
    for part in path.split(".") if path else ():
        node = node["properties"][part]
    return node


# -- helpers: emulating the API server ----------------------------------------------------


def to_draft4(node: dict[str, Any]) -> dict[str, Any]:
    """A structural schema as JSON Schema draft 4 (OpenAPI v3.0's base).

    x-kubernetes-* keys are annotations for jsonschema, nullable becomes a null type, and
    objects with declared properties refuse other keys, as strict field validation and
    pruning do on the API server (kubectl validates strictly by default).
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_draft4(child) for name, child in value.items()}
        elif key == "items":
            out[key] = to_draft4(value)
        elif key == "anyOf":
            out[key] = [to_draft4(branch) for branch in value]
        else:
            out[key] = value
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


OPENAPI_VALIDATOR = jsonschema.Draft4Validator(to_draft4(OPENAPI))


def apply_defaults(value: Any, node: dict[str, Any]) -> None:
    """Structural defaulting as the API server does it, in place, top-down."""
    if isinstance(value, dict):
        for name, prop in node.get("properties", {}).items():
            missing = name not in value or (value[name] is None and not prop.get("nullable"))
            if missing and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                apply_defaults(value[name], prop)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            apply_defaults(item, node["items"])


def without_nulls(value: Any) -> Any:
    # The API server's CEL values treat a null field of an object as an absent one.
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


_CEL = celpy.Environment()
_PROGRAMS: dict[tuple[str, bool], Any] = {}


def evaluate(rule: str, self_value: Any, *, old_value: Any = None) -> bool:
    """``rule`` on ``self_value``. Rules with ``optionalOldSelf`` (the root's) see
    ``oldSelf`` as an optional: ``oldSelf.hasValue()`` is true on an update (``old_value``
    given) and false on create, as the API server evaluates them."""
    updating = old_value is not None
    if (rule, updating) not in _PROGRAMS:
        has_value = celpy.celtypes.BoolType(updating)
        _PROGRAMS[rule, updating] = _CEL.program(
            _CEL.compile(rule), functions={"hasValue": lambda _: has_value}
        )
    activation = {"self": celpy.adapter.json_to_cel(without_nulls(self_value))}
    if "oldSelf" in rule:
        activation["oldSelf"] = celpy.adapter.json_to_cel(without_nulls(old_value or {}))
    result = _PROGRAMS[rule, updating].evaluate(activation)
    # Our rules must be total: an evaluation error is a bug in the rule, not a rejection.
    assert not isinstance(result, celpy.evaluation.CELEvalError), f"{rule!r} failed: {result}"
    return bool(result)


def as_declared(value: Any, node: dict[str, Any]) -> Any:
    """``value`` as CEL sees it on the API server: a field declared ``type: number`` is a
    double even when the JSON holds an integer (4, not 4.0), so ``self.target <= 1.0``
    compares two doubles (kubernetes/apiserver, pkg/cel/common/schemas.go,
    ``SchemaDeclType``: ``case "number": return apiservercel.DoubleType``).
    cel-python would otherwise type JSON 4 as an int and find no int/double overload."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {
            key: as_declared(
                item, properties.get(key) or (extra if isinstance(extra, dict) else {})
            )
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [as_declared(item, node["items"]) for item in value]
    return value


def cel_failures(value: Any, node: dict[str, Any], old: Any = None) -> list[str]:
    """Messages of the rules that reject ``value``, walking the schema like the server.
    ``old``: the stored object, on an update (the root's create-only rules then pass)."""
    if value is None:
        return []  # rules only ever see non-null values
    typed = as_declared(value, node)
    failures = [
        entry["message"]
        for entry in node.get("x-kubernetes-validations", [])
        if not evaluate(
            entry["rule"],
            typed,
            old_value=as_declared(old, node) if node is OPENAPI and old is not None else None,
        )
    ]
    if isinstance(value, dict):
        for name, prop in node.get("properties", {}).items():
            if name in value:
                failures += cel_failures(value[name], prop)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            failures += cel_failures(item, node["items"])
    return failures


def wrap(spec: dict[str, Any], name: str = "sample") -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": "ai"},
        "spec": copy.deepcopy(spec),
    }


def api_server_errors(obj: dict[str, Any], *, old: dict[str, Any] | None = None) -> list[str]:
    """What the API server would refuse in ``obj`` (created, or updated from ``old``):
    schema errors first, then CEL, from the root's rules down."""
    obj = copy.deepcopy(obj)
    apply_defaults(obj, OPENAPI)
    schema_errors = [error.message for error in OPENAPI_VALIDATOR.iter_errors(obj)]
    if schema_errors:
        return schema_errors
    return cel_failures(obj, OPENAPI, old)


def operator_error(spec: dict[str, Any]) -> str | None:
    """The field ``api.parse_spec`` names, or None when it accepts the spec."""
    try:
        api.parse_spec(copy.deepcopy(spec))
    except api.SpecError as exc:
        return exc.field
    return None


def spec_with(**fields: Any) -> dict[str, Any]:
    model = {"id": MODEL_ID, **fields.pop("model", {})}
    return {"model": model, **fields}


def message(path: str, index: int = 0) -> str:
    return api.CEL_RULES[path][index][1]


def steps(*weights: int) -> dict[str, Any]:
    return {"steps": [{"weight": weight} for weight in weights]}


# -- snapshots ----------------------------------------------------------------------------


def test_committed_crd_matches_models() -> None:
    assert CRD_FILE.read_text() == crd.render_yaml(), f"{CRD_FILE.relative_to(ROOT)} {REGENERATE}"


def test_committed_reference_matches_models() -> None:
    assert API_DOC.read_text() == crd.reference_markdown(), (
        f"{API_DOC.relative_to(ROOT)} {REGENERATE}"
    )


def test_yaml_round_trips_to_render() -> None:
    assert yaml.safe_load(crd.render_yaml()) == CRD
    assert crd.render_yaml().startswith("# Generated by `llama-operator crds`")


# -- the CRD object -----------------------------------------------------------------------


def test_names_scope_and_labels() -> None:
    assert CRD["metadata"] == {
        "name": "llamadeployments.llamaops.dev",
        "labels": {"app.kubernetes.io/part-of": "llama-operator"},
    }
    assert CRD["spec"]["group"] == "llamaops.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": "LlamaDeployment",
        "listKind": "LlamaDeploymentList",
        "plural": "llamadeployments",
        "singular": "llamadeployment",
        "shortNames": ["llama"],
        "categories": ["all", "llm"],
    }


def test_one_served_storage_version_with_subresources() -> None:
    (version,) = CRD["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns() -> None:
    (version,) = CRD["spec"]["versions"]
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Model", "string", ".spec.model.id"),
        ("Engine", "string", ".status.plan.engine"),
        ("Pool", "string", ".status.plan.pool"),
        ("GPUs", "integer", ".status.plan.gpusPerReplica"),
        ("Quant", "string", ".status.plan.quantization"),
        ("License", "string", ".status.license.id"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Phase", "string", ".status.phase"),
        ("Rollout", "string", ".status.rollout.phase"),
        ("Planned KV", "integer", ".status.plan.kvCacheTokens"),
        ("Observed KV", "integer", ".status.plan.observed.kvCacheTokens"),
        ("P95", "number", ".status.serving.p95LatencySeconds"),
        ("$/MTok", "number", ".status.serving.costPerMillionTokens"),
        ("SLO", "string", '.status.conditions[?(@.type=="SLOMet")].status'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    # The KV-cache and serving columns are for `kubectl get llama -o wide` only.
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide == ["Planned KV", "Observed KV", "P95", "$/MTok", "SLO"]


def test_printer_columns_point_at_declared_fields() -> None:
    plan = STATUS_SCHEMA["properties"]["plan"]["properties"]
    assert plan["kvCacheTokens"]["type"] == "integer"
    assert plan["observed"]["properties"]["kvCacheTokens"]["type"] == "integer"


def test_scale_paths_point_at_declared_fields() -> None:
    assert SPEC_SCHEMA["properties"]["replicas"]["type"] == "integer"
    assert STATUS_SCHEMA["properties"]["replicas"]["type"] == "integer"
    assert STATUS_SCHEMA["properties"]["selector"]["type"] == "string"


@pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version()])
def test_crd_is_a_valid_custom_resource_definition(version: str) -> None:
    validated = kubernetes_validate.validate(CRD, version, strict=True)
    assert version.startswith(validated)


# -- structural schema --------------------------------------------------------------------


def test_no_json_schema_leftovers() -> None:
    forbidden = {"$ref", "$defs", "title", "const", "oneOf", "allOf", "not"}
    for node in all_dicts(OPENAPI):
        assert not forbidden & node.keys(), node
        # additionalProperties: false is refused in structural schemas; a map (label
        # selectors' matchLabels; the analysis' outcome counts by kind) has a schema for
        # its values instead, and no properties.
        if "additionalProperties" in node:
            assert node["additionalProperties"] in (
                {"type": "string", "maxLength": 63},
                {"type": "number"},
            ), node
            assert node["type"] == "object", node
            assert "properties" not in node, node


def test_every_node_is_typed_or_int_or_string() -> None:
    for path, node in walk(OPENAPI):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node["anyOf"] == INT_OR_STRING_ANY_OF, path
        else:
            assert node.get("type") in TYPES, path
            assert "anyOf" not in node, path


def test_int_or_string_fields_are_the_auto_pins() -> None:
    found = {path for path, node in walk(SPEC_SCHEMA) if node.get("x-kubernetes-int-or-string")}
    assert found == {"placement.tensorParallel", "placement.maxModelLen"}
    for path in found:
        assert spec_node(path)["default"] == "auto"


def test_objects_declare_properties_and_arrays_items() -> None:
    assert OPENAPI["properties"]["metadata"] == {"type": "object"}
    for path, node in walk(OPENAPI):
        if path == "metadata":
            continue
        if node.get("type") == "object" and "additionalProperties" not in node:
            assert node.get("properties"), path
            assert set(node.get("required", ())) <= node["properties"].keys(), path
        if node.get("type") == "array":
            assert "items" in node, path


def test_enums_are_strings() -> None:
    enums = [(path, node) for path, node in walk(OPENAPI) if "enum" in node]
    assert enums
    for path, node in enums:
        assert node["type"] == "string", path
        assert all(isinstance(value, str) for value in node["enum"]), path
        # kube-openapi checks enum membership before nullable, so null could never pass.
        assert "nullable" not in node, path


def test_bounds_use_openapi_v3_0_forms() -> None:
    for path, node in walk(OPENAPI):
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if flag in node:
                assert node[flag] is True, path
                assert isinstance(node[bound], int | float), path
        if "nullable" in node:
            assert node["nullable"] is True, path
    assert spec_node("autoscaling.targetQueueLength")["exclusiveMinimum"] is True


def test_every_field_is_described() -> None:
    for path, node in walk(OPENAPI):
        if path.endswith("[]") or path in ("", "metadata"):
            continue
        assert node.get("description"), path


def test_defaults_are_valid_and_never_null() -> None:
    defaults = [(path, node) for path, node in walk(OPENAPI) if "default" in node]
    assert ("spec.placement", spec_node("placement")) in defaults
    for path, node in defaults:
        assert node["default"] is not None, path
        jsonschema.Draft4Validator(to_draft4(node)).validate(node["default"])
    # Sub-objects with a factory default to {} so their own fields' defaults apply.
    assert spec_node("placement")["default"] == {}
    assert spec_node("modelCache")["default"] == {}
    assert spec_node("rollout.analysis")["default"] == {}


def test_required_fields_come_from_the_models() -> None:
    assert OPENAPI["required"] == ["spec"]
    assert SPEC_SCHEMA["required"] == ["model"]
    assert spec_node("model")["required"] == ["id"]
    assert spec_node("rollout.steps")["items"]["required"] == ["weight"]


def test_optional_fields_are_nullable() -> None:
    for path in ("autoscaling", "rollout", "model.parameters", "modelCache.claimName"):
        assert spec_node(path)["nullable"] is True, path
    assert "nullable" not in spec_node("placement")


def test_status_keeps_unknown_fields_and_lists_conditions_by_type() -> None:
    assert STATUS_SCHEMA["type"] == "object"
    assert STATUS_SCHEMA["x-kubernetes-preserve-unknown-fields"] is True
    assert {"phase", "plan", "conditions", "replicas", "selector"} <= STATUS_SCHEMA[
        "properties"
    ].keys()
    conditions = STATUS_SCHEMA["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
    # Only status keeps unknown keys; the spec refuses them.
    preserved = [
        path for path, node in walk(OPENAPI) if "x-kubernetes-preserve-unknown-fields" in node
    ]
    assert preserved == ["status"]


def test_openapi_schema_is_valid_draft4() -> None:
    jsonschema.Draft4Validator.check_schema(to_draft4(OPENAPI))


# -- CEL rules ----------------------------------------------------------------------------

ALL_RULES = [
    pytest.param(path, rule, id=f"{path or 'spec'}-{index}")
    for path, rules in api.CEL_RULES.items()
    for index, (rule, _) in enumerate(rules)
]


def test_rules_are_attached_where_cel_rules_says() -> None:
    attached = {
        path: [(entry["rule"], entry["message"]) for entry in node["x-kubernetes-validations"]]
        for path, node in walk(SPEC_SCHEMA)
        if "x-kubernetes-validations" in node
    }
    assert attached == api.CEL_RULES
    # The root's rules (metadata.name) apply on create only: optionalOldSelf.
    assert OPENAPI["x-kubernetes-validations"] == [
        {"rule": rule, "message": message, "optionalOldSelf": True}
        for rule, message in api.ROOT_CEL_RULES
    ]
    for node in all_dicts(OPENAPI):
        for entry in node.get("x-kubernetes-validations", []):
            expected = {"rule", "message"} | ({"optionalOldSelf"} if node is OPENAPI else set())
            assert entry.keys() == expected
            assert "\n" not in entry["message"]


@pytest.mark.parametrize(("path", "rule"), ALL_RULES)
def test_rule_compiles_and_holds_for_defaults(path: str, rule: str) -> None:
    spec = spec_with(autoscaling={}, rollout={})
    apply_defaults(spec, SPEC_SCHEMA)
    node_value = spec
    for part in path.split(".") if path else ():
        node_value = node_value[part]
    assert evaluate(rule, node_value) is True


# One table for both checkers: each row is a spec, the message of the CEL rule that must
# reject it (None: accepted), and the field the operator's parser must name (None: accepted).
CEL_CASES = [
    pytest.param(spec_with(), None, None, id="minimal"),
    pytest.param(
        spec_with(autoscaling={"minReplicas": 2, "maxReplicas": 1}),
        message("autoscaling"),
        "spec.autoscaling.minReplicas",
        id="autoscaling-min-above-max",
    ),
    pytest.param(
        spec_with(autoscaling={"minReplicas": 2, "maxReplicas": 2}),
        None,
        None,
        id="autoscaling-min-equals-max",
    ),
    pytest.param(
        spec_with(autoscaling={"minReplicas": 5}),
        message("autoscaling"),
        "spec.autoscaling.minReplicas",
        id="autoscaling-min-above-default-max",
    ),
    pytest.param(spec_with(autoscaling=None), None, None, id="autoscaling-null"),
    pytest.param(spec_with(placement={"tensorParallel": "auto"}), None, None, id="tp-auto"),
    pytest.param(spec_with(placement={"tensorParallel": 4}), None, None, id="tp-4"),
    pytest.param(spec_with(placement={"tensorParallel": 1}), None, None, id="tp-1"),
    pytest.param(
        spec_with(placement={"tensorParallel": 3}),
        message("placement", 0),
        "spec.placement.tensorParallel",
        id="tp-3",
    ),
    pytest.param(
        spec_with(placement={"tensorParallel": "four"}),
        message("placement", 0),
        "spec.placement.tensorParallel",
        id="tp-four",
    ),
    pytest.param(
        spec_with(placement={"maxModelLen": 100}),
        message("placement", 1),
        "spec.placement.maxModelLen",
        id="max-model-len-100",
    ),
    pytest.param(spec_with(placement={"maxModelLen": 128}), None, None, id="max-model-len-128"),
    pytest.param(spec_with(placement={"maxModelLen": 4096}), None, None, id="max-model-len-4096"),
    pytest.param(spec_with(placement={"maxModelLen": "auto"}), None, None, id="max-model-len-auto"),
    pytest.param(
        spec_with(placement={"maxModelLen": "long"}),
        message("placement", 1),
        "spec.placement.maxModelLen",
        id="max-model-len-long",
    ),
    pytest.param(
        spec_with(modelCache={"volume": "persistentVolumeClaim"}),
        message("modelCache"),
        "spec.modelCache.claimName",
        id="pvc-without-claim",
    ),
    pytest.param(
        spec_with(modelCache={"volume": "persistentVolumeClaim", "claimName": None}),
        message("modelCache"),
        "spec.modelCache.claimName",
        id="pvc-claim-null",
    ),
    # An empty claimName is not a name: the schema's pattern refuses it before the CEL
    # rule runs (tests/unit/test_object_names.py).
    pytest.param(
        spec_with(modelCache={"volume": "persistentVolumeClaim", "claimName": "weights"}),
        None,
        None,
        id="pvc-with-claim",
    ),
    pytest.param(spec_with(modelCache={"sizeLimit": "40Gi"}), None, None, id="emptydir"),
    pytest.param(spec_with(rollout={}), None, None, id="rollout-empty"),
    pytest.param(spec_with(rollout=steps(10, 50)), None, None, id="rollout-increasing"),
    pytest.param(
        spec_with(rollout=steps(50, 10)),
        message("rollout"),
        "spec.rollout.steps",
        id="rollout-decreasing",
    ),
    pytest.param(
        spec_with(rollout=steps(10, 10)),
        message("rollout"),
        "spec.rollout.steps",
        id="rollout-equal",
    ),
    pytest.param(spec_with(rollout=steps(*range(1, 21))), None, None, id="rollout-20-increasing"),
    pytest.param(
        spec_with(rollout=steps(*range(1, 20), 19)),
        message("rollout"),
        "spec.rollout.steps",
        id="rollout-20-last-pair-equal",
    ),
    pytest.param(
        spec_with(placement={"quantization": "awq"}),
        message("", 1),
        "spec.placement.quantization",
        id="awq-without-awq-checkpoint",
    ),
    pytest.param(
        spec_with(model={"checkpointQuantization": "awq"}, placement={"quantization": "awq"}),
        None,
        None,
        id="awq-checkpoint-awq",
    ),
    pytest.param(
        spec_with(model={"checkpointQuantization": "awq"}, placement={"quantization": "fp8"}),
        message("", 0),
        "spec.placement.quantization",
        id="awq-checkpoint-fp8",
    ),
    pytest.param(
        spec_with(model={"checkpointQuantization": "awq"}, placement={"quantization": "none"}),
        message("", 0),
        "spec.placement.quantization",
        id="awq-checkpoint-none",
    ),
    pytest.param(
        spec_with(model={"checkpointQuantization": "awq"}, placement={"quantization": "auto"}),
        None,
        None,
        id="awq-checkpoint-auto",
    ),
    pytest.param(
        spec_with(model={"checkpointQuantization": "gptq"}),
        None,
        None,
        id="gptq-checkpoint-default-placement",
    ),
    pytest.param(spec_with(placement={"quantization": "fp8"}), None, None, id="fp8"),
    pytest.param(
        spec_with(engineArgs=["--enable-prefix-caching", "--api-key", "sk-1"]),
        message("", 2),
        "spec.engineArgs",
        id="api-key-in-engine-args",
    ),
    pytest.param(
        spec_with(engineArgs=["--hf-token=hf_x"]),
        message("", 2),
        "spec.engineArgs",
        id="hf-token-in-engine-args",
    ),
    pytest.param(
        spec_with(engineArgs=["--api-keys-are-not-a-flag"]),
        None,
        None,
        id="similar-flag-is-not-refused",
    ),
    pytest.param(
        spec_with(network={"allowFrom": [{}]}),
        message("network", 0),
        "spec.network.allowFrom[0]",
        id="peer-without-selector",
    ),
    pytest.param(
        spec_with(network={"allowFrom": [{"podSelector": {}}, {"namespaceSelector": {}}]}),
        None,
        None,
        id="peers-with-selectors",
    ),
    pytest.param(
        spec_with(
            network={
                "egress": {
                    "restrict": True,
                    "allowTo": [{"ipBlock": {"cidr": "10.1.0.0/16"}, "podSelector": {}}],
                }
            }
        ),
        message("network.egress", 0),
        "spec.network.egress.allowTo[0]",
        id="egress-ip-block-and-selector",
    ),
    pytest.param(
        spec_with(network={"egress": {"restrict": True, "allowTo": [{"ports": [443]}]}}),
        message("network.egress", 0),
        "spec.network.egress.allowTo[0]",
        id="egress-rule-without-destination",
    ),
    pytest.param(
        spec_with(network={"egress": {"allowTo": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}}),
        message("network.egress", 1),
        "spec.network.egress.allowTo",
        id="egress-allow-to-without-restrict",
    ),
    pytest.param(
        spec_with(
            network={
                "egress": {
                    "restrict": True,
                    "allowTo": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]}}],
                }
            }
        ),
        None,
        None,
        id="egress-ip-block",
    ),
]


def adapter_message(text: str) -> str:
    """The root rule about spec.adapters whose message contains ``text``."""
    return next(m for _, m in api.CEL_RULES[""] if m.startswith("spec.adapters") and text in m)


ADAPTER_CASES = [
    pytest.param(
        spec_with(adapters=[{"name": "sql", "id": "acme/sql-lora"}]), None, None, id="adapter-hub"
    ),
    pytest.param(
        spec_with(
            adapters=[
                {"name": "sql", "path": "/models/sql", "rank": 16, "targetModules": ["q_proj"]}
            ]
        ),
        None,
        None,
        id="adapter-path",
    ),
    pytest.param(
        spec_with(adapters=[{"name": "sql"}]),
        adapter_message("exactly one of id"),
        "spec.adapters[0]",
        id="adapter-neither-id-nor-path",
    ),
    pytest.param(
        spec_with(
            adapters=[
                {
                    "name": "sql",
                    "id": "acme/sql",
                    "path": "/models/sql",
                    "rank": 8,
                    "targetModules": ["q_proj"],
                }
            ]
        ),
        adapter_message("exactly one of id"),
        "spec.adapters[0]",
        id="adapter-both-id-and-path",
    ),
    pytest.param(
        spec_with(adapters=[{"name": "sql", "path": "/models/sql", "rank": 8}]),
        adapter_message("needs rank and targetModules"),
        "spec.adapters[0]",
        id="adapter-path-without-target-modules",
    ),
    pytest.param(
        spec_with(adapters=[{"name": "sql", "id": "acme/a"}, {"name": "sql", "id": "acme/b"}]),
        adapter_message("unique"),
        "spec.adapters[1].name",
        id="adapter-names-twice",
    ),
    pytest.param(
        spec_with(model={"servedName": "llama"}, adapters=[{"name": "llama", "id": "acme/a"}]),
        adapter_message("served name"),
        "spec.adapters[0].name",
        id="adapter-named-as-base",
    ),
]
CEL_CASES += ADAPTER_CASES


@pytest.mark.parametrize(("spec", "cel_message", "operator_field"), CEL_CASES)
def test_cel_rules_and_parser_agree(
    spec: dict[str, Any], cel_message: str | None, operator_field: str | None
) -> None:
    expected = [cel_message] if cel_message is not None else []
    assert api_server_errors(wrap(spec)) == expected
    assert operator_error(spec) == operator_field


# -- example and invalid objects ----------------------------------------------------------


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_is_admitted_and_parses(path: pathlib.Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert (obj["apiVersion"], obj["kind"]) == (api.API_VERSION, api.KIND)
    assert api_server_errors(obj) == []
    api.parse_spec(obj["spec"])


@pytest.mark.parametrize(
    "spec",
    [spec_with(), *(yaml.safe_load(path.read_text())["spec"] for path in EXAMPLES)],
    ids=["minimal", *(path.stem for path in EXAMPLES)],
)
def test_server_defaults_match_model_defaults(spec: dict[str, Any]) -> None:
    defaulted = copy.deepcopy(spec)
    apply_defaults(defaulted, SPEC_SCHEMA)
    parsed = api.parse_spec(spec).model_dump(mode="json", exclude_none=True)
    # The one default the server does not write (api/rollout_spec.py says why: spec.slo
    # must tell an unset canary threshold from a set one): the operator's own 0.02.
    analysis = defaulted.get("rollout", {}).get("analysis")
    if analysis is not None and "maxErrorRate" not in analysis:
        analysis["maxErrorRate"] = 0.02
    assert defaulted == parsed


# Refused by the schema or a rule on the server side (the error text shows which), and by
# the parser naming the same field.
INVALID_CASES = [
    pytest.param(
        spec_with(placement={"tensorParalel": 2}),
        "'tensorParalel' was unexpected",
        "spec.placement.tensorParalel",
        id="unknown-placement-key",
    ),
    pytest.param(
        spec_with(placement={"tensorParallel": 3}),
        message("placement", 0),
        "spec.placement.tensorParallel",
        id="tp-3",
    ),
    pytest.param(
        spec_with(placement={"tensorParallel": 2.5}),
        "is not valid under any of the given schemas",
        "spec.placement.tensorParallel",
        id="tp-float",
    ),
    pytest.param(spec_with(engine="foo"), "'foo' is not one of", "spec.engine", id="engine-foo"),
    pytest.param({"engine": "vllm"}, "'model' is a required property", "spec.model", id="no-model"),
    pytest.param(
        spec_with(model={"id": "not a repo id"}), "does not match", "spec.model.id", id="bad-id"
    ),
    pytest.param(
        spec_with(replicas=-1), "less than the minimum", "spec.replicas", id="negative-replicas"
    ),
    pytest.param(
        spec_with(autoscaling={"targetQueueLength": 0}),
        "less than or equal to the minimum",
        "spec.autoscaling.targetQueueLength",
        id="exclusive-minimum",
    ),
    pytest.param(
        spec_with(model={"parameters": "8"}), "does not match", "spec.model.parameters", id="params"
    ),
    pytest.param(
        spec_with(unknown=True), "'unknown' was unexpected", "spec.unknown", id="unknown-spec-key"
    ),
]


@pytest.mark.parametrize(("spec", "server_error", "operator_field"), INVALID_CASES)
def test_invalid_specs_are_refused_by_both(
    spec: dict[str, Any], server_error: str, operator_field: str
) -> None:
    errors = api_server_errors(wrap(spec))
    assert any(server_error in error for error in errors), errors
    assert operator_error(spec) == operator_field


def test_status_written_by_the_operator_validates() -> None:
    status = api.LlamaDeploymentStatus(
        phase="Ready",
        plan=api.Plan(
            engine="vllm",
            pool="l4",
            gpuProduct="NVIDIA-L4",
            gpusPerReplica=1,
            tensorParallel=1,
            quantization="fp8",
            dtype="bfloat16",
            maxModelLen=8192,
            maxConcurrentSequences=4,
            gpuMemoryUtilization=0.9,
            weightsGiB=8.5,
            estimatedGPUMemoryGiB=20.1,
            kvCacheGiB=4.0,
            reason="cheapest pool that fits",
        ),
        replicas=1,
        readyReplicas=1,
        selector="app=chat",
        conditions=[
            api.Condition(
                type="Ready",
                status="True",
                reason="Serving",
                lastTransitionTime="2025-01-01T00:00:00Z",
            )
        ],
    )
    obj = wrap(spec_with())
    obj["status"] = {**status.model_dump(mode="json", exclude_none=True), "kopf": {"x": 1}}
    assert api_server_errors(obj) == []
    obj["status"]["plan"]["engine"] = "foo"
    assert api_server_errors(obj)


# -- reference docs -----------------------------------------------------------------------


def test_reference_documents_every_field_and_rule() -> None:
    doc = crd.reference_markdown()
    for root, schema in (("spec", SPEC_SCHEMA), ("status", STATUS_SCHEMA)):
        for path, node in walk(schema, root):
            if node.get("type") != "object" or "properties" not in node:
                continue
            section = doc.split(f"\n{'#' * min(path.count('.') + 2, 4)} {path}\n", 1)[1]
            table = section.split("\n\n#", 1)[0]
            for name in node["properties"]:
                assert f"| `{name}` |" in table, f"{path}.{name}"
    for rules in api.CEL_RULES.values():
        for _, text in rules:
            assert text in doc
    for column in crd.PRINTER_COLUMNS:
        assert f"| {column['name']} |" in doc
