"""Fake serving pods for autoscaler tests: each a /metrics endpoint on 127.0.0.1.

A ``FakePod`` serves ``tests/fixtures/metrics/<engine>.prom`` with ``$waiting``,
``$running`` and ``$kv_cache`` filled in from its attributes, which a test changes
while it runs. ``status`` makes it answer an error instead, ``delay`` makes it slow
(to show that one slow pod does not stall the scrape of the others). Servers bind
127.0.0.1 on a free port and stop when the context manager exits.
"""

from __future__ import annotations

import pathlib
import string
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "metrics"


class FakePod:
    def __init__(self, engine: str = "vllm", *, waiting: float = 0, running: float = 0) -> None:
        self.template = string.Template((FIXTURES / f"{engine}.prom").read_text(encoding="utf-8"))
        self.waiting = waiting
        self.running = running
        self.kv_cache = 0.0
        self.status = 200
        self.delay = 0.0
        self.scrapes = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def text(self) -> str:
        return self.template.substitute(
            waiting=f"{float(self.waiting)!r}",
            running=f"{float(self.running)!r}",
            kv_cache=f"{float(self.kv_cache)!r}",
        )

    def __enter__(self) -> FakePod:
        pod = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pod.scrapes += 1
                if pod.delay:
                    time.sleep(pod.delay)
                if self.path != "/metrics" or pod.status != 200:
                    self.send_error(404 if self.path != "/metrics" else pod.status)
                    return
                body = pod.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
