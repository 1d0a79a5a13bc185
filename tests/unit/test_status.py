"""status.py and conditions.py: phases, condition transitions, minimal status patches."""

from __future__ import annotations

from typing import Any

import pytest
import samples

from llama_operator.api import conditions
from llama_operator.reconcile import status

PLAN = samples.PLAN
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


deployment = samples.deployment
observe = samples.observe


def condition(result: dict[str, Any], type_: str) -> dict[str, Any]:
    found = conditions.find(result["conditions"], type_)
    assert found is not None, type_
    return dict(found)


FAILURE = status.PlanningFailure("NoFeasiblePlan", "spec.placement: nothing fits")
HELD = "set spec.license.accept: true to serve it"


class TestPhase:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ({}, "Pending"),
            ({"deployment": deployment(replicas=0)}, "Pending"),
            ({"deployment": deployment(ready=0)}, "Progressing"),
            ({"deployment": deployment(ready=1)}, "Ready"),
            ({"deployment": deployment(ready=1, observed=0, generation=1)}, "Progressing"),
            ({"deployment": deployment(replicas=2, ready=1), "desired_replicas": 2}, "Degraded"),
            (
                {"deployment": deployment(replicas=2, ready=1, updated=1), "desired_replicas": 2},
                "Progressing",
            ),
            ({"deployment": deployment(ready=0, deadline=True)}, "Degraded"),
            ({"deployment": deployment(replicas=0), "desired_replicas": 0}, "Ready"),
            ({"failure": FAILURE, "plan": None}, "Failed"),
            ({"failure": FAILURE, "plan": None, "deployment": deployment(ready=1)}, "Degraded"),
            ({"held_back": HELD}, "Pending"),
            ({"held_back": HELD, "deployment": deployment(ready=1)}, "Degraded"),
        ],
    )
    def test_phase_table(self, overrides: dict[str, Any], expected: str) -> None:
        assert status.compute(observe(**overrides))["phase"] == expected


class TestConditions:
    def test_ready_deployment_sets_every_condition_true(self) -> None:
        result = status.compute(observe(deployment=deployment(ready=1)))
        for type_ in ("Planned", "Available", "Ready"):
            assert condition(result, type_)["status"] == "True"
            assert condition(result, type_)["observedGeneration"] == 1
        assert condition(result, "Planned")["message"] == PLAN.reason

    def test_transition_time_moves_only_when_status_changes(self) -> None:
        first = status.compute(observe(deployment=deployment(ready=0)))
        same = status.compute(observe(previous=first, deployment=deployment(ready=0), now=T1))
        assert condition(same, "Ready")["lastTransitionTime"] == T0
        flipped = status.compute(observe(previous=first, deployment=deployment(ready=1), now=T1))
        assert condition(flipped, "Ready")["lastTransitionTime"] == T1
        assert condition(flipped, "Planned")["lastTransitionTime"] == T0

    def test_failure_keeps_the_last_good_plan_and_says_so(self) -> None:
        good = status.compute(observe(deployment=deployment(ready=1)))
        bad = status.compute(
            observe(
                previous=good,
                plan=None,
                failure=FAILURE,
                generation=2,
                deployment=deployment(ready=1),
            )
        )
        planned = condition(bad, "Planned")
        assert planned["status"] == "False"
        assert planned["reason"] == "NoFeasiblePlan"
        assert planned["message"].endswith("the last good plan keeps serving unchanged")
        assert planned["observedGeneration"] == 2
        assert bad["plan"] == good["plan"]

    def test_not_yet_active_appears_and_disappears(self) -> None:
        with_fields = status.compute(observe(not_yet_active=["rollout", "fallbacks"]))
        nya = condition(with_fields, "NotYetActive")
        assert nya["status"] == "True"
        assert "spec.rollout, spec.fallbacks" in nya["message"]
        without = status.compute(observe(previous=with_fields))
        assert conditions.find(without["conditions"], "NotYetActive") is None

    def test_conditions_are_one_per_type_in_a_stable_order(self) -> None:
        result = status.compute(observe(not_yet_active=["traffic"]))
        again = status.compute(observe(previous=result, not_yet_active=["traffic"]))
        types = [c["type"] for c in again["conditions"]]
        assert types == ["Planned", "Reconciled", "Available", "Ready", "NotYetActive"]

    def test_a_completed_reconcile_is_reconciled(self) -> None:
        result = status.compute(observe())
        done = condition(result, "Reconciled")
        assert (done["status"], done["reason"]) == ("True", "Succeeded")
        assert done["message"] == "the last reconcile completed without error"


