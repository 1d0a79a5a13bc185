"""operations/slo.py and spec.slo: the live serving window, its figures and status, the
SLOMet verdict, cost per million tokens, the canary's thresholds derived from the SLO, and
the engines' generated-tokens metric read from real-shaped pages.

The pages below are written after the engines' own code: vLLM's counter
``vllm:generation_tokens`` ("Number of generation tokens processed.",
vllm/v1/metrics/loggers.py, 0.24.0 to 0.34.0; prometheus_client adds ``_total`` on the
page) and TGI v3.3.7's histogram ``tgi_request_generated_tokens`` (router/src/server.rs,
recorded per successful request with its generated_tokens; metrics-exporter-prometheus
writes ``_bucket``, ``_sum`` and ``_count``).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.api import conditions, crd
from llama_operator.operations import canary_analysis, rollout, slo
from llama_operator.planning import engine_profiles
from llama_operator.serving import engine_metrics

INF = math.inf
VLLM = engine_profiles.get("vllm").outcomes
TGI_PROFILE = engine_profiles.get("tgi")


def traffic(
    requests: float, *, errors: float = 0, tokens: float | None = None, latency: float = 1.0
) -> engine_metrics.Traffic:
    """A vLLM pod's counters: ``requests`` finished, ``errors`` of them failed, each taking
    ``latency`` seconds (one bucket at 0.5 s, one at 2.5 s)."""
    below = requests if latency <= 0.5 else 0.0
    mid = requests if latency <= 2.5 else below
    histogram = engine_metrics.Histogram(buckets=((0.5, below), (2.5, mid), (INF, requests)))
    return engine_metrics.Traffic(
        requests=requests,
        outcomes=engine_metrics.kinds({"error": errors, "abort": 0.0}),
        latency=histogram,
        ttft=histogram,
        tokens=tokens,
    )


def scrape(at: float, **pods: engine_metrics.Traffic) -> slo.Scrape:
    return slo.Scrape(at=at, pods=pods)


def figures(*scrapes: slo.Scrape, ready: int = 1, cost: float | None = 2.0) -> slo.Figures | None:
    return slo.measure(scrapes, outcomes=VLLM, ready=ready, cost_per_hour=cost)


# -- the window ---------------------------------------------------------------------------


def test_a_scrape_is_due_every_fifth_of_the_window_never_faster_than_the_resync() -> None:
    assert slo.interval(300, floor=15) == 60
    assert slo.interval(30, floor=15) == 15
    assert slo.due((), now=0, every=60)
    history = (scrape(100),)
    assert not slo.due(history, now=159, every=60)
    assert slo.due(history, now=160, every=60)


def test_the_window_keeps_its_start_and_everything_after() -> None:
    history: tuple[slo.Scrape, ...] = ()
    for at in (0, 60, 120, 180, 240, 300, 360):
        history = slo.keep(history, scrape(at), window=300)
    # 360 - 60 = 300: the scrape at 60 starts the window; the one at 0 is gone.
    assert [s.at for s in history] == [60, 120, 180, 240, 300, 360]


def test_a_young_window_keeps_everything() -> None:
    history = slo.keep((scrape(0),), scrape(30), window=300)
    assert [s.at for s in history] == [0, 30]


def test_one_scrape_is_only_a_baseline() -> None:
    assert figures(scrape(0, a=traffic(10))) is None
    assert figures(scrape(0, a=traffic(10)), scrape(0, a=traffic(20))) is None


# -- the figures --------------------------------------------------------------------------


def test_rates_latency_errors_and_cost_over_the_window() -> None:
    found = figures(
        scrape(0, a=traffic(100, tokens=1000), b=traffic(50, tokens=500)),
        scrape(100, a=traffic(200, errors=2, tokens=21000), b=traffic(150, tokens=10500)),
        ready=2,
        cost=3.6,
    )
    assert found is not None
    assert found.requests_per_second == 2.0  # 200 requests in 100 s
    assert found.tokens_per_second == 300.0  # 30,000 tokens in 100 s
    assert found.error_rate == 0.01
    # $3.6 per replica-hour x 2 replicas = $7.2/h for 300 x 3600 = 1.08M tokens per hour.
    assert found.cost_per_million_tokens == pytest.approx(7.2 / 1.08)
    shown = slo.serving_status(found, pods=2, now="2025-01-01T00:00:00Z")
    assert shown.model_dump(exclude_none=True) == {
        "window": "1m40s",
        "observedAt": "2025-01-01T00:00:00Z",
        "pods": 2,
        "requestsPerSecond": 2.0,
        "generatedTokensPerSecond": 300.0,
        "p95LatencySeconds": 2.4,  # 1 s requests: 0.5 + 2 x 0.95 in the (0.5, 2.5] bucket
        "p95TimeToFirstTokenSeconds": 2.4,
        "errorRate": 0.01,
        "costPerMillionTokens": 6.667,
    }


def test_no_price_or_no_tokens_leaves_the_cost_out() -> None:
    assert slo.cost_per_million_tokens(cost_per_hour=None, replicas=1, tokens_per_second=9) is None
    assert slo.cost_per_million_tokens(cost_per_hour=1, replicas=1, tokens_per_second=0) is None
    assert slo.cost_per_million_tokens(cost_per_hour=1, replicas=1, tokens_per_second=None) is None
    found = figures(scrape(0, a=traffic(10)), scrape(10, a=traffic(40)))
    assert found is not None
    assert found.tokens_per_second is None
    status = slo.serving_status(found, pods=1, now="t")
    assert status.costPerMillionTokens is None
    assert status.generatedTokensPerSecond is None


def test_a_restarted_pod_counts_from_zero() -> None:
    found = figures(
        scrape(0, a=traffic(500, errors=5, tokens=90000)),
        scrape(60, a=traffic(30, tokens=600)),
    )
    assert found is not None
    assert found.served.requests == 30
    assert found.served.tokens == 600
    assert found.error_rate == 0.0


def test_tokens_absent_at_the_baseline_all_came_after() -> None:
    found = figures(scrape(0, a=traffic(0)), scrape(10, a=traffic(25, tokens=250)))
    assert found is not None
    assert found.served.tokens == 250


def test_pods_not_read_at_both_ends_are_left_out() -> None:
    found = figures(
        scrape(0, a=traffic(10, tokens=10)),
        scrape(10, a=traffic(30, tokens=30), new=traffic(1000, tokens=1000)),
    )
    assert found is not None
    assert found.served.pods == 1
    assert found.served.requests == 20
    # A pod not read at the baseline: no window at all yet.
    assert figures(scrape(0), scrape(10, a=traffic(30))) is None


counters = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@given(
    before=st.tuples(counters, counters, counters),
    after=st.tuples(counters, counters, counters),
    seconds=st.floats(min_value=0.001, max_value=1e5),
    cost=st.one_of(st.none(), st.floats(min_value=0, max_value=1e4)),
    ready=st.integers(min_value=0, max_value=1000),
)
def test_figures_are_never_negative(
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    seconds: float,
    cost: float | None,
    ready: int,
) -> None:
    # Any pair of scrapes, counters up or down (a restart): nothing reads below zero.
    (req0, err0, tok0), (req1, err1, tok1) = before, after
    found = figures(
        scrape(0, a=traffic(req0, errors=min(err0, req0), tokens=tok0)),
        scrape(seconds, a=traffic(req1, errors=min(err1, req1), tokens=tok1)),
        ready=ready,
        cost=cost,
    )
    assert found is not None
    assert found.requests_per_second >= 0
    assert (found.tokens_per_second or 0) >= 0
    assert 0 <= (found.error_rate or 0) <= 1
    assert (found.cost_per_million_tokens or 0) >= 0
    shown = slo.serving_status(found, pods=1, now="t")
    for value in shown.model_dump(exclude_none=True).values():
        if isinstance(value, float):
            assert value >= 0
            assert math.isfinite(value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (90, "1m30s"), (44.6, "45s"), (3600, "1h"), (0, "0s")]
)
def test_durations_read_like_the_spec(seconds: float, text: str) -> None:
    assert slo.duration(seconds) == text


# -- the verdict --------------------------------------------------------------------------

SLO = api.SLO()


def test_within_objectives() -> None:
    found = figures(scrape(0, a=traffic(0)), scrape(60, a=traffic(100, latency=0.4)))
    check = slo.verdict(found, slo=SLO, pods=1)
    assert (check.type, check.status, check.reason) == (conditions.SLO_MET, "True", slo.WITHIN)
    assert check.message == (
        "p95 latency 0.475s <= 2s; error rate 0 <= 0.01 over the last 1m (100 requests)"
    )


def test_a_missed_objective_names_each_with_its_value() -> None:
    found = figures(scrape(0, a=traffic(0)), scrape(60, a=traffic(100, errors=5, latency=2.4)))
    check = slo.verdict(found, slo=SLO, pods=1)
    assert (check.status, check.reason) == ("False", slo.MISSED)
    assert check.message == (
        "p95 latency 2.4s > 2s; error rate 0.05 > 0.01 over the last 1m (100 requests)"
    )


def test_a_throughput_floor_and_a_ttft_objective() -> None:
    objectives = api.SLO(minTokensPerSecond=100, maxP95TimeToFirstTokenSeconds=0.3)
    found = figures(
        scrape(0, a=traffic(0, tokens=0)), scrape(10, a=traffic(30, tokens=500, latency=0.4))
    )
    check = slo.verdict(found, slo=objectives, pods=1)
    assert check.status == "False"
    assert "p95 latency 0.475s <= 2s" not in check.message  # only what was missed
    assert "p95 TTFT 0.475s > 0.3s" in check.message
    assert "generated tokens/s 50 < 100" in check.message
    # An engine that exposes no tokens: that objective is not judged, and says so.
    untold = figures(scrape(0, a=traffic(0)), scrape(10, a=traffic(30, latency=0.1)))
    told = slo.verdict(untold, slo=api.SLO(minTokensPerSecond=100), pods=1)
    assert told.status == "True"
    assert "generated tokens/s: not exposed by the engine" in told.message


def test_too_few_requests_is_no_traffic() -> None:
    found = figures(scrape(0, a=traffic(0)), scrape(60, a=traffic(19, errors=19)))
    check = slo.verdict(found, slo=SLO, pods=1)
    assert (check.status, check.reason) == ("Unknown", slo.NO_TRAFFIC)
    assert check.message == "19 requests in the last 1m; 20 are needed to judge"


def test_nothing_measured_yet() -> None:
    first = slo.verdict(None, slo=SLO, pods=2)
    assert (first.status, first.reason) == ("Unknown", slo.NOT_MEASURED)
    assert "baseline" in first.message
    none = slo.verdict(None, slo=SLO, pods=0)
    assert none.message == "no ready pod of the primary could be read"


# -- spec.slo and the canary's thresholds -------------------------------------------------


def spec(**fields: object) -> api.LlamaDeploymentSpec:
    return api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, **fields})


def test_without_slo_the_analysis_is_as_written() -> None:
    plain = spec()
    assert plain.slo is None
    assert rollout.policy_of(plain).analysis == api.Analysis()
    assert api.analysis_for(plain).maxErrorRate == 0.02


def test_the_slo_supplies_the_thresholds_the_analysis_leaves_unset() -> None:
    analysis = rollout.policy_of(spec(slo={"maxP95TimeToFirstTokenSeconds": 0.5})).analysis
    assert analysis.maxErrorRate == api.DEFAULT_MAX_ERROR_RATE == 0.01
    assert analysis.maxP95LatencySeconds == api.DEFAULT_MAX_P95_LATENCY_SECONDS == 2.0
    assert analysis.maxP95TimeToFirstTokenSeconds == 0.5


def test_explicit_analysis_values_win_even_when_they_are_the_defaults() -> None:
    explicit = spec(
        slo={"maxErrorRate": 0.001, "maxP95LatencySeconds": 1},
        rollout={"analysis": {"maxErrorRate": 0.02, "minRequests": 5}},
    )
    analysis = rollout.policy_of(explicit).analysis
    assert analysis.maxErrorRate == 0.02  # written: kept
    assert analysis.maxP95LatencySeconds == 1  # unset: the SLO's
    assert analysis.minRequests == 5


def test_the_crd_leaves_the_overridable_defaults_to_the_operator() -> None:
    # An API-server default would make every stored maxErrorRate look explicit.
    rendered = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    analysis = rendered["properties"]["spec"]["properties"]["rollout"]["properties"]["analysis"]
    assert "default" not in analysis["properties"]["maxErrorRate"]
    slo_schema = rendered["properties"]["spec"]["properties"]["slo"]["properties"]
    assert slo_schema["maxErrorRate"]["default"] == 0.01
    assert slo_schema["window"]["default"] == "5m"


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"window": "0s"}, "spec.slo.window"),
        ({"window": "25h"}, "spec.slo.window"),
        ({"window": "five minutes"}, "spec.slo.window"),
        ({"maxErrorRate": 1.5}, "spec.slo.maxErrorRate"),
        ({"maxP95LatencySeconds": 0}, "spec.slo.maxP95LatencySeconds"),
        ({"minTokensPerSecond": -1}, "spec.slo.minTokensPerSecond"),
        ({"maxP95": 2}, "spec.slo.maxP95"),
    ],
)
def test_a_bad_slo_names_its_field(fields: dict[str, object], where: str) -> None:
    with pytest.raises(api.SpecError) as raised:
        spec(slo=fields)
    assert raised.value.field == where


# -- the generated-tokens metric on the engines' pages ------------------------------------

VLLM_PAGE = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 7.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 1200.0
vllm:generation_tokens_total{engine="1",model_name="m"} 34.0
"""

TGI_PAGE = """\
# TYPE tgi_request_success counter
tgi_request_success 3
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="1"} 0
tgi_request_generated_tokens_bucket{le="+Inf"} 3
tgi_request_generated_tokens_sum 420
tgi_request_generated_tokens_count 3
"""


def test_vllm_generation_tokens_summed_over_engines() -> None:
    read = engine_metrics.traffic(VLLM_PAGE, engine="vllm")
    assert read is not None
    assert read.tokens == 1234.0


def test_tgi_generated_tokens_is_its_histograms_sum() -> None:
    assert TGI_PROFILE.metrics["generatedTokens"] == ("tgi_request_generated_tokens_sum",)
    read = engine_metrics.traffic(TGI_PAGE, engine="tgi")
    assert read is not None
    assert read.tokens == 420.0
    before = engine_metrics.traffic(
        "# TYPE tgi_request_success counter\ntgi_request_success 0\n", engine="tgi"
    )
    assert before is not None
    assert before.tokens is None


def test_the_canary_window_carries_tokens_too() -> None:
    window = canary_analysis.window({"a": traffic(1, tokens=10)}, {"a": traffic(2, tokens=15)})
    assert window.tokens == 5
