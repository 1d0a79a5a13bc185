"""runtime.adapter_loader against fake vLLM pods on 127.0.0.1: the ready pods of each
variant found in their EndpointSlices, listed, brought to what their variant should hold,
the API key read from its Secret at most every KEY_SECONDS and again after a refusal, and
nothing raised whatever the pods answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import podserver
from llama_operator import api
from llama_operator.reconcile import inputs
from llama_operator.runtime import adapter_loader

KEY = "sk-loader-test-key-93b1"
SQL = api.PlanAdapter(name="sql", model="sql", source="/models/sql", rank=16)
CHAT = api.PlanAdapter(name="chat", model="chat", source="/models/chat", rank=8)
REF = api.APIKeySecretRef(name="chat-key")


def endpoint_slice(service: str, pod: str, port: int, *, ready: bool = True) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": pod},
            }
        ],
    }


class Secrets:
    """The API-key Secret, counting its reads."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.reads = 0

    def __call__(self, ref: api.APIKeySecretRef, namespace: str) -> str | None:
        assert (ref, namespace) == (REF, "ai")
        self.reads += 1
        return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def primary() -> Iterator[podserver.FakePod]:
    with podserver.FakePod(runtime_lora=True, api_key=KEY) as pod:
        yield pod


@pytest.fixture
def canary() -> Iterator[podserver.FakePod]:
    with podserver.FakePod(runtime_lora=True, api_key=KEY) as pod:
        yield pod


def loader(
    slices: Mapping[str, list[dict[str, Any]]], secrets: Secrets, clock: Clock | None = None
) -> adapter_loader.Loader:
    return adapter_loader.Loader(
        lambda namespace, service: slices.get(service, []) if namespace == "ai" else [],
        secrets,
        list_timeout=2.0,
        load_timeout=2.0,
        clock=clock or Clock(),
    )


def request(*variants: tuple[str, tuple[api.PlanAdapter, ...]]) -> inputs.AdapterLoadRequest:
    return inputs.AdapterLoadRequest(
        namespace="ai",
        name="chat",
        engine="vllm",
        engine_version="0.34.0",
        variants=variants,
        api_key=REF,
    )


def test_each_variant_gets_what_it_should_hold(
    primary: podserver.FakePod, canary: podserver.FakePod
) -> None:
    primary.adapters = {"old": "/models/old"}
    slices = {
        "chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port)],
        "chat-canary": [endpoint_slice("chat-canary", "c-0", canary.port)],
    }
    sql_v2 = SQL.model_copy(update={"source": "/models/sql-v2"})
    states = loader(slices, Secrets(KEY))(
        request(("primary", (SQL, CHAT)), ("canary", (sql_v2, CHAT)))
    )
    assert states is not None
    assert sorted(states) == ["c-0", "p-0"]
    assert states["p-0"].variant == "primary"
    assert states["p-0"].loaded == {"sql": "/models/sql", "chat": "/models/chat"}
    assert states["c-0"].loaded == {"sql": "/models/sql-v2", "chat": "/models/chat"}
    assert states["p-0"].failures == ()
    assert primary.adapters == {"sql": "/models/sql", "chat": "/models/chat"}
    assert canary.adapters == {"sql": "/models/sql-v2", "chat": "/models/chat"}
    # The pod's calls, in order: the unload first.
    assert [path for path, _ in primary.admin_calls] == [
        "/v1/unload_lora_adapter",
        "/v1/load_lora_adapter",
        "/v1/load_lora_adapter",
    ]


def test_a_pod_that_holds_the_plan_is_only_listed(primary: podserver.FakePod) -> None:
    primary.adapters = {"sql": "/models/sql"}
    slices = {"chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port)]}
    states = loader(slices, Secrets(KEY))(request(("primary", (SQL,))))
    assert states is not None
    assert states["p-0"].loaded == {"sql": "/models/sql"}
    assert primary.admin_calls == []


def test_a_refused_load_is_a_failure_and_the_rest_go_on(primary: podserver.FakePod) -> None:
    primary.refuse["sql"] = "No adapter found for /models/sql"
    slices = {"chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port)]}
    states = loader(slices, Secrets(KEY))(request(("primary", (SQL, CHAT))))
    assert states is not None
    assert states["p-0"].loaded == {"chat": "/models/chat"}
    assert states["p-0"].failures == (("sql", "HTTP 400: No adapter found for /models/sql"),)


def test_not_ready_pods_are_left_alone(primary: podserver.FakePod) -> None:
    slices = {"chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port, ready=False)]}
    states = loader(slices, Secrets(KEY))(request(("primary", (SQL,))))
    assert states == {}
    assert primary.admin_calls == []
    assert primary.adapters == {}


def test_the_key_is_read_once_per_period_and_again_after_a_refusal(
    primary: podserver.FakePod,
) -> None:
    slices = {"chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port)]}
    secrets, clock = Secrets(KEY), Clock()
    load = loader(slices, secrets, clock)
    for _ in range(3):
        assert load(request(("primary", (SQL,)))) is not None
    assert secrets.reads == 1
    clock.now += adapter_loader.KEY_SECONDS
    load(request(("primary", (SQL,))))
    assert secrets.reads == 2

    # The key was rotated in the engine: refused, forgotten, read again next time.
    primary.api_key = "sk-rotated-key-5c2e"
    refused = load(request(("primary", (SQL,))))
    assert refused is not None
    assert refused["p-0"].loaded is None
    assert refused["p-0"].unreadable == "HTTP 401: the API key was refused"
    secrets.value = "sk-rotated-key-5c2e"
    again = load(request(("primary", (SQL, CHAT))))
    assert secrets.reads == 3
    assert again is not None
    assert again["p-0"].loaded == {"sql": "/models/sql", "chat": "/models/chat"}


def test_a_missing_key_or_a_dead_pod_is_reported_not_raised(
    primary: podserver.FakePod, caplog: pytest.LogCaptureFixture
) -> None:
    slices = {
        "chat-primary": [
            endpoint_slice("chat-primary", "p-0", primary.port),
            # A port nothing listens on: the connection is refused.
            endpoint_slice("chat-primary", "p-1", closed_port()),
        ]
    }
    states = loader(slices, Secrets(None))(request(("primary", (SQL,))))
    assert states is not None
    assert states["p-0"].unreadable == "HTTP 401: the API key was refused"
    assert states["p-1"].loaded is None
    assert (states["p-1"].unreadable or "").startswith("ClientConnectorError")
    assert KEY not in caplog.text


def test_an_engine_without_runtime_loading_is_not_asked(primary: podserver.FakePod) -> None:
    slices = {"chat-primary": [endpoint_slice("chat-primary", "p-0", primary.port)]}
    tgi = inputs.AdapterLoadRequest(
        namespace="ai",
        name="chat",
        engine="tgi",
        engine_version="3.3.7",
        variants=(("primary", (SQL,)),),
        api_key=REF,
    )
    assert loader(slices, Secrets(KEY))(tgi) is None
    assert primary.admin_calls == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
