"""Unit and contract tests for ``llama_operator.serving.scalers``.

The HorizontalPodAutoscaler is validated with the official OpenAPI schemas in
``kubernetes-validate`` (strict), for the same Kubernetes versions as
test_rendered_objects_validate.py. KEDA's CRD cannot be installed here, so the
ScaledObject is validated against ``tests/fixtures/keda/scaledobject.schema.json``, a
JSON Schema hand-written from KEDA's documentation (see its ``$comment``).
"""

from __future__ import annotations

import json
import pathlib
import re
import string
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from llama_operator import api
from llama_operator.planning import config
from llama_operator.serving import builders, scalers

SETTINGS = config.OperatorConfig()
UID = "0b7c6d1e-1111-4222-8333-444455556666"
SCHEMA_PATH = pathlib.Path(__file__).parents[1] / "fixtures" / "keda" / "scaledobject.schema.json"
# The versions test_rendered_objects_validate.py checks: the oldest supported and the newest
# the package ships.
OLDEST = "1.30"
NEWEST = kubernetes_validate.latest_version()
VERSIONS = sorted({OLDEST, NEWEST})
TARGET_REF = {"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "name": "chat"}


def autoscaling(**raw: Any) -> api.Autoscaling:
    """spec.autoscaling parsed and cross-checked as the API server and the CLI would."""
    spec = api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "autoscaling": raw})
    assert spec.autoscaling is not None
    return spec.autoscaling


def keda(
    engine: api.Engine = "vllm", settings: config.OperatorConfig = SETTINGS, **raw: Any
) -> dict[str, Any]:
    return scalers.scaled_object(
        name="chat",
        namespace="ai",
        uid=UID,
        autoscaling=autoscaling(engine="keda", **raw),
        engine=engine,
        settings=settings,
    )


def hpa(
    engine: api.Engine = "vllm", settings: config.OperatorConfig = SETTINGS, **raw: Any
) -> dict[str, Any]:
    return scalers.horizontal_pod_autoscaler(
        name="chat",
        namespace="ai",
        uid=UID,
        autoscaling=autoscaling(engine="hpa", **raw),
        engine=engine,
        settings=settings,
    )


def trigger(obj: dict[str, Any]) -> dict[str, Any]:
    [only] = obj["spec"]["triggers"]
    result: dict[str, Any] = only
    return result


def average_value(obj: dict[str, Any]) -> str:
    [metric] = obj["spec"]["metrics"]
    result: str = metric["pods"]["target"]["averageValue"]
    return result


def settings_with(**autoscaling: Any) -> config.OperatorConfig:
    return config.parse({"autoscaling": autoscaling})


@pytest.fixture(scope="module")
def keda_schema() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class TestPodRegex:
    def test_form(self) -> None:
        assert scalers.pod_regex("chat") == "chat-primary-[a-z0-9]+-[a-z0-9]+"

    @pytest.mark.parametrize(
        ("pod", "matches"),
        [
            ("chat-primary-7d9c8b6f5-x2x9k", True),
            ("chat-primary-5bd8f9c7d4-qwz7m", True),
            ("chat-canary-7d9c8b6f5-x2x9k", False),
            ("chatbot-primary-7d9c8b6f5-x2x9k", False),
            ("my-chat-primary-7d9c8b6f5-x2x9k", False),
            ("chat-primary-7d9c8b6f5", False),
            ("chat-primary-7d9c8b6f5-x2x9k-extra", False),
        ],
    )
    def test_matches_only_the_primary_pods(self, pod: str, matches: bool) -> None:
        # Prometheus anchors =~ at both ends, as fullmatch does.
        regex = scalers.pod_regex("chat")
        assert (re.fullmatch(regex, pod) is not None) is matches

    def test_dot_in_a_name_is_literal(self) -> None:
        regex = scalers.pod_regex("chat.v2")
        assert re.fullmatch(regex, "chat.v2-primary-7d9c8b6f5-x2x9k")
        assert not re.fullmatch(regex, "chatxv2-primary-7d9c8b6f5-x2x9k")
        assert "\\" not in regex  # nothing a PromQL string literal would need escaped


