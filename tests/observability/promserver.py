"""A real Prometheus (Debian's binary) on 127.0.0.1 for the observability tests, and fake
engine pods whose traffic follows the clock.

``Prometheus`` writes a scrape config, starts the server on a free port with its TSDB in
a temporary directory, and stops it (terminate, then kill) when the context exits.
``TimedPod`` is ``tests/podserver.py``'s fake pod whose requests finish at a steady rate
per second of wall time, not per scrape, so Prometheus' ``rate()`` of its counters is that
rate; it also counts the generated tokens the engines export (vLLM 0.34.0
``vllm:generation_tokens``, a counter, vllm/v1/metrics/loggers.py; TGI v3.3.7
``tgi_request_generated_tokens``, a histogram, router/src/server.rs) when the fixture page
does not carry them already.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

import obskit
import yaml

import podserver

# Bounds of the waits for a condition: a hang guard, never an expectation of speed.
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.2


class TimedPod(podserver.FakePod):
    def __init__(
        self, engine: str, *, per_second: float, tokens_per_request: float, **kwargs: Any
    ) -> None:
        super().__init__(engine, **kwargs)
        self.per_second = per_second
        self.tokens_per_request = tokens_per_request
        self.tokens = 0.0
        self.since = time.monotonic()

    def advance(self, requests: float | None = None) -> None:
        if requests is None:
            now = time.monotonic()
            requests, self.since = self.per_second * (now - self.since), now
        super().advance(requests)
        self.tokens += requests * self.tokens_per_request

    def text(self) -> str:
        page = super().text()
        number = self.shape.number
        if self.shape is podserver.TGI and "tgi_request_generated_tokens" not in page:
            page += (
                "# TYPE tgi_request_generated_tokens histogram\n"
                f"tgi_request_generated_tokens_sum {number(self.tokens)}\n"
                f"tgi_request_generated_tokens_count {number(self.requests)}\n"
            )
        elif self.shape is podserver.VLLM and "vllm:generation_tokens_total" not in page:
            page += (
                "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
                "# TYPE vllm:generation_tokens_total counter\n"
                'vllm:generation_tokens_total{engine="0",'
                f'model_name="meta-llama/Llama-3.1-8B-Instruct"}} {number(self.tokens)}\n'
            )
        return page


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _relabel_config(relabeling: dict[str, Any]) -> dict[str, Any]:
    """A Prometheus Operator relabeling (camelCase) as Prometheus' relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(key, key): value for key, value in relabeling.items()}


class Prometheus:
    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "prometheus.log"
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(
        self,
        *,
        pods: dict[str, dict[str, str]],
        operator: str,
        relabelings: list[dict[str, Any]],
        rule_file: pathlib.Path | None = None,
    ) -> dict[str, Any]:
        """Scrape ``pods`` (address -> the pod's Kubernetes meta labels) through the
        PodMonitor's relabelings, and the operator's ``/metrics`` as its ServiceMonitor
        does (honor_labels, in the release namespace)."""
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "serving",
                    "static_configs": [
                        {"targets": [address], "labels": labels} for address, labels in pods.items()
                    ],
                    "relabel_configs": [_relabel_config(item) for item in relabelings],
                },
                {
                    "job_name": "llama-operator",
                    "honor_labels": True,
                    "static_configs": [
                        {
                            "targets": [operator],
                            "labels": {"namespace": obskit.RELEASE_NAMESPACE},
                        }
                    ],
                },
            ],
        }
        if rule_file is not None:
            config["rule_files"] = [str(rule_file)]
        return config

    def start(self, config: dict[str, Any]) -> None:
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self._log = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                obskit.tool("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.wait(self._ready, "Prometheus ready")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.log.read_text(errors="replace")
            raise AssertionError(f"prometheus exited: {log}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as answer,
        ):
            return bool(answer.status == 200)
        return False

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to (at ``at``, Unix seconds)."""
        params = {"query": expr, **({"time": repr(at)} if at is not None else {})}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values(self, expr: str, at: float | None = None) -> dict[tuple[str, ...], float]:
        """``expr``'s samples by their label values (sorted by label name)."""
        return {
            tuple(value for _, value in sorted(sample["metric"].items())): float(sample["value"][1])
            for sample in self.query(expr, at)
        }

    @staticmethod
    def wait(condition: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for: {what}")
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def running(directory: pathlib.Path, config_of: Any) -> Iterator[Prometheus]:
    server = Prometheus(directory)
    try:
        server.start(config_of(server))
        yield server
    finally:
        server.stop()
