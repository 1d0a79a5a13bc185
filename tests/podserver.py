"""Fake serving pods for autoscaler and canary tests: each a /metrics endpoint on 127.0.0.1.

A ``FakePod`` serves ``tests/fixtures/metrics/<engine>.prom`` with ``$waiting``,
``$running`` and ``$kv_cache`` filled in from its attributes, which a test changes
while it runs. ``status`` makes it answer an error instead, ``delay`` makes it slow
(to show that one slow pod does not stall the scrape of the others). Servers bind
127.0.0.1 on a free port and stop when the context manager exits.

Traffic, for the canary analysis: the pod's finished-request counters and its latency
and time-to-first-token histograms are cumulative over its life, starting from the
fixture's made-up history (vLLM: 118 stop, 9 length, 1 abort, 0 error; TGI: 212 successes, 3
failures). Every GET /metrics first finishes ``rate`` more requests (whether or not the
scrape is answered: traffic does not wait for scrapes), ``error_rate`` of them failed,
each taking ``latency`` seconds end to end and ``ttft`` to its first token. ``advance``
does the same without a server; ``restart`` sets everything back to zero, as a restarted
engine does. ``text`` renders the page without advancing.

KV capacity (vLLM's ``vllm:cache_config_info``): ``num_gpu_blocks`` blocks of
``VLLM_BLOCK_SIZE`` tokens, and from them ``kv_cache_size_tokens`` and
``kv_cache_max_concurrency`` for a context of ``max_model_len``, as vLLM computes them.

LoRA adapters, as vLLM 0.34.0 serves them (``runtime_lora``: VLLM_ALLOW_RUNTIME_LORA_UPDATING
set): GET /v1/models lists the base model and ``adapters`` (name -> path); POST
/v1/load_lora_adapter and /v1/unload_lora_adapter change them with vLLM's checks and
answers, and record each call in ``admin_calls``; ``refuse`` makes a load of a name fail as
the engine's add_lora would. ``api_key`` guards every /v1 path as vLLM's middleware does.
``lora_info`` adds vllm:lora_requests_info series to the metrics page. GETs under /v1 do
not count as ``scrapes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import string
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client.utils import floatToGoString

from stopping import HANDLER_TIMEOUT_SECONDS, stop_server

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "metrics"

# vLLM's default bounds (vllm/v1/metrics/loggers.py): e2e latency ...
VLLM_LATENCY_BOUNDS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
# ... and time to first token.
VLLM_TTFT_BOUNDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip


# The API key guards every path starting with one of these (GUARDED_PREFIX, vLLM 0.34.0
# vllm/entrypoints/serve/middleware/authenticate.py); a request without the right
# "Authorization: Bearer <key>" gets 401 with this body (AuthenticationMiddleware.__call__).
VLLM_GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")
VLLM_UNAUTHORIZED = {"error": "Unauthorized"}
VLLM_MODELS_PATH = "/v1/models"  # vllm/entrypoints/openai/models/api_router.py (0.34.0)
# attach_router adds these only when VLLM_ALLOW_RUNTIME_LORA_UPDATING is on
# (vllm/entrypoints/serve/lora/api_router.py, 0.34.0).
VLLM_LOAD_PATH = "/v1/load_lora_adapter"
VLLM_UNLOAD_PATH = "/v1/unload_lora_adapter"
# vllm:lora_requests_info (vLLM 0.34.0 vllm/v1/metrics/loggers.py): a gauge, this
# documentation, labelnames [max_lora, waiting_lora_adapters, running_lora_adapters].
# prometheus_client writes a sample's labels sorted by name (generate_latest), so the page
# shows max_lora, running_lora_adapters, waiting_lora_adapters; max_lora is the int
# lora_config.max_loras, which labels() turns into its str.
VLLM_LORA_INFO = "vllm:lora_requests_info"
VLLM_LORA_INFO_HELP = "Running stats on lora requests."
# LoRAConfig.max_loras' default (vLLM 0.34.0 vllm/config/lora.py).
VLLM_DEFAULT_MAX_LORAS = 1


# vLLM 0.34.0's CacheConfig.DEFAULT_BLOCK_SIZE (vllm/config/cache.py).
VLLM_BLOCK_SIZE = 64
# A plausible default, not any plan's figure (a test that compares with a plan sets its
# own): Llama 3.1 8B at 16-bit with a 7680-token context and about 3.79 GiB of KV cache,
# at 128 KiB per token (32 layers x 8 KV heads x 128 x 2 x 2 bytes).
DEFAULT_MAX_MODEL_LEN = 7680
DEFAULT_GPU_BLOCKS = 485


def vllm_kv_tokens(num_gpu_blocks: int, max_model_len: int) -> tuple[int, float]:
    """(kv_cache_size_tokens, kv_cache_max_concurrency) of one full-attention KV-cache
    group, as vLLM 0.34.0 computes them (get_max_concurrency_for_kv_cache_config and
    get_kv_cache_capacity, vllm/v1/core/kv_cache_utils.py): the blocks divided by the
    blocks one request of max_model_len takes, times max_model_len."""
    concurrency = num_gpu_blocks / math.ceil(max_model_len / VLLM_BLOCK_SIZE)
    return int(concurrency * max_model_len), concurrency


def _tgi_duration_bounds() -> tuple[float, ...]:
    # TGI v3.3.7 router/src/server.rs: every *duration histogram gets 35 bounds, 0.0001 s x 1.5 per
    # bucket (0.00015 ... 145.6 s), computed by repeated multiplication as here.
    bounds, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        bounds.append(value)
    return tuple(bounds)


TGI_DURATION_BOUNDS = _tgi_duration_bounds()


def _rust_number(value: float) -> str:
    # TGI (Rust, metrics-exporter-prometheus) writes counters as integers and floats
    # without a trailing ".0".
    return str(int(value)) if value == int(value) else repr(value)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """How one engine counts and shows finished requests."""

    history: dict[str, float]  # finished requests by outcome placeholder, at start
    failed: str  # the outcome placeholder failures go to
    succeeded: tuple[tuple[str, float], ...]  # where successes go, by share
    observes_failures: bool  # whether failed requests are in the histograms too
    latency_family: str
    latency_bounds: tuple[float, ...]
    latency_history: tuple[tuple[float, float], ...]  # (seconds, requests)
    ttft_family: str
    ttft_bounds: tuple[float, ...]
    ttft_history: tuple[tuple[float, float], ...]
    bucket_labels: str  # the labels of a bucket line, ``{le}`` for the bound
    number: Callable[[float], str]


VLLM = _Shape(
    history={"stop": 118.0, "length": 9.0, "abort": 1.0, "error": 0.0},
    # Failures as the engine reports a request it failed; "abort" (a cancelled request)
    # keeps its one request of history and is not a failure unless countAsErrors lists abort.
    failed="error",
    succeeded=(("stop", 0.9), ("length", 0.1)),
    # vLLM observes every finished request, aborted ones too.
    observes_failures=True,
    latency_family="vllm:e2e_request_latency_seconds",
    latency_bounds=VLLM_LATENCY_BOUNDS,
    latency_history=((0.9, 10), (1.2, 30), (1.8, 40), (2.2, 25), (4.0, 15), (8.0, 7), (18, 1)),
    ttft_family="vllm:time_to_first_token_seconds",
    ttft_bounds=VLLM_TTFT_BOUNDS,
    ttft_history=((0.03, 20), (0.05, 21), (0.07, 30), (0.2, 30), (0.4, 12), (0.9, 7), (2, 8)),
    # prometheus_client sorts a sample's labels, so le sits between engine and model_name.
    bucket_labels='engine="0",le="{le}",model_name="meta-llama/Llama-3.1-8B-Instruct"',
    number=floatToGoString,
)

TGI = _Shape(
    history={"success": 212.0, "failure": 3.0},
    failed="failure",
    succeeded=(("success", 1.0),),
    # TGI records its histograms beside tgi_request_success, on the success path only.
    observes_failures=False,
    latency_family="tgi_request_duration",
    latency_bounds=TGI_DURATION_BOUNDS,
    latency_history=((0.4, 40), (0.8, 80), (1.5, 60), (3.0, 30), (9.0, 2)),
    ttft_family="tgi_request_queue_duration",
    ttft_bounds=TGI_DURATION_BOUNDS,
    ttft_history=((0.002, 150), (0.01, 50), (0.1, 12)),
    bucket_labels='le="{le}"',
    number=_rust_number,
)

SHAPES = {"vllm": VLLM, "vllm-legacy": VLLM, "tgi": TGI}


class FakeHistogram:
    """One cumulative histogram of a fake pod, rendered in its engine's shape."""

    def __init__(self, family: str, bounds: tuple[float, ...], shape: _Shape) -> None:
        self.family = family
        self.bounds = bounds
        self.shape = shape
        self.counts = [0.0] * (len(bounds) + 1)  # per bucket, not cumulative; last +Inf
        self.sum = 0.0

    @property
    def count(self) -> float:
        return sum(self.counts)

    def observe(self, seconds: float, times: float = 1.0) -> None:
        """``times`` requests of ``seconds`` each: into the first bucket whose bound holds it."""
        index = next((i for i, bound in enumerate(self.bounds) if seconds <= bound), -1)
        self.counts[index] += times
        self.sum += seconds * times

    def reset(self) -> None:
        self.counts = [0.0] * len(self.counts)
        self.sum = 0.0

    def cumulative(self) -> list[tuple[float, float]]:
        """(bound, cumulative count), the last bound inf: what the page shows."""
        running, result = 0.0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result

    def lines(self) -> str:
        number = self.shape.number
        return "\n".join(
            f"{self.family}_bucket{{{self.shape.bucket_labels.format(le=_le(bound, number))}}}"
            f" {number(count)}"
            for bound, count in self.cumulative()
        )


