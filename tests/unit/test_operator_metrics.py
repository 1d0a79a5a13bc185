"""runtime.operator_metrics: what a scrape shows after reconciles are recorded."""

from __future__ import annotations

import pytest
from prometheus_client import parser

from llama_operator.runtime import operator_metrics


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = operator_metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def phase_count(phase: str) -> float:
    return samples()[("llama_operator_llamadeployments", (("phase", phase),))]


class TestRecord:
    def test_outcomes_applies_and_failures_are_counted(self) -> None:
        before = samples()

        def delta(name: str, *labels: tuple[str, str]) -> float:
            key = (name, tuple(sorted(labels)))
            return samples()[key] - before.get(key, 0.0)

        operator_metrics.record(
            uid="a",
            phase="Pending",
            written=["Deployment/x", "Service/x"],
            failure=None,
            seconds=0.01,
        )
        operator_metrics.record(
            uid="b", phase="Failed", written=[], failure="NoFeasiblePlan", seconds=0.01
        )
        operator_metrics.record(uid="a", phase="Pending", written=[], failure=None, seconds=0.01)
        assert delta("llama_operator_reconciles_total", ("outcome", "applied")) == 1
        assert delta("llama_operator_reconciles_total", ("outcome", "planning_failed")) == 1
        assert delta("llama_operator_reconciles_total", ("outcome", "unchanged")) == 1
        assert delta("llama_operator_applies_total", ("kind", "Service")) == 1
        assert delta("llama_operator_planning_failures_total", ("reason", "NoFeasiblePlan")) == 1
        assert delta("llama_operator_reconcile_duration_seconds_count") == 3

    def test_rollout_and_failover_events_are_counted(self) -> None:
        before = samples()

        def delta(name: str, *labels: tuple[str, str]) -> float:
            key = (name, tuple(sorted(labels)))
            return samples()[key] - before.get(key, 0.0)

        operator_metrics.record_rollout(
            ["Applied", "RolloutStarted", "FailedOver", "Replanned", "Replanned", "FailedBack"]
        )
        operator_metrics.record_rollout(["Promoted", "StartingFallback"])
        assert delta("llama_operator_rollouts_total", ("outcome", "started")) == 1
        assert delta("llama_operator_rollouts_total", ("outcome", "promoted")) == 1
        assert delta("llama_operator_failovers_total", ("event", "failed_over")) == 1
        assert delta("llama_operator_failovers_total", ("event", "failed_back")) == 1
        assert delta("llama_operator_failovers_total", ("event", "replanned")) == 2
        assert delta("llama_operator_failovers_total", ("event", "fallback_started")) == 1

    def test_phases_count_each_object_once_and_forget_deleted_ones(self) -> None:
        operator_metrics.forget("p1")
        start = phase_count("Ready")
        operator_metrics.record(uid="p1", phase="Pending", written=[], failure=None, seconds=0)
        operator_metrics.record(uid="p1", phase="Ready", written=[], failure=None, seconds=0)
        assert phase_count("Ready") == start + 1
        operator_metrics.forget("p1")
        assert phase_count("Ready") == start


class TestServe:
    def test_port_zero_disables_the_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(operator_metrics.PORT_ENV, "0")
        assert operator_metrics.serve() is None
