"""Engine profiles: which release an image holds, and the facts the operator uses for it.

The facts themselves are checked against the engines' source in tests/engines/; these
tests pin how a profile is chosen and what the planner, the renderer and status make of
it (``profiles``, ``planner.resolve_engine``, ``security.engine_profile_check``).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_engines import make_plan

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.planning import config, engine_profiles, planner
from llama_operator.serving import security


class TestVersions:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("0.34.0", (0, 34, 0)),
            ("v0.34.0", (0, 34, 0)),
            ("3.3.7", (3, 3, 7)),
            ("3.3", (3, 3, 0)),
            ("3.3.7-rocm", (3, 3, 7)),
            ("v0.34.0-cu129", (0, 34, 0)),
            ("latest", None),
            ("sha256:abc", None),
            ("", None),
        ],
    )
    def test_parse_version(self, text: str, expected: tuple[int, int, int] | None) -> None:
        assert engine_profiles.parse_version(text) == expected

    @pytest.mark.parametrize(
        ("image", "expected"),
        [
            ("vllm/vllm-openai:v0.34.0", "0.34.0"),
            ("ghcr.io/huggingface/text-generation-inference:3.3.7", "3.3.7"),
            # A registry port is not a tag.
            ("registry.example.com:5000/mirror/vllm-openai:v0.28.1", "0.28.1"),
            ("registry.example.com:5000/mirror/vllm-openai", None),
            ("vllm/vllm-openai:latest", None),
            ("vllm/vllm-openai@sha256:" + "a" * 64, None),
            # A digest after a tag: the tag still names the release.
            ("vllm/vllm-openai:v0.34.0@sha256:" + "a" * 64, "0.34.0"),
        ],
    )
    def test_tag_version(self, image: str, expected: str | None) -> None:
        assert engine_profiles.tag_version(image) == expected


class TestProfiles:
    def test_default_images_are_the_default_releases(self) -> None:
        images = config.OperatorConfig().images
        assert images.vllm == "vllm/vllm-openai:v0.34.0"
        assert images.tgi == "ghcr.io/huggingface/text-generation-inference:3.3.7"
        for engine, image in (("vllm", images.vllm), ("tgi", images.tgi)):
            resolved = engine_profiles.resolve(engine=engine, image=image)  # type: ignore[arg-type]
            assert resolved.verified, resolved.note
            assert resolved.version == resolved.profile.default

    @pytest.mark.parametrize(
        ("version", "since"),
        [
            ("0.11.0", "0.24.0"),  # older than every profile: the oldest
            ("0.24.0", "0.24.0"),
            ("0.27.1", "0.24.0"),
            ("0.28.0", "0.28.0"),
            ("0.34.0", "0.28.0"),
            ("1.2.0", "0.28.0"),  # newer than every profile: the newest
        ],
    )
    def test_a_version_gets_the_profile_of_its_release(self, version: str, since: str) -> None:
        assert engine_profiles.get("vllm", version).since == since

    def test_a_release_replaces_whole_keys_and_keeps_the_rest(self) -> None:
        before, after = engine_profiles.get("vllm", "0.27.1"), engine_profiles.get("vllm", "0.28.0")
        assert before.serves("bitsandbytes-nf4")
        assert not after.serves("bitsandbytes-nf4")
        assert after.flags == before.flags
        assert after.metrics == before.metrics
        assert after.verifiedWith != before.verifiedWith

    @pytest.mark.parametrize(
        ("version", "verified"),
        [
            ("0.24.0", True),
            ("0.26.0", True),
            ("0.27.1", True),
            ("0.34.0", True),
            ("0.34.2", True),  # a patch release of the newest verified minor
            ("0.35.0", False),
            ("0.23.0", False),
        ],
    )
    def test_verified_range(self, version: str, verified: bool) -> None:
        assert (
            engine_profiles.resolve(engine="vllm", image=f"vllm/vllm-openai:v{version}").verified
            is verified
        )

    def test_every_engine_runs_as_declared(self) -> None:
        # vLLM starts as a non-root UID given USER; TGI's image cannot (its profile says why).
        assert not any(p.runAsRoot for p in engine_profiles.profiles("vllm"))
        assert all(p.runAsRoot for p in engine_profiles.profiles("tgi"))
        assert all({"USER", "LOGNAME"} <= p.env.keys() for p in engine_profiles.profiles("vllm"))

    def test_outcomes_are_disjoint(self) -> None:
        for engine in ("vllm", "tgi"):
            for profile in engine_profiles.profiles(engine):  # type: ignore[arg-type]
                kinds = profile.outcomes
                groups = [set(kinds.normal), set(kinds.serverFailures), set(kinds.other)]
                assert sum(map(len, groups)) == len(kinds.known), profile.since


class TestResolve:
    def test_from_the_tag(self) -> None:
        resolved = engine_profiles.resolve(engine="vllm", image="vllm/vllm-openai:v0.24.0")
        assert (resolved.version, resolved.origin, resolved.verified) == ("0.24.0", "tag", True)
        assert resolved.note == (
            "vLLM 0.24.0 (from the image tag); facts checked against vLLM 0.24.0, 0.27.1"
        )

    def test_from_the_operator_config(self) -> None:
        image = "registry.example.com/vllm@sha256:" + "b" * 64
        resolved = engine_profiles.resolve(engine="vllm", image=image, versions={image: "0.27.1"})
        assert (resolved.version, resolved.origin, resolved.verified) == ("0.27.1", "config", True)
        assert resolved.profile.serves("bitsandbytes-nf4")
        assert "from images.versions in the operator config" in resolved.note

    def test_the_config_wins_over_a_tag(self) -> None:
        # A mirror that tags its own builds "v2.0" is still the release the config says.
        image = "registry.example.com/vllm:v2.0"
        resolved = engine_profiles.resolve(engine="vllm", image=image, versions={image: "0.34.0"})
        assert resolved.version == "0.34.0"

    def test_unknown_is_assumed_the_default_and_says_how_to_fix_it(self) -> None:
        resolved = engine_profiles.resolve(engine="vllm", image="registry.example.com/vllm:prod")
        assert (resolved.version, resolved.origin, resolved.verified) == (None, "assumed", False)
        assert resolved.profile == engine_profiles.get("vllm")
        assert "images.versions" in resolved.note

    def test_config_rejects_a_version_that_is_not_one(self) -> None:
        with pytest.raises(config.ConfigError, match=r"images.*is not a release like 0\.34\.0"):
            config.parse({"images": {"versions": {"my/vllm:prod": "prod"}}})


class TestConditions:
    def test_engine_profile_verified(self) -> None:
        check = security.engine_profile_check(
            engine_profiles.resolve(engine="vllm", image="vllm/vllm-openai:v0.34.0")
        )
        assert (check.type, check.status, check.reason) == (
            conditions.ENGINE_PROFILE,
            "True",
            "Verified",
        )

    @pytest.mark.parametrize(
        ("image", "reason"),
        [
            ("vllm/vllm-openai:v0.11.0", "VersionUnverified"),
            ("vllm/vllm-openai:latest", "VersionUnknown"),
        ],
    )
    def test_engine_profile_false_names_the_fix(self, image: str, reason: str) -> None:
        check = security.engine_profile_check(engine_profiles.resolve(engine="vllm", image=image))
        assert (check.status, check.reason) == ("False", reason)
        assert "planned with the facts of vLLM" in check.message

    def test_pod_security(self) -> None:
        vllm = security.pod_security_check(make_plan(engine="vllm"))
        tgi = security.pod_security_check(make_plan(engine="tgi", engineVersion="3.3.7"))
        assert (vllm.type, vllm.status, vllm.reason) == (
            conditions.POD_SECURITY,
            "True",
            "Restricted",
        )
        assert (tgi.status, tgi.reason) == ("False", "RunsAsRoot")
        assert "TGI 3.3.7" in tgi.message
        assert "pod-security.kubernetes.io/enforce=baseline" in tgi.message
        assert "text-generation-inference#3082" in tgi.message


class TestPlannerUsesTheRelease:
    def spec(self, **placement: Any) -> api.LlamaDeploymentSpec:
        return api.parse_spec(
            {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "placement": placement}
        )

    def test_the_configured_image_decides(self) -> None:
        old = config.parse({"images": {"vllm": "vllm/vllm-openai:v0.27.1"}})
        resolved = planner.resolve_engine(spec=self.spec(), engine="vllm", settings=old)
        assert resolved.version == "0.27.1"
        assert resolved.profile.serves("bitsandbytes-nf4")

    def test_spec_image_wins_over_the_operator_image(self) -> None:
        spec = api.parse_spec(
            {
                "model": {"id": "meta-llama/Llama-3.1-8B-Instruct"},
                "image": "vllm/vllm-openai:v0.24.0",
            }
        )
        resolved = planner.resolve_engine(
            spec=spec, engine="vllm", settings=config.OperatorConfig()
        )
        assert resolved.version == "0.24.0"
