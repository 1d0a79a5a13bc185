"""The one engine-metrics scraper: every pod at once, each with its own timeout, and a
``Page`` per pod that says what was read or why nothing was.

Fake pods serve on 127.0.0.1 (tests/podserver.py) and stop with the test.
"""

from __future__ import annotations

import socket

import pytest

import podserver
from llama_operator.clients import scraper
from llama_operator.serving import engine_metrics


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint(pod: str, port: int) -> scraper.Endpoint:
    return scraper.Endpoint(pod, f"http://127.0.0.1:{port}/metrics")


def test_every_pod_gets_a_page_in_the_order_given() -> None:
    with podserver.FakePod(waiting=3) as first, podserver.FakePod(waiting=5) as second:
        pages = scraper.fetch_blocking(
            [endpoint("b", second.port), endpoint("a", first.port)],
            timeout=5.0,
            parse=lambda text: engine_metrics.value(text, engine="vllm", signal="queue"),
        )
    assert [(page.pod, page.value, page.read) for page in pages] == [
        ("b", 5.0, True),
        ("a", 3.0, True),
    ]


def test_a_failing_pod_says_why_and_the_others_are_still_read() -> None:
    with (
        podserver.FakePod() as good,
        podserver.FakePod() as erroring,
        podserver.FakePod() as slow,
    ):
        erroring.status = 500
        slow.delay = 1.0  # longer than the timeout below
        pages = scraper.fetch_blocking(
            [
                endpoint("good", good.port),
                endpoint("erroring", erroring.port),
                endpoint("slow", slow.port),
                endpoint("gone", closed_port()),
            ],
            timeout=0.3,
            parse=len,
        )
    by_pod = {page.pod: page for page in pages}
    assert by_pod["good"].read
    assert isinstance(by_pod["good"].value, int)
    assert by_pod["good"].value > 0
    assert by_pod["erroring"].failure == "HTTP 500"
    assert by_pod["slow"].failure is not None
    assert "0.3" in by_pod["slow"].failure
    assert by_pod["gone"].failure is not None
    assert all(by_pod[pod].value is None for pod in ("erroring", "slow", "gone"))


def test_a_page_the_parser_rejects_is_a_failed_pod_not_an_error() -> None:
    def reject(text: str) -> float:
        raise engine_metrics.MetricsError("not Prometheus text")

    with podserver.FakePod() as pod:
        (page,) = scraper.fetch_blocking([endpoint("p", pod.port)], timeout=5.0, parse=reject)
    assert not page.read
    assert page.value is None
    assert page.failure is not None
    assert "not Prometheus text" in page.failure


def test_anything_else_the_parser_raises_is_not_swallowed() -> None:
    def broken(text: str) -> float:
        raise KeyError("a bug, not a pod's fault")

    with podserver.FakePod() as pod, pytest.raises(KeyError):
        scraper.fetch_blocking([endpoint("p", pod.port)], timeout=5.0, parse=broken)


def test_no_pods_no_requests() -> None:
    assert scraper.fetch_blocking([], timeout=1.0, parse=len) == []
