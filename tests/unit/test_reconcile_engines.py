"""The reconcile and engine releases: the image's release decides what is planned and how
pods are rendered, an operator upgrade that moves the release re-plans only what the new
release cannot serve, and status says which release and which Pod Security level."""

from __future__ import annotations

from typing import Any

from test_reconcile import SETTINGS, SPEC, body, run

from llama_operator.api import conditions
from llama_operator.planning import config

OLD_VLLM = config.OperatorConfig(
    pools=SETTINGS.pools,
    security=SETTINGS.security,
    images=config.Images(vllm="vllm/vllm-openai:v0.27.1"),
)
NF4 = {**SPEC, "placement": {"quantization": "bitsandbytes-nf4"}}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = conditions.find(status.get("conditions") or [], type_)
    assert found is not None, f"no {type_} condition in {status.get('conditions')}"
    return dict(found)


def deployment(applied: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [o for o in applied if o["kind"] == "Deployment"]
    return found


class TestStatusNamesTheRelease:
    def test_vllm(self) -> None:
        outcome, _ = run(body(SPEC))
        status = outcome.status_patch
        assert status["plan"]["engineVersion"] == "0.34.0"
        assert condition(status, conditions.ENGINE_PROFILE)["reason"] == "Verified"
        assert condition(status, conditions.POD_SECURITY)["reason"] == "Restricted"
        assert not [e for e in outcome.events if e.type == "Warning"]

    def test_tgi_runs_as_root_and_says_so_once(self) -> None:
        outcome, client = run(body({**SPEC, "engine": "tgi"}))
        status = outcome.status_patch
        security = condition(status, conditions.POD_SECURITY)
        assert (security["status"], security["reason"]) == ("False", "RunsAsRoot")
        assert [e.reason for e in outcome.events if e.type == "Warning"] == ["RunsAsRoot"]
        container = deployment(client.applied)["spec"]["template"]["spec"]["containers"][0]
        assert container["securityContext"]["runAsUser"] == 0
        # Settled: the same condition again is no new Warning.
        again, _ = run(body({**SPEC, "engine": "tgi"}, status=status))
        assert [e for e in again.events if e.type == "Warning"] == []

    def test_an_image_without_a_version_is_reported(self) -> None:
        settings = config.OperatorConfig(
            pools=SETTINGS.pools,
            security=SETTINGS.security,
            images=config.Images(vllm="registry.example.com/vllm:prod"),
        )
        outcome, _ = run(body(SPEC), settings=settings)
        status = outcome.status_patch
        profile = condition(status, conditions.ENGINE_PROFILE)
        assert (profile["status"], profile["reason"]) == ("False", "VersionUnknown")
        assert "images.versions" in profile["message"]
        assert status["plan"].get("engineVersion") is None
        assert "VersionUnknown" in [e.reason for e in outcome.events if e.type == "Warning"]


class TestReleaseDecidesThePlan:
    def test_an_older_release_still_plans_bitsandbytes(self) -> None:
        outcome, client = run(body(NF4), settings=OLD_VLLM)
        assert outcome.status_patch["plan"]["quantization"] == "bitsandbytes-nf4"
        args = deployment(client.applied)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--quantization") + 1] == "bitsandbytes"

    def test_a_pinned_quantization_the_release_lacks_is_refused_and_nothing_is_applied(
        self,
    ) -> None:
        outcome, client = run(body(NF4))
        planned = condition(outcome.status_patch, conditions.PLANNED)
        assert (planned["status"], planned["reason"]) == ("False", "QuantizationUnsupported")
        assert planned["message"].startswith(
            "spec.placement.quantization: vLLM 0.34.0 cannot serve quantization 'bitsandbytes-nf4'"
        )
        assert "engine: tgi" in planned["message"]
        assert not [o for o in client.applied if o["kind"] == "Deployment"]

    def test_an_operator_upgrade_keeps_what_serves_and_the_refusal_tears_nothing_down(
        self,
    ) -> None:
        # Serving bitsandbytes-nf4 on vLLM 0.27.1; the operator's image moves to 0.34.0.
        first, client = run(body(NF4), settings=OLD_VLLM)
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        upgraded, again = run(body(NF4, status=dict(first.status_patch)), live=live)
        planned = condition(upgraded.status_patch, conditions.PLANNED)
        assert planned["reason"] == "QuantizationUnsupported"
        assert "the last good plan keeps serving unchanged" in planned["message"]
        # Nothing was deleted or re-applied: the running pods serve as they were.
        assert not [o for o in again.applied if o["kind"] == "Deployment"]

    def test_an_upgrade_re_plans_an_auto_quantization_the_new_release_lacks(self) -> None:
        cost = {**SPEC, "model": {"id": "meta-llama/Llama-3.1-70B-Instruct"}}
        cost["placement"] = {"optimize": "cost"}
        first, client = run(body(cost), settings=OLD_VLLM)
        assert first.status_patch["plan"]["quantization"] == "bitsandbytes-nf4"
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        upgraded, _ = run(body(cost, status=dict(first.status_patch)), live=live)
        plan = upgraded.status_patch["plan"]
        assert plan["engineVersion"] == "0.34.0"
        assert plan["quantization"] != "bitsandbytes-nf4"

    def test_an_upgrade_keeps_a_plan_the_new_release_serves(self) -> None:
        first, client = run(body(SPEC), settings=OLD_VLLM)
        before = first.status_patch["plan"]
        assert before["engineVersion"] == "0.27.1"
        live = {(o["kind"], o["metadata"]["name"]): o for o in client.applied}
        upgraded, _ = run(body(SPEC, status=dict(first.status_patch)), live=live)
        # status is patched with what changed: the release, and nothing else of the plan.
        assert upgraded.status_patch["plan"] == {"engineVersion": "0.34.0"}
