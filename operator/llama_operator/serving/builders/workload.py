"""The serving Deployment of one variant: its pod template, its volumes (the model cache
first) and its rollout strategy.

Pipeline position: the engine container (``serving.engines``) goes into the pod built
here; ``serving.builders.variants`` puts the Deployment beside the variant's Service and
licence ConfigMap. Pure: spec, plan, pool, settings and the detected licence in, one
Deployment out.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.planning import config, pools, sizing
from llama_operator.serving import engines
from llama_operator.serving.builders import hashing, identity, notice

# On a canary's pods only (never the primary's: adding it would restart them): which
# revision a pod runs, so a crash of an older canary template is not blamed on the newest.
REVISION_LABEL = f"{api.GROUP}/revision"
MODEL_ANNOTATION = f"{api.GROUP}/model"
PLAN_ANNOTATION = f"{api.GROUP}/plan"
# Runtime adapter updates: the versions of the adapters the pods serve (plan.lora.revision).
# In the template, so a new version of an adapter rolls out through the canary; the list
# itself is not, so adding or removing one restarts nothing.
ADAPTERS_REVISION_ANNOTATION = f"{api.GROUP}/adapters-revision"

# Long enough for a first start that downloads the weights (see the startup probe).
PROGRESS_DEADLINE_SECONDS = 3600
TERMINATION_GRACE_SECONDS = 60
SHM_SIZE_LIMIT = "16Gi"
FS_GROUP = 1000


def plan_summary(*, plan: api.Plan) -> str:
    """A short human summary of a plan, e.g. ``2x NVIDIA-L4 fp8``."""
    if plan.quantization == "none":
        precision = "bf16" if plan.dtype == "bfloat16" else "fp16"
    else:
        precision = plan.quantization
    return f"{plan.gpusPerReplica}x {plan.gpuProduct} {precision}"


def checkpoint_gib(*, plan: api.Plan) -> float:
    """Size of what the engine downloads, which is not always what it serves.

    fp8, eetq and bitsandbytes quantize at load time from the 16-bit checkpoint, so
    the download is the 16-bit size even though the plan's weights are smaller.
    """
    if plan.quantization in ("none", "awq", "gptq"):
        return plan.weightsGiB
    if plan.checkpointGiB is not None:
        return plan.checkpointGiB
    # A plan made before checkpointGiB existed: scaling every weight by the 16-bit ratio
    # over-counts the embeddings (already 16-bit), which errs on the large side.
    ratio = sizing.BYTES_PER_PARAMETER["none"] / sizing.BYTES_PER_PARAMETER[plan.quantization]
    return plan.weightsGiB * ratio


def volumes(
    *, name: str, spec: api.LlamaDeploymentSpec, plan: api.Plan, variant: str = identity.PRIMARY
) -> list[dict[str, Any]]:
    """The pod volumes the engine container mounts (``engines.volume_mounts``)."""
    cache = spec.modelCache
    if cache.volume == "persistentVolumeClaim":
        if not cache.claimName:
            raise api.SpecError(
                "spec.modelCache.claimName", "is required when volume is persistentVolumeClaim"
            )
        model_cache: dict[str, Any] = {
            "name": engines.CACHE_VOLUME,
            "persistentVolumeClaim": {"claimName": cache.claimName},
        }
    else:
        # Twice the download: room for the partial files next to the finished ones,
        # without letting a runaway cache fill the node's disk.
        size = cache.sizeLimit or f"{math.ceil(2 * checkpoint_gib(plan=plan))}Gi"
        model_cache = {"name": engines.CACHE_VOLUME, "emptyDir": {"sizeLimit": size}}
    result = [
        model_cache,
        {"name": engines.TMP_VOLUME, "emptyDir": {}},
        {
            "name": engines.LICENSE_VOLUME,
            "configMap": {
                "name": notice.license_config_map_name(name=name, variant=variant),
                "defaultMode": 0o444,
            },
        },
    ]
    if engines.needs_shared_memory(plan=plan):
        # Memory-backed, so it counts against the pod's memory; bounded for that reason.
        result.append(
            {
                "name": engines.SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT},
            }
        )
    return result


def deployment(  # noqa: PLR0913 - owner, variant, and what it runs
    *,
    name: str,
    namespace: str,
    uid: str,
    variant: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    replicas: int,
    detection: terms.Detection,
    revision: str | None = None,
) -> dict[str, Any]:
    """The Deployment serving one variant (primary, canary, fallback-N).

    ``revision``: the primary-form revision to annotate (a canary's is the revision the
    primary will have once the canary is promoted); None computes the primary's own.
    """
    if pool.name != plan.pool:
        raise ValueError(f"plan is for pool {plan.pool!r}, but pool {pool.name!r} was given")
    result: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{name}-{variant}",
            "namespace": namespace,
            "labels": identity.labels(name=name, variant=variant),
            "ownerReferences": [identity.owner_reference(name=name, uid=uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": identity.selector(name=name, variant=variant)},
            **_rollout_strategy(spec=spec, variant=variant),
            "revisionHistoryLimit": 3,
            "template": _pod_template(
                name=name,
                variant=variant,
                spec=spec,
                plan=plan,
                pool=pool,
                settings=settings,
                detection=detection,
            ),
        },
    }
    _stamp_revision(result, variant=variant, revision=revision)
    return result


def _rollout_strategy(*, spec: api.LlamaDeploymentSpec, variant: str) -> dict[str, Any]:
    """The Deployment's ``strategy`` and ``progressDeadlineSeconds`` (spec.rollout)."""
    policy = spec.rollout if spec.rollout is not None else api.Rollout()
    return {
        # By default a new pod must be ready before an old one goes, so a bad new
        # template (wrong flag, model that no longer fits) never takes serving pods
        # down; it just stalls until the deadline. The cost is one spare pod's worth
        # of GPUs (spec.rollout.maxSurge; a fixed count, never a percentage that
        # would round up to double the GPU budget).
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": policy.maxSurge,
                "maxUnavailable": policy.maxUnavailable,
            },
        },
        "progressDeadlineSeconds": (
            min(PROGRESS_DEADLINE_SECONDS, max(60, int(api.parse_duration(policy.readyTimeout))))
            if variant == identity.CANARY
            else PROGRESS_DEADLINE_SECONDS
        ),
    }


