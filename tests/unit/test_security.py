"""Unit tests of the security decisions and objects: the API-key gate (``security``), the
engine's key and input limits (``engines``), and the NetworkPolicy (``builders``).

The NetworkPolicy is checked three ways: against the Kubernetes schema (strict), by what
its pod selector matches among the pods the operator renders (evaluated with the label
selector semantics of the API), and by the rules it holds.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
from test_engines import make_plan

from labelselector import matches
from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.planning import catalog, config, facts, planner
from llama_operator.serving import builders, engines
from llama_operator.serving import security as sec

SETTINGS = config.OperatorConfig()
OPTIONAL = config.OperatorConfig(security=config.Security(defaultAuthMode="optional"))
OPERATOR = config.NetworkPolicy(
    operatorNamespace="llama-operator",
    operatorPodLabels={
        "app.kubernetes.io/name": "llama-operator",
        "app.kubernetes.io/instance": "x",
    },
)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
KEY = {"name": "chat-api-key"}
K8S = kubernetes_validate.latest_version()


def spec(**raw: Any) -> api.LlamaDeploymentSpec:
    return api.parse_spec({"model": {"id": MODEL}, **raw})


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


class TestAuthGate:
    def test_the_default_mode_is_required_and_without_a_key_serving_is_held(self) -> None:
        verdict = sec.auth(spec(), SETTINGS, secret_present=None, namespace="ai")
        assert sec.auth_mode(spec(), SETTINGS) == "required"
        assert verdict.hold is not None
        assert verdict.check.type == "Authenticated"
        assert (verdict.check.status, verdict.check.reason) == ("False", "APIKeyRequired")
        # Names the field, says how to fix it, and that the mode came from the default.
        assert verdict.hold.startswith("spec.auth.apiKeySecretRef is required")
        assert "the operator's default" in verdict.hold
        assert "kubectl create secret generic <secret> -n ai" in verdict.hold
        assert "spec.auth.mode: optional" in verdict.hold

    def test_required_set_in_the_spec_is_said_so(self) -> None:
        verdict = sec.auth(
            spec(auth={"mode": "required"}), OPTIONAL, secret_present=None, namespace="ai"
        )
        assert verdict.hold is not None
        assert "the operator's default" not in verdict.hold

    def test_optional_without_a_key_serves_and_says_it_is_open(self) -> None:
        for chosen, settings in ((spec(auth={"mode": "optional"}), SETTINGS), (spec(), OPTIONAL)):
            verdict = sec.auth(chosen, settings, secret_present=None, namespace="ai")
            assert verdict.hold is None
            assert (verdict.check.status, verdict.check.reason) == ("False", "AuthOptional")
            assert "anyone" in verdict.check.message

    @pytest.mark.parametrize("present", [True, None])
    def test_a_key_that_is_there_or_was_not_asked_serves(self, present: bool | None) -> None:
        verdict = sec.auth(
            spec(auth={"apiKeySecretRef": KEY}), SETTINGS, secret_present=present, namespace="ai"
        )
        assert verdict.hold is None
        assert (verdict.check.status, verdict.check.reason) == ("True", "APIKey")
        assert "'chat-api-key' (key 'api-key')" in verdict.check.message
        assert "/health and /metrics stay open" in verdict.check.message

    @pytest.mark.parametrize("mode", ["required", "optional"])
    def test_a_missing_secret_holds_in_either_mode(self, mode: str) -> None:
        chosen = spec(auth={"mode": mode, "apiKeySecretRef": {"name": "k", "key": "token"}})
        verdict = sec.auth(chosen, SETTINGS, secret_present=False, namespace="ai")
        assert verdict.hold is not None
        assert verdict.check.reason == "SecretMissing"
        assert verdict.hold.startswith("spec.auth.apiKeySecretRef: Secret 'k' (key 'token')")
        assert "namespace ai" in verdict.hold
        assert "--from-literal=token=" in verdict.hold

    def test_network_policy_default_and_override(self) -> None:
        off = config.OperatorConfig(
            security=config.Security(networkPolicy=config.NetworkPolicy(enabled=False))
        )
        assert sec.network_policy_enabled(spec(), SETTINGS) is True
        assert sec.network_policy_enabled(spec(), off) is False
        assert sec.network_policy_enabled(spec(network={"policy": True}), off) is True
        assert sec.network_policy_enabled(spec(network={"policy": False}), SETTINGS) is False


class TestSpecValidation:
    @pytest.mark.parametrize(
        "args",
        [["--api-key", "sk-1"], ["--api-key=sk-1"], ["--hf-token", "hf_1"], ["--hf-token=hf_1"]],
    )
    def test_secrets_in_engine_args_are_refused(self, args: list[str]) -> None:
        with pytest.raises(api.SpecError) as caught:
            spec(engineArgs=["--enable-prefix-caching", *args])
        assert caught.value.field == "spec.engineArgs"
        assert "spec.auth.apiKeySecretRef" in caught.value.message
        # The refusal never echoes the value it refuses.
        assert "sk-1" not in str(caught.value)
        assert "hf_1" not in str(caught.value)

    @pytest.mark.parametrize(
        ("requirement", "field"),
        [
            ({"key": "app", "operator": "In"}, "values"),
            ({"key": "app", "operator": "NotIn", "values": []}, "values"),
            ({"key": "app", "operator": "Exists", "values": ["x"]}, "values"),
        ],
    )
    def test_a_bad_selector_requirement_names_its_field(
        self, requirement: dict[str, Any], field: str
    ) -> None:
        raw = {"allowFrom": [{"podSelector": {"matchExpressions": [requirement]}}]}
        with pytest.raises(api.SpecError) as caught:
            spec(network=raw)
        assert caught.value.field == (
            f"spec.network.allowFrom[0].podSelector.matchExpressions[0].{field}"
        )

    def test_limits_are_bounded(self) -> None:
        with pytest.raises(api.SpecError) as caught:
            spec(limits={"maxTokensPerRequest": 64})
        assert caught.value.field == "spec.limits.maxTokensPerRequest"
        with pytest.raises(api.SpecError):
            spec(limits={"maxConcurrentSequences": 0})


class TestEngineKey:
    @pytest.mark.parametrize(("engine", "variable"), [("vllm", "VLLM_API_KEY"), ("tgi", "API_KEY")])
    def test_the_key_comes_from_the_secret_by_reference(self, engine: str, variable: str) -> None:
        chosen = spec(auth={"apiKeySecretRef": {"name": "chat-api-key", "key": "k"}})
        container = engines.container(
            name="chat", spec=chosen, plan=make_plan(engine=engine), settings=SETTINGS
        )
        env = {item["name"]: item for item in container["env"]}
        assert env[variable] == {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": "chat-api-key", "key": "k"}},
        }
        assert not any(arg.startswith("--api-key") for arg in container["args"])

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_no_key_variable_without_a_reference(self, engine: str) -> None:
        container = engines.container(
            name="chat", spec=spec(), plan=make_plan(engine=engine), settings=SETTINGS
        )
        names = {item["name"] for item in container["env"]}
        assert not names & {"VLLM_API_KEY", "API_KEY"}

    def test_probes_use_the_open_health_path(self) -> None:
        # The key guards the API; the kubelet's probes carry no key and must still pass.
        container = engines.container(
            name="chat",
            spec=spec(auth={"apiKeySecretRef": KEY}),
            plan=make_plan(),
            settings=SETTINGS,
        )
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health"
            assert "httpHeaders" not in container[probe]["httpGet"]


class TestInputLimits:
    def test_defaults_follow_the_plan(self) -> None:
        # 8192 tokens x 4 sequences of KV cache = 32 sequences of 1024 tokens.
        found = engines.limits(spec=spec(), plan=make_plan())
        assert found == engines.Limits(max_tokens_per_request=8192, max_concurrent_sequences=32)

    @pytest.mark.parametrize(
        ("max_model_len", "sequences", "expected"),
        [
            (2048, 2, 4),  # 4096 tokens / 1024
            (4096, 1, 4),
            (131072, 4, 256),  # capped at vLLM's own default
            (1024, 300, 300),  # never fewer than the full-length sequences planned
        ],
    )
    def test_default_sequences(self, max_model_len: int, sequences: int, expected: int) -> None:
        found = engines.limits(
            spec=spec(), plan=make_plan(maxModelLen=max_model_len, maxConcurrentSequences=sequences)
        )
        assert found.max_concurrent_sequences == expected

    def test_vllm_flags(self) -> None:
        chosen = spec(limits={"maxTokensPerRequest": 4096, "maxConcurrentSequences": 16})
        args = engines.args(spec=chosen, plan=make_plan())
        assert flag(args, "--max-model-len") == "4096"
        assert flag(args, "--max-num-seqs") == "16"

    def test_tgi_flags(self) -> None:
        chosen = spec(limits={"maxTokensPerRequest": 4096, "maxConcurrentSequences": 16})
        args = engines.args(spec=chosen, plan=make_plan(engine="tgi"))
        assert flag(args, "--max-total-tokens") == "4096"
        assert flag(args, "--max-input-tokens") == "4095"
        assert flag(args, "--max-concurrent-requests") == "16"

    def test_tgi_leaves_the_flag_to_engine_args_that_name_it(self) -> None:
        # The launcher refuses a flag given twice.
        chosen = spec(engineArgs=["--max-concurrent-requests=64"])
        args = engines.args(spec=chosen, plan=make_plan(engine="tgi"))
        assert "--max-concurrent-requests" not in args
        assert args[-1] == "--max-concurrent-requests=64"

    def test_more_tokens_than_the_plan_is_refused_for_its_own_variant(self) -> None:
        chosen = spec(limits={"maxTokensPerRequest": 16384})
        with pytest.raises(api.SpecError) as caught:
            engines.check_limits(spec=chosen, plan=make_plan())
        assert caught.value.field == "spec.limits.maxTokensPerRequest"
        assert "spec.placement.maxModelLen" in caught.value.message
        # ...and held to the context for a variant that inherits it (a fallback).
        assert engines.limits(spec=chosen, plan=make_plan()).max_tokens_per_request == 8192

    def test_a_limit_within_the_plan_passes(self) -> None:
        engines.check_limits(spec=spec(limits={"maxTokensPerRequest": 8192}), plan=make_plan())


# -- NetworkPolicy ---------------------------------------------------------------------


def policy(
    network: dict[str, Any] | None = None, settings: config.NetworkPolicy = OPERATOR
) -> dict[str, Any]:
    return builders.network_policy(
        name="chat",
        namespace="ai",
        uid="u1",
        network=spec(network=network or {}).network,
        settings=settings,
    )


def rendered_pod_labels(name: str) -> dict[str, dict[str, str]]:
    """The pod labels of every variant the operator renders for ``name``."""
    chosen = spec()
    model = facts.resolve(model=chosen.model, catalog_entry=catalog.lookup(chosen.model.id))
    planned = planner.plan(
        planner.request_for(
            spec=chosen, model=model, available=config.default_pools(), settings=SETTINGS
        )
    )
    (pool,) = [p for p in config.default_pools() if p.name == planned.pool]
    common: dict[str, Any] = {
        "name": name,
        "namespace": "ai",
        "uid": "u1",
        "spec": chosen,
        "plan": planned,
        "pool": pool,
        "settings": SETTINGS,
        "detection": terms.detect(model_id=MODEL, override=None),
    }
    objects = [
        *builders.build_all(**common),
        *builders.canary_objects(**common, replicas=1, revision="r1"),
        *builders.fallback_objects(**common, index=0, replicas=1),
    ]
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["labels"]
        for obj in objects
        if obj["kind"] == "Deployment"
    }


class TestNetworkPolicy:
    @pytest.mark.parametrize(
        "network",
        [
            {},
            {"allowFrom": []},
            {
                "allowFrom": [
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}}
                ]
            },
            {"egress": {"restrict": True}},
            {
                "egress": {
                    "restrict": True,
                    "allowTo": [
                        {
                            "ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.1.0/24"]},
                            "ports": [443, 8080],
                        },
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "mirror"}
                            }
                        },
                    ],
                }
            },
        ],
        ids=["defaults", "nobody-else", "team-namespace", "restricted-egress", "mirror"],
    )
    def test_validates_against_the_kubernetes_schema(self, network: dict[str, Any]) -> None:
        obj = policy(network)
        assert kubernetes_validate.validate(obj, K8S, strict=True)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "u1"
        assert builders.HASH_ANNOTATION in obj["metadata"]["annotations"]

    def test_selects_exactly_this_endpoints_serving_pods(self) -> None:
        selector = policy()["spec"]["podSelector"]
        ours = rendered_pod_labels("chat")
        assert set(ours) == {"chat-primary", "chat-canary", "chat-fallback-0"}
        assert all(matches(selector, labels) for labels in ours.values())
        # Not another endpoint's (a name that starts the same), not the operator, not a
        # user's pod that borrows one of the labels.
        others = [
            *rendered_pod_labels("chat-2").values(),
            {"app.kubernetes.io/name": "llama-operator", "app.kubernetes.io/instance": "chat"},
            {"app.kubernetes.io/instance": "chat", "app": "client"},
        ]
        assert not any(matches(selector, labels) for labels in others)

    def test_default_ingress_is_this_namespace_the_operator_and_monitoring(self) -> None:
        rules = policy()["spec"]["ingress"]
        assert [rule["from"] for rule in rules] == [
            [{"podSelector": {}}],
            [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "llama-operator"}
                    },
                    "podSelector": {"matchLabels": dict(OPERATOR.operatorPodLabels)},
                }
            ],
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        ]
        assert all(rule["ports"] == [{"protocol": "TCP", "port": 8000}] for rule in rules)
        assert policy()["spec"]["policyTypes"] == ["Ingress"]  # egress open by default

    def test_no_rule_ever_has_an_empty_from(self) -> None:
        # An empty "from" lets everyone in: allowFrom: [] must mean nobody else instead.
        bare = config.NetworkPolicy(monitoringNamespace=None)
        obj = policy({"allowFrom": []}, settings=bare)
        assert obj["spec"]["ingress"] == []
        assert obj["spec"]["policyTypes"] == ["Ingress"]  # still denies every connection
        for network in ({}, {"allowFrom": []}):
            for rule in policy(network)["spec"]["ingress"]:
                assert rule["from"]

    def test_monitoring_pods_can_be_narrowed(self) -> None:
        settings = config.NetworkPolicy(monitoringPodLabels={"app": "prometheus"})
        (rule,) = [
            r for r in policy(settings=settings)["spec"]["ingress"] if "monitoring" in json.dumps(r)
        ]
        assert rule["from"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app": "prometheus"}},
            }
        ]

    def test_allow_from_is_passed_as_written(self) -> None:
        peers = [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}},
                "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            }
        ]
        rules = policy({"allowFrom": copy.deepcopy(peers)})["spec"]["ingress"]
        assert rules[0]["from"] == peers

    def test_restricted_egress_is_dns_and_public_https(self) -> None:
        obj = policy({"egress": {"restrict": True}})
        assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]
        dns, hub = obj["spec"]["egress"]
        assert "to" not in dns
        assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        assert hub["ports"] == [{"protocol": "TCP", "port": 443}]
        blocks = {peer["ipBlock"]["cidr"]: peer["ipBlock"]["except"] for peer in hub["to"]}
        # No cluster-internal or metadata address: pods cannot move sideways.
        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
            blocks["0.0.0.0/0"]
        )
        assert {"fc00::/7", "fe80::/10"} <= set(blocks["::/0"])

    def test_allow_to_replaces_the_hub_default(self) -> None:
        obj = policy(
            {
                "egress": {
                    "restrict": True,
                    "allowTo": [{"ipBlock": {"cidr": "10.20.0.0/16"}, "ports": [3128]}],
                }
            }
        )
        assert obj["spec"]["egress"][1:] == [
            {
                "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                "ports": [{"protocol": "TCP", "port": 3128}],
            }
        ]
