"""The llama-operator command: plan, render, crds, run, --version."""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import pytest
import yaml

import llama_operator
from llama_operator import cli
from llama_operator.api import crd
from llama_operator.cli import cluster

ROOT = pathlib.Path(__file__).parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
PLAN_FIELDS = {
    "engine",
    "pool",
    "gpuProduct",
    "gpusPerReplica",
    "tensorParallel",
    "quantization",
    "maxModelLen",
    "estimatedGPUMemoryGiB",
    "kvCacheGiB",
    "costPerHour",
    "reason",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: pathlib.Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


class TestVersion:
    def test_prints_the_package_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--version"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.strip() == f"llama-operator {llama_operator.__version__}"


class TestPlan:
    def test_json_for_every_bundled_example(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "plan", "-f", str(EXAMPLES), "-o", "json")
        assert code == 0
        items = json.loads(out)["items"]
        assert len(items) == len(list(EXAMPLES.glob("*.yaml")))
        for item in items:
            assert set(item["plan"]) >= PLAN_FIELDS, item["name"]
            assert item["plan"]["gpusPerReplica"] == item["plan"]["tensorParallel"]

    def test_single_file_prints_one_object(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "plan", "-f", str(EXAMPLES / "tgi-pinned.yaml"), "-o", "yaml")
        assert code == 0
        result = yaml.safe_load(out)
        assert result["name"] == "tgi-chat"
        assert result["plan"]["engine"] == "tgi"
        assert result["plan"]["tensorParallel"] == 2
        assert result["plan"]["quantization"] == "fp8"
        assert result["plan"]["maxModelLen"] == 16384

    def test_text_names_the_choice_and_the_reason(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"))
        assert code == 0
        assert out.startswith("ai/chat (meta-llama/Llama-3.1-8B-Instruct)")
        assert "engine vllm 0.34.0 on pool" in out
        assert "why: 8.03B at 16-bit needs 15 GiB of weights" in out

    def test_infeasible_spec_exits_1_naming_the_field(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        doc = {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "metadata": {"name": "huge"},
            "spec": {
                "model": {"id": "meta-llama/Llama-3.1-405B-Instruct"},
                "placement": {"optimize": "quality", "tensorParallel": 1},
            },
        }
        code, out, _ = run(capsys, "plan", "-f", write(tmp_path, "huge.yaml", doc))
        assert code == 1
        assert "ERROR NoFeasiblePlan: spec.placement.tensorParallel:" in out
        assert "Would fit" in out

    @pytest.mark.parametrize("command", ["plan", "render"])
    def test_a_name_no_service_could_have_exits_1_rendering_nothing(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, command: str
    ) -> None:
        doc = {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "metadata": {"name": "chat.v2"},
            "spec": {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}},
        }
        code, out, err = run(capsys, command, "-f", write(tmp_path, "named.yaml", doc))
        assert code == 1
        assert "metadata.name 'chat.v2' is not a DNS-1035 label" in out + err
        if command == "render":
            assert [d for d in yaml.safe_load_all(out) if d] == []

    def test_pools_file_replaces_the_bundled_catalogue(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        pools = {
            "pools": [
                {"name": "t4", "gpuProduct": "Tesla-T4", "gpusPerNode": 4, "costPerGPUHour": 0.35}
            ]
        }
        code, out, _ = run(
            capsys,
            "plan",
            "-f",
            str(EXAMPLES / "chat-8b.yaml"),
            "--pools",
            write(tmp_path, "pools.yaml", pools),
            "-o",
            "json",
        )
        assert code == 0
        plan = json.loads(out)["plan"]
        assert plan["pool"] == "t4"
        assert plan["dtype"] == "float16"  # T4 has no bf16

    def test_bad_pools_file_is_a_clear_error(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        pools = {"pools": [{"name": "x", "gpuProduct": "Mystery-GPU", "gpusPerNode": 1}]}
        code, _, err = run(
            capsys,
            "plan",
            "-f",
            str(EXAMPLES / "chat-8b.yaml"),
            "--pools",
            write(tmp_path, "pools.yaml", pools),
        )
        assert code == 1
        assert "gpuMemoryGiB and computeCapability" in err

    def test_reads_standard_input(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO((EXAMPLES / "chat-8b.yaml").read_text()))
        code, out, _ = run(capsys, "plan", "-f", "-", "-o", "json")
        assert code == 0
        assert json.loads(out)["name"] == "chat"


class TestRender:
    def test_emits_every_object_for_every_example(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "render", "-f", str(EXAMPLES))
        assert code == 0
        objects = [doc for doc in yaml.safe_load_all(out) if doc]
        names = {(o["kind"], o["metadata"]["name"]) for o in objects}
        assert ("Deployment", "chat-primary") in names
        assert ("Service", "chat") in names
        assert ("Service", "chat-primary") in names
        assert ("ConfigMap", "chat-license") in names
        # Every example accepts its licence and names an API key, so nothing is held back:
        # five children each (the NetworkPolicy is on by default), and three more
        # (Deployment, Service, licence) per fallback.
        fallbacks = sum(
            len(yaml.safe_load(path.read_text())["spec"].get("fallbacks") or [])
            for path in EXAMPLES.glob("*.yaml")
        )
        assert fallbacks >= 1
        assert len(objects) == 5 * len(list(EXAMPLES.glob("*.yaml"))) + 3 * fallbacks
        assert ("NetworkPolicy", "chat") in names
        assert ("Deployment", "chat-70b-resilient-fallback-0") in names
        (standby,) = [
            o
            for o in objects
            if o["metadata"]["name"] == "chat-70b-resilient-fallback-0"
            and o["kind"] == "Deployment"
        ]
        labels = standby["spec"]["template"]["metadata"]["labels"]
        assert "llamaops.dev/deployment" not in labels  # never selected as the primary
        assert labels["llamaops.dev/fallback-of"] == "chat-70b-resilient"

    def test_a_deployment_the_licence_gate_holds_is_left_out_and_said(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        doc = yaml.safe_load((EXAMPLES / "chat-8b.yaml").read_text())
        del doc["spec"]["license"]
        path = tmp_path / "chat.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, out, err = run(capsys, "render", "-f", str(path))
        assert code == 0  # not an error: the operator waits for the acceptance
        kinds = sorted(o["kind"] for o in yaml.safe_load_all(out) if o)
        assert kinds == ["ConfigMap", "NetworkPolicy", "Service", "Service"]
        assert "Deployment chat-primary is held back" in err
        assert "spec.license.accept: true" in err
        assert "https://llama.meta.com/llama3_1/use-policy" in err

    def test_unplannable_document_is_reported_and_others_still_render(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        good = yaml.safe_load((EXAMPLES / "chat-8b.yaml").read_text())
        bad = {
            **good,
            "metadata": {"name": "bad"},
            "spec": {
                "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                "placement": {"pools": ["no-such-pool"]},
            },
        }
        path = tmp_path / "both.yaml"
        path.write_text(yaml.safe_dump_all([good, bad]))
        code, out, err = run(capsys, "render", "-f", str(path))
        assert code == 1
        assert "bad" in err
        assert "spec.placement.pools" in err
        assert len([d for d in yaml.safe_load_all(out) if d]) == 5


class TestCrds:
    def test_prints_the_committed_crd(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "crds")
        assert code == 0
        assert out == crd.render_yaml()
        assert out == (ROOT / "crds" / "llamadeployments.llamaops.dev.yaml").read_text()


class TestRun:
    def test_passes_kopf_options_through_with_our_handlers(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[list[str]] = []
        monkeypatch.setattr(cluster.kopf_cli, "main", lambda args, prog_name: seen.append(args))
        assert cli.main(["run", "-n", "ai", "--liveness", "http://0.0.0.0:8080/healthz"]) == 0
        assert seen == [
            [
                "run",
                "-m",
                "llama_operator.runtime.handlers",
                "-n",
                "ai",
                "--liveness",
                "http://0.0.0.0:8080/healthz",
            ]
        ]

    def test_watches_all_namespaces_unless_told_otherwise(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[list[str]] = []
        monkeypatch.setattr(cluster.kopf_cli, "main", lambda args, prog_name: seen.append(args))
        assert cli.main(["run"]) == 0
        assert seen == [["run", "-m", "llama_operator.runtime.handlers", "--all-namespaces"]]


class TestNoInput:
    @pytest.mark.parametrize("command", ["plan", "render"])
    def test_a_file_without_llamadeployments_is_an_error(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, command: str
    ) -> None:
        path = write(tmp_path, "cm.yaml", {"kind": "ConfigMap"})
        code, _, err = run(capsys, command, "-f", path)
        assert code == 1
        assert "no LlamaDeployment found" in err

    def test_a_missing_config_file_is_an_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run(
            capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"), "--config", "/nonexistent.yaml"
        )
        assert code == 1
        assert "does not exist" in err


class TestMemoryMargins:
    """issue 16: plan and render show one GPU's budget and margin; --corrections replays
    what running pods taught the operator."""

    def test_plan_prints_the_per_gpu_budget_and_margin(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run(capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"), "-o", "json")
        assert code == 0
        entry = json.loads(out)  # one document: one object
        plan = entry["plan"]
        memory = plan["memory"]
        # The figures add up the way the engine draws its budget.
        assert memory["budgetGiB"] == pytest.approx(
            memory["gpuGiB"] * plan["gpuMemoryUtilization"], abs=0.01
        )
        assert memory["kvCacheGiB"] == pytest.approx(
            memory["budgetGiB"] - memory["weightsGiB"] - memory["overheadGiB"], abs=0.02
        )
        assert memory["marginGiB"] == pytest.approx(
            memory["kvCacheGiB"] - memory["neededKVCacheGiB"], abs=0.02
        )
        assert memory["marginGiB"] >= 0
        assert plan["kvCacheTokens"] > 0
        code, text, _ = run(capsys, "plan", "-f", str(EXAMPLES / "chat-8b.yaml"))
        assert f"per GPU: budget {memory['budgetGiB']} of {memory['gpuGiB']} GiB" in text
        assert f"margin {memory['marginGiB']} GiB" in text

    def test_render_prints_the_margin_on_stderr_only(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run(capsys, "render", "-f", str(EXAMPLES / "chat-8b.yaml"))
        assert code == 0
        assert "per GPU: budget" in err
        assert "per GPU" not in out
        assert all(doc is not None for doc in yaml.safe_load_all(out))

    def test_corrections_from_the_calibration_config_map_shrink_the_plan(
        self, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
    ) -> None:
        spec = EXAMPLES / "chat-8b.yaml"
        code, out, _ = run(capsys, "plan", "-f", str(spec), "-o", "json")
        entry = json.loads(out)  # one document: one object
        plan = entry["plan"]
        key = (
            f"{entry['model'].replace('/', '--')}_vllm-{plan['engineVersion']}_{plan['gpuProduct']}"
        )
        record = {
            "model": entry["model"],
            "engine": "vllm",
            "engineVersion": plan["engineVersion"],
            "gpuProduct": plan["gpuProduct"],
            "ratio": 0.8,
            "plannedTokens": plan["kvCacheTokens"],
            "observedTokens": int(plan["kvCacheTokens"] * 0.8),
            "observedAt": "2026-12-06T00:00:00Z",
            "from": "ai/chat",
        }
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "llama-operator-calibration", "namespace": "llama-operator"},
            "data": {key: json.dumps(record)},
        }
        path = tmp_path / "calibration.yaml"
        path.write_text(yaml.safe_dump(config_map))
        code, out, _ = run(
            capsys, "plan", "-f", str(spec), "--corrections", str(path), "-o", "json"
        )
        assert code == 0
        corrected = json.loads(out)
        assert corrected["plan"]["kvCorrection"] == 0.8
        assert corrected["plan"]["kvCacheTokens"] < plan["kvCacheTokens"]
        code, text, _ = run(capsys, "plan", "-f", str(spec), "--corrections", str(path))
        assert "x0.80 as observed on running pods" in text
