"""Observed KV capacity in a whole reconcile: when pods are read, what status and Events
say, what is written to the calibration ConfigMap, and what the next plan reads from it.

Driven like test_reconcile.py: a recording client, live children from earlier applies,
and an injected capacity reader standing in for ``scaling.capacity_per_pod``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from test_reconcile import RecordingClient, applied_by_us, body, remembered

from llama_operator import api, reconcile
from llama_operator.clients import k8s
from llama_operator.operations import capacity
from llama_operator.planning import config, planner

SETTINGS = config.OperatorConfig(
    pools=config.default_pools(),
    security=config.Security(defaultAuthMode="optional"),
    calibration=config.Calibration(namespace="llama-operator", configMap="cal"),
)
SPEC = {
    "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
    "license": {"accept": True},
    "placement": {"pools": ["l4"]},
}
NOW = "2026-01-01T00:00:00Z"
KEY = "meta-llama--Llama-3.1-8B-Instruct_vllm-0.34.0_NVIDIA-L4"


class Client(RecordingClient):
    """Also the calibration ConfigMap: merge patches (404 while it does not exist), gets."""

    def __init__(self, config_map: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config_map = config_map
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.gets: list[tuple[str, str]] = []

    def merge_patch(self, **kwargs: Any) -> dict[str, Any]:
        self.patches.append((kwargs["kind"], kwargs["name"], kwargs["body"]))
        if kwargs["kind"] == "ConfigMap":
            if self.config_map is None:
                raise k8s.APIError(404, "NotFound", "configmaps not found")
            self.config_map.setdefault("data", {}).update(kwargs["body"]["data"])
            return self.config_map
        return {}

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "cal":
            self.config_map = copy.deepcopy(dict(obj))
        return super().apply(obj)

    def get(
        self, *, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        self.gets.append((kind, name))
        return self.config_map


class Reader:
    """Stands in for scaling.capacity_per_pod: the pods' readings, when due."""

    def __init__(self, readings: dict[str, capacity.PodCapacity | None]) -> None:
        self.readings = readings
        self.calls = 0

    def __call__(
        self, namespace: str, name: str, plan: api.Plan
    ) -> dict[str, capacity.PodCapacity | None] | None:
        self.calls += 1
        return self.readings if capacity.due(plan, ready=self.readings) else None


def run(
    status: dict[str, Any] | None = None,
    *,
    live: dict[tuple[str, str], dict[str, Any]] | None = None,
    client: Client | None = None,
    reader: Reader | None = None,
    settings: config.OperatorConfig = SETTINGS,
    spec: dict[str, Any] | None = None,
    name: str = "chat",
) -> tuple[reconcile.Outcome, Client]:
    client = client or Client()
    b = body(spec or SPEC, status)
    b["metadata"]["name"] = name
    outcome = reconcile.reconcile(
        body=b,
        settings=settings,
        cluster=reconcile.Cluster(
            client=client,  # type: ignore[arg-type]
            lookup=lambda kind, ns, obj_name: (live or {}).get((kind, obj_name)),
        ),
        clock=reconcile.Clock(now=NOW, monotonic=lambda: 1000.0),
        readers=reconcile.Readers(
            kv_capacity=reader,
            corrections=reconcile.corrections_reader(client, settings),  # type: ignore[arg-type]
        ),
        memory=reconcile.Memory(unwatched=remembered(live), generations=applied_by_us(live)),
    )
    return outcome, client


def serving(
    *, tokens: int | None = None, rolled_out: bool = True
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """Status and live children of an endpoint whose one pod is ready; ``tokens``: the
    plan's kvCacheTokens set to that (whatever the planner promises today)."""
    outcome, client = run()
    status = copy.deepcopy(outcome.status_patch)
    if tokens is not None:
        status["plan"]["kvCacheTokens"] = tokens
    live = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in client.applied}
    deployment = live["Deployment", "chat-primary"]
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1 if rolled_out else 0,
        "observedGeneration": 1,
    }
    return status, live