def _le(bound: float, number: Callable[[float], str]) -> str:
    return "+Inf" if bound == float("inf") else number(bound)


def _label_value(value: str) -> str:
    # prometheus_client's escaping of a label value (exposition.py): \\, \n and ".
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _model_card(model_id: str, root: str, parent: str | None, created: int) -> dict[str, Any]:
    """A ModelCard with its one ModelPermission, every field vLLM 0.34.0 dumps
    (vllm/entrypoints/serve/engine/protocol.py)."""
    permission = {
        "id": f"modelperm-{model_id}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": None,
        "permission": [permission],
    }


def _error(
    status: int, message: str, *, err_type: str = "InvalidUserInput", param: str | None = None
) -> tuple[int, dict[str, Any]]:
    """vLLM 0.34.0's ErrorResponse as create_error_response builds it
    (vllm/entrypoints/serve/exception_handling/error_response.py): ErrorInfo's fields
    message, type, param, code; the route answers it with status code (api_router.py)."""
    return status, {"error": {"message": message, "type": err_type, "param": param, "code": status}}


def _validation_error(detail: str, *, param: str | None = None) -> tuple[int, dict[str, Any]]:
    """validation_exception_handler (vLLM 0.34.0 vllm/entrypoints/serve/exception_handling/
    handlers/validation.py) for one error: 400 "Bad Request". ``detail`` stands for the
    str() of pydantic's error dict, simplified."""
    return _error(400, f"1 validation error:\n  {detail}", err_type="Bad Request", param=param)


