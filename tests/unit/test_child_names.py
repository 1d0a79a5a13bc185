"""Names whose children cannot exist are refused (issue 15, item 3).

A LlamaDeployment named ``a.b.c`` or with 60 characters used to be accepted; the operator
created the Deployment and ConfigMap, then the API server refused the Service (a Service
name is a DNS-1035 label of at most 63 characters), and the endpoint stayed half-built.

Three checks, one limit (``api.MAX_NAME_LENGTH``, computed from ``api.SERVICE_SUFFIXES``):
- every child of a spec with every feature on (eight fallbacks, a canary, an HTTPRoute,
  the NetworkPolicy, a ScaledObject or HPA), rendered by the real reconcile for a name of
  exactly that length, has a name its kind allows and label values Kubernetes accepts;
  one character more breaks a Service name, so the limit is also not slack;
- the CRD's root CEL rule refuses a longer or non-DNS-1035 name on create (cel-python,
  as tests/unit/test_crd.py evaluates every rule), and lets an existing object be updated;
- the operator's own check (``api.name_problem``) agrees with it on every name, and a
  reconcile of such a name creates no child and says why in ``Planned``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import pytest
from test_crd import api_server_errors, wrap
from test_reconcile_rollout import Client, ready

from llama_operator import api, reconcile
from llama_operator.api import conditions
from llama_operator.planning import config as operator_config
from llama_operator.serving import builders

DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# A label value: empty, or at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names Kubernetes validates as DNS-1035 labels; every other kind the operator
# creates takes a DNS-1123 subdomain (up to 253 characters).
LABEL_NAMED_KINDS = {"Service"}
ROOT_MESSAGE = api.ROOT_CEL_RULES[0][1]
NOW = "2026-01-01T00:00:00Z"
SETTINGS = operator_config.OperatorConfig(
    pools=operator_config.default_pools(),
    security=operator_config.Security(defaultAuthMode="optional"),
)
FALLBACK_MODEL = "meta-llama/Llama-3.2-1B-Instruct"


def every_feature(autoscaler: str) -> dict[str, Any]:
    """A spec with every child the operator can create: the most fallbacks a spec may
    have, a Gateway route, an external autoscaler, a canary rollout (the NetworkPolicy is
    on by default)."""
    return {
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
        "license": {"accept": True},
        "replicas": 4,
        "autoscaling": {"engine": autoscaler, "minReplicas": 1, "maxReplicas": 4},
        "rollout": {"steps": [{"weight": 25, "pause": "1m"}], "analysis": {"minRequests": 0}},
        "traffic": {"gatewayRef": {"name": "inference", "namespace": "gateways"}},
        "fallbacks": [
            {"model": {"id": FALLBACK_MODEL}, "license": {"accept": True}}
            for _ in range(api.MAX_FALLBACKS)
        ],
    }


def body(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": "ai", "uid": "u1", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def reconcile_once(
    name: str, spec: dict[str, Any], live: dict[tuple[str, str], Any], status: dict[str, Any]
) -> tuple[reconcile.Outcome, Client]:
    client = Client()
    outcome = reconcile.reconcile(
        body=body(name, spec, status),
        settings=SETTINGS,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, child: live.get((kind, child)),
        ),
        clock=reconcile.Clock(now=NOW),
    )
    return outcome, client


def every_child(name: str, autoscaler: str) -> list[dict[str, Any]]:
    """What the operator applies for ``every_feature``: first the endpoint and its
    fallbacks, then, once it is Ready, the canary of a changed spec."""
    spec = every_feature(autoscaler)
    first, client = reconcile_once(name, spec, {}, {})
    applied = list(client.applied)
    live = {
        (obj["kind"], obj["metadata"]["name"]): ready(
            obj, (obj.get("spec") or {}).get("replicas", 1)
        )
        for obj in applied
    }
    changed = {**spec, "engineArgs": ["--enable-prefix-caching"]}
    _, client = reconcile_once(name, changed, live, dict(first.status_patch))
    applied += client.applied
    return applied


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """Every label the object sets: its own, its pods', and those it selects by."""
    found: dict[str, str] = {}

    def walk(node: Any, key: str | None = None) -> None:
        if isinstance(node, Mapping):
            if key in ("labels", "matchLabels", "selector") and all(
                isinstance(v, str) for v in node.values()
            ):
                found.update(node)
            for child_key, child in node.items():
                walk(child, child_key)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj)
    return found


def name_problems(children: list[dict[str, Any]]) -> list[str]:
    problems = []
    for obj in children:
        kind, child = obj["kind"], obj["metadata"]["name"]
        if kind in LABEL_NAMED_KINDS:
            if len(child) > api.DNS_LABEL_MAX_LENGTH or not DNS_1035_LABEL.match(child):
                problems.append(f"{kind}/{child} ({len(child)}): not a DNS-1035 label")
        elif len(child) > 253 or not DNS_1123_SUBDOMAIN.match(child):
            problems.append(f"{kind}/{child} ({len(child)}): not a DNS-1123 subdomain")
        for key, value in labels_of(obj).items():
            if len(value) > api.DNS_LABEL_MAX_LENGTH or not LABEL_VALUE.match(value):
                problems.append(f"{kind}/{child}: label {key}={value} ({len(value)})")
    return problems


