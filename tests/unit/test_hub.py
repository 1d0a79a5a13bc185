"""hub.py: model facts through huggingface_hub, offline against a cache fixture."""

from __future__ import annotations

import json
import pathlib
import types
from collections.abc import Iterator
from typing import Any

import pytest

from llama_operator.clients import hub


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    hub.clear_cache()
    yield
    hub.clear_cache()


class TestOfflineCache:
    def test_reads_config_json_through_the_real_client(self) -> None:
        # tests/fixtures/hf-cache holds a Hugging Face cache layout (refs/main ->
        # snapshot); HF_HUB_OFFLINE=1 is set for the whole test session.
        result = hub.fetch(repo_id="example-org/tiny-llama", revision="main", token=None)
        assert result.layers == 32
        assert result.kv_heads == 8
        assert result.max_context == 131072
        assert result.parameters == pytest.approx(8.03e9, rel=0.01)  # estimated from shape

    def test_is_cached_after_the_first_answer(self) -> None:
        assert hub.cached(repo_id="example-org/tiny-llama", revision="main") is None
        first = hub.fetch(repo_id="example-org/tiny-llama", revision="main", token=None)
        assert hub.cached(repo_id="example-org/tiny-llama", revision="main") is first

    def test_missing_model_is_a_clear_error(self) -> None:
        with pytest.raises(hub.HubError, match="could not be reached for example-org/absent"):
            hub.fetch(repo_id="example-org/absent", revision="main", token=None)


class TestBackoff:
    def test_failures_are_retried_only_after_a_growing_backoff(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []

        def failing(**kwargs: Any) -> Any:
            calls.append(kwargs["repo_id"])
            raise hub.HubError("down")

        monkeypatch.setattr(hub, "_fetch", failing)
        now = [1000.0]

        def attempt() -> None:
            with pytest.raises(hub.HubError, match="down"):
                hub.fetch(repo_id="a/b", revision="main", token=None, clock=lambda: now[0])

        attempt()
        attempt()  # within the first minute: answered from the failure cache
        assert len(calls) == 1
        now[0] += hub.FIRST_RETRY_SECONDS
        attempt()
        assert len(calls) == 2
        now[0] += hub.FIRST_RETRY_SECONDS  # the back-off doubled: still waiting
        attempt()
        assert len(calls) == 2
        now[0] += hub.FIRST_RETRY_SECONDS
        attempt()
        assert len(calls) == 3

    def test_success_clears_the_failure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        outcomes: list[Any] = [hub.HubError("down"), hub.facts.PartialFacts(layers=2)]

        def flaky(**_: Any) -> Any:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        monkeypatch.setattr(hub, "_fetch", flaky)
        with pytest.raises(hub.HubError):
            hub.fetch(repo_id="a/b", revision="main", token=None, clock=lambda: 0.0)
        result = hub.fetch(repo_id="a/b", revision="main", token=None, clock=lambda: 61.0)
        assert result.layers == 2


class TestParameterCount:
    def config(self, tmp_path: pathlib.Path, **extra: Any) -> str:
        path = tmp_path / "config.json"
        data = {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            **extra,
        }
        path.write_text(json.dumps(data))
        return str(path)

    def online(self, monkeypatch: pytest.MonkeyPatch, config_path: str, count: int) -> None:
        # The online code path with both Hub calls replaced: nothing leaves the process.
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hub.file_download, "hf_hub_download", lambda *a, **k: config_path)
        metadata = types.SimpleNamespace(parameter_count={"BF16": count})
        monkeypatch.setattr(hub.hf_api, "get_safetensors_metadata", lambda *a, **k: metadata)

    def test_safetensors_count_is_used_for_16_bit_checkpoints(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
    ) -> None:
        self.online(monkeypatch, self.config(tmp_path), 8_030_261_248)
        result = hub.fetch(repo_id="a/dense", revision="main", token=None)
        assert result.parameters == 8_030_261_248

    def test_packed_4_bit_checkpoints_are_sized_from_their_shape(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
    ) -> None:
        path = self.config(tmp_path, quantization_config={"quant_method": "awq", "bits": 4})
        self.online(monkeypatch, path, 1_200_000_000)  # int32-packed elements: far too low
        result = hub.fetch(repo_id="a/awq", revision="main", token=None)
        assert result.parameters == pytest.approx(8.03e9, rel=0.01)
