"""What a valid spec is beyond its field types: the CRD's CEL rules, and the same in Python.

``CEL_RULES`` and ``ROOT_CEL_RULES`` are the cross-field rules ``crd`` puts in the CRD
for the API server to enforce; ``parse_spec`` and ``validate_spec`` check the same
rules for input that bypassed it (the CLI, objects created under an older CRD), and
raise ``SpecError`` naming the field to fix. ``plan_inputs_hash`` fingerprints the spec
fields a plan is made from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any

import pydantic

from llama_operator.api.names import (
    DNS_1035_LABEL_PATTERN,
    DNS_LABEL_MAX_LENGTH,
    MAX_FALLBACKS,
    MAX_NAME_LENGTH,
    PATTERN_HINTS,
    SECRET_FLAG_PATTERN,
    SEVERAL_API_SERVERS_PATTERN,
    fallback_variant,
)
from llama_operator.api.security_spec import LabelSelector
from llama_operator.api.slo_spec import MAX_WINDOW_SECONDS
from llama_operator.api.spec import Autoscaling, LlamaDeploymentSpec

# Cross-field rules the API server enforces with CEL (x-kubernetes-validations).
# Keyed by the dotted path of the model they attach to ("" = spec root). Each entry is
# (rule, message). The same rules are also checked in Python by ``validate_spec`` so
# the CLI refuses what the API server would.
CEL_RULES: dict[str, list[tuple[str, str]]] = {
    "autoscaling": [
        (
            "self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must be less than or equal to maxReplicas",
        ),
        (
            "self.minReplicas > 0 || self.engine == 'keda'",
            "spec.autoscaling.minReplicas: 0 needs engine: keda, whose activation trigger can "
            "wake a deployment with no pods; builtin and hpa see no requests without a pod",
        ),
        (
            "!has(self.target) || !has(self.targetQueueLength)",
            "spec.autoscaling: set target or targetQueueLength, not both",
        ),
        (
            "self.metric != 'kvCache' || ((!has(self.target) || self.target <= 1.0) && "
            "(!has(self.targetQueueLength) || self.targetQueueLength <= 1.0))",
            "spec.autoscaling.target: the kvCache metric is a fraction, so the target must be "
            "at most 1",
        ),
        (
            "!has(self.activationTarget) || self.engine == 'keda'",
            "spec.autoscaling.activationTarget applies to engine: keda only",
        ),
        (
            "self.engine == 'builtin' || self.scaleDownDelaySeconds <= 3600",
            "spec.autoscaling.scaleDownDelaySeconds: keda and hpa scale through a "
            "HorizontalPodAutoscaler, whose stabilization window is at most 3600 seconds",
        ),
    ],
    "placement": [
        # Int-or-string fields are dyn in CEL: branch on the runtime type instead of comparing
        # an int with a string, which only heterogeneous-equality evaluators accept.
        (
            "!has(self.tensorParallel) || (type(self.tensorParallel) == string ? "
            "self.tensorParallel == 'auto' : self.tensorParallel in [1, 2, 4, 8])",
            "spec.placement.tensorParallel must be auto, 1, 2, 4 or 8",
        ),
        (
            "!has(self.maxModelLen) || (type(self.maxModelLen) == string ? "
            "self.maxModelLen == 'auto' : self.maxModelLen >= 128)",
            "spec.placement.maxModelLen must be auto or an integer of at least 128",
        ),
    ],
    "modelCache": [
        (
            "!has(self.volume) || self.volume != 'persistentVolumeClaim' || "
            "(has(self.claimName) && self.claimName != '')",
            "spec.modelCache.claimName is required when volume is persistentVolumeClaim",
        ),
    ],
    "rollout": [
        (
            # CEL macros iterate values, not indexes, and has no range(): list the indexes of
            # every adjacent pair instead (steps holds at most 20 items).
            "!has(self.steps) || "
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18].all(i, "
            "i + 1 >= size(self.steps) || self.steps[i].weight < self.steps[i + 1].weight)",
            "spec.rollout.steps weights must increase from step to step",
        ),
        (
            "!has(self.maxSurge) || !has(self.maxUnavailable) || "
            "self.maxSurge + self.maxUnavailable >= 1",
            "spec.rollout: maxSurge and maxUnavailable cannot both be 0, or a rolling update "
            "could never replace a pod",
        ),
    ],
    "network": [
        (
            "!has(self.allowFrom) || self.allowFrom.all(p, has(p.namespaceSelector) || "
            "has(p.podSelector))",
            "spec.network.allowFrom: each entry needs namespaceSelector, podSelector or both",
        ),
    ],
    "network.egress": [
        (
            "!has(self.allowTo) || self.allowTo.all(r, has(r.ipBlock) != "
            "(has(r.namespaceSelector) || has(r.podSelector)))",
            "spec.network.egress.allowTo: each entry needs either ipBlock or "
            "namespaceSelector/podSelector, not both",
        ),
        (
            "!has(self.allowTo) || (has(self.restrict) && self.restrict)",
            "spec.network.egress.allowTo applies only with restrict: true",
        ),
    ],
    "": [
        (
            "!has(self.model.checkpointQuantization) || self.model.checkpointQuantization == "
            "'none' || !has(self.placement) || !has(self.placement.quantization) || "
            "self.placement.quantization in ['auto', self.model.checkpointQuantization]",
            "spec.placement.quantization must be auto or match spec.model.checkpointQuantization "
            "for a pre-quantized checkpoint",
        ),
        (
            "!has(self.placement) || !has(self.placement.quantization) || "
            "!(self.placement.quantization in ['awq', 'gptq']) || "
            "(has(self.model.checkpointQuantization) && "
            "self.model.checkpointQuantization == self.placement.quantization)",
            "spec.placement.quantization awq/gptq needs a pre-quantized checkpoint: set "
            "spec.model.checkpointQuantization and point spec.model.id at that repository",
        ),
        (
            f"!has(self.engineArgs) || self.engineArgs.all(a, !a.matches('{SECRET_FLAG_PATTERN}'))",
            "spec.engineArgs must not carry --api-key, --hf-token or --ngrok-authtoken (in any "
            "spelling: --api_key, --api-k, --flag=value): arguments show in kubectl describe; "
            "use spec.auth.apiKeySecretRef and spec.model.tokenSecretRef",
        ),
        (
            "!has(self.adapters) || self.adapters.all(a, has(a.id) != has(a.path))",
            "spec.adapters[]: set exactly one of id (a Hugging Face repository) and path (a "
            "directory inside the serving pods)",
        ),
        (
            "!has(self.adapters) || self.adapters.all(a, !has(a.path) || "
            "(has(a.rank) && has(a.targetModules)))",
            "spec.adapters[]: an adapter on a path needs rank and targetModules (its "
            "adapter_config.json `r` and `target_modules`): the operator cannot read the path",
        ),
        (
            "!has(self.adapters) || self.adapters.all(a, "
            "self.adapters.exists_one(b, b.name == a.name))",
            "spec.adapters[].name must be unique: clients pick an adapter by its name",
        ),
        (
            "!has(self.adapters) || self.adapters.all(a, a.name != "
            "(has(self.model.servedName) ? self.model.servedName : self.model.id))",
            "spec.adapters[].name must differ from the base model's served name "
            "(spec.model.servedName, else spec.model.id): clients reach the base model by it",
        ),
        (
            "!has(self.adapterUpdates) || !has(self.adapterUpdates.mode) || "
            "self.adapterUpdates.mode != 'Runtime' || "
            "(has(self.auth) && has(self.auth.apiKeySecretRef))",
            "spec.adapterUpdates.mode Runtime opens the engine's adapter load/unload endpoints "
            "to every client that reaches its API: set spec.auth.apiKeySecretRef so only "
            "holders of the key can call them",
        ),
        (
            "!has(self.adapterUpdates) || !has(self.adapterUpdates.mode) || "
            "self.adapterUpdates.mode != 'Runtime' || !has(self.engineArgs) || "
            f"self.engineArgs.all(a, !a.matches('{SEVERAL_API_SERVERS_PATTERN}'))",
            "spec.engineArgs: with spec.adapterUpdates.mode Runtime, vLLM refuses more than one "
            "API server (--api-server-count, or --data-parallel-size, which it defaults from): "
            "remove the flag, or use mode Rollout",
        ),
    ],
}

# Rules at the root of the object, where ``self`` is the whole LlamaDeployment: the only
# place CEL can read ``self.metadata.name``. Emitted with ``optionalOldSelf: true`` and
# passing whenever ``oldSelf`` has a value, so they apply on create only: a name cannot
# change afterwards, and a root rule checked on updates would refuse every status and
# metadata patch of an object created under an older CRD (the operator could then not
# even report InvalidName on it). ``name_problem`` is the same check in Python.
ROOT_CEL_RULES: list[tuple[str, str]] = [
    (
        f"oldSelf.hasValue() || (size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
        f"self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}'))",
        f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
        "(lower-case letters, digits and '-', starting with a letter and ending with a letter "
        "or digit): the operator names the Services <name> to "
        f"<name>-{fallback_variant(MAX_FALLBACKS - 1)} after it, and a Service name is a "
        f"DNS-1035 label of at most {DNS_LABEL_MAX_LENGTH} characters; choose a shorter name",
    ),
]


class SpecError(ValueError):
    """A spec the operator cannot act on; ``field`` names where to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_spec(raw: dict[str, Any]) -> LlamaDeploymentSpec:
    """Parse and cross-validate a spec, raising ``SpecError`` naming the first bad field."""
    try:
        spec = LlamaDeploymentSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"] if not _is_union_tag(part))
        message = first["msg"]
        hint = PATTERN_HINTS.get(str((first.get("ctx") or {}).get("pattern")))
        if first["type"] == "string_pattern_mismatch" and hint is not None:
            message = f"{hint}, not {first['input']!r}"
        raise SpecError(f"spec.{loc}" if loc else "spec", message) from exc
    validate_spec(spec)
    return spec


