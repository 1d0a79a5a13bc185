"""LoRA adapters in the serving pods: vLLM's flags, TGI's LORA_ADAPTERS, the NOTICE,
the plan's inputs hash and the CLI's adapters line; all read from the plan only."""

from __future__ import annotations

from typing import Any

from llama_operator import api
from llama_operator.cli import text
from llama_operator.licensing import terms
from llama_operator.planning import engine_profiles
from llama_operator.serving import engines
from llama_operator.serving.builders import notice

SPEC = api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}})
ADAPTERS = [
    api.PlanAdapter(
        name="sql", model="sql", source="/models/sql", rank=16, targetModules=["q_proj"]
    ),
    api.PlanAdapter(
        name="support",
        model="acme/support",
        source="acme/support",
        revision="v2",
        rank=64,
        targetModules=["q_proj", "v_proj"],
    ),
]
LORA = api.PlanLora(maxLoras=2, maxLoraRank=64, maxCpuLoras=2, loraGiB=0.657)


def plan(engine: api.Engine = "vllm", *, adapters: bool = True) -> api.Plan:
    return api.Plan(
        engine=engine,
        pool="l4",
        gpuProduct="NVIDIA-L4",
        gpusPerReplica=1,
        tensorParallel=1,
        quantization="none",
        dtype="bfloat16",
        maxModelLen=8192,
        maxConcurrentSequences=4,
        gpuMemoryUtilization=0.9,
        weightsGiB=15.0,
        estimatedGPUMemoryGiB=20.0,
        kvCacheGiB=2.0,
        adapters=ADAPTERS if adapters else [],
        lora=LORA if adapters else None,
        reason="test",
    )


def test_vllm_serves_every_adapter_from_its_flags() -> None:
    args = engines.args(spec=SPEC, plan=plan())
    start = args.index("--enable-lora")
    assert args[start:] == [
        "--enable-lora",
        "--max-loras",
        "2",
        "--max-lora-rank",
        "64",
        "--max-cpu-loras",
        "2",
        "--lora-modules",
        "sql=/models/sql",
        "support=acme/support",
    ]
    assert "--enable-lora" not in engines.args(spec=SPEC, plan=plan(adapters=False))


def lora_env(env: list[dict[str, Any]]) -> list[str]:
    return [item["value"] for item in env if item["name"] == "LORA_ADAPTERS"]


def test_tgi_serves_every_adapter_from_its_environment() -> None:
    assert lora_env(engines.env(spec=SPEC, plan=plan("tgi"))) == ["sql=/models/sql,acme/support@v2"]
    assert lora_env(engines.env(spec=SPEC, plan=plan("tgi", adapters=False))) == []
    assert lora_env(engines.env(spec=SPEC, plan=plan("vllm"))) == []
    assert "--lora-modules" not in engines.args(spec=SPEC, plan=plan("tgi"))


def test_the_notice_names_each_adapter_and_the_licence_covering_it() -> None:
    detection = terms.detect(model_id="meta-llama/Llama-3.1-8B-Instruct", override=None)
    cm = notice.license_config_map(
        name="chat",
        namespace="ai",
        uid="u",
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        detection=detection,
        adapters=ADAPTERS,
    )
    text_ = cm["data"]["NOTICE"]
    lic = detection.license
    assert lic is not None
    assert text_.startswith(lic.notice_text() + "\n")
    assert "sql (/models/sql), an adapter of meta-llama/Llama-3.1-8B-Instruct" in text_
    assert "support (acme/support@v2), an adapter of meta-llama/Llama-3.1-8B-Instruct" in text_
    assert f"its licence, {lic.name} ({lic.license_url}) and its use policy ({lic.aup_url})" in (
        text_
    )
    bare = notice.license_config_map(
        name="chat",
        namespace="ai",
        uid="u",
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        detection=detection,
    )
    assert bare["data"]["NOTICE"] == lic.notice_text() + "\n"


def test_a_permissive_base_does_not_claim_the_adapters() -> None:
    apache = terms.REGISTRY["apache-2.0"]
    said = terms.adapters_notice(adapters=[("sql", "/m")], model_id="x/y", license=apache)
    assert "does not bind derivatives" in said
    assert terms.adapters_notice(adapters=[], model_id="x/y", license=apache) == ""


def test_the_plan_inputs_change_with_the_adapters_only_when_there_are_some() -> None:
    base = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
    with_one = {**base, "adapters": [{"name": "sql", "id": "acme/sql"}]}
    with_other = {**base, "adapters": [{"name": "sql", "id": "acme/sql", "rank": 8}]}
    hashes = {api.plan_inputs_hash(api.parse_spec(raw)) for raw in (base, with_one, with_other)}
    assert len(hashes) == 3
    # Unchanged for a spec without adapters: its kept plans are not made anew.
    assert api.plan_inputs_hash(api.parse_spec({**base, "adapters": []})) == api.plan_inputs_hash(
        api.parse_spec(base)
    )


def test_the_cli_prints_the_adapters_and_their_memory() -> None:
    line = text.adapters_text(plan().model_dump(mode="json"))
    assert line == (
        "  adapters: sql (/models/sql, rank 16), support (acme/support@v2, rank 64, clients "
        "send acme/support); LoRA 0.657 GiB per GPU (maxLoras 2, maxLoraRank 64)\n"
    )
    assert text.adapters_text(plan(adapters=False).model_dump(mode="json")) == ""


def test_every_profile_says_how_it_serves_lora() -> None:
    for engine in ("vllm", "tgi"):
        lora = engine_profiles.get(engine).lora  # type: ignore[arg-type]
        assert (lora.modulesFlag is None) != (lora.modulesEnv is None)
