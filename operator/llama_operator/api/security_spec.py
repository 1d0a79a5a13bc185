"""spec.auth, spec.network and spec.limits: who may call the endpoint, and how much.

The API key (``Auth``), the NetworkPolicy in front of the serving pods (``Network``) and
the per-request limits the engines enforce (``Limits``); ``serving.security`` and
``serving.builders`` turn them into objects, ``validation`` checks what the schema
cannot (docs/operations/security.md). ``spec.LlamaDeploymentSpec`` holds them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from pydantic import Field

from llama_operator.api.base import Model
from llama_operator.api.names import CIDR_PATTERN, OBJECT_NAME_PATTERN, SECRET_KEY_PATTERN

AuthMode = Literal["required", "optional"]


class APIKeySecretRef(Model):
    """The Secret key holding an endpoint's API key; the value is never copied."""

    name: str = Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Secret."
    )
    key: str = Field(
        default="api-key",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret.",
    )


class Auth(Model):
    """Who may call the endpoint's API (docs/operations/security.md#api-keys)."""

    mode: AuthMode | None = Field(
        default=None,
        description=(
            "required: serve only with an API key; without apiKeySecretRef no serving pod is "
            "created and the Authenticated condition says what to set. optional: a key when "
            "apiKeySecretRef is set, an open endpoint otherwise. Omitted: the operator's "
            "default (Helm value auth.defaultMode; required unless changed)."
        ),
    )
    apiKeySecretRef: APIKeySecretRef | None = Field(
        default=None,
        description=(
            "The API key clients send as `Authorization: Bearer <key>`. The engine reads it "
            "from the Secret (vLLM: VLLM_API_KEY, TGI: API_KEY), so it never appears in the "
            "Deployment; /health and /metrics stay open for probes and scraping. A changed "
            "key reaches running pods when they restart."
        ),
    )


class LabelSelectorRequirement(Model):
    """One requirement of a label selector, as in Kubernetes."""

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list,
        max_length=64,
        description="Values for In and NotIn (at least one); empty for Exists and DoesNotExist.",
    )


class LabelSelector(Model):
    """A Kubernetes label selector; an empty one selects everything."""

    matchLabels: dict[
        Annotated[str, Field(min_length=1, max_length=317)],
        Annotated[str, Field(max_length=63)],
    ] = Field(default_factory=dict, max_length=32, description="Labels that must all match.")
    matchExpressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements that must all hold."
    )


class NetworkPeer(Model):
    """Pods allowed to connect: by namespace, by pod, or both (those pods in those namespaces)."""

    namespaceSelector: LabelSelector | None = Field(
        default=None, description="Namespaces, by their labels ({} = every namespace)."
    )
    podSelector: LabelSelector | None = Field(
        default=None, description="Pods, by their labels ({} = every pod)."
    )


class IPBlock(Model):
    """A CIDR range, minus some of it."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    cidr: str = Field(
        min_length=1, max_length=64, pattern=CIDR_PATTERN, description="e.g. 0.0.0.0/0."
    )
    except_: list[Annotated[str, Field(max_length=64, pattern=CIDR_PATTERN)]] = Field(
        default_factory=list,
        max_length=32,
        alias="except",
        description="Ranges inside cidr that are not allowed.",
    )


class EgressRule(Model):
    """Where serving pods may connect when egress is restricted."""

    namespaceSelector: LabelSelector | None = Field(
        default=None, description="Namespaces, by their labels."
    )
    podSelector: LabelSelector | None = Field(default=None, description="Pods, by their labels.")
    ipBlock: IPBlock | None = Field(
        default=None, description="Addresses (outside the cluster's pod network)."
    )
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443],
        min_length=1,
        max_length=16,
        description="TCP ports.",
    )


class Egress(Model):
    """Outbound connections of the serving pods."""

    restrict: bool = Field(
        default=False,
        description=(
            "Allow only DNS and allowTo. Off by default: engines download weights from the "
            "model hub on first start."
        ),
    )
    allowTo: list[EgressRule] | None = Field(
        default=None,
        max_length=16,
        description=(
            "With restrict: where pods may connect besides DNS. Omitted: the model hub, as "
            "HTTPS (443) to addresses outside the private, shared and link-local ranges (so "
            "no other workload in the cluster and no cloud metadata endpoint)."
        ),
    )


class Network(Model):
    """The NetworkPolicy <name> in front of the serving pods (docs/operations/security.md)."""

    policy: bool | None = Field(
        default=None,
        description=(
            "Create the NetworkPolicy. Omitted: the operator's default (Helm value "
            "networkPolicy.enabled; on unless changed). false removes it."
        ),
    )
    allowFrom: list[NetworkPeer] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Who may connect to the serving port, besides the operator and the monitoring "
            "namespace. Omitted: every pod in this namespace. [] : nobody else."
        ),
    )
    egress: Egress = Field(default_factory=Egress, description="Outbound connections.")


class Limits(Model):
    """Per-request and per-replica limits the engines enforce (docs/operations/security.md)."""

    maxTokensPerRequest: int | None = Field(
        default=None,
        ge=128,
        le=10_000_000,
        description=(
            "Prompt plus generated tokens one request may use; longer requests are refused "
            "by the engine. Omitted: the planned context (status.plan.maxModelLen); larger "
            "than that is refused."
        ),
    )
    maxConcurrentSequences: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=(
            "Requests one replica works on at once (vLLM --max-num-seqs; TGI "
            "--max-concurrent-requests, which refuses more). Omitted: what the planned KV "
            "cache holds at 1024 tokens each, within [planned full-length sequences, 256]."
        ),
    )