class TestQuantities:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (8, "8"),
            (8.0, "8"),
            (32.0, "32"),
            (0.8, "800m"),
            (0.5, "500m"),
            (1.5, "1500m"),
            (0.0005, "500u"),
            (1e-10, "1n"),  # below nano: rounded up, as the API server does
            (1000, "1k"),
            (1500, "1500"),
            (2_000_000.0, "2M"),
        ],
    )
    def test_quantity_is_canonical(self, value: float, expected: str) -> None:
        assert scalers.quantity(value) == expected

    def test_quantity_refuses_zero(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            scalers.quantity(0)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [(8, "8"), (8.0, "8"), (0.8, "0.8"), (0, "0"), (2.5, "2.5"), (1e-05, "0.00001")],
    )
    def test_decimal_string(self, value: float, expected: str) -> None:
        assert scalers.decimal_string(value) == expected


class TestBehavior:
    def test_carries_the_builtin_policy(self) -> None:
        behavior = scalers.behavior(
            autoscaling(scaleUpStep=2, intervalSeconds=10, scaleDownDelaySeconds=600)
        )
        assert behavior == {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 10}],
            },
            "scaleDown": {"stabilizationWindowSeconds": 600},
        }

    def test_window_longer_than_an_hpa_accepts_is_refused(self) -> None:
        with pytest.raises(scalers.ScalerError) as caught:
            scalers.behavior(autoscaling(scaleDownDelaySeconds=3601))
        assert caught.value.field == "spec.autoscaling.scaleDownDelaySeconds"
        assert "3600" in str(caught.value)

    def test_longest_window_an_hpa_accepts(self) -> None:
        behavior = scalers.behavior(autoscaling(scaleDownDelaySeconds=3600))
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 3600


