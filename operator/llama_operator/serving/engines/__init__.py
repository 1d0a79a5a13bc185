"""Serving engines: from a Plan to the engine container of a serving pod.

Pipeline position: planner (Plan) -> **engines** (container) -> builders (Deployment,
Services) -> clients.k8s. Pure: a spec, a plan and the operator settings in, one
container (a plain dict in Kubernetes JSON form) out, no I/O.

Each engine module (``vllm``, ``tgi``) knows only how a plan becomes its command line;
the facts it needs (flag names, how a quantization is spelled) and everything else that
differs by engine release (the command, the environment and security context the image
needs, the API-key variable, the health path) come from the release's profile
(``planning.engine_profiles``, ``data/engines.yaml``), picked by ``Plan.engine`` and
``Plan.engineVersion``. What both engines share (port, probes, resources, volume mounts)
is built here, once, so a fix to a probe or a volume reaches every engine.
"""

from __future__ import annotations

import math
from typing import Any, assert_never

from llama_operator import api
from llama_operator.licensing import gating
from llama_operator.planning import config, engine_profiles, pools
from llama_operator.serving.engines import lora, overrides, tgi, vllm
from llama_operator.serving.engines.input_limits import Limits as Limits
from llama_operator.serving.engines.input_limits import check_limits as check_limits
from llama_operator.serving.engines.input_limits import limits as limits

# Both engines serve on 8000: vLLM's default, and for TGI (image default 80, which
# needs root) it is passed explicitly, so Services and probes never depend on the engine.
PORT = 8000
PORT_NAME = "http"
HOST = "0.0.0.0"  # listen on the pod IP; the Service and the kubelet probes come from outside
# Where the operator scrapes and probes: the same for every release of both engines
# (data/engines.yaml, healthPath and metricsPath; a test holds every profile to these).
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

CONTAINER_NAME = "engine"
CACHE_DIR = "/models-cache"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
CACHE_VOLUME = "model-cache"
TMP_VOLUME = "tmp"
SHM_VOLUME = "dshm"
LICENSE_VOLUME = "licenses"
LICENSE_DIR = gating.MOUNT_PATH
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000
GPU_RESOURCE = pools.GPU_RESOURCE


def profile(*, plan: api.Plan) -> engine_profiles.Profile:
    """The profile of the engine release the plan was made for."""
    return engine_profiles.get(plan.engine, plan.engineVersion)


def image(*, spec: api.LlamaDeploymentSpec, plan: api.Plan, settings: config.OperatorConfig) -> str:
    """The engine image: the spec's override, else the operator's pinned image."""
    if spec.image:
        return spec.image
    match plan.engine:
        case "vllm":
            return settings.images.vllm
        case "tgi":
            return settings.images.tgi
        case _:
            assert_never(plan.engine)


def command(*, plan: api.Plan) -> list[str]:
    """The container command; empty means the image's own entrypoint."""
    return list(profile(plan=plan).command)


def args(*, spec: api.LlamaDeploymentSpec, plan: api.Plan) -> list[str]:
    """The engine's arguments for this plan; ``ValueError`` if it cannot serve the plan."""
    facts = profile(plan=plan)
    match plan.engine:
        case "vllm":
            return vllm.args(spec=spec, plan=plan, profile=facts, host=HOST, port=PORT)
        case "tgi":
            return tgi.args(spec=spec, plan=plan, profile=facts, host=HOST, port=PORT)
        case _:
            assert_never(plan.engine)


def check_engine_args(*, spec: api.LlamaDeploymentSpec, plan: api.Plan) -> overrides.Verdict:
    """spec.engineArgs against the flags rendered for ``plan``: the ``EngineArgs``
    condition, and why serving must wait (``engines.overrides``)."""
    if not spec.engineArgs:
        return overrides.Verdict(None, None)
    rendered = args(spec=spec, plan=plan)
    return overrides.verdict(
        arguments=spec.engineArgs,
        baseline=args(spec=spec.model_copy(update={"engineArgs": []}), plan=plan),
        rendered=rendered[: len(rendered) - len(spec.engineArgs)],
        profile=profile(plan=plan),
        # 16-bit and pre-quantized weights get no quantization flag, yet are planned.
        unrendered={"quantization": f"{plan.quantization}, with no flag"},
    )


