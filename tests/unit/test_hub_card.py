"""hub.card and hub.access: the real huggingface_hub client against the fixture Hub.

Every request here goes through ``HfApi`` and ``hf_raise_for_status`` to the server in
``tests/hubserver.py`` on 127.0.0.1; nothing is replaced inside the client. Time is an
injected clock, never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator

import huggingface_hub
import huggingface_hub.constants
import pytest
from huggingface_hub.utils import _http as hf_http

import hubserver
from llama_operator.clients import hub

TOKEN = "hf_fixtureTokenGrantedXq7Lr2Vb9Kd"
OTHER = "hf_fixtureTokenOtherPz3Mw8Nc1Ty"
BAD = "hf_fixtureTokenRevokedJh5Gs4Fa6"

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"  # gated, manual approval
OPEN = "example-org/tiny-llama"  # not gated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    hub.clear_cache()
    yield
    hub.clear_cache()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[hubserver.HubFixture]:
    with hubserver.serving(monkeypatch) as running:
        running.valid_tokens.update({TOKEN, OTHER})
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


def asked(server: hubserver.HubFixture, suffix: str = "") -> int:
    """How many requests the fixture Hub has seen (whose path ends with ``suffix``)."""
    return sum(1 for request in server.seen() if request.path.endswith(suffix))


# (repository, license, license_name, base models, gated): what each fixture card says.
CARDS = [
    (LLAMA, "llama3.1", None, ("meta-llama/Llama-3.1-8B",), True),
    ("meta-llama/Llama-3.1-8B", "llama3.1", None, (), True),
    (
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "llama3.2",
        None,
        ("meta-llama/Llama-3.2-11B-Vision",),
        True,
    ),
    ("meta-llama/Llama-3.2-3B-Instruct", "llama3.2", None, ("meta-llama/Llama-3.2-3B",), True),
    ("meta-llama/Llama-3.3-70B-Instruct", "llama3.3", None, ("meta-llama/Llama-3.1-70B",), True),
    (
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "other",
        "llama4",
        ("meta-llama/Llama-4-Scout-17B-16E",),
        True,
    ),
    (
        "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "mit",
        None,
        ("meta-llama/Llama-3.1-8B",),
        False,
    ),
    (
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        "mit",
        None,
        ("meta-llama/Llama-3.3-70B-Instruct",),
        False,
    ),
    ("mistralai/Mistral-Large-Instruct-2407", "other", "mrl", (), True),  # gated "auto"
    ("Qwen/Qwen2.5-72B-Instruct", "other", "qwen", ("Qwen/Qwen2.5-72B",), False),
    ("google/gemma-2-9b-it", "gemma", None, ("google/gemma-2-9b",), True),
    (OPEN, None, None, (), False),
    ("example-org/chat-tune", "apache-2.0", None, ("example-org/llama-intermediate",), False),
    (
        "example-org/llama-intermediate",
        "other",
        None,
        ("meta-llama/Llama-3.2-3B-Instruct",),
        False,
    ),
    (
        "example-org/llama-merge",
        "llama3.1",
        None,
        ("meta-llama/Llama-3.1-8B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
        False,
    ),
    (
        "example-org/Llama-3.1-8B-Instruct-AWQ",
        "llama3.1",
        None,
        ("meta-llama/Llama-3.1-8B-Instruct",),
        False,
    ),
]


class TestCard:
    @pytest.mark.parametrize("row", CARDS, ids=[row[0] for row in CARDS])
    def test_fixture_cards(
        self,
        server: hubserver.HubFixture,
        row: tuple[str, str | None, str | None, tuple[str, ...], bool],
    ) -> None:
        repo_id, license_id, license_name, bases, gated = row
        result = hub.card(repo_id=repo_id, revision="main", token=None)
        assert result == hub.Card(
            license=license_id, license_name=license_name, base_models=bases, gated=gated
        )

    def test_every_fixture_has_a_row(self) -> None:
        assert {row[0] for row in CARDS} == set(hubserver.load_models())

    def test_asks_for_the_card_properties_at_the_revision(
        self, server: hubserver.HubFixture
    ) -> None:
        hub.card(repo_id=LLAMA, revision="main", token=None)
        [request] = server.seen()
        assert request.path == f"/api/models/{LLAMA}/revision/main"
        assert request.query == {"expand": ["cardData", "gated", "baseModels"]}
        assert request.had_authorization is False  # no token, and never the saved one

    def test_a_token_is_sent_when_given(self, server: hubserver.HubFixture) -> None:
        hub.card(repo_id=LLAMA, revision="main", token=TOKEN)
        assert [request.had_authorization for request in server.seen()] == [True]

    def test_a_two_step_base_chain_is_followed_by_asking_again(
        self, server: hubserver.HubFixture
    ) -> None:
        chain = ["example-org/chat-tune"]
        licences = []
        while len(chain) < 5:
            try:
                found = hub.card(repo_id=chain[-1], revision="main", token=None)
            except hub.HubError:
                break
            licences.append(found.license)
            chain.append(found.base_models[0])
        assert chain == [
            "example-org/chat-tune",
            "example-org/llama-intermediate",
            "meta-llama/Llama-3.2-3B-Instruct",
            "meta-llama/Llama-3.2-3B",
        ]
        # The last one is not a fixture: its card cannot be read, which ends the walk.
        assert licences == ["apache-2.0", "other", "llama3.2"]

    @pytest.mark.parametrize(
        ("base_models_json", "expected"),
        [
            (["b/two", "a/one"], ("a/one", "b/two")),
            ([{"id": "b/two"}, {"id": "a/one"}], ("a/one", "b/two")),
            ({"relation": "quantized", "models": [{"id": "c/three"}]}, ("a/one", "c/three")),
            (
                {"relation": "merge", "models": [{"id": "a/one"}, {"id": "d/four"}]},
                ("a/one", "d/four"),
            ),
            (None, ("a/one",)),
            (42, ("a/one",)),  # an unknown shape adds nothing
        ],
    )
    def test_base_models_shapes(
        self,
        server: hubserver.HubFixture,
        base_models_json: object,
        expected: tuple[str, ...],
    ) -> None:
        body: dict[str, object] = {"_id": "0" * 24, "id": "x/shapes", "gated": False}
        body["cardData"] = {"license": "mit", "base_model": "a/one"}
        if base_models_json is not None:
            body["baseModels"] = base_models_json
        server.models["x/shapes"] = body
        assert hub.card(repo_id="x/shapes", revision="main", token=None).base_models == expected

    def test_a_card_base_model_list_and_no_hub_lineage(self, server: hubserver.HubFixture) -> None:
        server.models["x/list"] = {
            "_id": "0" * 24,
            "id": "x/list",
            "cardData": {"license": ["apache-2.0"], "base_model": [" a/one ", "", "b/two"]},
        }
        result = hub.card(repo_id="x/list", revision="main", token=None)
        assert result == hub.Card(
            license="apache-2.0", license_name=None, base_models=("a/one", "b/two"), gated=False
        )

    def test_no_card_at_all(self, server: hubserver.HubFixture) -> None:
        server.models["x/bare"] = {
            "_id": "0" * 24,
            "id": "x/bare",
            "gated": "auto",
            "baseModels": {"relation": "adapter", "models": [{"id": "a/one"}]},
        }
        result = hub.card(repo_id="x/bare", revision="main", token=None)
        assert result == hub.Card(
            license=None, license_name=None, base_models=("a/one",), gated=True
        )

    def test_several_licences_name_no_single_one(self, server: hubserver.HubFixture) -> None:
        server.models["x/dual"] = {
            "_id": "0" * 24,
            "id": "x/dual",
            "cardData": {"license": ["apache-2.0", "mit"]},
        }
        assert hub.card(repo_id="x/dual", revision="main", token=None).license is None

    def test_is_cached_for_the_life_of_the_process(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        assert hub.cached_card(repo_id=LLAMA, revision="main") is None
        first = hub.card(repo_id=LLAMA, revision="main", token=None, clock=clock)
        clock.now += 10 * hub.MAX_RETRY_SECONDS
        again = hub.card(repo_id=LLAMA, revision="main", token=None, clock=clock)
        assert again is first
        assert hub.cached_card(repo_id=LLAMA, revision="main") is first
        assert asked(server) == 1
        assert hub.cached_card(repo_id=LLAMA, revision="other") is None  # per revision

    def test_a_token_function_is_called_only_when_the_hub_is_asked(
        self, server: hubserver.HubFixture
    ) -> None:
        reads: list[str] = []

        def token() -> str:
            reads.append("read")
            return TOKEN

        hub.card(repo_id=LLAMA, revision="main", token=token)
        hub.card(repo_id=LLAMA, revision="main", token=token)
        assert reads == ["read"]
        assert [request.had_authorization for request in server.seen()] == [True]

    def test_unknown_repository_names_the_repository(self, server: hubserver.HubFixture) -> None:
        with pytest.raises(hub.HubError, match="example-org/absent was not found on the Hub"):
            hub.card(repo_id="example-org/absent", revision="main", token=None)
        # With a token the Hub says 404 rather than 401; the answer is the same.
        with pytest.raises(hub.HubError, match="example-org/absent2 was not found on the Hub"):
            hub.card(repo_id="example-org/absent2", revision="main", token=TOKEN)
        assert asked(server) == 2

    def test_a_private_repository_needs_a_granted_token(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        server.models["example-org/private"] = {
            "_id": "0" * 24,
            "id": "example-org/private",
            "private": True,
            "cardData": {"license": "mit"},
        }
        with pytest.raises(hub.HubError, match="or is private and needs"):
            hub.card(repo_id="example-org/private", revision="main", token=OTHER, clock=clock)
        server.grant("example-org/private", TOKEN)
        clock.now += hub.FIRST_RETRY_SECONDS  # the failure's back-off is over
        found = hub.card(repo_id="example-org/private", revision="main", token=TOKEN, clock=clock)
        assert found.license == "mit"

    def test_an_answer_that_is_not_model_info(self, server: hubserver.HubFixture) -> None:
        server.models["x/broken"] = {"_id": "0" * 24, "cardData": {}}  # no "id"
        with pytest.raises(hub.HubError, match="answer for x/broken was not understood"):
            hub.card(repo_id="x/broken", revision="main", token=None)

    def test_unknown_revision(self, server: hubserver.HubFixture) -> None:
        with pytest.raises(hub.HubError, match=r"has no revision 'v9'; fix spec.model.revision"):
            hub.card(repo_id=LLAMA, revision="v9", token=None)

    def test_a_revision_that_is_the_commit_sha(self, server: hubserver.HubFixture) -> None:
        sha = "0123456789abcdef0123456789abcdef01234567"
        server.models[OPEN] = {**server.models[OPEN], "sha": sha}
        assert hub.card(repo_id=OPEN, revision=sha, token=None).gated is False
        assert server.seen()[0].path == f"/api/models/{OPEN}/revision/{sha}"

    def test_a_rejected_token(self, server: hubserver.HubFixture) -> None:
        with pytest.raises(
            hub.HubError, match=r"rejected the token in spec\.model\.tokenSecretRef"
        ):
            hub.card(repo_id=LLAMA, revision="main", token=BAD)

    def test_an_invalid_repository_id_is_refused_before_asking(
        self, server: hubserver.HubFixture
    ) -> None:
        with pytest.raises(hub.HubError, match="is not a Hub repository id"):
            hub.card(repo_id="not a repo!", revision="main", token=None)
        assert server.seen() == []

    def test_offline_asks_nothing(
        self, server: hubserver.HubFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE is set"):
            hub.card(repo_id=LLAMA, revision="main", token=lambda: pytest.fail("token read"))
        assert server.seen() == []

    def test_offline_in_the_client_only_asks_nothing(
        self, server: hubserver.HubFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The environment was cleared after import: the client's own switch still holds.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(hub.HubError, match=r"could not be reached .*OfflineModeIsEnabled"):
            hub.card(repo_id=LLAMA, revision="main", token=None)
        assert server.seen() == []

    def test_connection_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with hubserver.HubFixture() as stopped:
            url = stopped.url
        hubserver.point_client_at(monkeypatch, url)
        with pytest.raises(hub.HubError, match=r"could not be reached .*: ConnectError") as raised:
            hub.card(repo_id=LLAMA, revision="main", token=None)
        assert url in str(raised.value)

    def test_hub_down_backs_off_doubling_to_an_hour(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        server.down = True

        def attempt() -> None:
            with pytest.raises(hub.HubError, match="answered HTTP 503 for the model card"):
                hub.card(repo_id=LLAMA, revision="main", token=None, clock=clock)

        attempt()
        assert asked(server) == 1
        clock.now += hub.FIRST_RETRY_SECONDS - 1
        attempt()  # within the first minute: from the failure cache
        assert asked(server) == 1
        clock.now += 1
        attempt()
        assert asked(server) == 2
        # Back-offs from here: 120, 240, 480, 960, 1920, 3600 (capped), 3600.
        for backoff in (120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0):
            before = asked(server)
            clock.now += backoff - 1
            attempt()
            assert asked(server) == before
            clock.now += 1
            attempt()
            assert asked(server) == before + 1
        server.down = False
        clock.now += hub.MAX_RETRY_SECONDS
        assert hub.card(repo_id=LLAMA, revision="main", token=None, clock=clock).gated
        assert hub.cached_card(repo_id=LLAMA, revision="main") is not None


class TestAccess:
    def test_granted(self, server: hubserver.HubFixture) -> None:
        server.grant(LLAMA, TOKEN)
        result = hub.access(repo_id=LLAMA, token=TOKEN)
        assert (result.granted, result.reason) == (True, "Granted")
        assert f"{server.url}/{LLAMA}" in result.message
        assert server.seen()[0].path == f"/api/models/{LLAMA}/auth-check"

    def test_an_open_repository_needs_no_token(self, server: hubserver.HubFixture) -> None:
        result = hub.access(repo_id=OPEN, token=None)
        assert (result.granted, result.reason) == (True, "Granted")
        assert server.seen()[0].had_authorization is False

    def test_not_granted(self, server: hubserver.HubFixture) -> None:
        result = hub.access(repo_id=LLAMA, token=OTHER)
        assert (result.granted, result.reason) == (False, "NotGranted")
        assert f"{server.url}/{LLAMA}" in result.message  # the model page, to request access
        assert "request access" in result.message
        assert "spec.model.tokenSecretRef" in result.message
        assert "\n" not in result.message

    def test_gated_without_a_token(self, server: hubserver.HubFixture) -> None:
        result = hub.access(repo_id=LLAMA, token=None)
        assert (result.granted, result.reason) == (False, "NotGranted")
        assert "no token is set" in result.message
        assert "set spec.model.tokenSecretRef" in result.message
        assert server.seen()[0].had_authorization is False

    def test_bad_token(self, server: hubserver.HubFixture) -> None:
        result = hub.access(repo_id=LLAMA, token=BAD)
        assert (result.granted, result.reason) == (False, "BadToken")
        assert "rejected the token in spec.model.tokenSecretRef" in result.message
        assert f"{server.url}/{LLAMA}" in result.message

    @pytest.mark.parametrize("token", [TOKEN, None])
    def test_not_found(self, server: hubserver.HubFixture, token: str | None) -> None:
        result = hub.access(repo_id="example-org/absent", token=token)
        assert (result.granted, result.reason) == (False, "NotFound")
        assert f"{server.url}/example-org/absent" in result.message

    def test_a_private_repository_the_token_cannot_see(self, server: hubserver.HubFixture) -> None:
        server.models["example-org/private"] = {
            "_id": "0" * 24,
            "id": "example-org/private",
            "private": True,
        }
        assert hub.access(repo_id="example-org/private", token=OTHER).reason == "NotFound"
        server.grant("example-org/private", TOKEN)
        assert hub.access(repo_id="example-org/private", token=TOKEN).reason == "Granted"

    def test_a_denial_is_asked_again_after_its_back_off(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).reason == "NotGranted"
        server.grant(LLAMA, TOKEN)  # the owner approves the request on the Hub
        clock.now += 29
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).reason == "NotGranted"
        assert asked(server) == 1
        clock.now += 1
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).reason == "Granted"
        assert asked(server) == 2
        server.grants.clear()  # a grant is kept for the life of the process
        clock.now += 1e6
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).reason == "Granted"
        assert asked(server) == 2

    def test_back_off_doubles_and_caps(self, server: hubserver.HubFixture, clock: Clock) -> None:
        def ask() -> str:
            return hub.access(
                repo_id=LLAMA, token=TOKEN, clock=clock, retry_seconds=10, max_retry_seconds=50
            ).reason

        start = clock.now
        asked_at = []
        for _ in range(200):
            before = asked(server)
            assert ask() == "NotGranted"
            if asked(server) > before:
                asked_at.append(clock.now - start)
            clock.now += 1
        # 10, then 20, 40, and 50 (capped) apart.
        assert asked_at == [0, 10, 30, 70, 120, 170]

    def test_a_different_token_is_checked_at_once(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        assert hub.access(repo_id=LLAMA, token=OTHER, clock=clock).reason == "NotGranted"
        server.grant(LLAMA, TOKEN)
        # The Secret was rotated to a token that has access: no waiting for the back-off.
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).reason == "Granted"
        assert hub.access(repo_id=LLAMA, token=OTHER, clock=clock).reason == "NotGranted"
        assert asked(server) == 2

    def test_hub_down_is_an_error_with_a_back_off(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        server.down = True
        with pytest.raises(hub.HubError, match=f"HTTP 503 when checking access to {LLAMA}"):
            hub.access(repo_id=LLAMA, token=TOKEN, clock=clock)
        server.down = False
        server.grant(LLAMA, TOKEN)
        clock.now += 29
        with pytest.raises(hub.HubError, match="HTTP 503"):
            hub.access(repo_id=LLAMA, token=TOKEN, clock=clock)
        assert asked(server) == 1
        clock.now += 1
        assert hub.access(repo_id=LLAMA, token=TOKEN, clock=clock).granted

    def test_a_bare_anonymous_401_is_not_found(self, server: hubserver.HubFixture) -> None:
        # On https the client itself calls this RepositoryNotFoundError; on this http
        # endpoint it stays a plain HfHubHTTPError, and the answer must be the same.
        server.forced = (401, None, None)
        result = hub.access(repo_id=LLAMA, token=None)
        assert (result.granted, result.reason) == (False, "NotFound")
        assert "needs a token in spec.model.tokenSecretRef" in result.message

    def test_a_bare_403_with_a_token_is_a_refusal_with_a_hint(
        self, server: hubserver.HubFixture
    ) -> None:
        # Not an outage: typically a fine-grained token without the gated-repos permission,
        # which the engine would hit too. So it holds serving back like any denial.
        server.forced = (403, None, "Forbidden")
        result = hub.access(repo_id=LLAMA, token=TOKEN)
        assert (result.granted, result.reason) == (False, "NotGranted")
        assert "HTTP 403" in result.message
        assert "fine-grained token" in result.message
        assert TOKEN not in result.message

    def test_a_server_error_is_unknown(self, server: hubserver.HubFixture) -> None:
        server.forced = (500, None, "Internal Error")
        with pytest.raises(hub.HubError, match=r"HTTP 500") as raised:
            hub.access(repo_id=LLAMA, token=TOKEN)
        assert TOKEN not in str(raised.value)

    def test_connection_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with hubserver.HubFixture() as stopped:
            url = stopped.url
        hubserver.point_client_at(monkeypatch, url)
        with pytest.raises(hub.HubError, match=r"could not be reached .*: ConnectError"):
            hub.access(repo_id=LLAMA, token=TOKEN)

    def test_offline_asks_nothing(
        self, server: hubserver.HubFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE is set"):
            hub.access(repo_id=LLAMA, token=TOKEN)
        assert server.seen() == []

    def test_clear_cache_forgets_answers(self, server: hubserver.HubFixture) -> None:
        server.grant(LLAMA, TOKEN)
        hub.access(repo_id=LLAMA, token=TOKEN)
        hub.card(repo_id=LLAMA, revision="main", token=None)
        hub.clear_cache()
        assert hub.cached_card(repo_id=LLAMA, revision="main") is None
        hub.access(repo_id=LLAMA, token=TOKEN)
        assert asked(server, "/auth-check") == 2


class TestTheTokenIsNeverKept:
    def test_not_in_messages_errors_caches_or_the_request_log(
        self, server: hubserver.HubFixture, clock: Clock
    ) -> None:
        texts: list[str] = []
        for token in (TOKEN, BAD):
            texts.append(hub.access(repo_id=LLAMA, token=token, clock=clock).message)
            texts.append(hub.access(repo_id="example-org/absent", token=token).message)
        server.grant(OPEN, TOKEN)
        texts.append(hub.access(repo_id=OPEN, token=TOKEN).message)
        errors: list[BaseException] = []
        for repo_id, revision, token in (
            (LLAMA, "main", BAD),
            ("example-org/absent", "main", TOKEN),
            (LLAMA, "v9", TOKEN),
        ):
            with pytest.raises(hub.HubError) as raised:
                hub.card(repo_id=repo_id, revision=revision, token=token)
            errors.append(raised.value)
        server.down = True
        with pytest.raises(hub.HubError) as down:
            hub.access(repo_id=OPEN, token=OTHER)
        errors.append(down.value)
        for error in errors:
            texts.append(str(error))
            texts.append(str(error.__cause__))  # the client's own message, chained
        # The cached failures and denials, as they would be raised or returned again.
        texts.append(repr(hub._cards.failures))
        texts.append(repr(hub._denied))
        texts.append(repr(hub._granted))
        texts.append(repr(server.seen()))
        assert len(texts) == 17
        for secret in (TOKEN, BAD, OTHER):
            assert not [text for text in texts if secret in text]
        # The cached error is raised again without the client's exception (which holds
        # the request, Authorization header included).
        with pytest.raises(hub.HubError) as again:
            hub.access(repo_id=OPEN, token=OTHER)
        assert again.value.__cause__ is None


class TestRequestTimeouts:
    def test_every_hub_request_gets_a_timeout(self) -> None:
        # The library's shared client waits forever by default; the operator bounds it.
        try:
            hub.bound_requests(seconds=12.0, connect=3.0)
            session = huggingface_hub.get_session()
            assert session.timeout.read == 12.0
            assert session.timeout.connect == 3.0
            assert session.event_hooks["request"]  # the library's own hooks are kept
        finally:
            huggingface_hub.set_client_factory(hf_http.default_client_factory)
        assert huggingface_hub.get_session().timeout.read is None
