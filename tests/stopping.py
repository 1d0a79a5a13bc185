"""Stopping what tests start, within a bound: a hang becomes a failure with every stack.

``socketserver``'s ``shutdown()`` waits for ``serve_forever`` without bound (forever if
it never ran or is stuck), and a server that joins its handler threads on close waits for
each without bound. Contract tests stop their fake pods on the event loop's thread, where
kmock serves the operator: a stop that never returns would hang the whole run. So the
servers' own threads are joined with a timeout here, and one that does not stop raises
with the stack of every thread, to be read in the CI log.
"""

from __future__ import annotations

import socketserver
import sys
import threading
import traceback

# Far beyond what a stop takes (serve_forever polls every 10 ms, a handler times out
# within HANDLER_TIMEOUT_SECONDS), short of CI's own timeout.
STOP_SECONDS = 30.0
# A test server's handler gives up on a client that sends or reads nothing for this long
# (``BaseRequestHandler.timeout``), so no handler thread outlives its server by more.
HANDLER_TIMEOUT_SECONDS = 10.0


def stop_server(
    server: socketserver.BaseServer,
    thread: threading.Thread,
    *,
    name: str,
    timeout: float = STOP_SECONDS,
) -> None:
    """Stop ``server``, whose ``serve_forever`` runs in ``thread``, and close it."""
    # shutdown() blocks until serve_forever has exited: it runs in a thread of its own,
    # and the serving thread is what is waited for, with a bound.
    stopper = threading.Thread(target=server.shutdown, name=f"stopping {name}", daemon=True)
    stopper.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError(f"{name} did not stop within {timeout:g} s\n{thread_stacks()}")
    stopper.join(timeout)  # at once: serve_forever signals shutdown() on its way out
    closer = threading.Thread(target=server.server_close, name=f"closing {name}", daemon=True)
    closer.start()  # (joins the handler threads of a server that blocks on close)
    closer.join(timeout)
    if closer.is_alive():
        raise RuntimeError(
            f"{name}: a request handler did not finish within {timeout:g} s\n{thread_stacks()}"
        )


def thread_stacks() -> str:
    """The stack of every thread of the process."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    lines = [f"--- {len(frames)} threads ---\n"]
    for ident, frame in frames.items():
        lines.append(f"Thread {names.get(ident, '?')} ({ident}):\n")
        lines.extend(traceback.format_stack(frame))
    return "".join(lines)
