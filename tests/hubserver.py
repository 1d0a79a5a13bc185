"""A fixture Hugging Face Hub on 127.0.0.1, so tests drive the real ``huggingface_hub`` client.

The client is pointed here through ``HF_ENDPOINT`` (see ``point_client_at``); everything
between ``HfApi`` and the socket, error mapping included, is the real library code.

Routes, shaped after what huggingface_hub 2.4.0 sends and what ``hf_raise_for_status``
expects back (the ``X-Error-Code`` / ``X-Error-Message`` headers decide which exception
the client raises):

- ``GET /api/models/{owner}/{name}`` and ``.../revision/{rev}``: the model-info body,
  cut down to ``id``, ``_id`` and the ``expand`` keys when ``expand`` is asked for.
  Revisions: ``main`` and the body's ``sha`` (when it has one); others are
  ``RevisionNotFound``.
- ``GET /api/models/{owner}/{name}/auth-check``: 200 when the caller may download;
  ``GatedRepo`` (403 with a token, 401 without) when the repo is gated and the token is
  not granted; ``RepoNotFound`` for an unknown repo (or a ``private`` one the token is
  not granted).

- ``GET`` / ``HEAD /{owner}/{name}/resolve/{rev}/{filename}``: a file of the repository
  (``files``: repository -> filename -> JSON body), with the ``X-Repo-Commit`` and
  ``ETag`` headers ``hf_hub_download`` reads; a missing file is ``EntryNotFound`` (404), a
  gated repository without a grant ``GatedRepo`` as above. LoRA adapter repositories
  (``tests/fixtures/hub/adapters/*.json``: a model-info body plus ``files``, whose
  ``adapter_config.json`` is in PEFT's format: ``r``, ``target_modules``,
  ``base_model_name_or_path``) are served this way; ``example-org/*`` adapters are
  invented.

As on the real Hub, a token the server does not know is refused with 401 ``Invalid
credentials in Authorization header`` before anything else, and an unknown repository is
401 ``RepoNotFound`` anonymously, 404 with a token. ``down = True`` makes every request
answer 503; ``forced = (status, error code, error message)`` makes every request give
that answer.

The model-info bodies in ``tests/fixtures/hub/*.json`` are hand-written in the shape the
real Hub returns for ``?expand=cardData&expand=gated&expand=baseModels``; they were not
downloaded (there is no network here). Licences and base models follow the public model
cards as best known, ``_id`` values are obviously fake, and fields the operator does not
read (downloads, dates, commit shas) are left out. ``example-org/*`` are invented.

Use ``with HubFixture.loaded() as hub:`` or, in a pytest fixture, ``with serving(monkeypatch)
as hub:`` which also points the client at it. Tests may change ``models``, ``grants``,
``valid_tokens``, ``down`` and ``forced`` while the server runs; ``requests`` records every
request as (method, path, query, had_authorization), never the token itself.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple

import huggingface_hub.constants
import pytest

from stopping import HANDLER_TIMEOUT_SECONDS, stop_server

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hub"

_INVALID_TOKEN = "Invalid credentials in Authorization header"
_MODEL_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<revision>[^/]+))?$")
_AUTH_CHECK = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/auth-check$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
# The commit every fixture file is served from (a fake, obviously).
FIXTURE_COMMIT = "0" * 39 + "1"


class Request(NamedTuple):
    method: str
    path: str
    query: dict[str, list[str]]
    had_authorization: bool


def load_models(directory: pathlib.Path = FIXTURES) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` model-info body in ``directory``, by its ``id``."""
    models: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        models[body["id"]] = body
    return models


