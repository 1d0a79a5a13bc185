"""Contract-test harness: the real Kopf operator against the in-memory API of ``kube.py``.

The operator runs in the test's own event loop via ``kopf.spawn_tasks`` and
``kopf.run_tasks`` (what ``kopf.operator``, the entry point of ``kopf run``, calls), logged in
through a kubeconfig pointing at kmock on 127.0.0.1; our sync handlers talk to kmock over
HTTP from Kopf's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import logging
import os
import pathlib
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web_protocol
import kmock
import kopf
import pytest

# Resync every half second instead of 15 s, so timer-driven behaviour is seen quickly.
# Set before llama_operator.runtime.handlers is imported: Kopf binds timer intervals then.
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

from llama_operator.clients import hub
from llama_operator.runtime import handlers as _handlers  # noqa: F401 - registers them with Kopf
from stopping import thread_stacks


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


# How long the operator may take to stop once asked (Kopf gives a daemon 5 s to exit and
# 10 s more once cancelled; a loaded CI machine is several times slower), and then to
# finish once cancelled. Past both, the teardown fails with every stack instead of hanging.
STOP_SECONDS = 60.0
CANCEL_SECONDS = 30.0


@pytest.fixture
async def operator(
    cluster: ApplyingEmulator, request: pytest.FixtureRequest
) -> AsyncIterator[ApplyingEmulator]:
    """The real operator, running until the test ends."""
    async with running_operator(request):
        yield cluster


@pytest.fixture
def start_operator(
    cluster: ApplyingEmulator, request: pytest.FixtureRequest
) -> Callable[[], contextlib.AbstractAsyncContextManager[None]]:
    """For a test that stops and starts the operator itself (a restart): each
    ``async with start_operator():`` is one operator process, from start to a clean stop."""
    return functools.partial(running_operator, request)


@contextlib.asynccontextmanager
async def running_operator(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """The real operator from start to a bounded stop (a hang fails with every stack)."""
    stop = asyncio.Event()
    # What kopf.operator does, but with the tasks Kopf must leave alone in our hands: once its
    # own tasks are stopped, Kopf waits 5 s for every task created since it started, then
    # cancels them and waits for them without bound. This fixture's teardown (which waits for
    # the operator) and kmock's connection handlers are such tasks, and not the operator's.
    ignored = NotTheOperators(asyncio.all_tasks())

    async def run() -> None:
        tasks = await kopf.spawn_tasks(clusterwide=True, standalone=True, stop_flag=stop)
        await kopf.run_tasks(tasks, ignored=ignored)

    task = asyncio.create_task(run(), name="kopf operator")
    try:
        yield
    finally:
        current = asyncio.current_task()
        if current is not None:
            ignored.add(current)
        stop.set()
        # Bounded, unlike asyncio.wait_for: on Python 3.11 its timeout cancels the task and
        # then waits for it without bound, so a task that never finishes cancelling would
        # hang the whole run.
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CANCEL_SECONDS)
        if not done:
            report = (
                f"the operator did not stop within {STOP_SECONDS:g} s of its stop flag, nor "
                f"{CANCEL_SECONDS:g} s after being cancelled\n{stacks()}"
            )
            # Also straight to the terminal: if the rest of the teardown hangs too (a thread
            # that never returns), the failure below is never reported.
            capture = request.config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    sys.stderr.write(report + "\n")
                    sys.stderr.flush()
            pytest.fail(report, pytrace=False)
        if not task.cancelled() and task.exception() is not None:
            # Not a failure of the test: Kopf re-raises what its own leftover timers and
            # daemons raise when it cancels them at exit (on Python 3.11 a TimeoutError from
            # the asyncio.wait_for race), which the previous teardown swallowed as well.
            logging.getLogger(__name__).warning(
                "the operator task ended with %r", task.exception(), exc_info=task.exception()
            )
        # Kopf can leave one of its own API sessions unclosed when it stops in the middle of
        # a patch (seen with the autoscaler's /scale patches arriving at shutdown). Collect
        # it here, where that is expected, and not in whichever test happens to run next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


class NotTheOperators(set[asyncio.Task[Any]]):
    """The tasks Kopf leaves alone when it stops: those that existed before it started (as
    kopf.operator has it), those added (the fixture's teardown), and kmock's: the aiohttp
    server's connection handlers, such as an idle keep-alive connection of the test's own
    client, are the API server's (the operator runs no aiohttp server here)."""

    def __contains__(self, task: object) -> bool:
        if super().__contains__(task):
            return True
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        code = getattr(coro, "cr_code", None)
        return code is not None and code.co_filename == AIOHTTP_SERVER


AIOHTTP_SERVER = aiohttp.web_protocol.__file__


def stacks() -> str:
    """The stack of every pending asyncio task and of every thread, for a hang report."""
    out = io.StringIO()
    pending = [t for t in asyncio.all_tasks() if not t.done()]
    out.write(f"--- {len(pending)} pending asyncio tasks ---\n")
    for pending_task in pending:
        pending_task.print_stack(file=out)
        # (print_stack shows a suspended task's outermost coroutine only: what it awaits,
        # down to the future it waits for, is the chain below.)
        out.writelines(f"    awaiting {where}\n" for where in awaiting(pending_task)[1:])
    return out.getvalue() + thread_stacks()


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where each coroutine in ``task``'s await chain is suspended, outermost first."""
    found = []
    link: Any = task.get_coro()
    while link is not None:
        frame = getattr(link, "cr_frame", None) or getattr(link, "gi_frame", None)
        if frame is None:
            found.append(repr(link)[:200])  # a future, or a coroutine that has finished
            break
        found.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None)
    return found
