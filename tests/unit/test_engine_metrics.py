"""serving.engine_metrics: one number per pod from the engines' own exposition text."""

from __future__ import annotations

import pytest

import podserver
from llama_operator.serving import engine_metrics


def text(engine: str, *, waiting: float, running: float, kv_cache: float = 0.0) -> str:
    pod = podserver.FakePod(engine, waiting=waiting, running=running)
    pod.kv_cache = kv_cache
    return pod.text()


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_queue_and_inflight(engine: str) -> None:
    page = text(engine, waiting=7, running=12)
    assert engine_metrics.value(page, engine=engine, signal="queue") == 7  # type: ignore[arg-type]
    assert engine_metrics.value(page, engine=engine, signal="inflight") == 19  # type: ignore[arg-type]


def test_kv_cache_under_the_current_and_the_older_vllm_name() -> None:
    assert engine_metrics.value(
        text("vllm", waiting=0, running=0, kv_cache=0.42), engine="vllm", signal="kvCache"
    ) == pytest.approx(0.42)
    assert engine_metrics.value(
        text("vllm-legacy", waiting=0, running=0, kv_cache=0.9), engine="vllm", signal="kvCache"
    ) == pytest.approx(0.9)


def test_tgi_has_no_kv_cache_signal() -> None:
    assert (
        engine_metrics.value(text("tgi", waiting=1, running=1), engine="tgi", signal="kvCache")
        is None
    )


def test_series_are_summed() -> None:
    page = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} 2\n'
        'vllm:num_requests_waiting{engine="1"} 3\n'
    )
    assert engine_metrics.value(page, engine="vllm", signal="queue") == 5


def test_a_missing_metric_is_none_not_zero() -> None:
    page = "# TYPE something_else gauge\nsomething_else 1\n"
    assert engine_metrics.value(page, engine="vllm", signal="queue") is None
    only_waiting = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 4\n"
    assert engine_metrics.value(only_waiting, engine="vllm", signal="inflight") is None


def test_garbage_is_an_error() -> None:
    with pytest.raises(engine_metrics.MetricsError):
        engine_metrics.value("vllm:num_requests_waiting{ 3 4 5\n", engine="vllm", signal="queue")


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_running_requests(engine: str) -> None:
    page = text(engine, waiting=3, running=11)
    assert engine_metrics.read(page, engine=engine, signal="queue") == (3, 11)  # type: ignore[arg-type]
    absent = engine_metrics.read("# TYPE x gauge\nx 1\n", engine=engine, signal="queue")  # type: ignore[arg-type]
    assert absent == (None, None)


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_read_gives_the_signal_and_the_running_requests(engine: str) -> None:
    page = text(engine, waiting=5, running=9)
    assert engine_metrics.read(page, engine=engine, signal="queue") == (5, 9)  # type: ignore[arg-type]
    assert engine_metrics.read(page, engine=engine, signal="inflight") == (14, 9)  # type: ignore[arg-type]


def test_only_the_needed_lines_are_parsed() -> None:
    # A line the parser would refuse, in a family the autoscaler does not read, is skipped.
    page = text("vllm", waiting=2, running=3) + "vllm:some_histogram_bucket{le= broken\n"
    assert engine_metrics.read(page, engine="vllm", signal="queue") == (2, 3)
    with pytest.raises(engine_metrics.MetricsError):
        engine_metrics.samples(page)  # the whole page does not parse
