"""licensing.gating and the licence objects of serving.builders: the gates, what pods carry."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.licensing import gating, terms
from llama_operator.planning import catalog, config, facts, planner, pools
from llama_operator.serving import builders

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "licenses.yaml"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))[
    "licenses"
]
LLAMA_IDS = ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4")
# A model of each Llama version, named as Meta publishes them (detected by name).
LLAMA_MODELS = {
    "llama2": "meta-llama/Llama-2-7b-chat-hf",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3.1": "meta-llama/Llama-3.1-8B-Instruct",
    "llama3.2": "meta-llama/Llama-3.2-3B-Instruct",
    "llama3.3": "meta-llama/Llama-3.3-70B-Instruct",
    "llama4": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
}


def detected(model_id: str, override: str | None = None) -> terms.Detection:
    return terms.detect(model_id=model_id, override=override)


def verdict(
    model_id: str,
    *,
    accept: bool | None = None,
    override: str | None = None,
    previous: dict[str, Any] | None = None,
    serving: bool = False,
) -> gating.Verdict:
    spec_license = None
    if accept is not None or override is not None:
        spec_license = api.License(accept=bool(accept), id=override)
    return gating.license_verdict(
        detection=detected(model_id, override),
        model_id=model_id,
        spec_license=spec_license,
        previous=previous,
        serving=serving,
    )


def check(v: gating.Verdict, type_: str) -> conditions.Check:
    (found,) = [c for c in v.checks if c.type == type_]
    return found


class TestNoticeInTheConfigMap:
    @pytest.mark.parametrize("license_id", LLAMA_IDS)
    def test_notice_is_the_licence_sentence_byte_for_byte(self, license_id: str) -> None:
        model_id = LLAMA_MODELS[license_id]
        cm = builders.license_config_map(
            name="chat", namespace="ai", uid="u", model_id=model_id, detection=detected(model_id)
        )
        expected = EXPECTED[license_id]
        lines = cm["data"]["NOTICE"].encode("utf-8").split(b"\n")
        assert lines[0] == expected["notice"].encode("utf-8")
        if expected["attribution"]:
            assert lines[1:] == [expected["attribution"].encode("utf-8"), b""]
        else:
            assert lines[1:] == [b""]
        assert cm["data"]["AUP_URL"] == expected["aupURL"] + "\n"
        assert cm["data"]["LICENSE_URL"] == expected["licenseURL"] + "\n"
        assert cm["data"]["LICENSE_ID"] == license_id + "\n"

    def test_object_shape(self) -> None:
        model_id = LLAMA_MODELS["llama3.1"]
        cm = builders.license_config_map(
            name="chat", namespace="ai", uid="u", model_id=model_id, detection=detected(model_id)
        )
        assert cm["metadata"]["name"] == "chat-license"
        assert cm["metadata"]["ownerReferences"][0]["uid"] == "u"
        assert cm["metadata"]["annotations"] == {
            "llamaops.dev/license": "llama3.1",
            "llamaops.dev/aup-url": EXPECTED["llama3.1"]["aupURL"],
        }
        assert sorted(cm["data"]) == ["AUP_URL", "LICENSE_ID", "LICENSE_URL", "NOTICE", "README"]

    def test_readme_lists_the_obligations(self) -> None:
        model_id = LLAMA_MODELS["llama3.2"].replace("3B-Instruct", "11B-Vision-Instruct")
        readme = terms.readme(detected(model_id), model_id)
        assert "Licence: Llama 3.2 Community License (llama3.2)" in readme
        assert 'display "Built with Llama"' in readme
        assert "700 million monthly active users" in readme
        assert "EU" in readme  # a multimodal 3.2 model: the EU clause applies
        assert "not legal advice" in readme

    def test_licence_without_notice_or_policy_has_only_what_exists(self) -> None:
        found = detected("org/x", override="apache-2.0")
        cm = builders.license_config_map(
            name="m", namespace="ai", uid="u", model_id="org/x", detection=found
        )
        assert sorted(cm["data"]) == ["LICENSE_ID", "LICENSE_URL", "README"]
        assert cm["metadata"]["annotations"] == {"llamaops.dev/license": "apache-2.0"}

    def test_unknown_licence_is_said_not_guessed(self) -> None:
        found = detected("org/own-model")
        cm = builders.license_config_map(
            name="m", namespace="ai", uid="u", model_id="org/own-model", detection=found
        )
        assert cm["data"]["LICENSE_ID"] == "unknown\n"
        assert "NOTICE" not in cm["data"]
        assert "Licence: unknown" in cm["data"]["README"]
        assert "spec.license.id" in cm["data"]["README"]
        assert cm["metadata"]["annotations"] == {"llamaops.dev/license": "unknown"}


class TestServingObjectsCarryTheLicence:
    def objects(self, model_id: str) -> list[dict[str, Any]]:
        spec = api.parse_spec({"model": {"id": model_id}, "license": {"accept": True}})
        settings = config.OperatorConfig()
        catalogue = config.default_pools()
        model = facts.resolve(model=spec.model, catalog_entry=catalog.lookup(model_id))
        request = planner.request_for(
            spec=spec, model=model, available=catalogue, settings=settings
        )
        plan = planner.plan(request)
        pool = next(p for p in catalogue if p.name == plan.pool)
        assert isinstance(pool, pools.Pool)
        return builders.build_all(
            name="chat",
            namespace="ai",
            uid="u",
            spec=spec,
            plan=plan,
            pool=pool,
            settings=settings,
            detection=detected(model_id),
        )

    def test_every_serving_pod_mounts_the_configmap_read_only(self) -> None:
        objects = self.objects(LLAMA_MODELS["llama3.1"])
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "licenses"]
        assert volume["configMap"] == {"name": "chat-license", "defaultMode": 0o444}
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "licenses"]
        assert mount == {"name": "licenses", "mountPath": "/licenses", "readOnly": True}

    def test_pods_and_services_are_annotated(self) -> None:
        objects = self.objects(LLAMA_MODELS["llama3.3"])
        expected = {
            "llamaops.dev/license": "llama3.3",
            "llamaops.dev/aup-url": EXPECTED["llama3.3"]["aupURL"],
        }
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        pod_annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert expected.items() <= pod_annotations.items()
        services = [o for o in objects if o["kind"] == "Service"]
        assert len(services) == 2
        for service in services:
            assert expected.items() <= service["metadata"]["annotations"].items()


class TestAcceptanceGate:
    @pytest.mark.parametrize("license_id", [*LLAMA_IDS, "gemma"])
    def test_a_use_policy_holds_serving_until_accepted(self, license_id: str) -> None:
        model_id = LLAMA_MODELS.get(license_id, "google/gemma-2-9b-it")
        v = verdict(model_id)
        assert v.hold is not None
        assert not v.accepted
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert (c.status, c.reason) == ("False", "NotAccepted")
        lic = terms.REGISTRY[license_id]
        assert lic.aup_url is not None
        assert lic.aup_url in c.message
        assert "spec.license.accept: true" in c.message
        assert "no serving pods are created" in c.message

    def test_accepting_opens_the_gate(self) -> None:
        v = verdict(LLAMA_MODELS["llama3.1"], accept=True)
        assert v.hold is None
        assert v.accepted
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert (c.status, c.reason) == ("True", "Accepted")

    @pytest.mark.parametrize("license_id", ["apache-2.0", "mit", "qwen", "deepseek"])
    def test_no_use_policy_no_gate(self, license_id: str) -> None:
        v = verdict("org/m", override=license_id)
        assert v.hold is None
        assert check(v, conditions.LICENSE_ACCEPTED).reason == "NotRequired"

    def test_revoking_on_a_serving_deployment_is_refused(self) -> None:
        previous = {"id": "llama3.1", "accepted": True}
        v = verdict(LLAMA_MODELS["llama3.1"], accept=False, previous=previous, serving=True)
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert (c.status, c.reason) == ("False", "AcceptanceRevoked")
        assert "refused" in c.message
        assert "keeps serving" in c.message
        assert v.accepted  # the pods still run under the acceptance given before
        assert v.hold is not None  # and no change is applied to them meanwhile

    def test_revocation_needs_a_serving_deployment(self) -> None:
        previous = {"id": "llama3.1", "accepted": True}
        v = verdict(LLAMA_MODELS["llama3.1"], accept=False, previous=previous, serving=False)
        assert check(v, conditions.LICENSE_ACCEPTED).reason == "NotAccepted"
        assert not v.accepted

    def test_acceptance_of_another_licence_does_not_carry_over(self) -> None:
        # Serving Llama 3.1 (accepted), then the model changes to Llama 4 without a new accept:
        # that is a new licence to accept, and the running pods stay as they are.
        previous = {"id": "llama3.1", "accepted": True}
        v = verdict(LLAMA_MODELS["llama4"], accept=False, previous=previous, serving=True)
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert c.reason == "NotAccepted"
        assert "running pods keep serving unchanged" in c.message
        assert v.hold is not None

    def test_unknown_licence_is_unknown_and_does_not_hold(self) -> None:
        v = verdict("org/own-model")
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert (c.status, c.reason) == ("Unknown", "LicenseUnknown")
        assert "spec.license.id" in c.message
        assert v.hold is None

    def test_unknown_override_is_an_error_naming_the_field(self) -> None:
        v = verdict("org/own-model", override="llama9")
        c = check(v, conditions.LICENSE_ACCEPTED)
        assert (c.status, c.reason) == ("False", "UnknownLicenseId")
        assert "spec.license.id 'llama9'" in c.message
        assert "llama3.1" in c.message
        assert v.hold is not None


class TestRestricted:
    def test_research_only_licence_warns(self) -> None:
        v = verdict("mistralai/Mistral-Large-Instruct-2407", override="mrl")
        c = check(v, conditions.LICENSE_RESTRICTED)
        assert (c.status, c.reason) == ("True", "RestrictedLicense")
        assert "research use only" in c.message
        assert v.hold is None  # a warning, not a gate
        assert conditions.LICENSE_RESTRICTED not in v.removed

    @pytest.mark.parametrize(
        "model_id",
        ["meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-4-Scout-17B-16E-Instruct"],
    )
    def test_eu_clause_for_multimodal_models(self, model_id: str) -> None:
        c = check(verdict(model_id, accept=True), conditions.LICENSE_RESTRICTED)
        assert c.reason == "EUMultimodalRestriction"
        assert "EU" in c.message

    def test_no_restriction_removes_the_condition(self) -> None:
        v = verdict(LLAMA_MODELS["llama3.1"], accept=True)
        assert not [c for c in v.checks if c.type == conditions.LICENSE_RESTRICTED]
        assert v.removed == (conditions.LICENSE_RESTRICTED,)


class TestAccess:
    page = "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct"
    model = "meta-llama/Llama-3.1-8B-Instruct"

    def access(
        self,
        *,
        token: bool,
        gated: bool | None,
        answer: gating.AccessAnswer | None,
    ) -> conditions.Check | None:
        return gating.access_check(
            model_id=self.model,
            page=self.page,
            token_referenced=token,
            card_gated=gated,
            answer=answer,
        )

    def test_granted(self) -> None:
        c = self.access(token=True, gated=True, answer=gating.AccessAnswer("Granted", "ok"))
        assert c is not None
        assert (c.status, c.reason) == ("True", "Granted")
        assert not gating.holds(c)

    @pytest.mark.parametrize("reason", ["NotGranted", "NotFound", "BadToken", "SecretMissing"])
    def test_denials_hold_serving(self, reason: gating.AccessReason) -> None:
        answer = gating.AccessAnswer(reason, f"denied; see {self.page}")
        c = self.access(token=True, gated=True, answer=answer)
        assert c is not None
        assert (c.status, c.reason) == ("False", reason)
        assert c.message == answer.message
        assert gating.holds(c)

    def test_unreachable_hub_is_unknown_and_does_not_hold(self) -> None:
        answer = gating.AccessAnswer("Unreachable", "the Hub could not be reached")
        c = self.access(token=True, gated=None, answer=answer)
        assert c is not None
        assert (c.status, c.reason) == ("Unknown", "HubUnreachable")
        assert not gating.holds(c)

    def test_not_asked_leaves_the_condition_alone(self) -> None:
        assert self.access(token=True, gated=True, answer=None) is None

    def test_gated_without_a_token_names_the_field_and_the_page(self) -> None:
        c = self.access(token=False, gated=True, answer=None)
        assert c is not None
        assert (c.status, c.reason) == ("False", "TokenRequired")
        assert self.page in c.message
        assert "spec.model.tokenSecretRef" in c.message
        assert gating.holds(c)

    def test_not_gated_and_unknown(self) -> None:
        c = self.access(token=False, gated=False, answer=None)
        assert c is not None
        assert (c.status, c.reason) == ("True", "NotGated")
        c = self.access(token=False, gated=None, answer=None)
        assert c is not None
        assert (c.status, c.reason) == ("Unknown", "NotChecked")
        assert not gating.holds(c)


class TestStatus:
    def test_license_status_carries_the_facts_and_drops_empty_fields(self) -> None:
        found = detected(LLAMA_MODELS["llama2"])
        result = gating.license_status(detection=found, accepted=True, config_map="c-license")
        assert result == {
            "id": "llama2",
            "name": "Llama 2 Community License",
            "source": "pattern",
            "detail": found.detail,
            "notice": EXPECTED["llama2"]["notice"],
            "licenseURL": EXPECTED["llama2"]["licenseURL"],
            "aupURL": EXPECTED["llama2"]["aupURL"],
            "acceptanceRequired": True,
            "accepted": True,
            "configMap": "c-license",
        }
        api.LicenseStatus.model_validate(result)  # what the CRD schema describes


def test_a_non_production_licence_warns() -> None:
    v = verdict("mistralai/Codestral-22B-v0.1", override="mnpl")
    c = check(v, conditions.LICENSE_RESTRICTED)
    assert (c.status, c.reason) == ("True", "RestrictedLicense")
    assert "non-production use only" in c.message
    assert v.hold is None


class TestHubConfig:
    def test_defaults_and_a_contradiction_named(self) -> None:
        hub_settings = config.OperatorConfig().hub
        assert (hub_settings.accessRetrySeconds, hub_settings.accessMaxRetrySeconds) == (30, 600)
        with pytest.raises(config.ConfigError, match=r"hub: .*must not exceed"):
            config.parse({"hub": {"accessRetrySeconds": 900, "accessMaxRetrySeconds": 60}})


def test_permissive_ancestors_pass_nothing_on() -> None:
    # A fine-tune of an Apache-2.0 model may be published under its own terms.
    found = terms.detect(
        model_id="org/tune",
        override=None,
        card_license="mit",
        base_models=["org/base"],
        base_cards={"org/base": ("apache-2.0", None)},
    )
    assert (found.id, found.source) == ("mit", "card")
    # A Qwen-licensed ancestor, named by its repository, does pass its licence on.
    found = terms.detect(
        model_id="org/tune",
        override=None,
        card_license="apache-2.0",
        base_models=["Qwen/Qwen2.5-72B-Instruct"],
    )
    assert (found.id, found.source) == ("qwen", "base-model")


def test_not_required_message_claims_only_what_the_configmap_has() -> None:
    with_notice = check(verdict("org/m", override="qwen"), conditions.LICENSE_ACCEPTED)
    assert "its NOTICE and the licence link are in the ConfigMap" in with_notice.message
    without = check(verdict("org/m", override="mit"), conditions.LICENSE_ACCEPTED)
    assert "the licence link is in the ConfigMap" in without.message
    assert "NOTICE" not in without.message
