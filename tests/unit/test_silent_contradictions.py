"""Silent contradictions in a spec are said out loud (issue 15, item 5).

- spec.engineArgs that name a flag the operator plans: the ``EngineArgs`` condition. A flag
  the operator owns (model, revision, host, port), or on TGI any planned flag repeated
  (its launcher refuses a flag given twice), holds serving; any other planned flag wins
  over the plan (vLLM keeps the last value) with a warning naming the planned value and
  the spec field to use instead. Flags that carry a secret are refused by the CRD and the
  operator's parse in every spelling the engines take.
- spec.image is an image reference by the distribution grammar, in the CRD's schema and
  in the operator's parse, with a message naming the field.
- A fallback no pool can serve: the ``FallbacksPlanned`` condition with a Warning Event,
  and nothing that serves is touched.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pydantic
import pytest
import re2
from test_crd import SPEC_SCHEMA, api_server_errors, operator_error, spec_with, wrap
from test_reconcile import settle
from test_reconcile_fallback import run as run_with_fallbacks
from test_reconcile_rollout import ready
from test_reconcile_security import KEYED, applied, condition
from test_reconcile_security import run as run_secured

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import failover
from llama_operator.planning import engine_profiles
from llama_operator.serving import engines
from llama_operator.serving.engines import overrides
from plans import make_plan

MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
# make_plan's context (8192) and what the engines render for it.
PLANNED_MAX_NUM_SEQS = "32"  # engines.limits: 8192 * 4 // 1024


def verdict(engine: str, *arguments: str, **plan: Any) -> overrides.Verdict:
    spec = api.parse_spec({"model": {"id": MODEL_ID}, "engineArgs": list(arguments)})
    return engines.check_engine_args(spec=spec, plan=make_plan(engine=engine, **plan))


def message(found: overrides.Verdict) -> str:
    assert found.check is not None
    return found.check.message


# -- spec.engineArgs against the plan: vLLM ------------------------------------------------


class TestVllmOverrides:
    def test_no_engine_args_no_condition(self) -> None:
        assert verdict("vllm") == overrides.Verdict(None, None)

    def test_flags_the_operator_does_not_plan_contradict_nothing(self) -> None:
        found = verdict("vllm", "--enable-prefix-caching", "--max-num-batched-tokens", "8192")
        assert found.check is not None
        assert (found.check.type, found.check.status, found.check.reason) == (
            "EngineArgs",
            "True",
            "NoConflict",
        )
        assert found.hold is None

    @pytest.mark.parametrize(
        ("arguments", "written", "value", "planned", "field"),
        [
            (["--max-model-len", "4096"], "--max-model-len", "4096", "8192", "maxModelLen"),
            (["--max-model-len=4096"], "--max-model-len", "4096", "8192", "maxModelLen"),
            (["--max_model_len", "4096"], "--max_model_len", "4096", "8192", "maxModelLen"),
            (["--tensor-parallel-size", "2"], "--tensor-parallel-size", "2", "1", "tensorParallel"),
            (["-tp", "2"], "-tp", "2", "1", "tensorParallel"),
            (["-tp=2"], "-tp", "2", "1", "tensorParallel"),
            (
                ["--gpu-memory-utilization=0.95"],
                "--gpu-memory-utilization",
                "0.95",
                "0.9",
                "memoryFraction",
            ),
            (
                ["--max-num-seqs", "64"],
                "--max-num-seqs",
                "64",
                PLANNED_MAX_NUM_SEQS,
                "maxConcurrentSequences",
            ),
            (["--dtype", "float16"], "--dtype", "float16", "bfloat16", "dtype"),
            (
                ["--served-model-name", "chat"],
                "--served-model-name",
                "chat",
                MODEL_ID,
                "servedModelName",
            ),
        ],
    )
    def test_a_planned_flag_wins_with_a_warning_naming_value_plan_and_fix(
        self, arguments: list[str], written: str, value: str, planned: str, field: str
    ) -> None:
        found = verdict("vllm", "--enable-prefix-caching", *arguments)
        assert found.check is not None
        assert (found.check.status, found.check.reason) == ("False", "OverridesPlan")
        assert found.hold is None  # the user's value wins: serving goes on
        text = found.check.message
        assert f"{written} {value} (" in text
        assert f"planned {planned}" in text
        fix = overrides.FIELDS[field]
        if fix is not None:
            assert f"instead set {fix}" in text
        assert "The plan's sizing no longer holds" in text
        (contradiction,) = found.contradictions
        assert contradiction.named.setting == field

    def test_an_alias_names_the_flag_it_stands_for(self) -> None:
        text = message(verdict("vllm", "-tp", "2"))
        assert "-tp 2 (--tensor-parallel-size; planned 1; instead set " in text

    def test_a_quantization_the_plan_did_not_choose(self) -> None:
        found = verdict("vllm", "-q", "bitsandbytes", quantization="fp8")
        assert "-q bitsandbytes (--quantization; planned fp8; instead set " in message(found)

    @pytest.mark.parametrize("quantization", ["none", "awq"])
    def test_a_quantization_where_the_plan_renders_no_flag(self, quantization: str) -> None:
        # 16-bit weights, or a pre-quantized checkpoint vLLM reads the method from.
        found = verdict("vllm", "--quantization=fp8", quantization=quantization)
        assert found.check is not None
        assert found.check.reason == "OverridesPlan"
        assert f"--quantization fp8 (planned {quantization}, with no flag; " in message(found)

    def test_restating_the_planned_value_is_no_contradiction(self) -> None:
        found = verdict("vllm", "--max-model-len", "8192", "--tensor-parallel-size=1")
        assert found.check is not None
        assert found.check.status == "True"

    def test_the_last_value_is_the_one_reported_as_argparse_keeps_it(self) -> None:
        found = verdict("vllm", "--max-model-len", "2048", "--max-model-len=4096")
        (contradiction,) = found.contradictions
        assert contradiction.named.value == "4096"

    def test_a_flag_without_a_value(self) -> None:
        assert "--max-model-len (no value) (planned 8192" in message(
            verdict("vllm", "--max-model-len")
        )

    @pytest.mark.parametrize(
        ("arguments", "why"),
        [
            (["--port", "9000"], "the Service and the probes use port 8000"),
            (["--port=8000"], "the Service and the probes use port 8000"),
            (["--host", "127.0.0.1"], "the engine listens on 0.0.0.0"),
            (["--model", "evil/model"], f"the operator serves {MODEL_ID}"),
            (["--revision=abc"], "set spec.model.revision instead"),
        ],
    )
    def test_flags_the_operator_owns_are_refused_and_hold_serving(
        self, arguments: list[str], why: str
    ) -> None:
        found = verdict("vllm", *arguments)
        assert found.check is not None
        assert (found.check.status, found.check.reason) == ("False", "Refused")
        assert found.hold == found.check.message
        assert why in found.check.message
        assert "No serving pod is created or changed" in found.check.message

    def test_a_refusal_also_lists_the_overrides(self) -> None:
        text = message(verdict("vllm", "--port", "9000", "-tp", "2"))
        assert text.startswith("spec.engineArgs: --port 9000 (")
        assert "Also spec.engineArgs override planned flags" in text
        assert "-tp 2 (--tensor-parallel-size; planned 1" in text

    def test_an_underscore_is_read_only_in_a_long_flags_name(self) -> None:
        # FlexibleArgumentParser turns "_" into "-" up to the first "." only.
        found = verdict("vllm", "--max_model_len.x=1", "-t_p", "2")
        assert found.check is not None
        assert found.check.status == "True"


# -- spec.engineArgs against the plan: TGI -------------------------------------------------


class TestTgiOverrides:
    @pytest.mark.parametrize(
        ("arguments", "flag"),
        [
            (["--num-shard", "2"], "--num-shard"),
            (["--max-total-tokens=4096"], "--max-total-tokens"),
            (["--max-input-tokens", "100"], "--max-input-tokens"),
            (["--max-input-length", "100"], "--max-input-tokens"),
            (["--cuda-memory-fraction", "0.95"], "--cuda-memory-fraction"),
            (["--dtype", "float16"], "--dtype"),
            # Even the planned value: the launcher refuses the flag given twice.
            (["--num-shard", "1"], "--num-shard"),
        ],
    )
    def test_a_planned_flag_repeated_is_refused_since_the_launcher_would_exit(
        self, arguments: list[str], flag: str
    ) -> None:
        found = verdict("tgi", *arguments)
        assert found.check is not None
        assert (found.check.status, found.check.reason) == ("False", "Refused")
        assert found.hold is not None
        assert "TGI's launcher refuses a flag given twice" in found.check.message
        (contradiction,) = found.contradictions
        assert contradiction.flag == flag

    def test_the_quantization_flag_too(self) -> None:
        found = verdict("tgi", "--quantize", "eetq", quantization="fp8")
        assert "--quantize eetq (planned fp8; TGI's launcher refuses" in message(found)
        assert "set spec.placement.quantization instead" in message(found)

    def test_dtype_and_quantize_are_one_or_the_other(self) -> None:
        # The renderer sets --dtype for 16-bit weights and --quantize otherwise; the shard
        # refuses both together (server/text_generation_server/cli.py, v3.3.7).
        found = verdict("tgi", "--quantize", "fp8", quantization="none")
        assert found.check is not None
        assert found.check.reason == "Refused"
        assert "planned --dtype bfloat16; TGI takes only one of --quantize and --dtype" in (
            found.check.message
        )
        found = verdict("tgi", "--dtype=float16", quantization="fp8")
        assert found.check is not None
        assert found.check.reason == "Refused"
        assert "planned --quantize fp8; TGI takes only one of --dtype and --quantize" in (
            found.check.message
        )

    def test_max_concurrent_requests_is_left_to_the_user_and_warned_about(self) -> None:
        # The renderer leaves the flag out when engineArgs names it (tgi.args).
        found = verdict("tgi", "--max-concurrent-requests=64")
        assert found.check is not None
        assert (found.check.status, found.check.reason) == ("False", "OverridesPlan")
        assert found.hold is None
        assert f"planned {PLANNED_MAX_NUM_SEQS}; instead set spec.limits" in found.check.message

    @pytest.mark.parametrize(
        "arguments", [["--hostname", "127.0.0.1"], ["-p", "80"], ["--model-id=evil/model"]]
    )
    def test_flags_the_operator_owns_are_refused(self, arguments: list[str]) -> None:
        found = verdict("tgi", *arguments)
        assert found.check is not None
        assert found.check.reason == "Refused"

    def test_clap_takes_no_underscore_spelling(self) -> None:
        # --num_shard is no flag of the launcher: it refuses it on its own, whatever we say.
        found = verdict("tgi", "--num_shard", "2")
        assert found.check is not None
        assert found.check.status == "True"


class TestProfiles:
    @pytest.mark.parametrize(
        "profile",
        [p for engine in ("vllm", "tgi") for p in engine_profiles.profiles(engine)],
        ids=lambda p: f"{p.engine}-{p.since}",
    )
    def test_every_planned_setting_says_what_to_do_instead(
        self, profile: engine_profiles.Profile
    ) -> None:
        settings = set(profile.flags) | set(profile.flagAliases)
        assert settings <= set(overrides.FIELDS), settings - set(overrides.FIELDS)

    def test_the_operators_secret_flags_cover_every_engines(self) -> None:
        for engine in ("vllm", "tgi"):
            for profile in engine_profiles.profiles(engine):
                assert set(profile.secretFlags) <= set(api.SECRET_FLAGS), profile.engine


# -- in a whole reconcile ------------------------------------------------------------------


class TestReconcile:
    def test_an_override_warns_once_and_the_pods_run_with_it(self) -> None:
        spec = {**KEYED, "engineArgs": ["--max-model-len", "4096"]}
        outcome, client = run_secured(spec)
        assert "Deployment/chat-primary" in applied(client)
        (deployment,) = [o for o in client.applied if o["kind"] == "Deployment"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-2:] == ["--max-model-len", "4096"]
        found = condition(outcome, "EngineArgs")
        assert (found["status"], found["reason"]) == ("False", "OverridesPlan")
        warnings = [e for e in outcome.events if e.type == "Warning"]
        assert [e.reason for e in warnings] == ["OverridesPlan"]
        # The next reconcile learns nothing new: no second Event.
        again, _ = run_secured(spec, status=dict(outcome.status_patch))
        assert "OverridesPlan" not in [e.reason for e in again.events]

    def test_an_owned_flag_creates_no_serving_pod(self) -> None:
        outcome, client = run_secured({**KEYED, "engineArgs": ["--port=9000"]})
        assert "Deployment/chat-primary" not in applied(client)
        assert "Service/chat" in applied(client)  # the rest is laid out
        assert condition(outcome, "EngineArgs")["reason"] == "Refused"
        assert outcome.status_patch["phase"] == "Pending"
        assert "--port 9000" in condition(outcome, "Ready")["message"]
        assert ("Warning", "Refused") in [(e.type, e.reason) for e in outcome.events]

    def test_a_serving_endpoint_keeps_serving_unchanged(self) -> None:
        first, client = run_secured(KEYED)
        status, live = settle(first, client)
        before = copy.deepcopy(live["Deployment", "chat-primary"])
        outcome, again = run_secured(
            {**KEYED, "engineArgs": ["--port", "9000"]}, status=status, live=live
        )
        assert "Deployment/chat-primary" not in applied(again)
        assert again.deleted == []
        assert live["Deployment", "chat-primary"] == before
        assert condition(outcome, "EngineArgs")["reason"] == "Refused"

    def test_no_engine_args_no_condition(self) -> None:
        first, _ = run_secured({**KEYED, "engineArgs": ["--enable-prefix-caching"]})
        assert condition(first, "EngineArgs")["status"] == "True"
        again, _ = run_secured(KEYED, status=dict(first.status_patch))
        types = [c["type"] for c in again.status_patch["conditions"]]
        assert "EngineArgs" not in types

    def test_the_condition_sits_after_engine_profile(self) -> None:
        outcome, _ = run_secured({**KEYED, "engineArgs": ["--x"]})
        types = [c["type"] for c in outcome.status_patch["conditions"]]
        assert types.index("EngineArgs") == types.index("EngineProfile") + 1
        assert conditions.ORDER.index("EngineArgs") < conditions.ORDER.index("PodSecurity")


# -- secrets in spec.engineArgs: refused in every spelling ---------------------------------

SECRET_SPELLINGS = [
    ["--api-key", "sk-1"],
    ["--api-key=sk-1"],
    ["--api_key", "sk-1"],  # vLLM reads "_" as "-"
    ["--api_key=sk-1"],
    ["--api-k", "sk-1"],  # argparse expands an unambiguous prefix
    ["--api-ke=sk-1"],
    ["--api_k=sk-1"],
    ["--hf-token", "hf_x"],
    ["--hf-token=hf_x"],
    ["--hf_token=hf_x"],
    ["--hf-t", "hf_x"],
    ["--hf-tok=hf_x"],
    ["--hf-token"],  # alone: the token from the image's login, still refused
    ["--ngrok-authtoken", "t"],  # TGI
    ["--ngrok-authtoken=t"],
]
NOT_SECRETS = [
    ["--api-keys-are-not-a-flag"],
    ["--api-server-count=2"],
    ["--hf-overrides", "{}"],
    ["--hf-config-path=/x"],
    ["--enable-prefix-caching"],
    ["--api"],  # ambiguous in vLLM: argparse refuses it itself
]


@pytest.mark.parametrize("arguments", SECRET_SPELLINGS, ids=lambda a: a[0])
def test_a_secret_flag_is_refused_by_the_crd_and_the_operator(arguments: list[str]) -> None:
    spec = spec_with(engineArgs=["--enable-prefix-caching", *arguments])
    errors = api_server_errors(wrap(spec))
    assert errors, "the API server would accept it"
    assert errors[0].startswith("spec.engineArgs must not carry"), errors
    assert operator_error(spec) == "spec.engineArgs"


@pytest.mark.parametrize("arguments", NOT_SECRETS, ids=lambda a: a[0])
def test_other_flags_pass(arguments: list[str]) -> None:
    spec = spec_with(engineArgs=arguments)
    assert api_server_errors(wrap(spec)) == []
    assert operator_error(spec) is None


def test_the_secret_pattern_reads_the_same_in_re2_and_python() -> None:
    # CEL's matches() is RE2 on the API server (and in cel-python, which the CRD tests run).
    compiled = re2.compile(api.SECRET_FLAG_PATTERN)
    for arguments in SECRET_SPELLINGS + NOT_SECRETS:
        python = re.match(api.SECRET_FLAG_PATTERN, arguments[0]) is not None
        assert (compiled.search(arguments[0]) is not None) == python, arguments


# -- spec.image ----------------------------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4
VALID_IMAGES = [
    "vllm/vllm-openai:v0.34.0",
    f"registry:5000/a/b@{DIGEST}",
    "ghcr.io/huggingface/text-generation-inference:3.3.7",
    "ubuntu",
    "localhost:5000/team/vllm:v0.34.0-cu128",
    f"vllm/vllm-openai:v0.34.0@{DIGEST}",
    "registry.example.com/a__b/c--d/e.f:TAG_1.2-x",
    "[fd00::1]:5000/vllm/vllm-openai:latest",
    "Registry.Example.COM/vllm/vllm-openai",  # a host may be upper case
    "vllm/vllm-openai:" + "t" * 128,
]
INVALID_IMAGES = [
    "",
    "vllm/vllm-openai :v1",  # a space
    " vllm/vllm-openai",
    "vllm/VLLM-openai:v1",  # upper-case repository
    "VLLM-OpenAI",
    ":",
    "vllm/vllm-openai:",  # ":" with no tag
    ":v1",
    "vllm/vllm-openai@sha256:abc",  # a digest too short
    "vllm/vllm-openai@" + "0" * 64,  # no algorithm
    "vllm/vllm-openai:v1;rm -rf /",
    "vllm/vllm-openai:$(id)",
    "vllm/vllm-openai:`id`",
    "vllm/vllm-openai|sh",
    "vllm/vllm-openai:v1&&x",
    "vllm/vllm-openai:v1\nx",
    "https://ghcr.io/x/y:1",
    "vllm//vllm-openai",
    "vllm/vllm-openai/",
    "-vllm/vllm-openai",
    "vllm/vllm-openai:-v1",  # a tag starts with a word character
    "vllm/vllm-openai:" + "t" * 129,  # a tag of more than 128
    "r/" + "a" * 511,  # longer than the field's 512
    "vllm/vllm-öpenai:v1",
    "vllm/vllm-openai:v1é",
]


def image_spec(image: str) -> dict[str, Any]:
    return spec_with(image=image)


@pytest.mark.parametrize("image", VALID_IMAGES)
def test_a_valid_image_reference_passes(image: str) -> None:
    assert api_server_errors(wrap(image_spec(image))) == []
    assert operator_error(image_spec(image)) is None


@pytest.mark.parametrize("image", INVALID_IMAGES)
def test_an_invalid_image_reference_is_refused_naming_the_field(image: str) -> None:
    assert api_server_errors(wrap(image_spec(image))), f"the API server would accept {image!r}"
    assert operator_error(image_spec(image)) == "spec.image"


def test_the_operators_message_says_what_an_image_reference_is() -> None:
    with pytest.raises(api.SpecError) as caught:
        api.parse_spec(image_spec("vllm/vllm-openai:v1;rm -rf /"))
    assert caught.value.field == "spec.image"
    text = str(caught.value)
    assert text.startswith("spec.image: must be an image reference")
    assert "'vllm/vllm-openai:v1;rm -rf /'" in text


@pytest.mark.parametrize("image", VALID_IMAGES + INVALID_IMAGES)
def test_re2_python_and_pydantic_agree_on_the_pattern(image: str) -> None:
    """The API server reads the CRD's pattern with RE2, jsonschema (these tests) with
    Python's re, the operator with pydantic (Rust's regex): all must say the same."""
    pattern = SPEC_SCHEMA["properties"]["image"]["pattern"]
    assert pattern == api.IMAGE_PATTERN
    by_re2 = re2.search(pattern, image) is not None
    by_python = re.fullmatch(pattern, image) is not None
    try:
        api.LlamaDeploymentSpec.model_validate({"model": {"id": MODEL_ID}, "image": image})
        by_pydantic = True
    except pydantic.ValidationError:
        by_pydantic = False
    assert by_re2 == by_python
    # pydantic also holds the field's maxLength (512).
    assert by_pydantic == (by_python and len(image) <= 512)


def test_the_image_pattern_uses_only_what_ecma_262_and_re2_share() -> None:
    # No \w, \d, \s, \b (ECMA reads them as ASCII, Rust's regex and Python as Unicode), no
    # POSIX classes (not ECMA), no lookaround or backreferences (not RE2), no inline flags.
    for construct in (r"\w", r"\d", r"\s", r"\b", "[[:", "(?=", "(?!", "(?<", r"\1", "(?i", "(?P"):
        assert construct not in api.IMAGE_PATTERN, construct


# -- fallbacks no pool can serve -----------------------------------------------------------

HUGE = "meta-llama/Llama-3.1-405B-Instruct"
PRIMARY_ON_L4: dict[str, Any] = {
    "model": {"id": MODEL_ID},
    "license": {"accept": True},
    "placement": {"pools": ["l4"]},
    "fallbacks": [
        {"model": {"id": "meta-llama/Llama-3.2-1B-Instruct"}, "license": {"accept": True}},
        {"model": {"id": HUGE}, "license": {"accept": True}},
    ],
}


class TestFallbackPlacement:
    def test_a_fallback_no_pool_can_serve_is_reported_with_its_index_and_the_fix(self) -> None:
        outcome, client, status = run_with_fallbacks(PRIMARY_ON_L4, {}, {})
        found = {c["type"]: c for c in status["conditions"]}["FallbacksPlanned"]
        assert (found["status"], found["reason"]) == ("False", "FallbackNotPlanned")
        text = found["message"]
        assert text.startswith(f"spec.fallbacks[1] ({HUGE}) cannot be placed: NoFeasiblePlan")
        assert "spec.fallbacks[0]" not in text
        assert "remove it from spec.fallbacks" in text
        warnings = [(e.reason, e.message) for e in outcome.events if e.type == "Warning"]
        assert ("FallbackNotPlanned", text) in warnings
        # What can serve is built: the primary and the other fallback; the other gets nothing.
        names = {f"{o['kind']}/{o['metadata']['name']}" for o in client.applied}
        assert {"Deployment/chat-primary", "Deployment/chat-fallback-0"} <= names
        assert not any(n.endswith("chat-fallback-1") for n in names)
        rows = status["failover"]["fallbacks"]
        assert [r["servable"] for r in rows] == [True, False]

    def test_the_warning_is_given_once(self) -> None:
        live: dict[tuple[str, str], Any] = {}
        _, _, status = run_with_fallbacks(PRIMARY_ON_L4, live, {})
        again, _, _ = run_with_fallbacks(PRIMARY_ON_L4, live, status)
        assert "FallbackNotPlanned" not in [e.reason for e in again.events]

    def test_every_fallback_placed(self) -> None:
        spec = {**PRIMARY_ON_L4, "fallbacks": PRIMARY_ON_L4["fallbacks"][:1]}
        _, _, status = run_with_fallbacks(spec, {}, {})
        found = {c["type"]: c for c in status["conditions"]}["FallbacksPlanned"]
        assert (found["status"], found["reason"]) == ("True", "AllPlanned")
        assert "fallback-0 (meta-llama/Llama-3.2-1B-Instruct) on pool l4" in found["message"]

    def test_no_fallbacks_no_condition(self) -> None:
        live: dict[tuple[str, str], Any] = {}
        _, _, status = run_with_fallbacks(PRIMARY_ON_L4, live, {})
        spec = {k: v for k, v in PRIMARY_ON_L4.items() if k != "fallbacks"}
        _, _, status = run_with_fallbacks(spec, live, status)
        assert "FallbacksPlanned" not in [c["type"] for c in status["conditions"]]

    def test_a_serving_fallback_that_can_no_longer_be_placed_is_left_as_it_is(self) -> None:
        # Planned on h100 first; an edit that allows only l4 leaves it without a pool.
        spec = {**PRIMARY_ON_L4, "placement": {"pools": ["l4", "h100"]}}
        live: dict[tuple[str, str], Any] = {}
        _, client, status = run_with_fallbacks(spec, live, {})
        for obj in client.applied:
            if obj["kind"] == "Deployment":
                live[obj["kind"], obj["metadata"]["name"]] = ready(obj, obj["spec"]["replicas"])
        _, _, status = run_with_fallbacks(spec, live, status)
        found = {c["type"]: c for c in status["conditions"]}["FallbacksPlanned"]
        assert found["status"] == "True"
        before = copy.deepcopy(live["Deployment", "chat-fallback-1"])
        outcome, again, status = run_with_fallbacks(PRIMARY_ON_L4, live, status)
        found = {c["type"]: c for c in status["conditions"]}["FallbacksPlanned"]
        assert (found["status"], found["reason"]) == ("False", "FallbackNotPlanned")
        assert not any(o["metadata"]["name"].startswith("chat-fallback-1") for o in again.applied)
        assert again.deleted == []
        assert live["Deployment", "chat-fallback-1"] == before
        assert ("Warning", "FallbackNotPlanned") in [(e.type, e.reason) for e in outcome.events]


class TestPlacementCheck:
    def test_names_every_unplanned_fallback(self) -> None:
        check = failover.placement_check(
            [
                failover.Candidate(0, "a/x", 1, planned=False, servable=False, reason="R0"),
                failover.Candidate(1, "a/y", 1, pool="l4"),
                failover.Candidate(2, "a/z", 0, planned=False, servable=False, reason="R2"),
            ]
        )
        assert (check.type, check.status, check.reason) == (
            "FallbacksPlanned",
            "False",
            "FallbackNotPlanned",
        )
        assert check.message.startswith(
            "spec.fallbacks[0] (a/x) cannot be placed: R0; "
            "spec.fallbacks[2] (a/z) cannot be placed: R2. They get no pods"
        )

    def test_a_licence_hold_is_not_a_placement_failure(self) -> None:
        check = failover.placement_check(
            [failover.Candidate(0, "a/x", 1, servable=False, reason="licence", pool="l4")]
        )
        assert check.status == "True"
