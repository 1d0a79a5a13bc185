"""The hand-written HTTPRoute schema (tests/fixtures/gateway/httproute.schema.json).

Other tests validate the HTTPRoute the operator renders for spec.traffic.gatewayRef with
``gateway.validate_httproute``. These tests check the schema itself: a correct canary route
(two Services, weighted 90/10) passes, the upstream limits hold at their boundaries, and
the mistakes a builder could make are refused, at the place where they are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from gateway import SCHEMA, httproute_errors, validate_httproute

Route = dict[str, Any]


def backend(name: str, weight: int, **extra: Any) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 8000, "weight": weight, **extra}


def route() -> Route:
    """The canary route of LlamaDeployment ai/chat at step 1: 90% primary, 10% canary."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "chat",
            "namespace": "ai",
            "labels": {"app.kubernetes.io/managed-by": "llama-operator"},
            "ownerReferences": [
                {
                    "apiVersion": "llamaops.dev/v1alpha1",
                    "kind": "LlamaDeployment",
                    "name": "chat",
                    "uid": "0b7c6d1e-1111-4222-8333-444455556666",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": "gateway-system",
                    "name": "public",
                    "sectionName": "https",
                }
            ],
            "hostnames": ["chat.example.com", "*.llm.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [backend("chat-primary", 90), backend("chat-canary", 10)],
                }
            ],
        },
    }


def first_backend(obj: Route) -> dict[str, Any]:
    found: dict[str, Any] = obj["spec"]["rules"][0]["backendRefs"][0]
    return found


def edited(edit: Callable[[Route], object]) -> Route:
    obj = route()
    edit(obj)
    return obj


def test_schema_is_draft_2020_12_and_says_where_it_comes_from() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    comment = SCHEMA["$comment"]
    assert "Hand-written" in comment
    assert "https://gateway-api.sigs.k8s.io/reference/spec/" in comment
    assert "Stricter than upstream" in comment
    assert "Looser than upstream" in comment


def test_the_canary_route_validates() -> None:
    obj = route()
    validate_httproute(obj)
    assert httproute_errors(obj) == []


VALID: list[tuple[str, Callable[[Route], object]]] = [
    (
        "group and kind left to their defaults",
        lambda o: [
            b.pop(k) for b in o["spec"]["rules"][0]["backendRefs"] for k in ("group", "kind")
        ],
    ),
    ("no hostnames: every listener hostname", lambda o: o["spec"].pop("hostnames")),
    ("no matches: the default PathPrefix /", lambda o: o["spec"]["rules"][0].pop("matches")),
    ("weight 0: the canary gets nothing yet", lambda o: first_backend(o).update(weight=0)),
    ("weight at the maximum", lambda o: first_backend(o).update(weight=1_000_000)),
    ("weight left to the default 1", lambda o: first_backend(o).pop("weight")),
    ("parentRef with only a name", lambda o: o["spec"].update(parentRefs=[{"name": "public"}])),
    ("parentRef by port", lambda o: o["spec"]["parentRefs"][0].update(port=443)),
    (
        "ports at the bounds",
        lambda o: [
            b.update(port=p)
            for b, p in zip(o["spec"]["rules"][0]["backendRefs"], (1, 65535), strict=True)
        ],
    ),
    ("a Service in another namespace", lambda o: first_backend(o).update(namespace="team-b")),
    (
        "a non-Service backend may leave port out",
        lambda o: o["spec"]["rules"][0].update(
            backendRefs=[
                {
                    "group": "inference.networking.k8s.io",
                    "kind": "InferencePool",
                    "name": "chat-pool",
                }
            ]
        ),
    ),
    (
        "16 backendRefs",
        lambda o: o["spec"]["rules"][0].update(
            backendRefs=[backend(f"chat-{i}", 1) for i in range(16)]
        ),
    ),
    ("16 rules", lambda o: o["spec"].update(rules=o["spec"]["rules"] * 16)),
    (
        "16 hostnames",
        lambda o: o["spec"].update(hostnames=[f"h{i}.example.com" for i in range(16)]),
    ),
    (
        "32 parentRefs",
        lambda o: o["spec"].update(
            parentRefs=[{"name": "public", "sectionName": f"l{i}"} for i in range(32)]
        ),
    ),
    (
        "an Exact path",
        lambda o: o["spec"]["rules"][0].update(
            matches=[{"path": {"type": "Exact", "value": "/v1/chat/completions"}}]
        ),
    ),
    (
        "a RegularExpression path is not a URL path",
        lambda o: o["spec"]["rules"][0].update(
            matches=[{"path": {"type": "RegularExpression", "value": "^/v[0-9]+//.*"}}]
        ),
    ),
    ("status is left alone", lambda o: o.update(status={"parents": []})),
]


