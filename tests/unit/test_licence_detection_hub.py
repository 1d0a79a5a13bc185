"""Licence detection as the operator does it: reconcile.detect_license with the real
huggingface_hub client (reconcile.card_fetcher) against the fixture Hub on 127.0.0.1."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest
import yaml

import hubserver
from llama_operator import api, cli, reconcile
from llama_operator.clients import hub


class NoSecrets:
    """A k8s.Client stand-in: these models reference no token, so nothing is read."""

    def read_secret_value(self, *, namespace: str, name: str, key: str) -> str | None:
        raise AssertionError("no Secret may be read for a model without tokenSecretRef")


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[hubserver.HubFixture]:
    hub.clear_cache()
    with hubserver.serving(monkeypatch) as running:
        yield running
    hub.clear_cache()


def detect(
    model_id: str, license_id: str | None = None
) -> tuple[str | None, str, str, bool | None]:
    spec = api.parse_spec(
        {"model": {"id": model_id}, **({"license": {"id": license_id}} if license_id else {})}
    )
    card = reconcile.card_fetcher(NoSecrets())  # type: ignore[arg-type]
    found, gated = reconcile.detect_license(spec=spec, namespace="ai", card=card)
    return found.id, found.source, found.detail, gated


@pytest.mark.parametrize(
    ("model_id", "license_id", "source", "gated"),
    [
        # Fine-tunes published as "mit" inherit their Llama base's licence.
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama3.1", "base-model", False),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama3.3", "base-model", False),
        # Two steps up: apache-2.0 card -> "other" card -> a Llama 3.2 base.
        ("example-org/chat-tune", "llama3.2", "base-model", False),
        # The card and its base agree: the card is simply right.
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1", "card", True),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4", "card", True),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen", "card", False),
        ("mistralai/Mistral-Large-Instruct-2407", "mrl", "card", True),
        ("google/gemma-2-9b-it", "gemma", "card", True),
        ("example-org/tiny-llama", None, "unknown", False),
    ],
)
def test_detection_table_through_the_hub(
    fake_hub: hubserver.HubFixture,
    model_id: str,
    license_id: str | None,
    source: str,
    gated: bool,
) -> None:
    found_id, found_source, detail, found_gated = detect(model_id)
    assert (found_id, found_source, found_gated) == (license_id, source, gated)
    if license_id is None:
        assert "spec.license.id" in detail


def test_a_fine_tune_says_what_its_own_card_claimed(fake_hub: hubserver.HubFixture) -> None:
    _, _, detail, _ = detect("deepseek-ai/DeepSeek-R1-Distill-Llama-8B")
    assert "fine-tune of meta-llama/Llama-3.1-8B" in detail
    assert "its card says license 'mit'" in detail


def test_the_spec_override_wins_but_the_card_still_tells_gating(
    fake_hub: hubserver.HubFixture,
) -> None:
    assert detect("meta-llama/Llama-3.1-8B-Instruct", "llama3.3")[:2] == ("llama3.3", "spec")
    assert detect("meta-llama/Llama-3.1-8B-Instruct", "llama3.3")[3] is True


def test_each_card_is_read_once(fake_hub: hubserver.HubFixture) -> None:
    detect("example-org/chat-tune")
    detect("example-org/chat-tune")
    paths = [r.path for r in fake_hub.seen()]
    assert paths.count("/api/models/example-org/chat-tune/revision/main") == 1
    # An ancestor named like a Llama repository is recognised without asking the Hub.
    assert not [p for p in paths if p.startswith("/api/models/meta-llama/")]


def test_a_hub_that_is_down_falls_back_to_the_catalog(fake_hub: hubserver.HubFixture) -> None:
    fake_hub.down = True
    found_id, source, _, gated = detect("meta-llama/Llama-3.1-8B-Instruct")
    assert (found_id, source, gated) == ("llama3.1", "catalog", None)


class TestCliAgreesWithTheOperator:
    def test_a_gated_repository_without_a_token_is_held_by_plan_and_render(
        self,
        fake_hub: hubserver.HubFixture,
        tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        doc = {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "metadata": {"name": "chat", "namespace": "ai"},
            "spec": {
                "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                "license": {"accept": True},
            },
        }
        path = tmp_path / "chat.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert cli.main(["plan", "-f", str(path), "-o", "json"]) == 0
        found = json.loads(capsys.readouterr().out)["license"]
        assert (found["id"], found["source"], found["serving"]) == ("llama3.1", "card", "held")
        assert "spec.model.tokenSecretRef" in found["held"]
        assert cli.main(["render", "-f", str(path)]) == 0
        out, err = capsys.readouterr()
        kinds = sorted(o["kind"] for o in yaml.safe_load_all(out) if o)
        assert kinds == ["ConfigMap", "NetworkPolicy", "Service", "Service"]
        assert "is gated" in err
        assert "©" in out  # the NOTICE is printed as it must be reproduced