def load_adapters(
    directory: pathlib.Path = FIXTURES / "adapters",
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The adapter repositories in ``directory``: (model-info bodies, files) by ``id``."""
    models: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    for repo_id, body in load_models(directory).items():
        files[repo_id] = body.pop("files", {})
        models[repo_id] = body
    return models, files


class HubFixture:
    """The fixture Hub; a context manager that serves on entry and stops on exit."""

    def __init__(self, models: Mapping[str, dict[str, Any]] | None = None) -> None:
        # Re-entrant: tests may hold it while calling the helpers below.
        self.lock = threading.RLock()
        self.models: dict[str, dict[str, Any]] = dict(models or {})
        # repository -> filename -> the file's JSON body (served under /resolve/).
        self.files: dict[str, dict[str, Any]] = {}
        self.grants: dict[str, set[str]] = {}
        self.valid_tokens: set[str] = set()
        self.requests: list[Request] = []
        self.down = False
        # (status, X-Error-Code, X-Error-Message) for every request, to mimic answers the
        # routes above never give (a proxy's bare 401 or 403, say).
        self.forced: tuple[int, str | None, str | None] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def loaded(cls, directory: pathlib.Path = FIXTURES) -> HubFixture:
        """A fixture Hub holding every model in ``tests/fixtures/hub`` and every adapter in
        its ``adapters/``."""
        adapters, files = load_adapters(directory / "adapters")
        hub = cls({**load_models(directory), **adapters})
        hub.files.update(files)
        return hub

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fixture Hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def grant(self, repo_id: str, token: str) -> None:
        """Make ``token`` a valid token that has been granted ``repo_id``."""
        with self.lock:
            self.valid_tokens.add(token)
            self.grants.setdefault(repo_id, set()).add(token)

    def seen(self) -> list[Request]:
        """A copy of the request log."""
        with self.lock:
            return list(self.requests)

    def start(self) -> HubFixture:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        # A short poll: shutdown() waits for the loop to notice, once per interval.
        thread = threading.Thread(
            target=server.serve_forever, args=(0.01,), name="fixture-hub", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            # Closing joins the handler threads; each gives up on a silent client within
            # HANDLER_TIMEOUT_SECONDS, and the whole stop is bounded (a hang is an error).
            stop_server(server, thread, name="the fixture Hub")

    def __enter__(self) -> HubFixture:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # What the server answers; called by the handler with the lock held.

    def _answer(self, path: str, query: dict[str, list[str]], token: str | None) -> _Answer:
        if self.down:
            return _Answer(503, {"error": "Service Unavailable"})
        if self.forced is not None:
            status, code, message = self.forced
            if message is None:
                return _Answer(status, {}, () if code is None else (("X-Error-Code", code),))
            return _error(status, message, code=code)
        if token is not None and token not in self.valid_tokens:
            return _error(401, _INVALID_TOKEN)
        if match := _AUTH_CHECK.match(path):
            return self._auth_check(urllib.parse.unquote(match["repo"]), token)
        if match := _MODEL_INFO.match(path):
            revision = urllib.parse.unquote(match["revision"] or "main")
            return self._model_info(urllib.parse.unquote(match["repo"]), revision, query, token)
        if match := _RESOLVE.match(path):
            return self._resolve(
                urllib.parse.unquote(match["repo"]),
                urllib.parse.unquote(match["revision"]),
                urllib.parse.unquote(match["filename"]),
                token,
            )
        return _Answer(404, {"error": "Sorry, we can't find the page you are looking for."})

    def _visible(self, repo_id: str, token: str | None) -> dict[str, Any] | None:
        model = self.models.get(repo_id)
        if model is None or (model.get("private") and token not in self.grants.get(repo_id, ())):
            return None
        return model

    def _model_info(
        self, repo_id: str, revision: str, query: dict[str, list[str]], token: str | None
    ) -> _Answer:
        model = self._visible(repo_id, token)
        if model is None:
            return _repo_not_found(token)
        if revision not in ("main", model.get("sha")):
            return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        expand = query.get("expand")
        if expand:
            model = {k: v for k, v in model.items() if k in ("_id", "id", *expand)}
        return _Answer(200, model)

    def _resolve(self, repo_id: str, revision: str, filename: str, token: str | None) -> _Answer:
        model = self._visible(repo_id, token)
        if model is None:
            return _repo_not_found(token)
        if model.get("gated") and token not in self.grants.get(repo_id, ()):
            return _error(
                401 if token is None else 403,
                f"Access to model {repo_id} is restricted.",
                code="GatedRepo",
            )
        if revision not in ("main", model.get("sha"), FIXTURE_COMMIT):
            return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        body = self.files.get(repo_id, {}).get(filename)
        if body is None:
            return _error(404, f"{filename} does not exist", code="EntryNotFound")
        headers = (("X-Repo-Commit", FIXTURE_COMMIT), ("ETag", f'"{repo_id}/{filename}"'))
        return _Answer(200, body, headers)

    def _auth_check(self, repo_id: str, token: str | None) -> _Answer:
        model = self._visible(repo_id, token)
        if model is None:
            return _repo_not_found(token)
        if model.get("gated") and token not in self.grants.get(repo_id, ()):
            if token is None:
                # The real Hub's answer to an anonymous request for a gated repo.
                message = (
                    f"Access to model {repo_id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in."
                )
                return _error(401, message, code="GatedRepo")
            message = (
                f"Access to model {repo_id} is restricted and you are not in the authorized "
                f"list. Visit https://huggingface.co/{repo_id} to ask for access."
            )
            return _error(403, message, code="GatedRepo")
        return _Answer(200, {})


class _Answer(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, message: str, *, code: str | None = None) -> _Answer:
    headers = [("X-Error-Message", message)]
    if code is not None:
        headers.append(("X-Error-Code", code))
    return _Answer(status, {"error": message}, tuple(headers))


def _repo_not_found(token: str | None) -> _Answer:
    # 401 anonymously (the Hub does not say whether a private repo exists), 404 with a token.
    return _error(401 if token is None else 404, "Repository not found", code="RepoNotFound")


class _Server(ThreadingHTTPServer):
    # Join handler threads on close, so a test never ends with a request half-answered.
    daemon_threads = False
    block_on_close = True
    hub: HubFixture


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so the client keeps no socket open to a server
    # that a later test has stopped.
    protocol_version = "HTTP/1.0"
    timeout = HANDLER_TIMEOUT_SECONDS  # a client that sends or reads nothing is dropped

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        authorization = self.headers.get("Authorization")
        token = None
        if authorization is not None and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        hub = self.server.hub
        with hub.lock:
            method = "GET" if body else "HEAD"
            hub.requests.append(Request(method, parsed.path, query, authorization is not None))
            answer = hub._answer(parsed.path, query, token)
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows the request log through assertions, not stderr


def point_client_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Send huggingface_hub to ``url``: the session-wide offline switch is lifted for one test.

    ``tests/conftest.py`` sets ``HF_HUB_OFFLINE=1`` for the whole session and the client
    copied it into ``huggingface_hub.constants`` at import, so both are undone here.
    """
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@contextlib.contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, hub: HubFixture | None = None) -> Iterator[HubFixture]:
    """Run ``hub`` (default: every fixture model) with the client pointed at it."""
    with hub if hub is not None else HubFixture.loaded() as running:
        point_client_at(monkeypatch, running.url)
        yield running
