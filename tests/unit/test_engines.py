"""Unit tests for ``llama_operator.serving.engines``: from a Plan to the engine container."""

from __future__ import annotations

from typing import Any

import pytest

from llama_operator import api
from llama_operator.planning import catalog, config, engine_profiles, facts, planner
from llama_operator.serving import engines
from llama_operator.serving.engines import flags
from plans import make_plan

SETTINGS = config.OperatorConfig()
# What both engines get to keep every write on a mounted volume (read-only root).
SHARED_ENV = {
    "HF_HOME": "/models-cache",
    # Both spellings: the TGI image sets HUGGINGFACE_HUB_CACHE=/data, which wins over
    # HF_HOME and would point into the read-only root filesystem.
    "HF_HUB_CACHE": "/models-cache/hub",
    "HUGGINGFACE_HUB_CACHE": "/models-cache/hub",
    "HOME": "/tmp",
    "XDG_CACHE_HOME": "/tmp/.cache",
}


def make_spec(**raw: Any) -> api.LlamaDeploymentSpec:
    base: dict[str, Any] = {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
    return api.parse_spec({**base, **raw})


def render(*, spec: api.LlamaDeploymentSpec | None = None, **plan: Any) -> dict[str, Any]:
    return engines.container(
        name="chat", spec=spec or make_spec(), plan=make_plan(**plan), settings=SETTINGS
    )


def flag(args: list[str], name: str) -> str:
    """The value following ``name``; fails the test when the flag is absent or repeated."""
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


class TestVllm:
    def test_command_and_planned_flags(self) -> None:
        spec = make_spec(model={"id": "meta-llama/Llama-3.1-8B-Instruct", "revision": "abc123"})
        container = render(spec=spec, maxModelLen=16384, gpuMemoryUtilization=0.85)
        assert container["name"] == "engine"
        assert container["command"] == ["vllm", "serve"]
        args = container["args"]
        assert args[0] == "meta-llama/Llama-3.1-8B-Instruct"
        assert flag(args, "--revision") == "abc123"
        assert flag(args, "--served-model-name") == "meta-llama/Llama-3.1-8B-Instruct"
        assert flag(args, "--host") == "0.0.0.0"
        assert flag(args, "--port") == "8000"
        assert flag(args, "--tensor-parallel-size") == "1"
        assert flag(args, "--max-model-len") == "16384"
        assert flag(args, "--gpu-memory-utilization") == "0.85"
        assert flag(args, "--dtype") == "bfloat16"
        assert "--quantization" not in args

    def test_served_name_overrides_model_id(self) -> None:
        spec = make_spec(model={"id": "meta-llama/Llama-3.1-8B-Instruct", "servedName": "chat"})
        assert flag(render(spec=spec)["args"], "--served-model-name") == "chat"

    @pytest.mark.parametrize("tp", [2, 4, 8])
    def test_tensor_parallel(self, tp: int) -> None:
        args = render(tensorParallel=tp, gpusPerReplica=tp)["args"]
        assert flag(args, "--tensor-parallel-size") == str(tp)

    @pytest.mark.parametrize(
        ("quantization", "version", "expected"),
        [
            ("fp8", None, "fp8"),
            ("fp8", "0.24.0", "fp8"),
            # Before 0.28.0 vLLM named 4-bit NF4 load-time quantization "bitsandbytes".
            ("bitsandbytes-nf4", "0.27.1", "bitsandbytes"),
        ],
    )
    def test_quantization_mapping(
        self, quantization: str, version: str | None, expected: str
    ) -> None:
        args = render(quantization=quantization, engineVersion=version)["args"]
        assert flag(args, "--quantization") == expected
        # vLLM keeps --dtype with a quantization: it is the activation type.
        assert flag(args, "--dtype") == "bfloat16"

    def test_bitsandbytes_is_gone_from_0_28(self) -> None:
        # vllm/model_executor/layers/quantization/__init__.py: QuantizationMethods lists
        # "bitsandbytes" in 0.27.1 and not in 0.28.0.
        with pytest.raises(ValueError, match=r"vLLM 0\.28\.0\+ cannot serve quantization"):
            render(quantization="bitsandbytes-nf4", engineVersion="0.28.0")

    @pytest.mark.parametrize("quantization", ["awq", "gptq"])
    def test_prequantized_checkpoints_are_autodetected_in_fp16(self, quantization: str) -> None:
        # The planner gives awq/gptq plans float16; vLLM reads the format from the
        # checkpoint and chooses its Marlin kernels itself.
        args = render(quantization=quantization, dtype="float16")["args"]
        assert "--quantization" not in args
        assert flag(args, "--dtype") == "float16"

    def test_float16_dtype(self) -> None:
        assert flag(render(dtype="float16")["args"], "--dtype") == "float16"

    @pytest.mark.parametrize("quantization", ["eetq", "bitsandbytes-int8"])
    def test_unsupported_quantization_raises(self, quantization: str) -> None:
        with pytest.raises(ValueError, match=r"vLLM \S+ cannot serve quantization"):
            render(quantization=quantization)

    def test_engine_args_appended_last(self) -> None:
        spec = make_spec(engineArgs=["--enable-prefix-caching", "--max-model-len", "4096"])
        args = render(spec=spec, quantization="fp8")["args"]
        assert args[-3:] == ["--enable-prefix-caching", "--max-model-len", "4096"]
        # The planned value stays earlier, so the user's (last) one wins in argparse.
        assert args.index("--max-model-len") < len(args) - 3

    def test_plan_from_planner(self) -> None:
        spec = make_spec(placement={"pools": ["l40s"], "tensorParallel": 2})
        model = facts.resolve(model=spec.model, catalog_entry=catalog.lookup(spec.model.id))
        plan = planner.plan(
            planner.request_for(
                spec=spec, model=model, available=config.default_pools(), settings=SETTINGS
            )
        )
        args = engines.container(name="chat", spec=spec, plan=plan, settings=SETTINGS)["args"]
        assert flag(args, "--tensor-parallel-size") == "2"
        assert flag(args, "--max-model-len") == str(plan.maxModelLen)
        assert flag(args, "--gpu-memory-utilization") == str(SETTINGS.gpuMemoryUtilization)


class TestTgi:
    def test_entrypoint_and_planned_flags(self) -> None:
        spec = make_spec(model={"id": "meta-llama/Llama-3.1-8B-Instruct", "revision": "v1"})
        container = render(spec=spec, engine="tgi", gpuMemoryUtilization=0.92)
        assert container["name"] == "engine"
        # The image's entrypoint (text-generation-launcher) is kept.
        assert "command" not in container
        args = container["args"]
        assert flag(args, "--model-id") == "meta-llama/Llama-3.1-8B-Instruct"
        assert flag(args, "--revision") == "v1"
        assert flag(args, "--hostname") == "0.0.0.0"
        assert flag(args, "--port") == "8000"
        assert flag(args, "--num-shard") == "1"
        assert flag(args, "--cuda-memory-fraction") == "0.92"
        assert "--quantize" not in args

    @pytest.mark.parametrize("length", [4096, 16384, 131072])
    def test_context_becomes_input_and_total_tokens(self, length: int) -> None:
        args = render(engine="tgi", maxModelLen=length)["args"]
        assert flag(args, "--max-input-tokens") == str(length - 1)
        assert flag(args, "--max-total-tokens") == str(length)

    @pytest.mark.parametrize("tp", [2, 4, 8])
    def test_shards(self, tp: int) -> None:
        args = render(engine="tgi", tensorParallel=tp, gpusPerReplica=tp)["args"]
        assert flag(args, "--num-shard") == str(tp)

    @pytest.mark.parametrize(
        ("quantization", "expected"),
        [
            ("fp8", "fp8"),
            ("eetq", "eetq"),
            ("bitsandbytes-int8", "bitsandbytes"),
            ("bitsandbytes-nf4", "bitsandbytes-nf4"),
            ("awq", "awq"),
            ("gptq", "gptq"),
        ],
    )
    def test_quantization_mapping_drops_dtype(self, quantization: str, expected: str) -> None:
        args = render(engine="tgi", quantization=quantization)["args"]
        assert flag(args, "--quantize") == expected
        assert "--dtype" not in args

    @pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
    def test_dtype_only_without_quantization(self, dtype: str) -> None:
        args = render(engine="tgi", quantization="none", dtype=dtype)["args"]
        assert flag(args, "--dtype") == dtype
        assert "--quantize" not in args

    def test_unsupported_quantization_raises(self) -> None:
        # The Plan type allows every quantization; an unmapped one must not pass silently.
        with pytest.raises(ValueError, match=r"TGI 3\.0\.0\+ cannot serve quantization 'int3'"):
            flags.quantization(profile=engine_profiles.get("tgi"), quantization="int3")  # type: ignore[arg-type]

    def test_engine_args_appended_last(self) -> None:
        spec = make_spec(engineArgs=["--max-batch-prefill-tokens", "8192"])
        args = render(spec=spec, engine="tgi", quantization="fp8")["args"]
        assert args[-2:] == ["--max-batch-prefill-tokens", "8192"]


class TestSharedContainer:
    """What both engines share: port, probes, env, resources, security, mounts."""

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_port_and_probes(self, engine: str) -> None:
        container = render(engine=engine)
        assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        startup = container["startupProbe"]
        # 360 x 10 s: an hour for the first download before the pod is restarted.
        assert startup["periodSeconds"] * startup["failureThreshold"] == 3600
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        assert (readiness["periodSeconds"], readiness["failureThreshold"]) == (5, 3)
        assert readiness["timeoutSeconds"] == 3
        assert (liveness["periodSeconds"], liveness["failureThreshold"]) == (15, 4)
        assert liveness["timeoutSeconds"] == 5

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_token_only_by_secret_reference(self, engine: str) -> None:
        spec = make_spec(
            model={
                "id": "meta-llama/Llama-3.1-8B-Instruct",
                "tokenSecretRef": {"name": "hf-token", "key": "hf"},
            }
        )
        env = env_by_name(render(spec=spec, engine=engine))
        assert env["HF_TOKEN"] == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf"}},
        }
        assert all("value" not in item for item in env.values() if "valueFrom" in item)

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_no_token_without_reference(self, engine: str) -> None:
        env = env_by_name(render(engine=engine))
        assert "HF_TOKEN" not in env
        assert "HUGGING_FACE_HUB_TOKEN" not in env
        assert all("valueFrom" not in item for item in env.values())

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_caches_point_at_writable_volumes(self, engine: str) -> None:
        container = render(engine=engine)
        env = {item["name"]: item["value"] for item in container["env"]}
        assert {key: env[key] for key in SHARED_ENV} == SHARED_ENV
        mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {"/models-cache", "/tmp"} <= mounted
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # Every other directory an engine writes to lies on a mounted, writable volume.
        for key, value in env.items():
            if value.startswith("/") and key not in ("LOG_LEVEL",):
                assert any(value.startswith(path) for path in ("/models-cache", "/tmp")), key

    def test_vllm_starts_as_a_uid_without_a_passwd_entry(self) -> None:
        # torch's inductor cache calls getpass.getuser() at import, which raises KeyError
        # "getpwuid(): uid not found: 1000" in the vllm/vllm-openai image unless LOGNAME,
        # USER, LNAME or USERNAME is set (llm-d/llm-d-benchmark#1573, IBM/ado#1261;
        # Python's getpass.getuser reads those first). vLLM's own cache and config roots
        # default under $HOME (vllm/envs.py: VLLM_CACHE_ROOT, VLLM_CONFIG_ROOT).
        container = render(engine="vllm")
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["USER"]
        assert env["LOGNAME"]
        assert env["VLLM_CACHE_ROOT"].startswith("/tmp/")
        assert env["VLLM_CONFIG_ROOT"].startswith("/tmp/")
        assert container["securityContext"]["runAsUser"] == 1000

    def test_tgi_starts_on_a_read_only_root(self) -> None:
        # TGI v3.3.7: the shards' sockets go to --shard-uds-path, default
        # /tmp/text-generation-server (launcher/src/main.rs); the Dockerfile sets
        # HF_HOME=/data and PORT=80; the entrypoint tolerates a failed ldconfig
        # (tgi-entrypoint.sh). Sources and the rest: data/engines.yaml, tgi.
        container = render(engine="tgi")
        env = {item["name"]: item.get("value") for item in container["env"]}
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        assert "/tmp" in mounts
        assert not mounts["/tmp"].get("readOnly")
        assert env["HF_HOME"] == env["HF_HUB_CACHE"].removesuffix("/hub") == "/models-cache"
        assert env["HUGGINGFACE_HUB_CACHE"] == "/models-cache/hub"
        assert flag(container["args"], "--port") == "8000"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True

    def test_tgi_launcher_log_filter(self) -> None:
        # The launcher logs its parsed arguments, api_key included, at INFO unless
        # LOG_LEVEL filters them (tests/engines/test_tgi_log_filter.py proves the
        # directive with a real tracing-subscriber).
        env = {item["name"]: item.get("value") for item in render(engine="tgi")["env"]}
        assert env["LOG_LEVEL"] == engine_profiles.get("tgi").env["LOG_LEVEL"]
        assert "text_generation_launcher=warn" in env["LOG_LEVEL"]

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_shm_only_with_tensor_parallel(self, engine: str) -> None:
        single = render(engine=engine)["volumeMounts"]
        assert [m["name"] for m in single] == ["model-cache", "tmp", "licenses"]
        sharded = render(engine=engine, tensorParallel=2, gpusPerReplica=2)["volumeMounts"]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in sharded

    def test_resources_scale_with_plan(self) -> None:
        small = render(weightsGiB=14.96)["resources"]
        assert small["requests"] == {"cpu": "2", "memory": "25Gi", "nvidia.com/gpu": "1"}
        assert small["limits"] == {"memory": "38Gi", "nvidia.com/gpu": "1"}
        big = render(weightsGiB=131.5, tensorParallel=4, gpusPerReplica=4)["resources"]
        # ceil(131.5 x 1.25) + 6 = 171; limit ceil(1.5 x 171) = 257.
        assert big["requests"] == {"cpu": "8", "memory": "171Gi", "nvidia.com/gpu": "4"}
        assert big["limits"] == {"memory": "257Gi", "nvidia.com/gpu": "4"}
        # No CPU limit: throttling an engine shows up as latency.
        assert "cpu" not in big["limits"]

    def test_security_context_restricted_for_vllm(self) -> None:
        assert render(engine="vllm")["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert engines.pod_security_level(plan=make_plan(engine="vllm")) == "restricted"

    def test_security_context_root_but_nothing_else_for_tgi(self) -> None:
        # The TGI image keeps its Python under /root (Dockerfile, v3.3.7:
        # LD_LIBRARY_PATH=.../root/.local/share/uv/python/...): no other UID loads
        # libpython (huggingface/text-generation-inference#3082). Root, and nothing more.
        assert render(engine="tgi")["securityContext"] == {
            "runAsNonRoot": False,
            "runAsUser": 0,
            "runAsGroup": 0,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert engines.pod_security_level(plan=make_plan(engine="tgi")) == "baseline"

    def test_image_pull_policy_from_settings(self) -> None:
        settings = config.OperatorConfig(imagePullPolicy="Always")
        container = engines.container(
            name="chat", spec=make_spec(), plan=make_plan(), settings=settings
        )
        assert container["imagePullPolicy"] == "Always"
        assert render()["imagePullPolicy"] == "IfNotPresent"


class TestImage:
    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_default_image_per_engine(self, engine: str) -> None:
        expected = {"vllm": SETTINGS.images.vllm, "tgi": SETTINGS.images.tgi}[engine]
        assert render(engine=engine)["image"] == expected

    def test_operator_config_image(self) -> None:
        settings = config.parse({"images": {"vllm": "registry.local/vllm:v0.12.0"}})
        plan = make_plan()
        assert engines.image(spec=make_spec(), plan=plan, settings=settings) == (
            "registry.local/vllm:v0.12.0"
        )

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_spec_image_overrides(self, engine: str) -> None:
        spec = make_spec(image="registry.local/engine:custom")
        assert render(spec=spec, engine=engine)["image"] == "registry.local/engine:custom"


class TestMetricsTable:
    def test_same_signals_for_every_engine(self) -> None:
        assert set(engine_profiles.get("vllm").metrics) == set(engine_profiles.get("tgi").metrics)

    def test_kv_cache_keeps_renamed_fallback(self) -> None:
        for profile in engine_profiles.profiles("vllm"):
            assert profile.metrics["kvCache"] == (
                "vllm:kv_cache_usage_perc",
                "vllm:gpu_cache_usage_perc",
            )

    def test_queue_names(self) -> None:
        assert engine_profiles.get("vllm").metrics["queue"][0] == "vllm:num_requests_waiting"
        assert engine_profiles.get("tgi").metrics["queue"][0] == "tgi_queue_size"

    def test_engine_prefixes(self) -> None:
        prefixes: dict[api.Engine, str] = {"vllm": "vllm:", "tgi": "tgi_"}
        for engine, prefix in prefixes.items():
            for profile in engine_profiles.profiles(engine):
                for names in profile.metrics.values():
                    assert all(name.startswith(prefix) for name in names)

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_every_profile_serves_probes_and_metrics_where_services_expect(
        self, engine: api.Engine
    ) -> None:
        for profile in engine_profiles.profiles(engine):
            assert (profile.healthPath, profile.metricsPath) == (
                engines.HEALTH_PATH,
                engines.METRICS_PATH,
            )

    def test_shared_constants(self) -> None:
        assert (engines.PORT, engines.PORT_NAME) == (8000, "http")
        assert (engines.HEALTH_PATH, engines.METRICS_PATH) == ("/health", "/metrics")
        assert engines.CACHE_DIR == "/models-cache"


class TestEngineModules:
    """The renderers speak only the flags their release's profile names (and the source
    contract, tests/engines/test_vllm_source.py, holds those to the engine's source)."""

    @pytest.mark.parametrize(
        "profile",
        [*engine_profiles.profiles("vllm"), *engine_profiles.profiles("tgi")],
        ids=lambda p: f"{p.engine}-{p.since}",
    )
    def test_rendered_flags_are_the_profiles(self, profile: engine_profiles.Profile) -> None:
        for quantization in profile.quantizations:
            dtype = "float16" if quantization in ("awq", "gptq") else "bfloat16"
            args = render(
                engine=profile.engine,
                engineVersion=profile.since,
                quantization=quantization,
                dtype=dtype,
                tensorParallel=2,
                gpusPerReplica=2,
            )["args"]
            used = {arg for arg in args if arg.startswith("--")}
            assert used <= set(profile.flags.values()), sorted(used - set(profile.flags.values()))
            assert not used & set(profile.secretFlags)

    @pytest.mark.parametrize("engine", ["vllm", "tgi"])
    def test_command_is_the_profiles(self, engine: api.Engine) -> None:
        container = render(engine=engine)
        assert container.get("command", []) == list(engine_profiles.get(engine).command)
