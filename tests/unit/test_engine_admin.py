"""The one client of the engines' adapter endpoints: listing, loading, reloading and
unloading LoRA adapters, every pod at once, each request bounded, the API key never told.

Fake pods answer as vLLM 0.34.0 does (tests/podserver.py) on 127.0.0.1 and stop with the
test.
"""

from __future__ import annotations

import socket

import pytest

import podserver
from llama_operator.clients import engine_admin
from llama_operator.planning import engine_profiles

RUNTIME = engine_profiles.get("vllm").lora.runtime
assert RUNTIME is not None
BASE = "meta-llama/Llama-3.1-8B-Instruct"
KEY = "sk-test-7f3c9a"


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod(name: str, port: int) -> engine_admin.Pod:
    return engine_admin.Pod(name, f"http://127.0.0.1:{port}")


def listing(
    *pods: engine_admin.Pod, api_key: str | None = None, timeout: float = 5.0
) -> list[engine_admin.Listing]:
    return engine_admin.list_blocking(pods, runtime=RUNTIME, api_key=api_key, timeout=timeout)


def apply(
    *changes: engine_admin.Change, api_key: str | None = None, timeout: float = 5.0
) -> list[engine_admin.Done]:
    return engine_admin.apply_blocking(changes, runtime=RUNTIME, api_key=api_key, timeout=timeout)


def test_the_listing_holds_the_adapters_not_the_base_model() -> None:
    with (
        podserver.FakePod(runtime_lora=True) as first,
        podserver.FakePod(runtime_lora=True) as second,
    ):
        first.adapters = {"sql": "/adapters/sql", "chat": "org/chat-lora"}
        listings = listing(pod("b", second.port), pod("a", first.port))
    assert listings == [
        engine_admin.Listing("b", {}),
        engine_admin.Listing("a", {"sql": "/adapters/sql", "chat": "org/chat-lora"}),
    ]


def test_a_load_is_listed_with_its_path() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        target = pod("p", fake.port)
        done = apply(engine_admin.Change(target, "load", "sql", "/adapters/sql"))
        (listed,) = listing(target)
    assert done == [engine_admin.Done("p", "load", "sql")]
    assert fake.adapters == {"sql": "/adapters/sql"}
    assert fake.admin_calls == [
        (
            "/v1/load_lora_adapter",
            {"lora_name": "sql", "lora_path": "/adapters/sql", "load_inplace": False},
        )
    ]
    assert listed == engine_admin.Listing("p", {"sql": "/adapters/sql"})


def test_a_reload_replaces_the_weights_under_the_same_name() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        fake.adapters = {"sql": "/adapters/sql-v1"}
        done = apply(engine_admin.Change(pod("p", fake.port), "reload", "sql", "/adapters/sql-v2"))
    assert done == [engine_admin.Done("p", "reload", "sql")]
    assert fake.adapters == {"sql": "/adapters/sql-v2"}
    assert fake.admin_calls == [
        (
            "/v1/load_lora_adapter",
            {"lora_name": "sql", "lora_path": "/adapters/sql-v2", "load_inplace": True},
        )
    ]


def test_an_unload_removes_the_adapter() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        fake.adapters = {"sql": "/adapters/sql", "chat": "/adapters/chat"}
        done = apply(engine_admin.Change(pod("p", fake.port), "unload", "sql"))
    assert done == [engine_admin.Done("p", "unload", "sql")]
    assert fake.adapters == {"chat": "/adapters/chat"}
    assert fake.admin_calls == [("/v1/unload_lora_adapter", {"lora_name": "sql"})]


def test_loading_a_loaded_name_without_reload_is_refused_with_vllms_message() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        fake.adapters = {"sql": "/adapters/sql-v1"}
        done = apply(engine_admin.Change(pod("p", fake.port), "load", "sql", "/adapters/sql-v2"))
    assert done == [
        engine_admin.Done(
            "p",
            "load",
            "sql",
            "HTTP 400: The lora adapter 'sql' has already been loaded. If you want to load "
            "the adapter in place, set 'load_inplace' to True.",
        )
    ]
    assert fake.adapters == {"sql": "/adapters/sql-v1"}


