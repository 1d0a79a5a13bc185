"""Contract-test harness: the real Kopf operator against the in-memory API of ``kube.py``.

The operator runs in the test's own event loop via ``kopf.operator`` (the same entry
point ``kopf run`` uses), logged in through a kubeconfig pointing at kmock on
127.0.0.1; our sync handlers talk to kmock over HTTP from Kopf's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pathlib
import socket
import warnings
from collections.abc import AsyncIterator

import kmock
import kopf
import pytest

# Resync every half second instead of 15 s, so timer-driven behaviour is seen quickly.
# Set before llama_operator.handlers is imported: Kopf binds timer intervals then.
os.environ.setdefault("LLAMA_OPERATOR_RESYNC_SECONDS", "0.5")

from kube import (
    FIXTURES,
    POOLS_YAML,
    ApplyingEmulator,
    assert_no_secret_leaks,
    declare_resources,
    seed_api_key,
    write_kubeconfig,
)

from llama_operator import handlers as _handlers  # noqa: F401 - registers them with Kopf
from llama_operator import hub


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def cluster(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[ApplyingEmulator]:
    """kmock serving the API, the operator's config and environment, the API-key Secret;
    afterwards (the operator stopped), the secret-leak check of the whole run."""
    caplog.set_level(logging.DEBUG)
    async with ApplyingEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(kubeconfig, str(server.url))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        operator_config = tmp_path / "config.yaml"
        marker = request.node.get_closest_marker("operator_config")
        operator_config.write_text(marker.args[0] if marker else POOLS_YAML.read_text())
        monkeypatch.setenv("LLAMA_OPERATOR_CONFIG", str(operator_config))
        monkeypatch.setenv("HF_HUB_CACHE", str(FIXTURES / "hf-cache"))
        # The operator's /metrics endpoint: loopback only, on a port free right now.
        monkeypatch.setenv("LLAMA_OPERATOR_METRICS_ADDRESS", "127.0.0.1")
        monkeypatch.setenv("LLAMA_OPERATOR_METRICS_PORT", str(free_port()))
        hub.clear_cache()
        await seed_api_key(emulator)
        yield emulator
        assert_no_secret_leaks(emulator, caplog)


@pytest.fixture
async def operator(cluster: ApplyingEmulator) -> AsyncIterator[ApplyingEmulator]:
    """The real operator, running until the test ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop))
    try:
        yield cluster
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        # Kopf can leave one of its own API sessions unclosed when it stops in the middle of
        # a patch (seen with the autoscaler's /scale patches arriving at shutdown). Collect
        # it here, where that is expected, and not in whichever test happens to run next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