def _is_union_tag(part: int | str) -> bool:
    # pydantic names union branches in error locations ("int", "literal['auto']"); users
    # only need the field path.
    return isinstance(part, str) and (part in ("int", "str") or part.startswith("literal["))


def validate_spec(spec: LlamaDeploymentSpec) -> None:
    """The CEL rules of ``CEL_RULES``, in Python, for input that bypassed the API server."""
    a = spec.autoscaling
    if a is not None:
        _validate_autoscaling(a)
    if spec.modelCache.volume == "persistentVolumeClaim" and not spec.modelCache.claimName:
        raise SpecError(
            "spec.modelCache.claimName", "is required when volume is persistentVolumeClaim"
        )
    if spec.rollout is not None:
        weights = [step.weight for step in spec.rollout.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise SpecError("spec.rollout.steps", "weights must increase from step to step")
        if spec.rollout.maxSurge + spec.rollout.maxUnavailable < 1:
            raise SpecError(
                "spec.rollout.maxSurge",
                "maxSurge and maxUnavailable cannot both be 0, or a rolling update could never "
                "replace a pod",
            )
    _validate_security(spec)
    _validate_slo(spec)
    _validate_adapters(spec)
    ckpt, quant = spec.model.checkpointQuantization, spec.placement.quantization
    if ckpt != "none" and quant not in ("auto", ckpt):
        raise SpecError(
            "spec.placement.quantization",
            f"must be auto or {ckpt}: the checkpoint is pre-quantized with {ckpt}",
        )
    if quant in ("awq", "gptq") and ckpt != quant:
        raise SpecError(
            "spec.placement.quantization",
            f"{quant} needs a pre-quantized checkpoint: set spec.model.checkpointQuantization: "
            f"{quant} and point spec.model.id at that repository",
        )


def _validate_slo(spec: LlamaDeploymentSpec) -> None:
    # The pattern admits "0s"; a window of nothing measures nothing, and scrapes are kept
    # in memory for the whole window (slo_spec.MAX_WINDOW_SECONDS).
    if spec.slo is None:
        return
    seconds = parse_duration_seconds(spec.slo.window)
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise SpecError(
            "spec.slo.window",
            f"must be more than 0s and at most 24h, not {spec.slo.window!r}: e.g. 5m (the "
            "default) or 1h",
        )


def parse_duration_seconds(text: str) -> float:
    """A ``DURATION_PATTERN`` string in seconds (``units.parse_duration`` without the check,
    which units cannot offer here: it imports this module)."""
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(
        float(number) * scale[unit]
        for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    )


def _validate_security(spec: LlamaDeploymentSpec) -> None:
    for arg in spec.engineArgs:
        flag = arg.split("=", 1)[0]
        if re.match(SECRET_FLAG_PATTERN, arg):
            raise SpecError(
                "spec.engineArgs",
                f"must not carry {flag}: arguments show in kubectl describe and the "
                "Deployment's history; use spec.auth.apiKeySecretRef for the API key and "
                "spec.model.tokenSecretRef for the Hub token",
            )
    network = spec.network
    for index, peer in enumerate(network.allowFrom or ()):
        where = f"spec.network.allowFrom[{index}]"
        if peer.namespaceSelector is None and peer.podSelector is None:
            raise SpecError(where, "needs namespaceSelector, podSelector or both")
        _validate_selector(f"{where}.namespaceSelector", peer.namespaceSelector)
        _validate_selector(f"{where}.podSelector", peer.podSelector)
    if network.egress.allowTo is not None and not network.egress.restrict:
        raise SpecError("spec.network.egress.allowTo", "applies only with restrict: true")
    for index, rule in enumerate(network.egress.allowTo or ()):
        where = f"spec.network.egress.allowTo[{index}]"
        selectors = rule.namespaceSelector is not None or rule.podSelector is not None
        if (rule.ipBlock is not None) == selectors:
            raise SpecError(
                where, "needs either ipBlock or namespaceSelector/podSelector, not both"
            )
        _validate_selector(f"{where}.namespaceSelector", rule.namespaceSelector)
        _validate_selector(f"{where}.podSelector", rule.podSelector)


def _validate_selector(where: str, selector: LabelSelector | None) -> None:
    # What the API server checks of a NetworkPolicy's selectors, so a bad one is reported
    # on the LlamaDeployment (naming its field) rather than as a refused apply.
    for index, requirement in enumerate(selector.matchExpressions if selector else ()):
        takes_values = requirement.operator in ("In", "NotIn")
        if takes_values and not requirement.values:
            raise SpecError(
                f"{where}.matchExpressions[{index}].values",
                f"operator {requirement.operator} needs at least one value",
            )
        if not takes_values and requirement.values:
            raise SpecError(
                f"{where}.matchExpressions[{index}].values",
                f"must be empty for operator {requirement.operator}",
            )


def _validate_adapter_updates(spec: LlamaDeploymentSpec) -> None:
    if not spec.runtime_adapters():
        return
    if spec.auth.apiKeySecretRef is None:
        raise SpecError(
            "spec.adapterUpdates.mode",
            "Runtime opens the engine's adapter load/unload endpoints to every client that "
            "reaches its API: set spec.auth.apiKeySecretRef so only holders of the key can "
            "call them, or use mode Rollout",
        )
    several = re.compile(SEVERAL_API_SERVERS_PATTERN)
    for index, arg in enumerate(spec.engineArgs):
        if several.search(arg):
            raise SpecError(
                f"spec.engineArgs[{index}]",
                f"{arg!r}: with spec.adapterUpdates.mode Runtime, vLLM refuses more than one "
                "API server (VLLM_ALLOW_RUNTIME_LORA_UPDATING cannot be used with "
                "api_server_count > 1), which this flag sets: remove it, or use mode Rollout",
            )


def _validate_adapters(spec: LlamaDeploymentSpec) -> None:
    _validate_adapter_updates(spec)
    served = spec.model.servedName or spec.model.id
    seen: set[str] = set()
    for index, adapter in enumerate(spec.adapters):
        where = f"spec.adapters[{index}]"
        if (adapter.id is None) == (adapter.path is None):
            raise SpecError(
                where,
                "set exactly one of id (a Hugging Face repository) and path (a directory "
                "inside the serving pods)",
            )
        if adapter.path is not None and (adapter.rank is None or adapter.targetModules is None):
            raise SpecError(
                where,
                "an adapter on a path needs rank and targetModules (its adapter_config.json "
                "`r` and `target_modules`): the operator cannot read the path",
            )
        if adapter.name in seen:
            raise SpecError(
                f"{where}.name",
                f"{adapter.name!r} is used twice: clients pick an adapter by its name; rename one",
            )
        if adapter.name == served:
            raise SpecError(
                f"{where}.name",
                f"{adapter.name!r} is the base model's served name (spec.model.servedName, "
                "else spec.model.id): clients reach the base model by it; choose another",
            )
        seen.add(adapter.name)


def _validate_autoscaling(a: Autoscaling) -> None:
    if a.minReplicas > a.maxReplicas:
        raise SpecError("spec.autoscaling.minReplicas", "must be less than or equal to maxReplicas")
    if a.minReplicas == 0 and a.engine != "keda":
        raise SpecError(
            "spec.autoscaling.minReplicas",
            "0 needs engine: keda, whose activation trigger can wake a deployment with no pods; "
            "builtin and hpa see no requests without a pod",
        )
    if a.target is not None and a.targetQueueLength is not None:
        raise SpecError("spec.autoscaling", "set target or targetQueueLength, not both")
    if a.metric == "kvCache" and a.effective_target() > 1:
        raise SpecError(
            "spec.autoscaling.target",
            "the kvCache metric is a fraction, so the target must be at most 1",
        )
    if a.activationTarget is not None and a.engine != "keda":
        raise SpecError("spec.autoscaling.activationTarget", "applies to engine: keda only")
    if a.engine != "builtin" and a.scaleDownDelaySeconds > 3600:
        raise SpecError(
            "spec.autoscaling.scaleDownDelaySeconds",
            "keda and hpa scale through a HorizontalPodAutoscaler, whose stabilization window "
            "is at most 3600 seconds",
        )


def plan_inputs_hash(spec: LlamaDeploymentSpec) -> str:
    """Fingerprint of what the planner decides from; see ``Plan.inputsHash``."""
    data = spec.model_dump(mode="json", include={"model", "engine", "placement"})
    # Only when set, so the plans of specs without adapters keep the hash they had. With
    # runtime updates the list is not an input: an adapter added or removed is loaded or
    # unloaded in the running pods, and the plan (and the pod template) stay; the slots
    # it sizes are (reconcile.desired_state folds them in).
    updates = spec.adapterUpdates
    if updates is not None and updates.mode == "Runtime":
        data["adapterUpdates"] = updates.model_dump(mode="json")
    elif spec.adapters:
        data["adapters"] = [a.model_dump(mode="json") for a in spec.adapters]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