def merged(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` after a JSON merge patch (what the API server stores)."""
    result = copy.deepcopy(dict(status))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def condition(status: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    return dict(found[0]) if found else None


LOW = {"chat-primary-abc-1": capacity.PodCapacity(28160, 440, 64)}
FULL = {"chat-primary-abc-1": capacity.PodCapacity(31040, 485, 64)}


class TestObservation:
    def test_a_shortfall_is_status_a_warning_and_a_recorded_correction(self) -> None:
        status, live = serving(tokens=31040)
        reader = Reader(LOW)
        outcome, client = run(status, live=live, reader=reader)
        after = merged(status, outcome.status_patch)
        observed = after["plan"]["observed"]
        assert observed == {
            "kvCacheTokens": 28160,
            "blockSize": 64,
            "gpuBlocks": 440,
            "pods": ["chat-primary-abc-1"],
            "plannedKVCacheTokens": 31040,
            "ratio": 0.907,
            "correction": 0.907,
            "recordedIn": f"llama-operator/cal, key {KEY}",
            "engineVersion": "0.34.0",
            "observedAt": NOW,
        }
        found = condition(after, "KVCacheCapacity")
        assert found is not None
        assert (found["status"], found["reason"]) == ("False", "BelowPlan")
        (warning,) = [e for e in outcome.events if e.reason == "BelowPlan"]
        assert warning.type == "Warning"
        assert warning.message == found["message"]
        # Created by server-side apply (the merge patch found nothing), one key.
        assert client.config_map is not None
        assert client.config_map["metadata"]["namespace"] == "llama-operator"
        value = json.loads(client.config_map["data"][KEY])
        assert (value["ratio"], value["plannedTokens"], value["observedTokens"]) == (
            0.907,
            31040,
            28160,
        )
        assert value["from"] == "ai/chat"
        # The plan stays: no Planned event, no child applied for it.
        assert "Planned" not in [e.reason for e in outcome.events]

    def test_an_existing_configmap_gets_one_key_merged_in(self) -> None:
        status, live = serving(tokens=31040)
        client = Client({"metadata": {"name": "cal"}, "data": {"other-key": "{}"}})
        run(status, live=live, reader=Reader(LOW), client=client)
        ((kind, name, patch),) = client.patches
        assert (kind, name, list(patch["data"])) == ("ConfigMap", "cal", [KEY])
        assert client.config_map is not None
        assert set(client.config_map["data"]) == {"other-key", KEY}
        assert [o["kind"] for o in client.applied if o["kind"] == "ConfigMap"] == []

    def test_the_same_pods_are_not_read_or_recorded_again(self) -> None:
        status, live = serving(tokens=31040)
        first, client = run(status, live=live, reader=Reader(LOW))
        status = merged(status, first.status_patch)
        written = (len(client.patches), len(client.applied))
        reader = Reader(LOW)
        again, client = run(status, live=live, reader=reader, client=client)
        assert reader.calls == 1  # asked, and answered "not due" without reading
        assert "plan" not in again.status_patch
        assert [e.reason for e in again.events] == []
        assert (len(client.patches), len(client.applied)) == written  # nothing written

    def test_a_new_pod_with_the_same_shortfall_rewrites_nothing(self) -> None:
        status, live = serving(tokens=31040)
        first, client = run(status, live=live, reader=Reader(LOW))
        status = merged(status, first.status_patch)
        patches = len(client.patches)
        replaced = {"chat-primary-abc-2": capacity.PodCapacity(28160, 440, 64)}
        again, client = run(status, live=live, reader=Reader(replaced), client=client)
        after = merged(status, again.status_patch)
        assert after["plan"]["observed"]["pods"] == ["chat-primary-abc-2"]
        assert after["plan"]["observed"]["recordedIn"] == f"llama-operator/cal, key {KEY}"
        assert len(client.patches) == patches  # the same correction: no write
        assert [e.reason for e in again.events] == []  # the same message: no new Warning

    def test_as_planned_records_nothing(self) -> None:
        status, live = serving(tokens=31040)
        outcome, client = run(status, live=live, reader=Reader(FULL))
        after = merged(status, outcome.status_patch)
        found = condition(after, "KVCacheCapacity")
        assert found is not None
        assert (found["status"], found["reason"]) == ("True", "AsPlanned")
        assert "correction" not in after["plan"]["observed"]
        assert client.patches == []
        assert client.config_map is None

    def test_not_read_before_the_primary_is_rolled_out(self) -> None:
        status, live = serving(tokens=31040, rolled_out=False)
        reader = Reader(LOW)
        outcome, _ = run(status, live=live, reader=reader)
        assert reader.calls == 0
        assert condition(merged(status, outcome.status_patch), "KVCacheCapacity") is None

    def test_without_a_calibration_namespace_nothing_is_recorded(self) -> None:
        settings = SETTINGS.model_copy(update={"calibration": config.Calibration()})
        status, live = serving(tokens=31040)
        outcome, client = run(status, live=live, reader=Reader(LOW), settings=settings)
        after = merged(status, outcome.status_patch)
        found = condition(after, "KVCacheCapacity")
        assert found is not None
        assert found["status"] == "False"
        assert (
            "No correction was recorded: the operator config names no calibration"
            in (found["message"])
        )
        assert "recordedIn" not in after["plan"]["observed"]
        assert client.patches == []
        assert client.gets == []

    def test_engine_args_that_override_the_sizing_record_nothing(self) -> None:
        spec = {**SPEC, "engineArgs": ["--gpu-memory-utilization=0.7"]}
        outcome, client = run(spec=spec)
        status = copy.deepcopy(outcome.status_patch)
        status["plan"]["kvCacheTokens"] = 31040
        live = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in client.applied}
        live["Deployment", "chat-primary"]["metadata"]["generation"] = 1
        live["Deployment", "chat-primary"]["status"] = {
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "observedGeneration": 1,
        }
        again, client = run(status, live=live, reader=Reader(LOW), spec=spec)
        found = condition(merged(status, again.status_patch), "KVCacheCapacity")
        assert found is not None
        assert "spec.engineArgs override the plan's sizing" in found["message"]
        assert client.config_map is None

    def test_tgi_says_it_cannot_be_checked(self) -> None:
        outcome, _ = run(spec={**SPEC, "engine": "tgi"}, reader=Reader(LOW))
        found = condition(outcome.status_patch, "KVCacheCapacity")
        assert found is not None
        assert (found["status"], found["reason"]) == ("Unknown", "NotAvailable")
        assert [e for e in outcome.events if e.reason == "NotAvailable"] == []  # no Warning

    def test_back_as_planned_is_a_normal_event(self) -> None:
        status, live = serving(tokens=31040)
        first, client = run(status, live=live, reader=Reader(LOW))
        status = merged(status, first.status_patch)
        replaced = {"chat-primary-abc-9": capacity.PodCapacity(31040, 485, 64)}
        again, _ = run(status, live=live, reader=Reader(replaced), client=client)
        (event,) = [e for e in again.events if e.reason == "AsPlanned"]
        assert event.type == "Normal"


class TestCorrectionsInPlanning:
    def test_the_next_plan_reads_the_corrections_by_gpu_product(self) -> None:
        recorded = capacity.Correction(
            model="meta-llama/Llama-3.1-8B-Instruct",
            engine="vllm",
            engine_version="0.34.0",
            gpu_product="NVIDIA-L4",
            ratio=0.9,
            planned_tokens=31040,
            applied=None,
            observed_tokens=27936,
            observed_at=NOW,
            source="ai/chat",
        )
        seen: list[planner.Request] = []
        original = planner.plan

        def spy(request: planner.Request) -> api.Plan:
            seen.append(request)
            return original(request)

        client = Client({"data": {recorded.key: recorded.value()}})
        try:
            planner.plan = spy  # type: ignore[assignment]
            run(client=client, name="second")
        finally:
            planner.plan = original  # type: ignore[assignment]
        assert seen
        assert all(r.kv_corrections == {"NVIDIA-L4": 0.9} for r in seen)
        assert client.gets == [("ConfigMap", "cal")]

    def test_a_kept_plan_reads_no_corrections(self) -> None:
        status, live = serving(tokens=31040)
        client = Client({"data": {}})
        outcome, client = run(status, live=live, client=client)
        assert client.gets == []  # the plan in status was kept: no correction can move it
        assert "plan" not in outcome.status_patch
