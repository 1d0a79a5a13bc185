"""spec.adapters: LoRA adapters served on top of the base model, and their status.

An adapter is what a client names in an OpenAI-compatible request (``model: <name>``);
the engine applies its low-rank weights to the base model it serves (vLLM multi-LoRA,
TGI ``LORA_ADAPTERS``). Its facts (rank, target modules, the base it was trained on) come
from its ``adapter_config.json`` on the Hub, or from the spec for an adapter on a path.
The base model's licence and use policy cover an adapter (a derivative); an adapter whose
own card declares another licence must be accepted (docs/concepts/adapters.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llama_operator.api.base import Model, SecretKeyRef
from llama_operator.api.names import MODEL_ID_PATTERN

# What a client sends as `model`: the engines take any string, but the name also goes
# on a command line (vLLM --lora-modules name=path), into an environment variable (TGI
# LORA_ADAPTERS) and into status, so it is kept to a safe, readable set.
ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# An absolute path inside the serving pod (the model cache volume, say), no "..".
ADAPTER_PATH_PATTERN = r"^/([A-Za-z0-9._-]+/)*[A-Za-z0-9._-]+$"
MAX_ADAPTERS = 32
# spec.adapterUpdates.mode Runtime: the GPU slots kept for adapters when gpuSlots is not set.
# Fixed, not derived from the list, so an adapter added later fits without a restart.
DEFAULT_RUNTIME_SLOTS = 4
AdapterUpdateMode = Literal["Rollout", "Runtime"]
# Module names a LoRA adapter's target_modules may list (PEFT's names for the Llama
# family's linear layers).
TargetModule = Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class AdapterLicense(Model):
    """Accepting an adapter whose own card declares a licence other than the base model's."""

    accept: bool = Field(
        default=False,
        description=(
            "true: serve this adapter under the licence its card declares, which differs "
            "from (or restricts more than) the base model's. status.adapters[].license "
            "says which licence was found."
        ),
    )


class Adapter(Model):
    """One LoRA adapter on the served base model (docs/concepts/adapters.md)."""

    name: str = Field(
        pattern=ADAPTER_NAME_PATTERN,
        description=(
            "What clients send as `model` to use this adapter. Unique among the adapters "
            "and different from the base model's served name."
        ),
    )
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=MODEL_ID_PATTERN,
        description=(
            "Hugging Face repository of the adapter (its adapter_config.json gives rank, "
            "target modules and base model). Exactly one of id and path."
        ),
    )
    path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=ADAPTER_PATH_PATTERN,
        description=(
            "Absolute path of the adapter's directory inside the serving pods (e.g. on the "
            "model cache volume). Needs rank and targetModules. Exactly one of id and path."
        ),
    )
    revision: str = Field(
        default="main",
        min_length=1,
        max_length=128,
        description="Branch, tag or commit of the adapter's repository (with id).",
    )
    tokenSecretRef: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret holding a Hugging Face token for a gated or private adapter repository "
            "(default: spec.model.tokenSecretRef)."
        ),
    )
    rank: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="Override: the adapter's LoRA rank (adapter_config.json `r`).",
    )
    targetModules: list[TargetModule] | None = Field(
        default=None,
        min_length=1,
        max_length=7,
        description=(
            "Override: the modules the adapter changes (adapter_config.json `target_modules`)."
        ),
    )
    license: AdapterLicense | None = Field(
        default=None, description="Acceptance of a licence other than the base model's."
    )


class AdapterUpdates(Model):
    """How a change to spec.adapters reaches the serving pods (docs/concepts/adapters.md)."""

    mode: AdapterUpdateMode = Field(
        default="Rollout",
        description=(
            "Rollout: the adapters are part of the pod template, so adding, removing or "
            "changing one rolls out through the canary like any pod change (every engine). "
            "Runtime: the engine is started with room for adapters and the operator loads "
            "and unloads them in the running pods, without a restart (vLLM only: its "
            "load/unload endpoints, opened by VLLM_ALLOW_RUNTIME_LORA_UPDATING, which any "
            "client holding the API key can call; set spec.auth.apiKeySecretRef). An "
            "engine without them keeps Rollout, and status says so."
        ),
    )
    gpuSlots: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ADAPTERS,
        description=(
            "Runtime: adapters held on each GPU at once (vLLM --max-loras), preallocated "
            "and counted in the plan; more adapters wait in host memory and are swapped in "
            f"when asked for. Default {DEFAULT_RUNTIME_SLOTS}. Changing it restarts the pods."
        ),
    )
    maxRank: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description=(
            "Runtime: the largest LoRA rank an adapter added later may have without a "
            "restart (vLLM --max-lora-rank, rounded up to a value it takes). Default: the "
            "engine's default (16), or the largest listed adapter's rank when higher."
        ),
    )


class AdapterStatus(Model):
    """What the operator found and does about one adapter."""

    name: str = Field(description="spec.adapters[].name.")
    source: str = Field(default="", description="The Hub repository@revision, or the path.")
    rank: int | None = Field(default=None, description="The LoRA rank served.")
    targetModules: list[str] = Field(
        default_factory=list, description="The modules the adapter changes."
    )
    baseModel: str | None = Field(
        default=None, description="The base model its adapter_config.json names."
    )
    license: str | None = Field(
        default=None, description="The licence its card declares (None: none declared)."
    )
    served: bool = Field(
        default=False, description="Whether the plan serves it (the pods carry or load it)."
    )
    loadedPods: int | None = Field(
        default=None,
        description=(
            "Runtime updates: the ready serving pods that have it loaded now, as their "
            "engine's /v1/models lists it. Unset when the adapters load at start."
        ),
    )
    reason: str = Field(default="", description="CamelCase reason when it is not served.")
    message: str = Field(default="", description="What to do about it, for a person.")
