"""Model licences: the registry's exact strings, detection order, and the CLI's view of them."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from llama_operator import cli
from llama_operator.licensing import terms
from llama_operator.licensing.terms import REGISTRY
from llama_operator.planning import catalog

ROOT = pathlib.Path(__file__).parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
# Copied byte for byte from the design note; the tests never read the note itself.
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load(
    (ROOT / "tests" / "fixtures" / "licenses.yaml").read_text(encoding="utf-8")
)["licenses"]
LLAMA = ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4")
ALL_IDS = (
    *LLAMA,
    "gemma",
    "qwen",
    "tongyi-qianwen",
    "mrl",
    "mnpl",
    "deepseek",
    "apache-2.0",
    "mit",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


class TestRegistry:
    def test_covers_every_licence_id(self) -> None:
        assert set(REGISTRY) == set(ALL_IDS)
        assert all(lic.id == key for key, lic in REGISTRY.items())

    @pytest.mark.parametrize("license_id", sorted(EXPECTED))
    def test_strings_match_the_fixture_exactly(self, license_id: str) -> None:
        lic, want = REGISTRY[license_id], EXPECTED[license_id]
        assert lic.notice == want["notice"]
        for key, attr in (
            ("aupURL", "aup_url"),
            ("attribution", "attribution"),
            ("licenseURL", "license_url"),
        ):
            if key in want:
                assert getattr(lic, attr) == want[key], key

    def test_fixture_has_every_llama_version(self) -> None:
        assert set(LLAMA) <= set(EXPECTED)

    @pytest.mark.parametrize("license_id", LLAMA)
    def test_llama_notice_structure(self, license_id: str) -> None:
        notice = EXPECTED[license_id]["notice"]
        assert notice.endswith("Meta Platforms, Inc. All Rights Reserved.")
        if license_id == "llama2":
            assert "Copyright (c) " in notice
            assert "©" not in notice
        else:
            assert "Copyright © " in notice
            assert "(c)" not in notice
        assert ("Meta Llama 3" in notice) == (license_id == "llama3")
        version = {"llama2": "2", "llama3": "3"}.get(license_id, license_id.removeprefix("llama"))
        assert f"Llama {version} " in notice

    @pytest.mark.parametrize("license_id", LLAMA)
    def test_every_llama_licence_needs_acceptance_and_has_the_700m_clause(
        self, license_id: str
    ) -> None:
        lic = REGISTRY[license_id]
        assert lic.acceptance_required
        assert lic.aup_url is not None
        assert lic.restricted is None
        assert any("700 million monthly active users" in c for c in lic.clauses)
        folder = license_id.replace(".", "_")
        assert lic.license_url == (
            f"https://github.com/meta-llama/llama-models/blob/main/models/{folder}/LICENSE"
        )

    @pytest.mark.parametrize("license_id", LLAMA)
    def test_clauses_that_differ_between_versions(self, license_id: str) -> None:
        clauses = " ".join(REGISTRY[license_id].clauses)
        no_improving = license_id in ("llama2", "llama3")
        assert ("improve any other large language model" in clauses) == no_improving
        eu = license_id in ("llama3.2", "llama3.3", "llama4")
        assert ("EU" in clauses) == eu

    def test_notice_file_is_the_sentence_then_the_attribution(self) -> None:
        assert REGISTRY["llama3.1"].notice_text() == (
            EXPECTED["llama3.1"]["notice"] + "\nBuilt with Llama"
        )
        assert REGISTRY["llama3"].notice_text().endswith("\nBuilt with Meta Llama 3")
        assert REGISTRY["llama2"].notice_text() == EXPECTED["llama2"]["notice"]
        assert REGISTRY["apache-2.0"].notice_text() == ""

    def test_acceptance_and_restrictions_of_the_other_families(self) -> None:
        assert REGISTRY["gemma"].acceptance_required
        assert not REGISTRY["apache-2.0"].acceptance_required
        assert not REGISTRY["mit"].acceptance_required
        assert REGISTRY["mrl"].restricted is not None
        assert "research" in REGISTRY["mrl"].restricted
        assert [lic.id for lic in REGISTRY.values() if lic.restricted] == ["mrl", "mnpl"]
        assert "non-production" in (REGISTRY["mnpl"].restricted or "")
        assert terms.from_card("other", "mnpl") is REGISTRY["mnpl"]
        assert any("100 million" in c for c in REGISTRY["qwen"].clauses)
        assert any("passed on to users" in c for c in REGISTRY["gemma"].clauses)
        assert any("bind users" in c for c in REGISTRY["deepseek"].clauses)

    def test_every_catalog_licence_is_in_the_registry(self) -> None:
        assert {entry.license for entry in catalog.ENTRIES} <= set(REGISTRY)


DETECTIONS: list[tuple[dict[str, Any], str | None, str]] = [
    # explicit spec.license.id wins over everything
    (
        {
            "model_id": "meta-llama/Llama-3.1-8B-Instruct",
            "override": "llama3.3",
            "catalog_license": "llama3.1",
            "card_license": "llama3.1",
        },
        "llama3.3",
        "spec",
    ),
    ({"model_id": "acme/private-model", "override": "no-such-licence"}, None, "spec"),
    # the Hub card
    (
        {"model_id": "google/gemma-2-9b-it", "override": None, "card_license": "gemma"},
        "gemma",
        "card",
    ),
    (
        {
            "model_id": "Qwen/Qwen2.5-72B-Instruct",
            "override": None,
            "card_license": "other",
            "card_license_name": "qwen",
        },
        "qwen",
        "card",
    ),
    (
        {
            "model_id": "Qwen/Qwen-7B-Chat",
            "override": None,
            "card_license": "other",
            "card_license_name": "tongyi-qianwen",
        },
        "tongyi-qianwen",
        "card",
    ),
    (
        {
            "model_id": "mistralai/Codestral-22B-v0.1",
            "override": None,
            "card_license": "other",
            "card_license_name": "mnpl",
        },
        "mnpl",
        "card",
    ),
    (
        {
            "model_id": "mistralai/Mistral-Large-Instruct-2407",
            "override": None,
            "card_license": "other",
            "card_license_name": "mrl",
        },
        "mrl",
        "card",
    ),
    (
        {"model_id": "mistralai/Mistral-7B-v0.1", "override": None, "card_license": "apache-2.0"},
        "apache-2.0",
        "card",
    ),
    # a fine-tune inherits its base's licence, whatever its card says
    (
        {
            "model_id": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
            "override": None,
            "card_license": "mit",
            "base_models": ["meta-llama/Llama-3.1-8B"],
        },
        "llama3.1",
        "base-model",
    ),
    (
        {
            "model_id": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
            "override": None,
            "card_license": "mit",
            "base_models": ["meta-llama/Llama-3.3-70B-Instruct"],
        },
        "llama3.3",
        "base-model",
    ),
    (
        {
            "model_id": "acme/llama-2-finetune",
            "override": None,
            "card_license": "other",
            "base_models": ["acme/intermediate", "meta-llama/Llama-2-7b-hf"],
        },
        "llama2",
        "base-model",
    ),
    (
        {
            "model_id": "acme/qwen-finetune",
            "override": None,
            "card_license": "apache-2.0",
            "base_models": ["Qwen/Qwen2.5-7B"],
        },
        "apache-2.0",
        "card",
    ),
    # the built-in catalog
    (
        {
            "model_id": "meta-llama/Llama-3.2-11B-Vision-Instruct",
            "override": None,
            "catalog_license": "llama3.2",
        },
        "llama3.2",
        "catalog",
    ),
    # the repository id
    ({"model_id": "meta-llama/Llama-2-13b-chat-hf", "override": None}, "llama2", "pattern"),
    ({"model_id": "meta-llama/Meta-Llama-3-8B-Instruct", "override": None}, "llama3", "pattern"),
    (
        {"model_id": "meta-llama/Meta-Llama-3.1-8B-Instruct", "override": None},
        "llama3.1",
        "pattern",
    ),
    ({"model_id": "meta-llama/Llama-3.1-8B", "override": None}, "llama3.1", "pattern"),
    ({"model_id": "meta-llama/Llama-3.2-1B", "override": None}, "llama3.2", "pattern"),
    ({"model_id": "meta-llama/Llama-3.3-70B-Instruct", "override": None}, "llama3.3", "pattern"),
    (
        {"model_id": "meta-llama/Llama-4-Scout-17B-16E-Instruct", "override": None},
        "llama4",
        "pattern",
    ),
    ({"model_id": "google/gemma-3-27b-it", "override": None}, "gemma", "pattern"),
    ({"model_id": "google/gemma-7b", "override": None}, "gemma", "pattern"),
    ({"model_id": "Qwen/Qwen2.5-72B-Instruct", "override": None}, "qwen", "pattern"),
    # unknown is a state, not an error
    ({"model_id": "Qwen/Qwen2.5-7B-Instruct", "override": None}, None, "unknown"),
    ({"model_id": "acme/private-model", "override": None}, None, "unknown"),
]


class TestDetect:
    @pytest.mark.parametrize(
        ("kwargs", "license_id", "source"),
        DETECTIONS,
        ids=[f"{k['model_id']}-{s}" for k, _, s in DETECTIONS],
    )
    def test_table(self, kwargs: dict[str, Any], license_id: str | None, source: str) -> None:
        found = terms.detect(**kwargs)
        assert found.id == license_id
        assert found.source == source
        assert found.detail

    def test_unknown_override_names_the_allowed_ids(self) -> None:
        found = terms.detect(model_id="acme/x", override="llama5")
        assert "spec.license.id" in found.detail
        assert "'llama5'" in found.detail
        assert all(license_id in found.detail for license_id in ALL_IDS)

    def test_unknown_says_which_field_to_set(self) -> None:
        found = terms.detect(model_id="acme/x", override=None)
        assert found.license is None
        assert "set spec.license.id" in found.detail

    def test_override_is_case_insensitive(self) -> None:
        assert terms.detect(model_id="acme/x", override="Llama3.1").id == "llama3.1"

    def test_inheritance_says_what_the_card_claimed(self) -> None:
        found = terms.detect(
            model_id="deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
            override=None,
            card_license="mit",
            base_models=["meta-llama/Llama-3.1-8B"],
        )
        assert "meta-llama/Llama-3.1-8B" in found.detail
        assert "'mit'" in found.detail

    def test_card_beats_catalog(self) -> None:
        found = terms.detect(
            model_id="meta-llama/Llama-3.1-8B",
            override=None,
            card_license="llama3.1",
            catalog_license="llama3.1",
        )
        assert found.source == "card"

    def test_catalog_licence_unknown_to_the_registry_falls_through(self) -> None:
        found = terms.detect(
            model_id="meta-llama/Llama-3.1-8B", override=None, catalog_license="nope"
        )
        assert (found.id, found.source) == ("llama3.1", "pattern")


class TestMultimodal:
    @pytest.mark.parametrize(
        ("model_id", "expected"),
        [
            ("meta-llama/Llama-3.2-11B-Vision-Instruct", True),
            ("meta-llama/Llama-3.2-90B-Vision", True),
            ("meta-llama/Llama-4-Scout-17B-16E-Instruct", True),
            ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", True),
            ("meta-llama/Llama-3.2-3B-Instruct", False),
            ("meta-llama/Llama-3.3-70B-Instruct", False),
            ("meta-llama/Llama-3.1-8B-Instruct", False),
        ],
    )
    def test_multimodal(self, model_id: str, expected: bool) -> None:
        assert terms.multimodal(model_id) is expected

    def test_eu_notice_for_multimodal_models_under_3_2_and_later(self) -> None:
        vision = "meta-llama/Llama-3.2-11B-Vision-Instruct"
        notice = terms.eu_multimodal_notice(REGISTRY["llama3.2"], vision)
        assert notice is not None
        assert "EU" in notice
        assert REGISTRY["llama3.2"].aup_url is not None
        assert REGISTRY["llama3.2"].aup_url in notice

    def test_no_eu_notice_otherwise(self) -> None:
        assert terms.eu_multimodal_notice(REGISTRY["llama3.2"], "meta-llama/Llama-3.2-1B") is None
        assert (
            terms.eu_multimodal_notice(REGISTRY["llama3.1"], "meta-llama/Llama-3.2-11B-Vision")
            is None
        )
        assert terms.eu_multimodal_notice(None, "meta-llama/Llama-4-Scout-17B-16E") is None


class TestCli:
    def test_licenses_json_lists_every_id_with_its_notice(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out = run(capsys, "licenses", "-o", "json")
        assert code == 0
        items = {item["id"]: item for item in json.loads(out)["items"]}
        assert set(items) == set(ALL_IDS)
        for license_id, want in EXPECTED.items():
            assert items[license_id]["notice"] == want["notice"]
        assert items["mrl"]["restricted"]
        assert items["llama3.1"]["acceptanceRequired"] is True
        assert "©" in out  # unescaped: the notice reads exactly as it must be reproduced

    def test_licenses_yaml_and_text(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = run(capsys, "licenses", "-o", "yaml")
        assert code == 0
        assert [item["id"] for item in yaml.safe_load(out)["items"]] == list(REGISTRY)
        code, out = run(capsys, "licenses")
        assert code == 0
        for license_id in ALL_IDS:
            assert f"\n{license_id}: " in f"\n{out}"
        assert EXPECTED["llama2"]["notice"] in out
        assert "RESTRICTED: research use only" in out

    def test_plan_json_shows_the_detected_licence(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = run(capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"), "-o", "json")
        assert code == 0
        result = json.loads(out)
        assert "plan" in result
        found = result["license"]
        assert found["id"] == "llama3.1"
        assert found["source"] == "catalog"
        assert found["notice"] == EXPECTED["llama3.1"]["notice"]
        assert found["aupURL"] == EXPECTED["llama3.1"]["aupURL"]
        assert found["attribution"] == "Built with Llama"
        assert found["acceptanceRequired"] is True
        assert found["restricted"] is None
        assert found["euMultimodal"] is None

    def test_plan_yaml_for_every_example_has_a_licence(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out = run(capsys, "plan", "-f", str(EXAMPLES), "-o", "yaml")
        assert code == 0
        found = {item["model"]: item["license"] for item in yaml.safe_load(out)["items"]}
        assert found["meta-llama/Llama-3.3-70B-Instruct"]["id"] == "llama3.3"
        assert found["meta-llama/Llama-3.1-70B-Instruct"]["id"] == "llama3.1"
        # Outside the catalog and unknown to the patterns: the example names its licence.
        custom = found["example-org/my-llama-finetune"]
        assert (custom["id"], custom["source"]) == ("llama3.1", "spec")
        for item in found.values():
            assert item["serving"] == "allowed"  # every example accepts its licence
            assert item["injected"]["mountPath"] == "/licenses"
        assert found["meta-llama/Llama-3.3-70B-Instruct"]["injected"] == {
            "configMap": "big-chat-license",
            "mountPath": "/licenses",
            "files": ["AUP_URL", "LICENSE_ID", "LICENSE_URL", "NOTICE", "README"],
            "annotations": {
                "llamaops.dev/license": "llama3.3",
                "llamaops.dev/aup-url": "https://www.llama.com/llama3_3/use-policy",
            },
        }
        assert "©" in out  # unescaped

    def test_plan_text_has_the_license_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = run(capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"))
        assert code == 0
        line = next(x for x in out.splitlines() if x.strip().startswith("license:"))
        assert line.startswith("  license: llama3.1 (catalog) ")
        assert "https://llama.meta.com/llama3_1/use-policy" in line
        assert '"Built with Llama"' in line
        injected = next(x for x in out.splitlines() if x.strip().startswith("injected:"))
        assert injected == (
            "  injected: ConfigMap chat-license (AUP_URL, LICENSE_ID, LICENSE_URL, NOTICE, README)"
            " at /licenses; annotations llamaops.dev/license=llama3.1, "
            "llamaops.dev/aup-url=https://llama.meta.com/llama3_1/use-policy"
        )
        assert "HELD" not in out  # the example accepts the licence

    def test_plan_shows_the_eu_restriction_for_a_multimodal_model(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        doc = yaml.safe_load((EXAMPLES / "chat-8b.yaml").read_text())
        doc["spec"]["model"] = {"id": "meta-llama/Llama-3.2-11B-Vision-Instruct"}
        path = tmp_path / "vision.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, out = run(capsys, "plan", "-f", str(path), "-o", "json")
        assert code == 0
        found = json.loads(out)["license"]
        assert found["id"] == "llama3.2"
        assert "EU" in found["euMultimodal"]
        code, out = run(capsys, "plan", "-f", str(path))
        assert "multimodal: not licensed in the EU" in out

    def test_plan_honours_the_spec_override_and_shows_unknown(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        doc = yaml.safe_load((EXAMPLES / "chat-8b.yaml").read_text())
        doc["spec"]["license"] = {"id": "llama5"}
        path = tmp_path / "override.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, out = run(capsys, "plan", "-f", str(path))
        assert code == 0  # the plan stands; serving is what waits for a valid licence id
        assert "  license: unknown (spec) spec.license.id 'llama5' is not a known licence id" in out
        assert "  HELD: spec.license.id 'llama5' is not a known licence id" in out

    def test_a_failed_plan_still_shows_the_licence(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        doc = yaml.safe_load((EXAMPLES / "chat-8b.yaml").read_text())
        doc["spec"]["placement"] = {"pools": ["no-such-pool"]}
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, out = run(capsys, "plan", "-f", str(path), "-o", "json")
        assert code == 1
        result = json.loads(out)
        assert "error" in result
        assert result["license"]["id"] == "llama3.1"
