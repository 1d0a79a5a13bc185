"""The base of every API model, and the value types spec and status share.

``Model`` fixes what every LlamaDeployment model is (frozen, strict, unknown keys
refused); the literals name the engines, precisions and phases the spec asks for and the
status reports; ``SecretKeyRef`` is every reference to a Secret's key (the model's
token, an adapter's). Imported by ``spec``, ``adapter_spec``, ``rollout_spec``,
``security_spec`` and ``status``.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field

from llama_operator.api.names import OBJECT_NAME_PATTERN, SECRET_KEY_PATTERN

Engine = Literal["vllm", "tgi"]
EngineChoice = Literal["auto", "vllm", "tgi"]
Optimize = Literal["cost", "balanced", "quality"]
# "none" means the checkpoint's own 16-bit precision (bf16, or fp16 where the GPU lacks bf16).
Quantization = Literal[
    "none", "fp8", "eetq", "bitsandbytes-int8", "awq", "gptq", "bitsandbytes-nf4"
]
QuantizationChoice = Literal[
    "auto", "none", "fp8", "eetq", "bitsandbytes-int8", "awq", "gptq", "bitsandbytes-nf4"
]
CheckpointQuantization = Literal["none", "awq", "gptq"]
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]


class Model(pydantic.BaseModel):
    """Base for every API model: frozen, and unknown keys are refused (typos fail loudly)."""

    # strict: "4" is not 4 here, exactly as the CRD's schema refuses a string where an
    # integer belongs, so the CLI and the API server agree on what is valid.
    model_config = pydantic.ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
    )


class SecretKeyRef(Model):
    """A key in a Secret in the LlamaDeployment's namespace; the value is never copied."""

    name: str = Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret.",
    )