class TestScaledObject:
    def test_shape(self) -> None:
        query = string.Template(config.DEFAULT_QUERIES["vllm"]["queue"]).substitute(
            namespace="ai", pods="chat-primary-[a-z0-9]+-[a-z0-9]+"
        )
        assert keda() == {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {
                "name": "chat",
                "namespace": "ai",
                "labels": builders.labels(name="chat", variant="autoscaler"),
                "ownerReferences": [builders.owner_reference(name="chat", uid=UID)],
            },
            "spec": {
                "scaleTargetRef": TARGET_REF,
                "pollingInterval": 5,
                "cooldownPeriod": 300,
                "minReplicaCount": 1,
                "maxReplicaCount": 4,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleUp": {
                                "stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}],
                            },
                            "scaleDown": {"stabilizationWindowSeconds": 300},
                        }
                    }
                },
                "triggers": [
                    {
                        "type": "prometheus",
                        "name": "queue",
                        "metricType": "AverageValue",
                        "metadata": {
                            "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
                            "query": query,
                            "threshold": "8",
                            "activationThreshold": "0",
                            # A scrape gap is an error, never an idle endpoint.
                            "ignoreNullValues": "false",
                        },
                    }
                ],
            },
        }

    @pytest.mark.parametrize(
        ("engine", "metric"),
        [
            ("vllm", "queue"),
            ("vllm", "inflight"),
            ("vllm", "kvCache"),
            ("tgi", "queue"),
            ("tgi", "inflight"),
        ],
    )
    def test_query_is_the_configured_template(self, engine: api.Engine, metric: str) -> None:
        query = trigger(keda(engine=engine, metric=metric))["metadata"]["query"]
        template = config.DEFAULT_QUERIES[engine][metric]
        assert query == template.replace("${namespace}", "ai").replace(
            "${pods}", "chat-primary-[a-z0-9]+-[a-z0-9]+"
        )
        assert "$" not in query
        assert 'namespace="ai"' in query
        assert 'pod=~"chat-primary-[a-z0-9]+-[a-z0-9]+"' in query

    def test_query_from_a_custom_config(self) -> None:
        settings = settings_with(
            prometheusAddress="http://thanos-query.obs:9090",
            queries={"vllm": {"queue": 'max(q{ns="${namespace}",p=~"${pods}"}) * 2'}},
        )
        metadata = trigger(keda(settings=settings))["metadata"]
        assert metadata["serverAddress"] == "http://thanos-query.obs:9090"
        assert metadata["query"] == 'max(q{ns="ai",p=~"chat-primary-[a-z0-9]+-[a-z0-9]+"}) * 2'

    @pytest.mark.parametrize(
        ("raw", "threshold"),
        [
            ({"metric": "queue"}, "8"),
            ({"metric": "inflight"}, "32"),
            ({"metric": "kvCache"}, "0.8"),
            ({"metric": "kvCache", "target": 0.65}, "0.65"),
            ({"metric": "queue", "targetQueueLength": 3}, "3"),
            ({"metric": "inflight", "target": 12.5}, "12.5"),
        ],
    )
    def test_threshold_is_the_effective_target(self, raw: dict[str, Any], threshold: str) -> None:
        obj = trigger(keda(**raw))
        assert obj["metadata"]["threshold"] == threshold
        assert obj["metricType"] == "AverageValue"
        assert obj["name"] == raw["metric"]

    @pytest.mark.parametrize(("activation", "expected"), [(None, "0"), (0, "0"), (2.5, "2.5")])
    def test_activation_threshold(self, activation: float | None, expected: str) -> None:
        raw = {} if activation is None else {"activationTarget": activation}
        assert trigger(keda(**raw))["metadata"]["activationThreshold"] == expected

    def test_policy_fields(self) -> None:
        spec = keda(
            minReplicas=2,
            maxReplicas=9,
            scaleUpStep=3,
            intervalSeconds=15,
            scaleDownDelaySeconds=120,
        )["spec"]
        assert spec["minReplicaCount"] == 2
        assert spec["maxReplicaCount"] == 9
        assert spec["pollingInterval"] == 15
        assert spec["cooldownPeriod"] == 120
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 120}
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleUp"]["policies"] == [
            {"type": "Pods", "value": 3, "periodSeconds": 15}
        ]

    def test_scale_to_zero_needs_a_signal_from_in_front_of_the_pods(self) -> None:
        # The engine's metrics vanish with its pods: without an activation query from a
        # gateway or ingress nothing could ever wake the endpoint, so it is refused.
        with pytest.raises(scalers.ScalerError) as caught:
            keda(minReplicas=0)
        assert caught.value.field == "spec.autoscaling.minReplicas"
        assert "autoscaling.activationQuery" in str(caught.value)

    def test_scale_to_zero_with_an_activation_query(self) -> None:
        settings = settings_with(
            activationQuery='sum(rate(gateway_requests_total{namespace="${namespace}",'
            'service="${service}"}[1m]))'
        )
        spec = keda(minReplicas=0, settings=settings)["spec"]
        assert spec["minReplicaCount"] == 0
        assert spec["scaleTargetRef"] == TARGET_REF
        engine_trigger, activation = spec["triggers"]
        assert engine_trigger["name"] == "queue"
        assert activation["name"] == "activation"
        assert activation["metadata"]["query"] == (
            'sum(rate(gateway_requests_total{namespace="ai",service="chat"}[1m]))'
        )
        assert activation["metadata"]["activationThreshold"] == "0"
        # Above one replica it never asks for more: the engine's metric decides.
        assert float(activation["metadata"]["threshold"]) >= 1e9

    def test_a_bad_activation_template_names_the_key(self) -> None:
        with pytest.raises(scalers.ScalerError) as caught:
            keda(minReplicas=0, settings=settings_with(activationQuery="sum(${pods})"))
        assert caught.value.field == "autoscaling.activationQuery"

    def test_kv_cache_on_tgi_is_refused(self) -> None:
        with pytest.raises(scalers.ScalerError) as caught:
            keda(engine="tgi", metric="kvCache")
        assert caught.value.field == "spec.autoscaling.metric"
        assert str(caught.value) == (
            "spec.autoscaling.metric: TGI exposes no KV-cache metric; use queue or inflight"
        )
        assert isinstance(caught.value, ValueError)

    def test_a_query_overridden_alone_keeps_every_other_default(self) -> None:
        settings = settings_with(queries={"vllm": {"inflight": "sum(x)"}})
        assert settings.autoscaling.queries["vllm"]["inflight"] == "sum(x)"
        assert (
            settings.autoscaling.queries["vllm"]["queue"]
            == (config.DEFAULT_QUERIES["vllm"]["queue"])
        )
        assert settings.autoscaling.queries["tgi"] == config.DEFAULT_QUERIES["tgi"]
        assert trigger(keda(settings=settings, metric="inflight"))["metadata"]["query"] == (
            "sum(x)"
        )

    def test_a_query_blanked_in_the_config_is_refused(self) -> None:
        settings = settings_with(queries={"vllm": {"queue": ""}})
        with pytest.raises(scalers.ScalerError) as caught:
            keda(settings=settings, metric="queue")
        assert caught.value.field == "autoscaling.queries.vllm.queue"
        assert "set autoscaling.queries.vllm.queue" in str(caught.value)

    def test_an_engine_without_queries_is_refused(self) -> None:
        settings = settings_with(queries={"tgi": {"queue": ""}})
        with pytest.raises(scalers.ScalerError) as caught:
            keda(engine="tgi", settings=settings)
        assert caught.value.field == "autoscaling.queries.tgi.queue"

    def test_unknown_placeholder_names_the_config_key(self) -> None:
        settings = settings_with(queries={"vllm": {"queue": 'sum(q{pod=~"${pod}"})'}})
        with pytest.raises(scalers.ScalerError) as caught:
            keda(settings=settings)
        assert caught.value.field == "autoscaling.queries.vllm.queue"


