"""spec.adapters resolved and decided: the Hub client reading adapter_config.json and the
card (against the fixture Hub on 127.0.0.1), the pure servable/held decision
(operations.adapters), and the plan phase passing only the servable ones to the planner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import hubserver
from llama_operator import api, reconcile
from llama_operator.api import conditions
from llama_operator.clients import hub
from llama_operator.licensing import terms
from llama_operator.operations import adapters
from llama_operator.planning import config

BASE = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA31 = terms.REGISTRY["llama3.1"]


class NoSecrets:
    """A k8s.Client stand-in: these adapters reference no token, so nothing is read."""

    def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
        raise AssertionError("no Secret may be read for an adapter without a token")


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[hubserver.HubFixture]:
    hub.clear_cache()
    with hubserver.serving(monkeypatch) as running:
        yield running
    hub.clear_cache()


def adapter(**fields: Any) -> api.Adapter:
    return api.Adapter.model_validate(
        {"name": "sql", "id": "example-org/llama31-sql-lora", **fields}
    )


def decide(*pairs: tuple[api.Adapter, adapters.Found], model_id: str = BASE) -> adapters.Decisions:
    return adapters.decide(
        adapters=[a for a, _ in pairs],
        found=[f for _, f in pairs],
        model_id=model_id,
        base_license=LLAMA31,
    )


# The Hub client.


def test_adapter_config_is_read_from_the_hub(fake_hub: hubserver.HubFixture) -> None:
    found = hub.adapter_config(repo_id="example-org/llama31-sql-lora", revision="main", token=None)
    assert found == hub.AdapterConfig(
        rank=16, target_modules=("k_proj", "o_proj", "q_proj", "v_proj"), base_model=BASE
    )
    # Cached: a second reconcile asks the Hub nothing.
    before = len(fake_hub.seen())
    hub.adapter_config(repo_id="example-org/llama31-sql-lora", revision="main", token=None)
    assert len(fake_hub.seen()) == before


@pytest.mark.parametrize(
    ("repo_id", "revision", "says"),
    [
        ("example-org/no-such-adapter", "main", "fix spec.adapters[].id"),
        ("example-org/tiny-llama", "main", "has no adapter_config.json"),
        ("example-org/llama31-sql-lora", "v9", "fix spec.adapters[].revision"),
        ("meta-llama/Llama-3.1-8B", "main", "spec.adapters[].tokenSecretRef"),
    ],
)
def test_adapter_config_errors_name_the_field(
    fake_hub: hubserver.HubFixture, repo_id: str, revision: str, says: str
) -> None:
    with pytest.raises(hub.HubError, match=r".*") as caught:
        hub.adapter_config(repo_id=repo_id, revision=revision, token=None)
    assert says in str(caught.value)


def test_offline_the_spec_must_give_the_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    hub.clear_cache()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError, match="set rank and targetModules"):
        hub.adapter_config(repo_id="example-org/x", revision="main", token=None)
    hub.clear_cache()


def test_adapter_facts_combine_the_config_and_the_card(fake_hub: hubserver.HubFixture) -> None:
    found = reconcile.adapter_facts(adapter(), token=lambda: None)
    assert (found.rank, found.license, found.error) == (16, "llama3.1", None)
    assert found.base_models == (BASE,)
    # A local path in the config, the repository in the card: both kept, config first.
    support = reconcile.adapter_facts(
        adapter(id="example-org/llama31-support-lora"), token=lambda: None
    )
    assert support.base_models == ("/home/trainer/models/llama-3.1-8b-instruct", BASE)
    # A path adapter is not looked up at all.
    assert (
        reconcile.adapter_facts(
            api.Adapter(name="local", path="/models/lora", rank=8, targetModules=["q_proj"]),
            token=lambda: None,
        )
        == adapters.Found()
    )


def test_a_hub_failure_is_kept_as_the_adapters_error(fake_hub: hubserver.HubFixture) -> None:
    fake_hub.down = True
    found = reconcile.adapter_facts(adapter(id="example-org/gone-lora"), token=lambda: None)
    assert found.error is not None
    assert "HTTP 503" in found.error


# The decision.


def test_every_adapter_served_is_all_served() -> None:
    sql = adapters.Found(
        rank=16, target_modules=("q_proj",), base_models=(BASE,), license="llama3.1"
    )
    decided = decide(
        (adapter(), sql),
        (
            adapter(name="local", id=None, path="/m/l", rank=8, targetModules=["v_proj"]),
            adapters.Found(),
        ),
    )
    assert [a.name for a in decided.servable] == ["sql", "local"]
    assert decided.servable[0].revision == "main"
    assert decided.servable[1].revision is None
    assert decided.check == conditions.Check(
        "AdaptersReady", "True", "AllServed", "every adapter is served: sql, local"
    )
    assert decided.each[1].status.message.endswith("not checked")


def test_spec_rank_and_target_modules_override_the_hub() -> None:
    found = adapters.Found(rank=16, target_modules=("q_proj",), base_models=(BASE,))
    decided = decide((adapter(rank=64, targetModules=["o_proj", "down_proj"]), found))
    assert (decided.servable[0].rank, decided.servable[0].target_modules) == (
        64,
        ("o_proj", "down_proj"),
    )


def test_an_adapter_of_another_base_is_held_and_the_others_served() -> None:
    other = adapters.Found(
        rank=16, target_modules=("q_proj",), base_models=("meta-llama/Llama-3.2-3B-Instruct",)
    )
    good = adapters.Found(rank=8, target_modules=("q_proj",), base_models=(BASE,))
    decided = decide((adapter(name="small"), other), (adapter(), good))
    assert [a.name for a in decided.servable] == ["sql"]
    held = decided.each[0].status
    assert (held.served, held.reason) == (False, "BaseModelMismatch")
    assert decided.check is not None
    assert decided.check.status == "False"
    assert decided.check.reason == "BaseModelMismatch"
    assert "spec.adapters[0] (small)" in decided.check.message


def test_a_published_variant_of_the_same_shape_matches() -> None:
    trained = adapters.Found(
        rank=8, target_modules=("q_proj",), base_models=("meta-llama/Llama-3.1-8B",)
    )
    decided = decide((adapter(), trained))
    assert decided.each[0].status.served
    assert "published variant" in decided.each[0].status.message
    # Case does not matter.
    decided = decide(
        (adapter(), adapters.Found(rank=8, target_modules=("q_proj",), base_models=(BASE.upper(),)))
    )
    assert decided.each[0].status.served


@pytest.mark.parametrize(
    ("license", "license_name", "held"),
    [
        ("llama3.1", None, False),  # the base's own licence covers it
        (None, None, False),  # none declared: the base's licence covers it
        ("cc-by-nc-4.0", None, True),  # unknown to the operator
        ("apache-2.0", None, True),  # another licence than the base's
        ("other", "llama3.1", False),  # "other" names it in license_name
    ],
)
def test_a_licence_other_than_the_bases_needs_accepting(
    license: str | None, license_name: str | None, held: bool
) -> None:
    found = adapters.Found(
        rank=8,
        target_modules=("q_proj",),
        base_models=(BASE,),
        license=license,
        license_name=license_name,
    )
    decided = decide((adapter(), found))
    status = decided.each[0].status
    assert status.served is not held
    if held:
        assert status.reason == "LicenseNotAccepted"
        assert "spec.adapters[0].license.accept: true" in status.message
        accepted = decide((adapter(license={"accept": True}), found))
        assert accepted.each[0].status.served


def test_an_unresolvable_adapter_is_held_as_unavailable() -> None:
    decided = decide(
        (adapter(), adapters.Found(error="the Hub answered HTTP 503")),
        (adapter(name="bare"), adapters.Found()),  # no reader: nothing known
    )
    assert decided.servable == ()
    assert [d.status.reason for d in decided.each] == ["AdapterUnavailable"] * 2
    assert "HTTP 503" in decided.each[0].status.message
    assert "spec.adapters[1].rank" in decided.each[1].status.message


def test_no_adapters_no_condition() -> None:
    assert adapters.decide(adapters=[], found=[], model_id=BASE, base_license=None) == adapters.NONE


# The plan phase.


def planned(raw_adapters: list[dict[str, Any]], read: reconcile.AdapterRead | None) -> Any:
    return reconcile.desired(
        name="chat",
        namespace="ai",
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        raw_spec={"model": {"id": BASE}, "adapters": raw_adapters},
        settings=config.OperatorConfig(),
        available=config.default_pools(),
        fetch=None,
        adapter_read=read,
    )


def test_the_plan_phase_holds_back_what_may_not_be_served(fake_hub: hubserver.HubFixture) -> None:
    read = reconcile.adapter_reader(NoSecrets())  # type: ignore[arg-type]
    wanted = planned(
        [
            {"name": "sql", "id": "example-org/llama31-sql-lora"},
            {"name": "nc", "id": "example-org/llama31-nc-lora"},
            {"name": "small", "id": "example-org/llama32-3b-lora"},
            {"name": "gone", "id": "example-org/no-such-lora"},
        ],
        read,
    )
    decided = wanted.adapter_decisions
    assert [a.name for a in decided.servable] == ["sql"]
    assert [d.status.reason for d in decided.each] == [
        "",
        "LicenseNotAccepted",
        "BaseModelMismatch",
        "AdapterUnavailable",
    ]
    # The base model is planned and served whatever happens to its adapters.
    assert wanted.model.id == BASE
    without = planned([], None)
    assert wanted.plan.inputsHash != without.plan.inputsHash


def test_the_plan_is_made_anew_when_the_servable_set_changes() -> None:
    spec = [{"name": "sql", "id": "example-org/llama31-sql-lora"}]
    held = planned(spec, None)  # offline: no rank, held back
    served = planned(spec, lambda a, m, ns: adapters.Found(rank=8, target_modules=("q_proj",)))
    assert held.adapter_decisions.servable == ()
    assert len(served.adapter_decisions.servable) == 1
    assert held.plan.inputsHash != served.plan.inputsHash


def test_what_the_engine_cannot_serve_is_held_and_the_rest_planned() -> None:
    # vLLM 0.34.0 (the default image) fetches a Hub adapter at its default branch only
    # (data/engines.yaml lora.hubRevision: false).
    pinned = {"name": "pinned", "id": "example-org/x", "revision": "v2"}
    wanted = planned(
        [
            {**pinned, "rank": 8, "targetModules": ["q_proj"]},
            {"name": "small", "path": "/m/small", "rank": 8, "targetModules": ["q_proj"]},
        ],
        None,
    )
    decided = wanted.adapter_decisions
    assert [a.name for a in decided.servable] == ["small"]
    held = decided.each[0].status
    assert (held.served, held.reason) == (False, "AdapterRevisionUnsupported")
    assert held.message.startswith("spec.adapters[0] (pinned): ")
    assert decided.check is not None
    assert decided.check.reason == "AdapterRevisionUnsupported"