def _invalid(body: dict[str, Any], fields: tuple[str, ...]) -> tuple[int, dict[str, Any]]:
    """A request body pydantic refuses: a field missing or not a string."""
    field = next(f for f in fields if not isinstance(body.get(f), str))
    kind = "missing" if field not in body else "string_type"
    return _validation_error(f"{{'type': '{kind}', 'loc': 'body.{field}'}}", param=f"body.{field}")


# validate_json_request (vLLM 0.34.0 vllm/entrypoints/serve/utils/api_utils.py) raises
# RequestValidationError(errors=[this]) for any media type but application/json.
UNSUPPORTED_MEDIA = "Unsupported Media Type: Only 'application/json' is allowed"
# The 404 of a route that does not exist: Starlette raises its own HTTPException, which
# vLLM's handler for fastapi.HTTPException (serve/exception_handling/register.py) does not
# match, so FastAPI's default handler answers {"detail": "Not Found"}.
ROUTE_NOT_FOUND = {"detail": "Not Found"}
# A POST body larger than this is refused unread (413): the handler stays bounded.
MAX_POST_BYTES = 1 << 20


class FakePod:
    def __init__(
        self,
        engine: str = "vllm",
        *,
        waiting: float = 0,
        running: float = 0,
        rate: float = 0,
        error_rate: float = 0.0,
        latency: float = 1.0,
        ttft: float = 0.1,
        runtime_lora: bool = False,
        api_key: str | None = None,
        served_model: str = "meta-llama/Llama-3.1-8B-Instruct",
    ) -> None:
        self.template = string.Template((FIXTURES / f"{engine}.prom").read_text(encoding="utf-8"))
        self.waiting = waiting
        self.running = running
        self.kv_cache = 0.0
        self.num_gpu_blocks = DEFAULT_GPU_BLOCKS
        self.max_model_len = DEFAULT_MAX_MODEL_LEN
        self.status = 200
        self.delay = 0.0
        self.scrapes = 0
        self.rate = rate  # requests finished per GET /metrics
        self.error_rate = error_rate  # the failed share of them
        self.latency = latency  # seconds end to end, each
        self.ttft = ttft  # seconds to the first token (TGI: in its queue), each
        self.shape = SHAPES[engine]
        self.finished = dict(self.shape.history)  # cumulative, by outcome placeholder
        self.latency_histogram = FakeHistogram(
            self.shape.latency_family, self.shape.latency_bounds, self.shape
        )
        self.ttft_histogram = FakeHistogram(
            self.shape.ttft_family, self.shape.ttft_bounds, self.shape
        )
        for seconds, times in self.shape.latency_history:
            self.latency_histogram.observe(seconds, times)
        for seconds, times in self.shape.ttft_history:
            self.ttft_histogram.observe(seconds, times)
        # LoRA adapters (vLLM 0.34.0), see the module docstring.
        self.runtime_lora = (
            runtime_lora  # False: the POST paths are 404, as with the variable unset
        )
        self.api_key = api_key
        self.served_model = served_model
        self.adapters: dict[str, str] = {}  # name -> lora_path, loaded now
        self.admin_calls: list[tuple[str, dict[str, Any]]] = []  # (path, JSON body) per POST
        self.refuse: dict[str, str] = {}  # adapter name -> message its load fails with (400)
        # (running adapters comma-joined, waiting comma-joined, value) per series
        self.lora_info: list[tuple[str, str, float]] | None = None
        self.max_lora = VLLM_DEFAULT_MAX_LORAS
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def requests(self) -> float:
        """Finished requests over the pod's life, failed ones included."""
        return sum(self.finished.values())

    @property
    def errors(self) -> float:
        return self.finished[self.shape.failed]

    def advance(self, requests: float | None = None) -> None:
        """Finish ``requests`` (default ``rate``) more requests, as the attributes say."""
        total = self.rate if requests is None else requests
        if total <= 0:
            return
        failed = total * self.error_rate
        succeeded = total - failed
        self.finished[self.shape.failed] += failed
        for outcome, share in self.shape.succeeded:
            self.finished[outcome] += succeeded * share
        observed = total if self.shape.observes_failures else succeeded
        if observed > 0:
            self.latency_histogram.observe(self.latency, observed)
            self.ttft_histogram.observe(self.ttft, observed)

    def restart(self) -> None:
        """Counters and histograms back to zero, as after an engine restart."""
        self.finished = dict.fromkeys(self.finished, 0.0)
        self.latency_histogram.reset()
        self.ttft_histogram.reset()

    def text(self) -> str:
        return self._page() + self._lora_info_lines()

    def _lora_info_lines(self) -> str:
        """vllm:lora_requests_info as prometheus_client writes it (HELP, TYPE, a line per
        series, labels sorted), after the fixture's page, which ends with a newline."""
        if self.lora_info is None:
            return ""
        lines = [f"# HELP {VLLM_LORA_INFO} {VLLM_LORA_INFO_HELP}", f"# TYPE {VLLM_LORA_INFO} gauge"]
        for running, waiting, value in self.lora_info:
            labels = (
                f'max_lora="{self.max_lora}",'
                f'running_lora_adapters="{_label_value(running)}",'
                f'waiting_lora_adapters="{_label_value(waiting)}"'
            )
            lines.append(f"{VLLM_LORA_INFO}{{{labels}}} {floatToGoString(value)}")
        return "\n".join(lines) + "\n"

    def models(self) -> dict[str, Any]:
        """GET /v1/models: vLLM 0.34.0's ModelList (vllm/entrypoints/serve/engine/protocol.py)
        as show_available_models builds it (vllm/entrypoints/openai/models/serving.py): the
        base model's card (root its model path, here the served name; max_model_len set),
        then one card per adapter, id its name, root its lora_path, parent the base model."""
        created = int(time.time())
        base = _model_card(self.served_model, self.served_model, None, created)
        base["max_model_len"] = self.max_model_len
        cards = [base] + [
            _model_card(name, path, self.served_model, created)
            for name, path in self.adapters.items()
        ]
        return {"object": "list", "data": cards}

    def load(self, body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
        """POST /v1/load_lora_adapter: (status, text or JSON), as vLLM 0.34.0's
        OpenAIServingModels.load_lora_adapter and _check_load_lora_adapter_request
        (vllm/entrypoints/openai/models/serving.py) answer."""
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str):
            return _invalid(body, ("lora_name", "lora_path"))
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name == self.served_model:
            return _error(400, f"The lora adapter '{name}' conflicts with a served base model.")
        if not body.get("load_inplace", False) and name in self.adapters:
            return _error(
                400,
                f"The lora adapter '{name}' has already been loaded. If you want to load "
                "the adapter in place, set 'load_inplace' to True.",
            )
        if name in self.refuse:
            # As if engine_client.add_lora failed (vLLM answers 500 InternalServerError for
            # most failures, 404 for LoRAAdapterNotFoundError); 400 here, for tests.
            return _error(400, self.refuse[name])
        self.adapters[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, body: dict[str, Any]) -> tuple[int, str | dict[str, Any]]:
        """POST /v1/unload_lora_adapter: unload_lora_adapter and
        _check_unload_lora_adapter_request (same file, 0.34.0)."""
        name = body.get("lora_name")
        if not isinstance(name, str):
            return _invalid(body, ("lora_name",))
        if not name:
            return _error(400, "'lora_name' needs to be provided to unload a LoRA adapter.")
        if name not in self.adapters:
            return _error(
                404, f"The lora adapter '{name}' cannot be found.", err_type="NotFoundError"
            )
        del self.adapters[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def authorized(self, path: str, authorization: str | None) -> bool:
        """AuthenticationMiddleware.verify_token (vLLM 0.34.0 serve/middleware/
        authenticate.py): guarded paths need "<bearer, any case> <key>"."""
        if self.api_key is None or not path.startswith(VLLM_GUARDED_PREFIX):
            return True
        scheme, _, param = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and param == self.api_key

    def _page(self) -> str:
        number = self.shape.number
        tokens, concurrency = vllm_kv_tokens(self.num_gpu_blocks, self.max_model_len)
        return self.template.substitute(
            num_gpu_blocks=str(self.num_gpu_blocks),
            kv_cache_size_tokens=str(tokens),
            kv_cache_max_concurrency=str(concurrency),
            waiting=f"{float(self.waiting)!r}",
            running=f"{float(self.running)!r}",
            kv_cache=f"{float(self.kv_cache)!r}",
            **{outcome: number(value) for outcome, value in self.finished.items()},
            latency_buckets=self.latency_histogram.lines(),
            latency_count=number(self.latency_histogram.count),
            latency_sum=number(self.latency_histogram.sum),
            ttft_buckets=self.ttft_histogram.lines(),
            ttft_count=number(self.ttft_histogram.count),
            ttft_sum=number(self.ttft_histogram.sum),
        )

    def __enter__(self) -> FakePod:
        pod = self

        class Handler(BaseHTTPRequestHandler):
            timeout = HANDLER_TIMEOUT_SECONDS  # a client that sends nothing is dropped

            def do_GET(self) -> None:
                if not self.path.startswith("/v1"):
                    pod.scrapes += 1
                if self.path == "/metrics":
                    with pod.lock:
                        pod.advance()
                if pod.delay:
                    time.sleep(pod.delay)
                # The scraper may have stopped waiting (a slow pod past its timeout).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_POST_BYTES:
                    self.send_error(413)
                    return
                # Read before answering: a body left unread may reset the connection.
                raw = self.rfile.read(length)
                if pod.delay:
                    time.sleep(pod.delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._admin(raw)

            def _answer(self) -> None:
                if not pod.authorized(self.path, self.headers.get("Authorization")):
                    self._send(401, VLLM_UNAUTHORIZED)
                    return
                if self.path == VLLM_MODELS_PATH:
                    with pod.lock:
                        self._send(200, pod.models())
                    return
                if self.path != "/metrics" or pod.status != 200:
                    self.send_error(404 if self.path != "/metrics" else pod.status)
                    return
                with pod.lock:
                    body = pod.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _admin(self, raw: bytes) -> None:
                # The middleware runs before routing: an unknown /v1 path is 401 too.
                if not pod.authorized(self.path, self.headers.get("Authorization")):
                    self._send(401, VLLM_UNAUTHORIZED)
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with pod.lock:
                    pod.admin_calls.append((self.path, body if isinstance(body, dict) else {}))
                routes = {VLLM_LOAD_PATH: pod.load, VLLM_UNLOAD_PATH: pod.unload}
                if not pod.runtime_lora or self.path not in routes:
                    self._send(404, ROUTE_NOT_FOUND)
                    return
                media = self.headers.get("Content-Type", "").lower().split(";", 1)[0]
                if media != "application/json":
                    self._send(*_validation_error(UNSUPPORTED_MEDIA))
                elif not isinstance(body, dict):
                    self._send(*_validation_error("{'type': 'json_invalid', 'loc': 'body'}"))
                else:
                    with pod.lock:
                        status, answer = routes[self.path](body)
                    self._send(status, answer)

            def _send(self, status: int, answer: str | dict[str, Any]) -> None:
                # A str as Response(content=...) sends it (no media type, api_router.py);
                # a dict as JSONResponse does.
                if isinstance(answer, str):
                    body, media = answer.encode(), None
                else:
                    body = json.dumps(answer, separators=(",", ":")).encode()
                    media = "application/json"
                self.send_response(status)
                if media is not None:
                    self.send_header("Content-Type", media)
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
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            # Bounded: a contract test exits this on the event loop's thread, where kmock
            # serves the operator; a stop that never returned would hang the whole run.
            stop_server(server, thread, name=f"fake pod on port {server.server_address[1]}")