def _pod_template(
    *,
    name: str,
    variant: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
    detection: terms.Detection,
) -> dict[str, Any]:
    """The serving pods: the variant's labels, what they serve (model, plan, licence) as
    annotations, and the pod spec."""
    return {
        "metadata": {
            "labels": identity.labels(name=name, variant=variant),
            "annotations": {
                MODEL_ANNOTATION: spec.model.id,
                PLAN_ANNOTATION: plan_summary(plan=plan),
                **notice.license_annotations(detection),
                **_adapters_revision(plan),
            },
        },
        "spec": _pod_spec(
            name=name, variant=variant, spec=spec, plan=plan, pool=pool, settings=settings
        ),
    }


def _adapters_revision(plan: api.Plan) -> dict[str, str]:
    lora = plan.lora
    if lora is None or not lora.runtime or lora.revision is None:
        return {}
    return {ADAPTERS_REVISION_ANNOTATION: lora.revision}


def _pod_spec(
    *,
    name: str,
    variant: str,
    spec: api.LlamaDeploymentSpec,
    plan: api.Plan,
    pool: pools.Pool,
    settings: config.OperatorConfig,
) -> dict[str, Any]:
    """The engine container on the plan's pool, locked down, with its volumes."""
    return {
        "containers": [engines.container(name=name, spec=spec, plan=plan, settings=settings)],
        "nodeSelector": dict(pool.nodeSelector),
        "tolerations": copy.deepcopy(pool.tolerations),
        # Kubernetes injects <SERVICE>_PORT variables for every Service in the
        # namespace; a Service named "vllm" yields VLLM_PORT=tcp://..., which vLLM reads
        # as its own setting and fails on. The engines need none of these variables.
        "enableServiceLinks": False,
        # Lets in-flight generations finish after the pod leaves the Service endpoints.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # The engine never calls the Kubernetes API; no token means none to steal.
        "automountServiceAccountToken": False,
        "securityContext": {
            # False only for an image that cannot start as non-root (TGI); the container
            # context says so too, and the PodSecurity condition tells the user.
            "runAsNonRoot": not engines.runs_as_root(plan=plan),
            # Makes a PersistentVolumeClaim cache writable by the non-root engine user.
            "fsGroup": FS_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": volumes(name=name, spec=spec, plan=plan, variant=variant),
    }


def _stamp_revision(result: dict[str, Any], *, variant: str, revision: str | None) -> None:
    """Annotates the Deployment with its revision (the primary's own when None), and labels
    a canary's pods with it."""
    if variant == identity.PRIMARY and revision is None:
        revision = hashing.template_revision(result)
    if revision is not None:
        result["metadata"]["annotations"] = {hashing.REVISION_ANNOTATION: revision}
    if variant == identity.CANARY and revision is not None:
        result["spec"]["template"]["metadata"]["labels"][REVISION_LABEL] = revision