class TestEveryChildAtTheLimit:
    @pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
    def test_every_child_of_a_name_at_the_limit_can_exist(self, autoscaler: str) -> None:
        name = "a" * api.MAX_NAME_LENGTH
        children = every_child(name, autoscaler)
        kinds = {obj["kind"] for obj in children}
        scaler = "ScaledObject" if autoscaler == "keda" else "HorizontalPodAutoscaler"
        assert {"Deployment", "Service", "ConfigMap", "HTTPRoute", "NetworkPolicy", scaler} <= kinds
        names = {f"{obj['kind']}/{obj['metadata']['name']}" for obj in children}
        last = api.MAX_FALLBACKS - 1
        # Every feature was on: the canary's and the last fallback's children are there.
        assert {
            f"Service/{name}-{api.CANARY}",
            f"Deployment/{name}-{api.CANARY}",
            f"Service/{name}-{api.FALLBACK_PREFIX}{last}",
            f"ConfigMap/{name}-{api.FALLBACK_PREFIX}{last}-license",
        } <= names
        assert name_problems(children) == []

    def test_every_service_suffix_is_counted_in_the_limit(self) -> None:
        # A Service with a suffix that api.SERVICE_SUFFIXES does not list would not be
        # counted in MAX_NAME_LENGTH: name it there (and in the CRD, `make generate`).
        name = "chat"
        suffixes = {
            obj["metadata"]["name"].removeprefix(name)
            for obj in every_child(name, "keda")
            if obj["kind"] in LABEL_NAMED_KINDS
        }
        assert suffixes == set(api.SERVICE_SUFFIXES)

    def test_one_character_more_and_a_service_could_not_exist(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # What the children would be without the operator's check (which refuses the name).
        monkeypatch.setattr(api, "name_problem", lambda name: None)
        name = "a" * (api.MAX_NAME_LENGTH + 1)
        problems = name_problems(every_child(name, "keda"))
        assert problems
        assert all(problem.startswith("Service/") for problem in problems)

    def test_the_limit_is_the_longest_service_suffix(self) -> None:
        longest = f"-{api.FALLBACK_PREFIX}{api.MAX_FALLBACKS - 1}"
        assert api.DNS_LABEL_MAX_LENGTH - len(longest) == api.MAX_NAME_LENGTH
        assert api.MAX_NAME_LENGTH == 52
        assert f"{api.MAX_NAME_LENGTH}" in ROOT_MESSAGE


# -- the CRD's rule and the operator's check --------------------------------------------

VALID = ["chat", "a", "a-1", "chat-8b", "x" * api.MAX_NAME_LENGTH]
INVALID = [
    "a.b.c",  # a DNS-1123 subdomain (a valid object name), but not a Service name
    "chat.v2",
    "1chat",  # a label, but DNS-1035 labels start with a letter
    "9",
    "chat-",
    "x" * (api.MAX_NAME_LENGTH + 1),
    "x" * 60,
    "x" * 63,
    "a" * 30 + "." + "b" * 30,
]
SPEC = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}


@pytest.mark.parametrize("name", VALID)
def test_a_servable_name_is_admitted_and_planned(name: str) -> None:
    assert api_server_errors(wrap(SPEC, name=name)) == []
    assert api.name_problem(name) is None


@pytest.mark.parametrize("name", INVALID)
def test_a_name_no_service_could_have_is_refused_on_create(name: str) -> None:
    assert api_server_errors(wrap(SPEC, name=name)) == [ROOT_MESSAGE]
    problem = api.name_problem(name)
    assert problem is not None
    assert "metadata.name" in problem
    assert f"at most {api.MAX_NAME_LENGTH} characters" in problem
    assert "create it again" in problem


@pytest.mark.parametrize("name", INVALID)
def test_an_object_created_under_an_older_crd_can_still_be_updated(name: str) -> None:
    # The name cannot change; a rule on every update would refuse the status patch that
    # reports InvalidName, and Kopf's own annotation patches.
    stored = wrap(SPEC, name=name)
    edited = copy.deepcopy(stored)
    edited["status"] = {"phase": "Failed"}
    assert api_server_errors(edited, old=stored) == []


def test_the_message_names_the_field_and_the_fix() -> None:
    assert ROOT_MESSAGE.startswith("metadata.name must be a DNS-1035 label")
    assert "choose a shorter name" in ROOT_MESSAGE


# -- the operator's second line of defence ----------------------------------------------


@pytest.mark.parametrize("name", ["a.b.c", "x" * 60])
def test_a_reconcile_of_such_a_name_creates_no_child_and_says_why(name: str) -> None:
    outcome, client = reconcile_once(name, every_feature("keda"), {}, {})
    assert client.applied == []
    assert client.patches == []
    assert client.deleted == []
    assert client.pod_lists == 0
    planned = conditions.find(outcome.status_patch["conditions"], conditions.PLANNED)
    assert planned is not None
    assert (planned["status"], planned["reason"]) == ("False", "InvalidName")
    assert planned["message"].startswith("metadata.name")
    assert f"at most {api.MAX_NAME_LENGTH} characters" in planned["message"]
    assert outcome.status_patch["phase"] == "Failed"
    assert outcome.failure == "InvalidName"
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "InvalidName")]
    # It reconciled (nothing failed): Reconciled stays True.
    done = conditions.find(outcome.status_patch["conditions"], conditions.RECONCILED)
    assert done is not None
    assert done["status"] == "True"


def test_the_condition_is_written_once() -> None:
    first, _ = reconcile_once("a.b.c", SPEC, {}, {})
    again, client = reconcile_once("a.b.c", SPEC, {}, dict(first.status_patch))
    assert again.status_patch == {}
    assert again.events == []
    assert client.applied == []


def test_builders_name_children_with_the_api_suffixes() -> None:
    assert (builders.PRIMARY, builders.CANARY, builders.FALLBACK_PREFIX) == (
        api.PRIMARY,
        api.CANARY,
        api.FALLBACK_PREFIX,
    )