def test_unloading_an_unknown_name_is_404() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        done = apply(engine_admin.Change(pod("p", fake.port), "unload", "gone"))
    assert done == [
        engine_admin.Done(
            "p", "unload", "gone", "HTTP 404: The lora adapter 'gone' cannot be found."
        )
    ]


def test_a_load_the_engine_refuses_says_why() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        fake.refuse = {"big": "rank 512 exceeds --max-lora-rank 16"}
        done = apply(engine_admin.Change(pod("p", fake.port), "load", "big", "/adapters/big"))
    assert done == [
        engine_admin.Done("p", "load", "big", "HTTP 400: rank 512 exceeds --max-lora-rank 16")
    ]
    assert fake.adapters == {}


def test_a_long_refusal_is_cut_to_300_characters() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        fake.refuse = {"big": "x" * 1000}
        (done,) = apply(engine_admin.Change(pod("p", fake.port), "load", "big", "/a"))
    assert done.failure == "HTTP 400: " + "x" * 290


def test_without_the_runtime_variable_the_endpoints_are_404() -> None:
    with podserver.FakePod() as fake:  # runtime_lora False: VLLM_ALLOW_RUNTIME_LORA_UPDATING unset
        done = apply(
            engine_admin.Change(pod("p", fake.port), "load", "sql", "/adapters/sql"),
            engine_admin.Change(pod("p", fake.port), "unload", "sql"),
        )
    assert done == [
        engine_admin.Done("p", "load", "sql", 'HTTP 404: {"detail":"Not Found"}'),
        engine_admin.Done("p", "unload", "sql", 'HTTP 404: {"detail":"Not Found"}'),
    ]
    assert fake.adapters == {}


@pytest.mark.parametrize("sent", [None, "sk-wrong"])
def test_a_missing_or_wrong_key_is_401_and_changes_nothing(sent: str | None) -> None:
    with podserver.FakePod(runtime_lora=True, api_key=KEY) as fake:
        fake.adapters = {"chat": "/adapters/chat"}
        target = pod("p", fake.port)
        listed = listing(target, api_key=sent)
        done = apply(
            engine_admin.Change(target, "load", "sql", "/adapters/sql"),
            engine_admin.Change(target, "unload", "chat"),
            api_key=sent,
        )
    refused = "HTTP 401: the API key was refused"
    assert listed == [engine_admin.Listing("p", failure=refused)]
    assert done == [
        engine_admin.Done("p", "load", "sql", refused),
        engine_admin.Done("p", "unload", "chat", refused),
    ]
    assert fake.adapters == {"chat": "/adapters/chat"}
    assert fake.admin_calls == []


def test_the_right_key_is_let_through() -> None:
    with podserver.FakePod(runtime_lora=True, api_key=KEY) as fake:
        target = pod("p", fake.port)
        done = apply(engine_admin.Change(target, "load", "sql", "/a/sql"), api_key=KEY)
        listed = listing(target, api_key=KEY)
    assert done == [engine_admin.Done("p", "load", "sql")]
    assert listed == [engine_admin.Listing("p", {"sql": "/a/sql"})]


def test_the_key_is_in_no_failure_even_when_an_engine_echoes_it() -> None:
    with podserver.FakePod(runtime_lora=True, api_key=KEY) as fake:
        fake.refuse = {"echo": f"bad header Authorization: Bearer {KEY}"}
        target = pod("p", fake.port)
        done = apply(
            engine_admin.Change(target, "load", "echo", "/a"),
            engine_admin.Change(target, "unload", "gone"),
            engine_admin.Change(pod("closed", closed_port()), "load", "x", "/a"),
            api_key=KEY,
        )
        wrong = apply(engine_admin.Change(target, "load", "y", "/a"), api_key=KEY + "x")
        listed = listing(target, pod("closed", closed_port()), api_key=KEY + "x")
    assert done[0].failure == "HTTP 400: bad header Authorization: Bearer ***"
    texts = [d.failure for d in (*done, *wrong)] + [item.failure for item in listed]
    assert all(text is not None for text in texts)
    assert not [text for text in texts if text and KEY in text]
    assert not [item for item in (*done, *wrong, *listed) if KEY in repr(item)]