class TestFailed:
    """status.failed: the status after a reconcile that raised."""

    def test_only_the_reconciled_condition_changes(self) -> None:
        before = status.compute(observe(deployment=deployment(ready=1)))
        after = status.failed(
            before, reason="APIError", message="apply Service/chat: 422", generation=3, now=T1
        )
        patch = status.diff(before, after)
        assert patch.keys() == {"conditions"}
        done = condition(after, "Reconciled")
        assert (done["status"], done["reason"], done["message"]) == (
            "False",
            "APIError",
            "apply Service/chat: 422",
        )
        assert done["observedGeneration"] == 3
        assert done["lastTransitionTime"] == T1
        others = [c for c in after["conditions"] if c["type"] != "Reconciled"]
        assert others == [c for c in before["conditions"] if c["type"] != "Reconciled"]

    def test_on_an_object_without_status_it_is_the_only_condition(self) -> None:
        after = status.failed({}, reason="UnexpectedError", message="x", generation=1, now=T1)
        assert [c["type"] for c in after["conditions"]] == ["Reconciled"]

    def test_the_same_error_again_writes_nothing(self) -> None:
        first = status.failed({}, reason="APIError", message="x", generation=1, now=T1)
        again = status.failed(first, reason="APIError", message="x", generation=1, now="later")
        assert status.diff(first, again) == {}


class TestDiff:
    def test_unchanged_status_gives_an_empty_patch(self) -> None:
        first = status.compute(observe(deployment=deployment(ready=1)))
        again = status.compute(observe(previous=first, deployment=deployment(ready=1), now=T1))
        assert status.diff(first, again) == {}

    def test_only_changed_keys_are_patched(self) -> None:
        first = status.compute(observe(deployment=deployment(ready=0)))
        ready = status.compute(observe(previous=first, deployment=deployment(ready=1), now=T1))
        patch = status.diff(first, ready)
        assert set(patch) == {"phase", "readyReplicas", "conditions"}

    def test_plan_keys_that_vanish_are_deleted(self) -> None:
        old = {"plan": {"pool": "l4", "costPerHour": 0.8}}
        new = {"plan": {"pool": "t4"}}
        assert status.diff(old, new) == {"plan": {"pool": "t4", "costPerHour": None}}

    def test_unmanaged_top_level_keys_are_left_alone(self) -> None:
        assert status.diff({"somethingElse": 1, "phase": "Ready"}, {"phase": "Ready"}) == {}


class TestLicence:
    def test_a_held_back_spec_says_why_in_ready(self) -> None:
        pending = status.compute(observe(held_back=HELD))
        assert condition(pending, "Ready")["message"] == f"no serving pods: {HELD}"
        serving = status.compute(observe(held_back=HELD, deployment=deployment(ready=1)))
        message = condition(serving, "Ready")["message"]
        assert message.startswith("the latest spec is held back, the running pods serve")
        assert message.endswith(HELD)
        assert condition(serving, "Available")["status"] == "True"  # it still serves

    def test_checks_are_set_and_removed_types_dropped(self) -> None:
        check = conditions.Check("LicenseAccepted", "False", "NotAccepted", HELD)
        previous = {
            "conditions": [
                {
                    "type": "LicenseRestricted",
                    "status": "True",
                    "reason": "RestrictedLicense",
                    "message": "research only",
                    "lastTransitionTime": T0,
                }
            ]
        }
        result = status.compute(
            observe(previous=previous, checks=(check,), removed=("LicenseRestricted",), now=T1)
        )
        accepted = condition(result, "LicenseAccepted")
        assert (accepted["status"], accepted["reason"], accepted["message"]) == (
            "False",
            "NotAccepted",
            HELD,
        )
        assert conditions.find(result["conditions"], "LicenseRestricted") is None
        types = [c["type"] for c in result["conditions"]]
        assert types.index("Planned") < types.index("LicenseAccepted") < types.index("Ready")

    def test_license_status_is_written_and_kept_when_not_recomputed(self) -> None:
        found = {"id": "llama3.1", "source": "catalog", "accepted": True}
        assert status.compute(observe(license=found))["license"] == found
        kept = status.compute(observe(previous={"license": found}, plan=None, failure=FAILURE))
        assert kept["license"] == found
        assert "license" not in status.compute(observe())
