"""Every name a user writes is validated as the Kubernetes name it is before it reaches an
API path, and API paths escape names anyway (issue 15, item 1: an API-key Secret named
``../x`` made the operator request ``.../namespaces/<ns>/x`` under its own identity).

Both layers are checked: the CRD's schema, as the API server applies it (the generated
openAPIV3Schema through a JSON-schema validator, as tests/unit/test_crd.py does), and the
operator's own parse, for input that bypassed the API server.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_crd import api_server_errors, operator_error, wrap

from llama_operator import api
from llama_operator.clients import k8s

MODEL = {"id": "meta-llama/Llama-3.1-8B-Instruct"}

# (the field, a spec with the name at that field).
FIELDS: dict[str, Any] = {
    "spec.model.tokenSecretRef.name": lambda v: {"model": {**MODEL, "tokenSecretRef": {"name": v}}},
    "spec.model.tokenSecretRef.key": lambda v: {
        "model": {**MODEL, "tokenSecretRef": {"name": "hf-token", "key": v}}
    },
    "spec.auth.apiKeySecretRef.name": lambda v: {
        "model": MODEL,
        "auth": {"apiKeySecretRef": {"name": v}},
    },
    "spec.auth.apiKeySecretRef.key": lambda v: {
        "model": MODEL,
        "auth": {"apiKeySecretRef": {"name": "chat-api-key", "key": v}},
    },
    "spec.modelCache.claimName": lambda v: {
        "model": MODEL,
        "modelCache": {"volume": "persistentVolumeClaim", "claimName": v},
    },
    "spec.traffic.gatewayRef.name": lambda v: {
        "model": MODEL,
        "traffic": {"gatewayRef": {"name": v}},
    },
    "spec.traffic.gatewayRef.namespace": lambda v: {
        "model": MODEL,
        "traffic": {"gatewayRef": {"name": "gw", "namespace": v}},
    },
    "spec.traffic.gatewayRef.sectionName": lambda v: {
        "model": MODEL,
        "traffic": {"gatewayRef": {"name": "gw", "sectionName": v}},
    },
}
NAME_FIELDS = [field for field in FIELDS if not field.endswith(".key")]
KEY_FIELDS = [field for field in FIELDS if field.endswith(".key")]

# Hostile or malformed names: path traversal, extra segments, query and fragment, escapes,
# case, whitespace, leading or trailing punctuation.
BAD_NAMES = [
    "",
    "../x",
    "..",
    "a/b",
    "x?watch=true",
    "x#y",
    "%2e%2e",
    "Upper",
    "under_score",
    " spaced",
    "-leading",
    "trailing-",
    "dot.",
]
BAD_KEYS = ["../x", "a/b", "x?y", "with space", ""]


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", BAD_NAMES)
def test_a_name_that_is_not_one_is_refused_by_the_schema_and_the_operator(
    field: str, value: str
) -> None:
    spec = FIELDS[field](value)
    assert api_server_errors(wrap(spec)), f"the API server would accept {field}={value!r}"
    assert operator_error(spec) == field


@pytest.mark.parametrize("field", KEY_FIELDS)
@pytest.mark.parametrize("value", BAD_KEYS)
def test_a_secret_key_that_is_not_one_is_refused(field: str, value: str) -> None:
    spec = FIELDS[field](value)
    assert api_server_errors(wrap(spec))
    assert operator_error(spec) == field


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", ["x", "chat-api-key", "a" * 63])
def test_real_names_pass(field: str, value: str) -> None:
    spec = FIELDS[field](value)
    assert api_server_errors(wrap(spec)) == []
    assert operator_error(spec) is None


@pytest.mark.parametrize("field", [f for f in NAME_FIELDS if not f.endswith(".namespace")])
def test_object_names_may_have_dots_namespaces_may_not(field: str) -> None:
    value = "hf-token.v2"
    spec = FIELDS[field](value)
    assert api_server_errors(wrap(spec)) == []
    assert operator_error(spec) is None


def test_the_operators_message_names_the_rule() -> None:
    with pytest.raises(api.SpecError) as caught:
        api.parse_spec(FIELDS["spec.auth.apiKeySecretRef.name"]("../x"))
    assert caught.value.field == "spec.auth.apiKeySecretRef.name"
    assert "Kubernetes object name" in str(caught.value)
    assert "'../x'" in str(caught.value)


class TestPaths:
    def test_names_are_one_escaped_segment(self) -> None:
        path = k8s.path_for(api_version="v1", kind="Secret", namespace="ai", name="a/../b?x")
        assert path == "/api/v1/namespaces/ai/secrets/a%2F..%2Fb%3Fx"

    def test_a_namespace_is_escaped_too(self) -> None:
        path = k8s.path_for(api_version="v1", kind="Pod", namespace="a/b", name=None)
        assert path == "/api/v1/namespaces/a%2Fb/pods"

    @pytest.mark.parametrize("name", [".", ".."])
    def test_dot_segments_are_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="is not an object name"):
            k8s.path_for(api_version="v1", kind="Secret", namespace="ai", name=name)

    def test_ordinary_names_are_unchanged(self) -> None:
        assert k8s.path_for(
            api_version="apps/v1", kind="Deployment", namespace="ai", name="chat-primary"
        ) == ("/apis/apps/v1/namespaces/ai/deployments/chat-primary")


def test_a_namespace_with_a_dot_is_refused() -> None:
    spec = FIELDS["spec.traffic.gatewayRef.namespace"]("hf-token.v2")
    assert api_server_errors(wrap(spec))
    assert operator_error(spec) == "spec.traffic.gatewayRef.namespace"
