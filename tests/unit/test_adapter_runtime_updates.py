"""spec.adapterUpdates: runtime loading decided purely. The calls that bring a pod to the
plan's adapters (operations.adapter_loading), status and AdaptersReady from the pods'
states, the slots planned from the spec (planning.adapters), the engine started with room
and the switch but no adapter (serving.engines.lora), a kept plan and an unchanged pod
template when the list changes (reconcile.desired_state), and the spec's refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llama_operator import api, reconcile
from llama_operator.api import conditions
from llama_operator.operations import adapter_loading, rollout
from llama_operator.planning import adapters as planning_adapters
from llama_operator.planning import config, engine_profiles, facts
from llama_operator.reconcile import adapter_loading as phase
from llama_operator.reconcile import observe, rollout_step
from llama_operator.serving import builders
from llama_operator.serving.engines import lora

BASE = "meta-llama/Llama-3.1-8B-Instruct"
VLLM = engine_profiles.get("vllm", "0.34.0")
TGI = engine_profiles.get("tgi", "3.3.7")


def plan_adapter(name: str, source: str, rank: int = 16) -> api.PlanAdapter:
    return api.PlanAdapter(
        name=name, model=name, source=source, rank=rank, targetModules=["q_proj"]
    )


SQL = plan_adapter("sql", "/models/sql")
CHAT = plan_adapter("chat", "example-org/chat-lora")


# The calls.


def test_a_pod_gets_what_is_missing_loses_what_is_not_wanted_and_reloads_a_new_version() -> None:
    loaded = {"old": "/models/old", "sql": "/models/sql-v1", "zeta": "/models/z"}
    assert adapter_loading.changes([SQL, CHAT], loaded) == [
        # Unloads first (sorted), then the plan's order.
        adapter_loading.Change("unload", "old"),
        adapter_loading.Change("unload", "zeta"),
        adapter_loading.Change("reload", "sql", "/models/sql"),
        adapter_loading.Change("load", "chat", "example-org/chat-lora"),
    ]


def test_a_pod_that_holds_the_plan_needs_no_call() -> None:
    loaded = {"sql": "/models/sql", "chat": "example-org/chat-lora"}
    assert adapter_loading.changes([SQL, CHAT], loaded) == []
    assert adapter_loading.changes([], {}) == []


def test_only_the_calls_that_succeeded_change_what_a_pod_holds() -> None:
    done = [
        (adapter_loading.Change("unload", "old"), None),
        (adapter_loading.Change("load", "sql", "/models/sql"), None),
        (adapter_loading.Change("load", "chat", "example-org/chat-lora"), "HTTP 400: bad"),
        (adapter_loading.Change("reload", "x", "/models/x2"), None),
    ]
    after = adapter_loading.after({"old": "/o", "x": "/models/x1"}, done)
    assert after == {"sql": "/models/sql", "x": "/models/x2"}


# Status and AdaptersReady.


def served(*names: str) -> list[api.AdapterStatus]:
    return [api.AdapterStatus(name=name, served=True) for name in names]


def pod(*loaded: api.PlanAdapter, **extra: Any) -> adapter_loading.PodState:
    return adapter_loading.PodState(
        variant=builders.PRIMARY, loaded={a.name: a.source for a in loaded}, **extra
    )


def test_every_adapter_on_every_ready_pod_is_all_loaded() -> None:
    shown, check = adapter_loading.summary(
        served("sql", "chat"),
        wanted=[SQL, CHAT],
        pods={"p-0": pod(SQL, CHAT), "p-1": pod(SQL, CHAT)},
    )
    assert [(s.name, s.loadedPods) for s in shown] == [("sql", 2), ("chat", 2)]
    assert check == conditions.Check(
        conditions.ADAPTERS_READY,
        "True",
        "AllLoaded",
        "every adapter is loaded on all 2 ready pod(s): sql, chat",
    )


def test_a_pod_still_without_one_is_loading_and_says_which() -> None:
    shown, check = adapter_loading.summary(
        served("sql", "chat"), wanted=[SQL, CHAT], pods={"p-0": pod(SQL, CHAT), "p-1": pod(SQL)}
    )
    assert [(s.name, s.loadedPods) for s in shown] == [("sql", 2), ("chat", 1)]
    assert check is not None
    assert (check.status, check.reason) == ("False", "AdapterLoading")
    assert "not yet loaded everywhere: chat" in check.message


def test_an_old_version_does_not_count_as_loaded() -> None:
    old = adapter_loading.PodState(variant=builders.PRIMARY, loaded={"sql": "/models/sql-v1"})
    shown, check = adapter_loading.summary(served("sql"), wanted=[SQL], pods={"p-0": old})
    assert shown[0].loadedPods == 0
    assert check is not None
    assert check.reason == "AdapterLoading"


def test_a_refused_load_names_the_pod_the_adapter_and_the_engine_message() -> None:
    failing = pod(SQL, failures=(("chat", "HTTP 400: No adapter found for /x"),))
    _, check = adapter_loading.summary(
        served("sql", "chat"), wanted=[SQL, CHAT], pods={"p-0": failing}
    )
    assert check is not None
    assert (check.status, check.reason) == ("False", "AdapterLoadFailed")
    assert "pod p-0: chat: HTTP 400: No adapter found for /x" in check.message


def test_a_refused_listing_is_a_failure() -> None:
    refused = adapter_loading.PodState(
        variant=builders.PRIMARY, loaded=None, unreadable="HTTP 401: the API key was refused"
    )
    _, check = adapter_loading.summary(served("sql"), wanted=[SQL], pods={"p-0": refused})
    assert check is not None
    assert check.reason == "AdapterLoadFailed"
    assert "pod p-0: HTTP 401: the API key was refused" in check.message


def test_an_unreadable_pod_or_none_at_all_is_loading() -> None:
    unread = adapter_loading.PodState(
        variant=builders.PRIMARY, loaded=None, unreadable="no answer within 5 s"
    )
    _, check = adapter_loading.summary(served("sql"), wanted=[SQL], pods={"p-0": unread})
    assert check is not None
    assert check.reason == "AdapterLoading"
    assert "pod p-0: no answer within 5 s" in check.message
    _, check = adapter_loading.summary(served("sql"), wanted=[SQL], pods={})
    assert check is not None
    assert "no ready serving pod yet" in check.message


def test_a_held_back_adapter_leaves_the_condition_to_the_decision() -> None:
    held = [*served("sql"), api.AdapterStatus(name="nc", served=False, reason="LicenseNotAccepted")]
    shown, check = adapter_loading.summary(held, wanted=[SQL], pods={"p-0": pod(SQL)})
    assert check is None
    assert [(s.name, s.loadedPods) for s in shown] == [("sql", 1), ("nc", None)]


def test_an_adapter_fits_a_variant_whose_slots_hold_its_rank() -> None:
    def with_lora(rank: int, runtime: bool) -> api.Plan:
        return api.Plan.model_validate(
            {
                **PLAN_FIELDS,
                "lora": {
                    "maxLoras": 4,
                    "maxLoraRank": rank,
                    "maxCpuLoras": 32,
                    "loraGiB": 0.3,
                    "runtime": runtime,
                },
            }
        )

    assert adapter_loading.fits(SQL, with_lora(16, True))
    assert not adapter_loading.fits(plan_adapter("big", "/b", rank=64), with_lora(16, True))
    assert not adapter_loading.fits(SQL, with_lora(16, False))


PLAN_FIELDS: dict[str, Any] = {
    "engine": "vllm",
    "pool": "l4",
    "gpuProduct": "NVIDIA-L4",
    "gpusPerReplica": 1,
    "tensorParallel": 1,
    "quantization": "none",
    "dtype": "bfloat16",
    "maxModelLen": 8192,
    "maxConcurrentSequences": 4,
    "gpuMemoryUtilization": 0.9,
    "weightsGiB": 15.0,
    "estimatedGPUMemoryGiB": 20.0,
    "kvCacheGiB": 2.0,
    "reason": "test",
}


# The slots.


def adapter_facts(name: str, rank: int) -> facts.AdapterFacts:
    return facts.AdapterFacts(
        name=name, source=f"/models/{name}", revision=None, rank=rank, target_modules=("q_proj",)
    )


def test_runtime_slots_come_from_the_spec_not_the_list() -> None:
    updates = api.AdapterUpdates(mode="Runtime")
    none = planning_adapters.load([], profile=VLLM, updates=updates)
    one = planning_adapters.load([adapter_facts("a", 8)], profile=VLLM, updates=updates)
    assert none is not None
    assert one is not None
    # vLLM's default rank (16) and the default slots, whether 0 or 1 adapter is listed.
    assert (none.max_loras, none.max_rank, none.runtime) == (api.DEFAULT_RUNTIME_SLOTS, 16, True)
    assert (one.max_loras, one.max_rank) == (none.max_loras, none.max_rank)
    # Unset maxRank grows to the largest adapter, rounded up to a rank vLLM takes.
    big = planning_adapters.load([adapter_facts("b", 40)], profile=VLLM, updates=updates)
    assert big is not None
    assert big.max_rank == 64
    fixed = api.AdapterUpdates(mode="Runtime", gpuSlots=2, maxRank=30)
    chosen = planning_adapters.load([], profile=VLLM, updates=fixed)
    assert chosen is not None
    assert (chosen.max_loras, chosen.max_rank) == (2, 32)


def test_a_fixed_max_rank_holds_back_a_larger_adapter() -> None:
    fixed = api.AdapterUpdates(mode="Runtime", maxRank=16)
    why = planning_adapters.unservable(adapter_facts("b", 64), profile=VLLM, updates=fixed)
    assert why is not None
    assert why[0] == "AdapterRankUnsupported"
    assert "spec.adapterUpdates.maxRank" in why[1]
    assert planning_adapters.unservable(adapter_facts("s", 16), profile=VLLM, updates=fixed) is None


def test_only_an_engine_with_the_endpoints_loads_at_runtime() -> None:
    updates = api.AdapterUpdates(mode="Runtime")
    assert planning_adapters.runtime(updates, profile=VLLM) is updates
    assert planning_adapters.runtime(updates, profile=TGI) is None
    assert planning_adapters.runtime(api.AdapterUpdates(), profile=VLLM) is None
    assert planning_adapters.runtime(None, profile=VLLM) is None


# The engine's start.


def runtime_plan(*adapters: api.PlanAdapter) -> api.Plan:
    return api.Plan.model_validate(
        {
            **PLAN_FIELDS,
            "adapters": [a.model_dump() for a in adapters],
            "lora": {
                "maxLoras": 4,
                "maxLoraRank": 16,
                "maxCpuLoras": 32,
                "loraGiB": 0.3,
                "runtime": True,
            },
        }
    )


def test_runtime_pods_start_with_the_slots_and_the_switch_and_no_adapter() -> None:
    for listed in ((), (SQL, CHAT)):
        plan = runtime_plan(*listed)
        assert lora.args(plan=plan, profile=VLLM) == [
            "--enable-lora",
            "--max-loras",
            "4",
            "--max-lora-rank",
            "16",
            "--max-cpu-loras",
            "32",
        ]
        assert lora.env(plan=plan, profile=VLLM) == [
            {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "true"}
        ]


# The plan phase.

SPEC: dict[str, Any] = {
    "model": {"id": BASE},
    "license": {"accept": True},
    "auth": {"apiKeySecretRef": {"name": "chat-key"}},
}
SQL_SPEC = {"name": "sql", "path": "/models/sql", "rank": 16, "targetModules": ["q_proj"]}
CHAT_SPEC = {"name": "chat", "path": "/models/chat", "rank": 8, "targetModules": ["v_proj"]}


def desired(spec: dict[str, Any], keep: api.Plan | None = None) -> reconcile.Desired:
    return reconcile.desired(
        name="chat",
        namespace="ai",
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        raw_spec=spec,
        settings=config.OperatorConfig(),
        available=config.default_pools(),
        fetch=None,
        keep=keep,
    )


def primary_template(wanted: reconcile.Desired) -> dict[str, Any]:
    deployment = next(
        o
        for o in wanted.objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-primary")
    )
    return dict(deployment["spec"]["template"])


@pytest.mark.parametrize("mode", ["Runtime", "Rollout"])
def test_adding_an_adapter_changes_the_template_only_in_rollout_mode(mode: str) -> None:
    before = desired({**SPEC, "adapterUpdates": {"mode": mode}, "adapters": [SQL_SPEC]})
    after = desired(
        {**SPEC, "adapterUpdates": {"mode": mode}, "adapters": [SQL_SPEC, CHAT_SPEC]},
        keep=before.plan,
    )
    assert [a.name for a in after.plan.adapters] == ["sql", "chat"]
    same = primary_template(before) == primary_template(after)
    assert same is (mode == "Runtime")
    if mode == "Runtime":
        # The plan stands (its inputs are the slots, not the list), listing the new adapter.
        assert after.plan.inputsHash == before.plan.inputsHash
        assert after.plan.lora == before.plan.lora
        args = " ".join(primary_template(after)["spec"]["containers"][0]["args"])
        assert "--lora-modules" not in args


def test_runtime_on_tgi_rolls_out_and_says_so() -> None:
    wanted = desired(
        {**SPEC, "engine": "tgi", "adapterUpdates": {"mode": "Runtime"}, "adapters": [SQL_SPEC]}
    )
    assert wanted.plan.lora is not None
    assert not wanted.plan.lora.runtime
    check = wanted.adapter_decisions.check
    assert check is not None
    assert check.status == "True"
    assert "TGI loads adapters only at start" in check.message
    env = primary_template(wanted)["spec"]["containers"][0]["env"]
    assert {"name": "LORA_ADAPTERS", "value": "sql=/models/sql"} in env


def test_the_plan_inputs_are_the_slots_with_runtime_updates() -> None:
    runtime = api.parse_spec(
        {**SPEC, "adapterUpdates": {"mode": "Runtime"}, "adapters": [SQL_SPEC]}
    )
    more = api.parse_spec(
        {**SPEC, "adapterUpdates": {"mode": "Runtime"}, "adapters": [SQL_SPEC, CHAT_SPEC]}
    )
    slots = api.parse_spec(
        {**SPEC, "adapterUpdates": {"mode": "Runtime", "gpuSlots": 8}, "adapters": [SQL_SPEC]}
    )
    assert api.plan_inputs_hash(runtime) == api.plan_inputs_hash(more)
    assert api.plan_inputs_hash(runtime) != api.plan_inputs_hash(slots)


# The spec's refusals.


def test_runtime_needs_an_api_key() -> None:
    with pytest.raises(api.SpecError) as refused:
        api.parse_spec(
            {
                "model": {"id": BASE},
                "auth": {"mode": "optional"},
                "adapterUpdates": {"mode": "Runtime"},
            }
        )
    assert refused.value.field == "spec.adapterUpdates.mode"
    assert "spec.auth.apiKeySecretRef" in str(refused.value)


@pytest.mark.parametrize(
    "arg",
    [
        "--api-server-count=2",
        "--api-s",
        "-asc",
        "--data-parallel-size=2",
        "-dp",
        "--data_parallel_si",
    ],
)
def test_runtime_refuses_several_api_servers(arg: str) -> None:
    with pytest.raises(api.SpecError) as refused:
        api.parse_spec({**SPEC, "adapterUpdates": {"mode": "Runtime"}, "engineArgs": [arg]})
    assert refused.value.field == "spec.engineArgs[0]"


@pytest.mark.parametrize("arg", ["--api-key", "--data-parallel-start-rank=0", "--max-loras=2"])
def test_other_flags_are_not_taken_for_several_api_servers(arg: str) -> None:
    assert re.search(api.SEVERAL_API_SERVERS_PATTERN, arg) is None


def test_every_vllm_release_can_and_tgi_cannot_load_at_runtime() -> None:
    for version in VLLM_VERSIONS:
        runtime = engine_profiles.get("vllm", version).lora.runtime
        assert runtime is not None
        assert runtime.env == "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
    assert TGI.lora.runtime is None


VLLM_VERSIONS = ("0.24.0", "0.27.1", "0.28.0", "0.34.0")


# A new version of an adapter: canaried by weight, the list still not in the template.

SQL_V2 = {**SQL_SPEC, "path": "/models/sql-v2"}


def runtime_spec(*adapters: dict[str, Any]) -> dict[str, Any]:
    return {**SPEC, "adapterUpdates": {"mode": "Runtime"}, "adapters": list(adapters)}


def adapters_revision(wanted: reconcile.Desired) -> str | None:
    annotations = primary_template(wanted)["metadata"]["annotations"]
    return annotations.get(builders.ADAPTERS_REVISION_ANNOTATION)


def test_a_new_version_changes_the_template_adding_and_removing_do_not() -> None:
    first = desired(runtime_spec(SQL_SPEC))
    assert first.plan.lora is not None
    assert first.plan.lora.revision is None
    assert adapters_revision(first) is None
    added = desired(runtime_spec(SQL_SPEC, CHAT_SPEC), keep=first.plan)
    removed = desired(runtime_spec(CHAT_SPEC), keep=added.plan)
    assert primary_template(added) == primary_template(first)
    assert primary_template(removed) == primary_template(first)

    # sql at another path: a new version, so a new revision in the template (a rollout).
    new_version = desired(runtime_spec(SQL_V2, CHAT_SPEC), keep=added.plan)
    assert new_version.plan.lora is not None
    revision = new_version.plan.lora.revision
    assert revision is not None
    assert adapters_revision(new_version) == revision
    assert primary_template(new_version) != primary_template(added)
    # The same change decided again (the next reconcile, or after a rollback with the spec
    # unchanged) gives the same revision: the canary is not restarted, nor retried.
    again = desired(runtime_spec(SQL_V2, CHAT_SPEC), keep=added.plan)
    assert again.plan.lora is not None
    assert again.plan.lora.revision == revision
    # Once promoted (the canary's plan is status' plan), the revision stays, and an adapter
    # added afterwards keeps it too.
    promoted = desired(
        runtime_spec(SQL_V2, CHAT_SPEC, {**CHAT_SPEC, "name": "more"}), keep=new_version.plan
    )
    assert promoted.plan.lora is not None
    assert promoted.plan.lora.revision == revision
    assert primary_template(promoted) == primary_template(new_version)


def test_during_a_canary_the_primary_keeps_its_versions_and_gets_additions() -> None:
    stable = runtime_plan(SQL)
    new_sql = plan_adapter("sql", "/models/sql-v2")
    wanted = [new_sql, CHAT]
    assert adapter_loading.held_by(wanted, running=stable) == (SQL, CHAT)
    assert adapter_loading.held_by(wanted, running=runtime_plan(new_sql, CHAT)) == (new_sql, CHAT)
    # Each pod is judged by what its variant should hold: both hold theirs, all loaded.
    held = {
        builders.PRIMARY: adapter_loading.held_by(wanted, running=stable),
        builders.CANARY: tuple(wanted),
    }
    pods = {
        "p-0": pod(SQL, CHAT),
        "c-0": adapter_loading.PodState(
            variant=builders.CANARY, loaded={"sql": "/models/sql-v2", "chat": CHAT.source}
        ),
    }
    shown, check = adapter_loading.summary(
        served("sql", "chat"), wanted=wanted, pods=pods, held=held
    )
    assert [(s.name, s.loadedPods) for s in shown] == [("sql", 2), ("chat", 2)]
    assert check is not None
    assert check.reason == "AllLoaded"


def test_a_primary_still_on_a_rollout_template_is_left_alone() -> None:
    """Switching to Runtime is a template change, canaried: while it runs, the stable
    primary's engine has no load/unload endpoint, so only the canary is asked."""
    wanted = desired(runtime_spec(SQL_SPEC))
    assert wanted.plan.lora is not None
    stable = wanted.plan.model_copy(
        update={"lora": wanted.plan.lora.model_copy(update={"runtime": False})}
    )
    asked: list[reconcile.AdapterLoadRequest] = []

    def load(request: reconcile.AdapterLoadRequest) -> dict[str, adapter_loading.PodState]:
        asked.append(request)
        return {}

    body = {
        "metadata": {"name": "chat", "namespace": "ai", "uid": "u"},
        "spec": runtime_spec(SQL_SPEC),
    }
    seen = observe.read(
        body,
        meta=observe.meta_of(body),
        settings=config.OperatorConfig(),
        cluster=reconcile.Cluster(client=None, lookup=lambda *_: None),  # type: ignore[arg-type]
    )
    canary = rollout_step.Step(decision=rollout.Decision(mode="canary", status=None))
    readers = reconcile.Readers(adapter_load=load)
    phase.load_adapters(seen, wanted, step=canary, running=stable, readers=readers)
    assert [variant for variant, _ in asked[0].variants] == ["canary"]
    # Without a canary, nothing runs at runtime yet: nobody is asked.
    asked.clear()
    idle = rollout_step.Step(decision=None)
    assert phase.load_adapters(seen, wanted, step=idle, running=stable, readers=readers) == (
        phase.NOTHING
    )
    assert asked == []