def container(
    *,
    name: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    settings: config.OperatorConfig,
) -> dict[str, Any]:
    """The serving container for ``plan.engine``.

    ``name`` is the LlamaDeployment's name. The container itself is always called
    ``CONTAINER_NAME`` so logs, exec and status code find it the same way in every
    pod of every variant.
    """
    del name  # part of the contract for per-endpoint settings; nothing uses it yet
    result: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image(spec=spec, plan=plan, settings=settings),
        "imagePullPolicy": settings.imagePullPolicy,
    }
    entrypoint = command(plan=plan)
    if entrypoint:
        result["command"] = entrypoint
    result.update(
        {
            "args": args(spec=spec, plan=plan),
            "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
            "env": env(spec=spec, plan=plan),
            "resources": resources(plan=plan),
            "volumeMounts": volume_mounts(plan=plan),
            **probes(plan=plan),
            "securityContext": security_context(plan=plan),
            # A gated model without access, a bad flag or an OOM ends in a few log lines;
            # this puts them into the pod status, where `kubectl describe` shows them,
            # instead of a bare CrashLoopBackOff.
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    )
    return result


def api_key_env(*, plan: api.Plan) -> str:
    """The variable the engine reads its API key from."""
    return profile(plan=plan).apiKeyEnv


def env(*, spec: api.LlamaDeploymentSpec, plan: api.Plan) -> list[dict[str, Any]]:
    """Cache locations on writable volumes, what the image needs to start (its profile's
    ``env``: vLLM's user name and cache roots, TGI's log filter), and the Hub token and
    the API key by reference."""
    result: list[dict[str, Any]] = [
        # The root filesystem is read-only: downloads go to the cache volume, and every
        # library that writes under $HOME or ~/.cache (triton, torch compile, vLLM's own
        # cache) writes under the tmp volume instead.
        {"name": "HF_HOME", "value": CACHE_DIR},
        # Named as well, because the TGI image sets HUGGINGFACE_HUB_CACHE=/data itself,
        # which wins over HF_HOME and points into the read-only root filesystem.
        {"name": "HF_HUB_CACHE", "value": f"{CACHE_DIR}/hub"},
        {"name": "HUGGINGFACE_HUB_CACHE", "value": f"{CACHE_DIR}/hub"},
        {"name": "HOME", "value": TMP_DIR},
        {"name": "XDG_CACHE_HOME", "value": f"{TMP_DIR}/.cache"},
    ]
    result += [{"name": key, "value": value} for key, value in profile(plan=plan).env.items()]
    # TGI's adapters (LORA_ADAPTERS), or vLLM's runtime-loading switch; vLLM takes its
    # adapters at start as flags (``lora.args``).
    result += lora.env(plan=plan, profile=profile(plan=plan))
    ref = spec.model.tokenSecretRef
    if ref is not None:
        # By reference, never by value: the token must not appear in the Deployment,
        # its history, or anything the operator logs or stores.
        result.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    key = spec.auth.apiKeySecretRef
    if key is not None:
        # The engine guards its API with it (/health and /metrics stay open, for the
        # kubelet's probes and for scraping). From the Secret, never an argument: arguments
        # show in `kubectl describe` and in every ReplicaSet the Deployment keeps.
        result.append(
            {
                "name": api_key_env(plan=plan),
                "valueFrom": {"secretKeyRef": {"name": key.name, "key": key.key}},
            }
        )
    return result


def memory_request_gib(*, plan: api.Plan) -> int:
    """Host memory a pod asks for: the weights pass through host memory while loading."""
    return math.ceil(plan.weightsGiB * 1.25) + 6


def resources(*, plan: api.Plan) -> dict[str, Any]:
    """Requests and limits scaled to the plan's GPUs and weights."""
    gpus = str(plan.gpusPerReplica)
    memory = memory_request_gib(plan=plan)
    return {
        "requests": {
            "cpu": str(max(2, 2 * plan.gpusPerReplica)),
            "memory": f"{memory}Gi",
            GPU_RESOURCE: gpus,
        },
        # No CPU limit: CFS throttling of the tokenizer and scheduler threads shows up
        # directly as token latency, and the GPUs, not the CPUs, are what is scarce. The
        # memory limit is loose because loading peaks well above the steady state.
        "limits": {
            "memory": f"{math.ceil(1.5 * memory)}Gi",
            GPU_RESOURCE: gpus,
        },
    }


def probes(*, plan: api.Plan) -> dict[str, dict[str, Any]]:
    """Startup, readiness and liveness probes on the engine's health endpoint."""
    check = {"path": profile(plan=plan).healthPath, "port": PORT_NAME}
    return {
        # The first start downloads the weights (a 70B model is ~140 GB) before /health
        # answers; that can take an hour, so allow 360 x 10 s before giving up.
        # Liveness and readiness only start once this has passed.
        "startupProbe": {"httpGet": dict(check), "periodSeconds": 10, "failureThreshold": 360},
        "readinessProbe": {
            "httpGet": dict(check),
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 3,
        },
        # Restart an engine that stops answering for about a minute (a hung NCCL
        # collective or a dead engine process behind a live HTTP server).
        "livenessProbe": {
            "httpGet": dict(check),
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 5,
        },
    }


def runs_as_root(*, plan: api.Plan) -> bool:
    """Whether the engine's image cannot start as any other user (its profile says why)."""
    return profile(plan=plan).runAsRoot


def security_context(*, plan: api.Plan) -> dict[str, Any]:
    """The tightest context the engine's image starts under.

    Restricted Pod Security Standard (non-root, no privilege escalation, no capabilities,
    RuntimeDefault seccomp) plus a read-only root filesystem. An image that cannot run as
    non-root (TGI: its Python lives under /root) keeps every other restriction and runs as
    root, which only the "baseline" standard admits; ``pod_security_level`` says so.
    """
    identity: dict[str, Any] = (
        {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0}
        if runs_as_root(plan=plan)
        else {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_GROUP}
    )
    return {
        **identity,
        "allowPrivilegeEscalation": False,
        # The images write only to the volumes mounted below (cache, /tmp, /dev/shm).
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_level(*, plan: api.Plan) -> str:
    """The Pod Security Standard level the engine's pods meet: restricted or baseline."""
    return "baseline" if runs_as_root(plan=plan) else "restricted"


def needs_shared_memory(*, plan: api.Plan) -> bool:
    """Tensor-parallel workers exchange tensors through /dev/shm (NCCL)."""
    return plan.tensorParallel > 1


def volume_mounts(*, plan: api.Plan) -> list[dict[str, Any]]:
    """Mounts for the volumes ``builders`` puts into the pod, by the names above."""
    result: list[dict[str, Any]] = [
        {"name": CACHE_VOLUME, "mountPath": CACHE_DIR},
        {"name": TMP_VOLUME, "mountPath": TMP_DIR},
        # The model licence's NOTICE, links and obligations (the "<name>-license" ConfigMap).
        {"name": LICENSE_VOLUME, "mountPath": LICENSE_DIR, "readOnly": True},
    ]
    if needs_shared_memory(plan=plan):
        # The container runtime's default /dev/shm is 64 MiB, far too small for NCCL.
        result.append({"name": SHM_VOLUME, "mountPath": SHM_DIR})
    return result