@pytest.mark.parametrize("edit", [pytest.param(e, id=name) for name, e in VALID])
def test_valid_variants(edit: Callable[[Route], object]) -> None:
    validate_httproute(edited(edit))


def set_hostname(value: str) -> Callable[[Route], object]:
    return lambda o: o["spec"].update(hostnames=[value])


def set_path(kind: str, value: str) -> Callable[[Route], object]:
    return lambda o: o["spec"]["rules"][0].update(
        matches=[{"path": {"type": kind, "value": value}}]
    )


BACKEND = ["spec", "rules", 0, "backendRefs", 0]

# (id, edit, where the error is)
INVALID: list[tuple[str, Callable[[Route], object], list[Any]]] = [
    ("weight -1", lambda o: first_backend(o).update(weight=-1), [*BACKEND, "weight"]),
    (
        "weight above 1000000",
        lambda o: first_backend(o).update(weight=1_000_001),
        [*BACKEND, "weight"],
    ),
    ("weight as a string", lambda o: first_backend(o).update(weight="90"), [*BACKEND, "weight"]),
    ("weight as a float", lambda o: first_backend(o).update(weight=0.9), [*BACKEND, "weight"]),
    ("Service backend without port", lambda o: first_backend(o).pop("port"), BACKEND),
    (
        "defaulted Service backend without port",
        lambda o: [first_backend(o).pop(k) for k in ("group", "kind", "port")],
        BACKEND,
    ),
    ("port 0", lambda o: first_backend(o).update(port=0), [*BACKEND, "port"]),
    ("port 65536", lambda o: first_backend(o).update(port=65536), [*BACKEND, "port"]),
    ("port by name", lambda o: first_backend(o).update(port="http"), [*BACKEND, "port"]),
    ("backend without a name", lambda o: first_backend(o).pop("name"), BACKEND),
    ("backend with an empty name", lambda o: first_backend(o).update(name=""), [*BACKEND, "name"]),
    (
        "backend namespace not a DNS label",
        lambda o: first_backend(o).update(namespace="Team_B"),
        [*BACKEND, "namespace"],
    ),
    ("backend filters are not written", lambda o: first_backend(o).update(filters=[]), BACKEND),
    (
        "17 backendRefs",
        lambda o: o["spec"]["rules"][0].update(
            backendRefs=[backend(f"chat-{i}", 1) for i in range(17)]
        ),
        ["spec", "rules", 0, "backendRefs"],
    ),
    (
        "no backendRefs",
        lambda o: o["spec"]["rules"][0].update(backendRefs=[]),
        ["spec", "rules", 0, "backendRefs"],
    ),
    (
        "a rule without backendRefs",
        lambda o: o["spec"]["rules"][0].pop("backendRefs"),
        ["spec", "rules", 0],
    ),
    ("17 rules", lambda o: o["spec"].update(rules=o["spec"]["rules"] * 17), ["spec", "rules"]),
    ("no rules", lambda o: o["spec"].pop("rules"), ["spec"]),
    (
        "a typo in a rule",
        lambda o: o["spec"]["rules"][0].update(backendRef=o["spec"]["rules"][0].pop("backendRefs")),
        ["spec", "rules", 0],
    ),
    (
        "9 matches",
        lambda o: o["spec"]["rules"][0].update(
            matches=[{"path": {"type": "PathPrefix", "value": f"/v{i}"}} for i in range(9)]
        ),
        ["spec", "rules", 0, "matches"],
    ),
    ("hostname in upper case", set_hostname("Chat.example.com"), ["spec", "hostnames", 0]),
    ("hostname with an underscore", set_hostname("chat_1.example.com"), ["spec", "hostnames", 0]),
    (
        "hostname with a URL scheme",
        set_hostname("https://chat.example.com"),
        ["spec", "hostnames", 0],
    ),
    ("hostname with a port", set_hostname("chat.example.com:443"), ["spec", "hostnames", 0]),
    ("hostname with a trailing dot", set_hostname("chat.example.com."), ["spec", "hostnames", 0]),
    (
        "wildcard not the whole first label",
        set_hostname("chat*.example.com"),
        ["spec", "hostnames", 0],
    ),
    ("two wildcard labels", set_hostname("*.*.example.com"), ["spec", "hostnames", 0]),
    ("hostname that is an IP address", set_hostname("10.0.0.1"), ["spec", "hostnames", 0]),
    ("empty hostname", set_hostname(""), ["spec", "hostnames", 0]),
    (
        "hostname longer than 253",
        set_hostname(".".join(["a" * 63] * 4) + ".com"),
        ["spec", "hostnames", 0],
    ),
    (
        "17 hostnames",
        lambda o: o["spec"].update(hostnames=[f"h{i}.example.com" for i in range(17)]),
        ["spec", "hostnames"],
    ),
    (
        "parentRef without a name",
        lambda o: o["spec"]["parentRefs"][0].pop("name"),
        ["spec", "parentRefs", 0],
    ),
    (
        "parentRef with an empty name",
        lambda o: o["spec"]["parentRefs"][0].update(name=""),
        ["spec", "parentRefs", 0, "name"],
    ),
    (
        "parentRef namespace in upper case",
        lambda o: o["spec"]["parentRefs"][0].update(namespace="Gateway-System"),
        ["spec", "parentRefs", 0, "namespace"],
    ),
    (
        "parentRef sectionName not a DNS subdomain",
        lambda o: o["spec"]["parentRefs"][0].update(sectionName="HTTPS_443"),
        ["spec", "parentRefs", 0, "sectionName"],
    ),
    (
        "parentRef kind not CamelCase-like",
        lambda o: o["spec"]["parentRefs"][0].update(kind="1x"),
        ["spec", "parentRefs", 0, "kind"],
    ),
    (
        "parentRef group in upper case",
        lambda o: o["spec"]["parentRefs"][0].update(group="Gateway.Networking.K8s.io"),
        ["spec", "parentRefs", 0, "group"],
    ),
    (
        "parentRef port 0",
        lambda o: o["spec"]["parentRefs"][0].update(port=0),
        ["spec", "parentRefs", 0, "port"],
    ),
    ("no parentRefs", lambda o: o["spec"].pop("parentRefs"), ["spec"]),
    ("empty parentRefs", lambda o: o["spec"].update(parentRefs=[]), ["spec", "parentRefs"]),
    (
        "the same parent twice",
        lambda o: o["spec"]["parentRefs"].append(copy.deepcopy(o["spec"]["parentRefs"][0])),
        ["spec", "parentRefs"],
    ),
    (
        "33 parentRefs",
        lambda o: o["spec"].update(
            parentRefs=[{"name": "public", "sectionName": f"l{i}"} for i in range(33)]
        ),
        ["spec", "parentRefs"],
    ),
    (
        "path type unknown",
        set_path("Prefix", "/"),
        ["spec", "rules", 0, "matches", 0, "path", "type"],
    ),
    (
        "relative path",
        set_path("PathPrefix", "v1"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path with //",
        set_path("PathPrefix", "/v1//chat"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path with /../",
        set_path("Exact", "/v1/../admin"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path ending in /.",
        set_path("Exact", "/v1/."),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path with an escaped slash",
        set_path("PathPrefix", "/v1%2Fchat"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path with a fragment",
        set_path("PathPrefix", "/v1#x"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path with a space",
        set_path("PathPrefix", "/v1 chat"),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "path longer than 1024",
        set_path("PathPrefix", "/" + "a" * 1024),
        ["spec", "rules", 0, "matches", 0, "path", "value"],
    ),
    (
        "header matches are not written",
        lambda o: o["spec"]["rules"][0]["matches"][0].update(headers=[]),
        ["spec", "rules", 0, "matches", 0],
    ),
    (
        "apiVersion v1beta1",
        lambda o: o.update(apiVersion="gateway.networking.k8s.io/v1beta1"),
        ["apiVersion"],
    ),
    ("kind GRPCRoute", lambda o: o.update(kind="GRPCRoute"), ["kind"]),
    ("metadata without a name", lambda o: o["metadata"].pop("name"), ["metadata"]),
    ("unknown spec field", lambda o: o["spec"].update(useDefaultGateways="All"), ["spec"]),
]


@pytest.mark.parametrize(("edit", "where"), [pytest.param(e, w, id=name) for name, e, w in INVALID])
def test_mistakes_are_refused_where_they_are(
    edit: Callable[[Route], object], where: list[Any]
) -> None:
    obj = edited(edit)
    with pytest.raises(jsonschema.ValidationError) as caught:
        validate_httproute(obj)
    # Only there: one mistake does not spill into errors elsewhere.
    assert {tuple(error.absolute_path) for error in httproute_errors(obj)} == {tuple(where)}
    assert list(caught.value.absolute_path) == where


def test_the_reported_error_names_the_missing_port() -> None:
    obj = route()
    obj["spec"]["rules"][0]["backendRefs"][1].pop("port")
    with pytest.raises(jsonschema.ValidationError, match="'port' is a required property"):
        validate_httproute(obj)