def test_a_key_that_cannot_be_a_header_is_refused_without_telling_it() -> None:
    with pytest.raises(ValueError, match="line break") as raised:
        listing(pod("p", closed_port()), api_key=f"{KEY}\r\nX-Evil: 1")
    assert KEY not in str(raised.value)


def test_a_pod_that_does_not_answer_costs_its_timeout_and_holds_up_no_other() -> None:
    with (
        podserver.FakePod(runtime_lora=True) as slow,
        podserver.FakePod(runtime_lora=True) as good,
    ):
        slow.delay = 1.0  # longer than the timeout below
        good.adapters = {"sql": "/a/sql"}
        listed = listing(pod("slow", slow.port), pod("good", good.port), timeout=0.3)
        done = apply(
            engine_admin.Change(pod("slow", slow.port), "unload", "x"),
            engine_admin.Change(pod("good", good.port), "unload", "sql"),
            timeout=0.3,
        )
    assert listed == [
        engine_admin.Listing("slow", failure="no answer within 0.3 s"),
        engine_admin.Listing("good", {"sql": "/a/sql"}),
    ]
    assert done == [
        engine_admin.Done("slow", "unload", "x", "no answer within 0.3 s"),
        engine_admin.Done("good", "unload", "sql"),
    ]


def test_a_closed_port_is_a_connection_failure() -> None:
    port = closed_port()
    (listed,) = listing(pod("gone", port))
    (done,) = apply(engine_admin.Change(pod("gone", port), "unload", "sql"))
    assert listed.loaded is None
    for failure in (listed.failure, done.failure):
        assert failure is not None
        assert failure.startswith(f"ClientConnectorError: Cannot connect to host 127.0.0.1:{port}")


def test_each_pods_changes_run_in_order_and_a_failure_does_not_stop_the_rest() -> None:
    with (
        podserver.FakePod(runtime_lora=True) as first,
        podserver.FakePod(runtime_lora=True) as second,
    ):
        first.adapters = {"old": "/a/old"}
        a, b = pod("a", first.port), pod("b", second.port)
        done = apply(
            engine_admin.Change(a, "unload", "old"),
            engine_admin.Change(b, "load", "x", "/a/x"),
            engine_admin.Change(a, "unload", "missing"),  # fails: the next one still runs
            engine_admin.Change(a, "load", "old", "/a/old-v2"),  # after the unload: no clash
            engine_admin.Change(b, "reload", "x", "/a/x-v2"),
            engine_admin.Change(a, "load", "new", "/a/new"),
        )
    assert done == [
        engine_admin.Done("a", "unload", "old"),
        engine_admin.Done("b", "load", "x"),
        engine_admin.Done(
            "a", "unload", "missing", "HTTP 404: The lora adapter 'missing' cannot be found."
        ),
        engine_admin.Done("a", "load", "old"),
        engine_admin.Done("b", "reload", "x"),
        engine_admin.Done("a", "load", "new"),
    ]
    assert [call[1]["lora_name"] for call in first.admin_calls] == ["old", "missing", "old", "new"]
    assert [call[1]["lora_name"] for call in second.admin_calls] == ["x", "x"]
    assert first.adapters == {"old": "/a/old-v2", "new": "/a/new"}
    assert second.adapters == {"x": "/a/x-v2"}


def test_a_load_without_a_path_sends_nothing() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        target = pod("p", fake.port)
        with pytest.raises(ValueError, match="needs a path"):
            apply(
                engine_admin.Change(target, "unload", "a"),
                engine_admin.Change(target, "load", "sql"),
            )
    assert fake.admin_calls == []


def test_no_change_and_no_pod_is_nothing_to_do() -> None:
    assert apply() == []
    assert listing() == []


def test_loading_the_base_models_name_is_refused() -> None:
    with podserver.FakePod(runtime_lora=True) as fake:
        (done,) = apply(engine_admin.Change(pod("p", fake.port), "load", BASE, "/a"))
    assert (
        done.failure == f"HTTP 400: The lora adapter '{BASE}' conflicts with a served base model."
    )