class TestHorizontalPodAutoscaler:
    def test_shape(self) -> None:
        assert hpa() == {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": "chat",
                "namespace": "ai",
                "labels": builders.labels(name="chat", variant="autoscaler"),
                "ownerReferences": [builders.owner_reference(name="chat", uid=UID)],
            },
            "spec": {
                "scaleTargetRef": TARGET_REF,
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "vllm_num_requests_waiting"},
                            "target": {"type": "AverageValue", "averageValue": "8"},
                        },
                    }
                ],
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}],
                    },
                    "scaleDown": {"stabilizationWindowSeconds": 300},
                },
            },
        }

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ({"metric": "queue"}, "8"),
            ({"metric": "inflight"}, "32"),
            ({"metric": "kvCache"}, "800m"),
            ({"metric": "kvCache", "target": 0.5}, "500m"),
            ({"metric": "queue", "targetQueueLength": 2.5}, "2500m"),
        ],
    )
    def test_average_value_is_the_effective_target(
        self, raw: dict[str, Any], expected: str
    ) -> None:
        assert average_value(hpa(**raw)) == expected

    @pytest.mark.parametrize(
        ("engine", "metric"),
        [
            ("vllm", "queue"),
            ("vllm", "inflight"),
            ("vllm", "kvCache"),
            ("tgi", "queue"),
            ("tgi", "inflight"),
        ],
    )
    def test_metric_name_from_config(self, engine: api.Engine, metric: str) -> None:
        [entry] = hpa(engine=engine, metric=metric)["spec"]["metrics"]
        assert entry["pods"]["metric"] == {"name": config.DEFAULT_POD_METRICS[engine][metric]}

    def test_same_behavior_as_keda(self) -> None:
        raw = {"scaleUpStep": 2, "intervalSeconds": 30, "scaleDownDelaySeconds": 900}
        keda_behavior = keda(**raw)["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
        assert hpa(**raw)["spec"]["behavior"] == keda_behavior["behavior"]

    def test_kv_cache_on_tgi_is_refused(self) -> None:
        with pytest.raises(scalers.ScalerError) as caught:
            hpa(engine="tgi", metric="kvCache")
        assert caught.value.field == "spec.autoscaling.metric"

    def test_config_without_the_pod_metric_is_refused(self) -> None:
        settings = settings_with(podMetrics={"vllm": {"inflight": ""}})
        with pytest.raises(scalers.ScalerError) as caught:
            hpa(settings=settings, metric="inflight")
        assert caught.value.field == "autoscaling.podMetrics.vllm.inflight"
        assert "set autoscaling.podMetrics.vllm.inflight" in str(caught.value)

    def test_min_replicas_zero_is_refused(self) -> None:
        # The API refuses this combination; a spec that bypassed it still fails readably.
        bypassed = api.Autoscaling(engine="hpa", minReplicas=0)
        with pytest.raises(scalers.ScalerError) as caught:
            scalers.horizontal_pod_autoscaler(
                name="chat",
                namespace="ai",
                uid=UID,
                autoscaling=bypassed,
                engine="vllm",
                settings=SETTINGS,
            )
        assert caught.value.field == "spec.autoscaling.minReplicas"


class TestForSpec:
    def spec(self, autoscaling: dict[str, Any] | None) -> api.LlamaDeploymentSpec:
        raw: dict[str, Any] = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
        if autoscaling is not None:
            raw["autoscaling"] = autoscaling
        return api.parse_spec(raw)

    def build(self, autoscaling: dict[str, Any] | None) -> list[dict[str, Any]]:
        return scalers.for_spec(
            name="chat",
            namespace="ai",
            uid=UID,
            spec=self.spec(autoscaling),
            engine="vllm",
            settings=SETTINGS,
        )

    def test_nothing_without_autoscaling(self) -> None:
        assert self.build(None) == []

    def test_nothing_for_builtin(self) -> None:
        assert self.build({}) == []
        assert self.build({"engine": "builtin", "metric": "kvCache"}) == []

    @pytest.mark.parametrize(
        ("engine", "kind"), [("keda", "ScaledObject"), ("hpa", "HorizontalPodAutoscaler")]
    )
    def test_one_hashed_object(self, engine: str, kind: str) -> None:
        [obj] = self.build({"engine": engine})
        assert obj["kind"] == kind
        metadata = obj["metadata"]
        assert metadata["name"] == "chat"
        assert metadata["namespace"] == "ai"
        assert metadata["labels"] == builders.labels(name="chat", variant="autoscaler")
        assert metadata["ownerReferences"] == [builders.owner_reference(name="chat", uid=UID)]
        assert metadata["annotations"] == {builders.HASH_ANNOTATION: builders.spec_hash(obj)}

    def test_hash_follows_the_spec(self) -> None:
        [first] = self.build({"engine": "keda"})
        [again] = self.build({"engine": "keda"})
        [changed] = self.build({"engine": "keda", "maxReplicas": 5})
        hashes = [
            obj["metadata"]["annotations"][builders.HASH_ANNOTATION]
            for obj in (first, again, changed)
        ]
        assert hashes[0] == hashes[1] != hashes[2]

    def test_errors_pass_through(self) -> None:
        with pytest.raises(scalers.ScalerError):
            scalers.for_spec(
                name="chat",
                namespace="ai",
                uid=UID,
                spec=self.spec({"engine": "hpa", "metric": "kvCache"}),
                engine="tgi",
                settings=SETTINGS,
            )


HPA_VARIANTS: list[dict[str, Any]] = [
    {},
    {"metric": "kvCache"},
    {"metric": "inflight", "target": 12.5, "minReplicas": 2, "maxReplicas": 20},
    {"scaleUpStep": 1000, "intervalSeconds": 600, "scaleDownDelaySeconds": 3600},
    {"scaleDownDelaySeconds": 0, "intervalSeconds": 1},
]


class TestHorizontalPodAutoscalerValidates:
    def test_newest_version_is_newer_than_oldest(self) -> None:
        assert tuple(int(part) for part in NEWEST.split(".")[:2]) > (1, 30)

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("raw", HPA_VARIANTS, ids=json.dumps)
    def test_valid(self, raw: dict[str, Any], version: str) -> None:
        [obj] = scalers.for_spec(
            name="chat",
            namespace="ai",
            uid=UID,
            spec=api.parse_spec(
                {
                    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                    "autoscaling": {"engine": "hpa", **raw},
                }
            ),
            engine="vllm",
            settings=SETTINGS,
        )
        checked = kubernetes_validate.validate(obj, version, strict=True)
        assert checked == ".".join(version.split(".")[:2])

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("breakage", ["unknown-field", "string-max", "no-target-name"])
    def test_validator_rejects_a_broken_hpa(self, breakage: str, version: str) -> None:
        # The check above is only worth something if the schemas refuse bad objects.
        obj = hpa()
        spec = obj["spec"]
        if breakage == "unknown-field":
            spec["metrics"][0]["pods"]["target"]["averageValues"] = "8"
        elif breakage == "string-max":
            spec["maxReplicas"] = "4"
        else:
            del spec["scaleTargetRef"]["name"]
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(obj, version, strict=True)


# A ScaledObject using every field the schema describes, written here in the shape KEDA's
# documentation gives: proves the schema is not narrower than KEDA.
DOCUMENTED_SCALED_OBJECT = yaml.safe_load(
    """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
  annotations:
    autoscaling.keda.sh/paused: "false"
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: StatefulSet
    name: worker
    envSourceContainerName: main
  pollingInterval: 30
  cooldownPeriod: 300
  initialCooldownPeriod: 60
  idleReplicaCount: 0
  minReplicaCount: 1
  maxReplicaCount: 50
  fallback:
    failureThreshold: 3
    replicas: 6
    behavior: currentReplicasIfHigher
  advanced:
    restoreToOriginalReplicaCount: true
    horizontalPodAutoscalerConfig:
      name: worker-hpa
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 300
          selectPolicy: Max
          policies:
          - type: Percent
            value: 50
            periodSeconds: 60
    scalingModifiers:
      formula: "(backlog + lag) / 2"
      target: "10"
      activationTarget: "1"
      metricType: AverageValue
  triggers:
  - type: prometheus
    name: backlog
    metricType: Value
    useCachedMetrics: true
    metadata:
      serverAddress: http://prometheus.monitoring:9090
      query: sum(backlog)
      threshold: "100.50"
      activationThreshold: "5.5"
      ignoreNullValues: "false"
    authenticationRef:
      name: prom-creds
      kind: ClusterTriggerAuthentication
  - type: kafka
    name: lag
    metadata:
      topic: jobs
      lagThreshold: "50"
"""
)


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    obj[last] = value


def _delete(obj: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    del obj[last]


class TestScaledObjectValidates:
    def test_schema_is_hand_written_from_the_docs(self) -> None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert "Hand-written" in schema["$comment"]
        assert "https://keda.sh/docs/2.17/reference/scaledobject-spec/" in schema["$comment"]

    def test_documented_example_is_valid(
        self, keda_schema: jsonschema.Draft202012Validator
    ) -> None:
        keda_schema.validate(DOCUMENTED_SCALED_OBJECT)

    @pytest.mark.parametrize(
        ("engine", "raw"),
        [
            ("vllm", {}),
            ("vllm", {"metric": "kvCache", "target": 0.65}),
            ("vllm", {"minReplicas": 0, "activationTarget": 1.5}),
            ("tgi", {"metric": "inflight", "maxReplicas": 100, "scaleDownDelaySeconds": 3600}),
        ],
        ids=lambda value: value if isinstance(value, str) else json.dumps(value),
    )
    def test_rendered_is_valid(
        self,
        keda_schema: jsonschema.Draft202012Validator,
        engine: api.Engine,
        raw: dict[str, Any],
    ) -> None:
        [obj] = scalers.for_spec(
            name="chat",
            namespace="ai",
            uid=UID,
            spec=api.parse_spec(
                {
                    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                    "autoscaling": {"engine": "keda", **raw},
                }
            ),
            engine=engine,
            settings=settings_with(activationQuery='sum(up{namespace="${namespace}"})'),
        )
        keda_schema.validate(obj)

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("spec.triggers.0.metadata.threshold", 8),  # metadata values are strings
            ("spec.triggers.0.metadata.threshold", "eight"),
            ("spec.triggers.0.metadata.activationThreshold", 0),
            ("spec.triggers.0.metricType", "Average"),
            ("spec.pollingInterval", "5"),
            ("spec.minReplicaCount", 0.5),
            ("spec.scaleTargetRef.namespace", "elsewhere"),  # KEDA has no such field
            ("spec.replicas", 3),
            (
                "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies.0.periodSeconds",
                0,
            ),
            (
                "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds",
                3601,
            ),
            ("spec.triggers", []),
        ],
    )
    def test_rejects_a_wrong_field(
        self, keda_schema: jsonschema.Draft202012Validator, path: str, value: Any
    ) -> None:
        obj = keda()
        _set(obj, path, value)
        with pytest.raises(jsonschema.ValidationError):
            keda_schema.validate(obj)

    @pytest.mark.parametrize(
        "path",
        [
            "spec.scaleTargetRef.name",
            "spec.triggers",
            "spec.triggers.0.type",
            "spec.triggers.0.metadata",
            "spec.triggers.0.metadata.query",
            "spec.triggers.0.metadata.threshold",
            "spec.triggers.0.metadata.serverAddress",
        ],
    )
    def test_rejects_a_missing_field(
        self, keda_schema: jsonschema.Draft202012Validator, path: str
    ) -> None:
        obj = keda()
        _delete(obj, path)
        with pytest.raises(jsonschema.ValidationError):
            keda_schema.validate(obj)
