"""Unit tests for ``llama_operator.serving.builders``: one class per builder."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.planning import catalog, config, facts, planner, pools
from llama_operator.serving import builders

SETTINGS = config.OperatorConfig()
POOLS = {pool.name: pool for pool in config.default_pools()}
UID = "0b7c6d1e-1111-4222-8333-444455556666"


def detection(spec: api.LlamaDeploymentSpec) -> terms.Detection:
    return terms.detect(model_id=spec.model.id, override=None)


def make_spec(**raw: Any) -> api.LlamaDeploymentSpec:
    base: dict[str, Any] = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
    return api.parse_spec({**base, **raw})


def plan_for(spec: api.LlamaDeploymentSpec) -> tuple[api.Plan, pools.Pool]:
    model = facts.resolve(model=spec.model, catalog_entry=catalog.lookup(spec.model.id))
    plan = planner.plan(
        planner.request_for(
            spec=spec, model=model, available=config.default_pools(), settings=SETTINGS
        )
    )
    return plan, POOLS[plan.pool]


def build(spec: api.LlamaDeploymentSpec, *, name: str = "chat") -> list[dict[str, Any]]:
    plan, pool = plan_for(spec)
    return builders.build_all(
        name=name,
        namespace="ai",
        uid=UID,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=SETTINGS,
        detection=detection(spec),
    )


def make_deployment(spec: api.LlamaDeploymentSpec, *, replicas: int = 1) -> dict[str, Any]:
    plan, pool = plan_for(spec)
    return builders.deployment(
        name="chat",
        namespace="ai",
        uid=UID,
        variant="primary",
        spec=spec,
        plan=plan,
        pool=pool,
        settings=SETTINGS,
        replicas=replicas,
        detection=detection(spec),
    )


def volumes_by_name(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# A sharded plan: 8B at fp8 pinned to 2x L40S.
SHARDED = {"placement": {"pools": ["l40s"], "tensorParallel": 2, "quantization": "fp8"}}


class TestLabels:
    def test_recommended_and_selector_labels(self) -> None:
        assert builders.labels(name="chat", variant="primary") == {
            "app.kubernetes.io/name": "llamadeployment",
            "app.kubernetes.io/instance": "chat",
            "app.kubernetes.io/component": "primary",
            "app.kubernetes.io/managed-by": "llama-operator",
            "app.kubernetes.io/part-of": "llama-operator",
            "llamaops.dev/deployment": "chat",
            "llamaops.dev/variant": "primary",
        }

    def test_selector_is_subset_of_labels(self) -> None:
        selector = builders.selector(name="chat", variant="canary")
        assert selector == {"llamaops.dev/deployment": "chat", "llamaops.dev/variant": "canary"}
        assert matches(selector, builders.labels(name="chat", variant="canary"))
        assert not matches(selector, builders.labels(name="chat", variant="primary"))
        assert not matches(selector, builders.labels(name="other", variant="canary"))

    def test_selector_string(self) -> None:
        assert builders.selector_string(name="chat", variant="primary") == (
            "llamaops.dev/deployment=chat,llamaops.dev/variant=primary"
        )


class TestOwnerReference:
    def test_controller_reference(self) -> None:
        assert builders.owner_reference(name="chat", uid=UID) == {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "name": "chat",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }


class TestDeployment:
    def test_identity_and_owner(self) -> None:
        deployment = make_deployment(make_spec(), replicas=3)
        assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
        assert deployment["metadata"]["name"] == "chat-primary"
        assert deployment["metadata"]["namespace"] == "ai"
        assert deployment["metadata"]["ownerReferences"] == [
            builders.owner_reference(name="chat", uid=UID)
        ]
        assert deployment["spec"]["replicas"] == 3

    def test_selector_matches_template(self) -> None:
        spec = make_deployment(make_spec())["spec"]
        assert spec["selector"] == {
            "matchLabels": builders.selector(name="chat", variant="primary")
        }
        assert matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])

    def test_rollout_never_reduces_serving_pods(self) -> None:
        spec = make_deployment(make_spec())["spec"]
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        assert spec["progressDeadlineSeconds"] == 3600
        assert spec["revisionHistoryLimit"] == 3

    def test_pool_placement(self) -> None:
        deployment = make_deployment(make_spec(**SHARDED))
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]

    def test_pool_must_be_the_planned_one(self) -> None:
        spec = make_spec()
        plan, _ = plan_for(spec)
        other = next(pool for pool in POOLS.values() if pool.name != plan.pool)
        with pytest.raises(ValueError, match="plan is for pool"):
            builders.deployment(
                name="chat",
                namespace="ai",
                uid=UID,
                variant="primary",
                spec=spec,
                plan=plan,
                pool=other,
                settings=SETTINGS,
                replicas=1,
                detection=detection(spec),
            )

    def test_pod_hardening(self) -> None:
        pod = make_deployment(make_spec())["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
        assert pod["automountServiceAccountToken"] is False
        assert pod["terminationGracePeriodSeconds"] == 60
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        [container] = pod["containers"]
        assert container["name"] == "engine"

    def test_template_annotations(self) -> None:
        annotations = make_deployment(make_spec(**SHARDED))["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations == {
            "llamaops.dev/model": "meta-llama/Llama-3.1-8B-Instruct",
            "llamaops.dev/plan": "2x NVIDIA-L40S fp8",
            "llamaops.dev/license": "llama3.1",
            "llamaops.dev/aup-url": "https://llama.meta.com/llama3_1/use-policy",
        }

    def test_plan_summary_names_16_bit_precision(self) -> None:
        plan, _ = plan_for(make_spec(placement={"optimize": "quality", "pools": ["l40s"]}))
        assert builders.plan_summary(plan=plan) == "1x NVIDIA-L40S bf16"
        fp16 = plan.model_copy(update={"dtype": "float16", "gpuProduct": "Tesla-T4"})
        assert builders.plan_summary(plan=fp16) == "1x Tesla-T4 fp16"

    def test_every_mount_has_a_volume(self) -> None:
        for raw in ({}, SHARDED):
            pod = make_deployment(make_spec(**raw))["spec"]["template"]["spec"]
            volumes = {v["name"] for v in pod["volumes"]}
            mounts = {m["name"] for m in pod["containers"][0]["volumeMounts"]}
            assert mounts == volumes

    def test_shared_memory_only_when_sharded(self) -> None:
        assert "dshm" not in volumes_by_name(make_deployment(make_spec()))
        shm = volumes_by_name(make_deployment(make_spec(**SHARDED)))["dshm"]
        assert shm == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}

    def test_empty_dir_cache_sized_from_download(self) -> None:
        spec = make_spec(placement={"optimize": "quality", "pools": ["l4"]})
        plan, _ = plan_for(spec)
        cache = volumes_by_name(make_deployment(spec))["model-cache"]
        # 16-bit: twice the weights the engine serves (14.96 GiB -> 30 Gi).
        assert plan.weightsGiB == pytest.approx(14.96)
        assert cache == {"name": "model-cache", "emptyDir": {"sizeLimit": "30Gi"}}

    def test_load_time_quantization_sizes_cache_for_16_bit_download(self) -> None:
        # fp8 is made at load time from the 16-bit checkpoint: the download is the size of
        # the 16-bit weights, not of the served ones, and the cache must hold it.
        plan, _ = plan_for(make_spec(**SHARDED))
        assert plan.quantization == "fp8"
        sixteen_bit, _ = plan_for(
            make_spec(placement={**SHARDED["placement"], "quantization": "none"})
        )
        assert sixteen_bit.weightsGiB == pytest.approx(14.96)
        assert builders.checkpoint_gib(plan=plan) == pytest.approx(sixteen_bit.weightsGiB, rel=0.01)
        cache = volumes_by_name(make_deployment(make_spec(**SHARDED)))["model-cache"]
        assert cache["emptyDir"]["sizeLimit"] == "30Gi"

    def test_empty_dir_size_limit_from_spec(self) -> None:
        spec = make_spec(modelCache={"sizeLimit": "100Gi"})
        cache = volumes_by_name(make_deployment(spec))["model-cache"]
        assert cache == {"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}}

    def test_persistent_volume_claim_cache(self) -> None:
        spec = make_spec(modelCache={"volume": "persistentVolumeClaim", "claimName": "weights"})
        volumes = volumes_by_name(make_deployment(spec))
        assert volumes["model-cache"] == {
            "name": "model-cache",
            "persistentVolumeClaim": {"claimName": "weights"},
        }
        assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}


class TestService:
    def test_cluster_ip_service_selects_variant(self) -> None:
        service = builders.service(
            name="chat",
            namespace="ai",
            uid=UID,
            service_name="chat",
            variant="primary",
            detection=terms.detect(model_id="meta-llama/Llama-3.1-8B-Instruct", override=None),
        )
        assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
        assert service["metadata"]["name"] == "chat"
        assert service["metadata"]["namespace"] == "ai"
        assert service["metadata"]["labels"] == builders.labels(name="chat", variant="primary")
        assert service["metadata"]["ownerReferences"] == [
            builders.owner_reference(name="chat", uid=UID)
        ]
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"] == builders.selector(name="chat", variant="primary")
        assert service["spec"]["ports"] == [
            {
                "name": "http",
                "port": 8000,
                "targetPort": "http",
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ]

    def test_target_port_is_a_container_port_name(self) -> None:
        deployment = make_deployment(make_spec())
        service = builders.service(
            name="chat",
            namespace="ai",
            uid=UID,
            service_name="chat-primary",
            variant="primary",
            detection=terms.detect(model_id="meta-llama/Llama-3.1-8B-Instruct", override=None),
        )
        container_ports = {
            port["name"]
            for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert service["spec"]["ports"][0]["targetPort"] in container_ports


class TestBuildAll:
    def test_objects(self) -> None:
        objects = build(make_spec(replicas=2))
        assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
            ("ConfigMap", "chat-license"),
            ("Deployment", "chat-primary"),
            ("Service", "chat"),
            ("Service", "chat-primary"),
        ]
        assert objects[1]["spec"]["replicas"] == 2
        for obj in objects:
            assert obj["metadata"]["namespace"] == "ai"
            assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
            assert obj["metadata"]["annotations"][builders.HASH_ANNOTATION] == (
                builders.spec_hash(obj)
            )

    def test_services_select_primary_pods(self) -> None:
        _, deployment, *services = build(make_spec())
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for service in services:
            assert matches(service["spec"]["selector"], pod_labels)

    def test_zero_replicas(self) -> None:
        assert build(make_spec(replicas=0))[1]["spec"]["replicas"] == 0


class TestHash:
    def test_hash_format(self) -> None:
        digest = builders.spec_hash({"kind": "Service", "metadata": {"name": "x"}})
        assert len(digest) == 16
        assert int(digest, 16) >= 0

    def test_stable_across_calls(self) -> None:
        assert build(make_spec()) == build(make_spec())

    def test_independent_of_key_order(self) -> None:
        one = {"kind": "Service", "metadata": {"name": "x", "namespace": "y"}}
        two = {"metadata": {"namespace": "y", "name": "x"}, "kind": "Service"}
        assert builders.spec_hash(one) == builders.spec_hash(two)

    def test_changes_with_plan(self) -> None:
        before = build(make_spec())[1]  # the Deployment
        after = build(make_spec(placement={"maxModelLen": 4096}))[1]
        annotation = builders.HASH_ANNOTATION
        assert (
            before["metadata"]["annotations"][annotation]
            != (after["metadata"]["annotations"][annotation])
        )

    def test_changes_with_model(self) -> None:
        before = build(make_spec())[0]
        after = build(make_spec(model={"id": "meta-llama/Llama-3.1-8B"}))[0]
        annotation = builders.HASH_ANNOTATION
        assert (
            before["metadata"]["annotations"][annotation]
            != (after["metadata"]["annotations"][annotation])
        )

    def test_ignores_its_own_annotation(self) -> None:
        raw = make_deployment(make_spec())
        hashed = builders.with_hash(raw)
        digest = hashed["metadata"]["annotations"][builders.HASH_ANNOTATION]
        assert builders.spec_hash(raw) == digest
        assert builders.spec_hash(hashed) == digest
        stale = copy.deepcopy(hashed)
        stale["metadata"]["annotations"][builders.HASH_ANNOTATION] = "0" * 16
        assert builders.spec_hash(stale) == digest
        assert builders.with_hash(hashed) == hashed

    def test_other_annotations_count(self) -> None:
        raw = make_deployment(make_spec())
        annotated = copy.deepcopy(raw)
        annotated["metadata"]["annotations"] = {"example.com/note": "x"}
        assert builders.spec_hash(annotated) != builders.spec_hash(raw)

    def test_does_not_modify_input(self) -> None:
        raw = make_deployment(make_spec())
        snapshot = copy.deepcopy(raw)
        builders.with_hash(raw)
        builders.spec_hash(builders.with_hash(raw))
        assert raw == snapshot
