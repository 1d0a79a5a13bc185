"""The objects of a canary rollout: revisions, the canary's children, the entry Service's
two selectors and the HTTPRoute, each validated against its schema."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from test_builders import SETTINGS, UID, build, detection, make_spec, plan_for

from gateway import validate_httproute
from llama_operator import api
from llama_operator.serving import builders, engines


def primary(spec: api.LlamaDeploymentSpec) -> dict[str, Any]:
    (deployment,) = [o for o in build(spec) if o["kind"] == "Deployment"]
    return deployment


def canary(spec: api.LlamaDeploymentSpec, *, replicas: int = 1) -> list[dict[str, Any]]:
    plan, pool = plan_for(spec)
    return builders.canary_objects(
        name="chat",
        namespace="ai",
        uid=UID,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=SETTINGS,
        detection=detection(spec),
        replicas=replicas,
        revision=builders.revision_of(primary(spec)) or "",
    )


class TestRevision:
    def test_the_primary_carries_the_hash_of_its_pod_template(self) -> None:
        deployment = primary(make_spec())
        assert builders.revision_of(deployment) == builders.template_revision(deployment)
        # On the Deployment's metadata, not the pod template: adding it restarts no pod.
        template_annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert builders.REVISION_ANNOTATION not in template_annotations

    @pytest.mark.parametrize(
        "change",
        [
            {"engineArgs": ["--enable-prefix-caching"]},
            {"image": "vllm/vllm-openai:v0.12.0"},
            {"model": {"id": "meta-llama/Llama-3.2-3B-Instruct"}},
            # The default plan for 8B is fp8 on one L4: pinning 16-bit changes it.
            {"placement": {"quantization": "none"}},
        ],
    )
    def test_changes_that_restart_pods_change_it(self, change: dict[str, Any]) -> None:
        before = builders.revision_of(primary(make_spec()))
        assert builders.revision_of(primary(make_spec(**change))) != before

    @pytest.mark.parametrize(
        "change",
        [
            {"replicas": 5},
            {"rollout": {"steps": [{"weight": 20, "pause": "1m"}]}},
            {"rollout": {"maxSurge": 2}},
            {"license": {"accept": True}},
        ],
    )
    def test_changes_that_restart_no_pod_keep_it(self, change: dict[str, Any]) -> None:
        before = builders.revision_of(primary(make_spec()))
        assert builders.revision_of(primary(make_spec(**change))) == before

    def test_an_unannotated_deployment_has_no_revision(self) -> None:
        assert builders.revision_of({"metadata": {"annotations": {}}}) is None
        assert builders.revision_of(None) is None


class TestCanaryObjects:
    def test_the_canary_runs_the_newest_template_under_its_own_names(self) -> None:
        spec = make_spec(engineArgs=["--enable-prefix-caching"])
        config_map, deployment, service = canary(spec, replicas=2)
        assert config_map["metadata"]["name"] == "chat-canary-license"
        assert deployment["metadata"]["name"] == "chat-canary"
        assert service["metadata"]["name"] == "chat-canary"
        assert deployment["spec"]["replicas"] == 2
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[builders.VARIANT_LABEL] == "canary"
        assert service["spec"]["selector"] == {
            builders.DEPLOYMENT_LABEL: "chat",
            builders.VARIANT_LABEL: "canary",
        }
        # The revision is the primary's once promoted: the same container, the same flags.
        assert builders.revision_of(deployment) == builders.revision_of(primary(spec))
        ours = deployment["spec"]["template"]["spec"]["containers"][0]
        theirs = primary(spec)["spec"]["template"]["spec"]["containers"][0]
        assert ours == theirs
        assert "--enable-prefix-caching" in ours["args"]

    def test_the_canary_mounts_its_own_licence(self) -> None:
        _, deployment, _ = canary(make_spec(model={"id": "meta-llama/Llama-3.2-3B-Instruct"}))
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes[engines.LICENSE_VOLUME]["configMap"]["name"] == "chat-canary-license"

    def test_the_canary_gives_up_after_the_ready_timeout(self) -> None:
        _, deployment, _ = canary(make_spec(rollout={"readyTimeout": "20m"}))
        assert deployment["spec"]["progressDeadlineSeconds"] == 1200
        assert primary(make_spec())["spec"]["progressDeadlineSeconds"] == (
            builders.PROGRESS_DEADLINE_SECONDS
        )

    @pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version()])
    def test_every_canary_object_validates(self, version: str) -> None:
        for obj in canary(make_spec(engineArgs=["--enable-prefix-caching"])):
            kubernetes_validate.validate(obj, version, strict=True)


class TestStrategy:
    def test_the_surge_is_a_fixed_pod_count(self) -> None:
        strategy = primary(make_spec(rollout={"maxSurge": 0, "maxUnavailable": 1}))["spec"][
            "strategy"
        ]
        assert strategy == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }

    def test_both_zero_is_refused_with_the_field_named(self) -> None:
        with pytest.raises(api.SpecError) as caught:
            make_spec(rollout={"maxSurge": 0, "maxUnavailable": 0})
        assert caught.value.field == "spec.rollout.maxSurge"


class TestEntryService:
    def service(self, *, all_variants: bool) -> dict[str, Any]:
        return builders.service(
            name="chat",
            namespace="ai",
            uid=UID,
            service_name="chat",
            variant="primary",
            annotations={builders.LICENSE_ANNOTATION: "llama3.1"},
            all_variants=all_variants,
        )

    def test_selects_the_primary_or_every_variant(self) -> None:
        assert self.service(all_variants=False)["spec"]["selector"] == {
            builders.DEPLOYMENT_LABEL: "chat",
            builders.VARIANT_LABEL: "primary",
        }
        both = self.service(all_variants=True)["spec"]["selector"]
        assert both == {builders.DEPLOYMENT_LABEL: "chat"}
        _, deployment, _ = canary(make_spec())
        stable = primary(make_spec())
        for pods in (deployment, stable):
            labels = pods["spec"]["template"]["metadata"]["labels"]
            assert both.items() <= labels.items()

    def test_annotations_come_from_what_runs(self) -> None:
        status_license = {"id": "llama3.1", "aupURL": "https://llama.meta.com/llama3_1/use-policy"}
        annotations = builders.license_annotations_of_status(status_license)
        assert annotations == {
            builders.LICENSE_ANNOTATION: "llama3.1",
            builders.AUP_ANNOTATION: "https://llama.meta.com/llama3_1/use-policy",
        }
        assert builders.license_annotations_of_status(None) == {
            builders.LICENSE_ANNOTATION: "unknown"
        }

    @pytest.mark.parametrize("all_variants", [False, True])
    def test_validates(self, all_variants: bool) -> None:
        kubernetes_validate.validate(self.service(all_variants=all_variants), "1.30", strict=True)


class TestHTTPRoute:
    def route(self, weight: int | None, **traffic: Any) -> dict[str, Any]:
        return builders.http_route(
            name="chat",
            namespace="ai",
            uid=UID,
            traffic=api.Traffic.model_validate(
                {"gatewayRef": {"name": "inference", "namespace": "gateways"}, **traffic}
            ),
            canary_weight=weight,
            annotations={builders.LICENSE_ANNOTATION: "llama3.1"},
        )

    @pytest.mark.parametrize(
        ("weight", "backends"),
        [
            (None, [("chat-primary", 100)]),
            (0, [("chat-primary", 100), ("chat-canary", 0)]),
            (10, [("chat-primary", 90), ("chat-canary", 10)]),
            (50, [("chat-primary", 50), ("chat-canary", 50)]),
        ],
    )
    def test_exact_weights_on_the_variants_services(
        self, weight: int | None, backends: list[tuple[str, int]]
    ) -> None:
        route = self.route(weight)
        validate_httproute(route)
        (rule,) = route["spec"]["rules"]
        assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == backends
        assert {b["port"] for b in rule["backendRefs"]} == {engines.PORT}
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "inference",
                "namespace": "gateways",
            }
        ]
        assert "hostnames" not in route["spec"]

    def test_hostnames_and_listener(self) -> None:
        route = self.route(None, hostnames=["chat.example.com"])
        validate_httproute(route)
        assert route["spec"]["hostnames"] == ["chat.example.com"]

    def test_a_bad_hostname_is_refused_in_the_spec(self) -> None:
        with pytest.raises(api.SpecError) as caught:
            make_spec(traffic={"gatewayRef": {"name": "gw"}, "hostnames": ["Chat.Example.com"]})
        assert caught.value.field.startswith("spec.traffic.hostnames")

    def test_needs_a_gateway(self) -> None:
        with pytest.raises(ValueError, match="gatewayRef"):
            builders.http_route(
                name="chat",
                namespace="ai",
                uid=UID,
                traffic=api.Traffic(),
                canary_weight=None,
                annotations={},
            )
