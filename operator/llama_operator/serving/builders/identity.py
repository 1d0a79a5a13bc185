"""Who owns a child and whose pods it picks: the labels, selectors and owner reference.

Every builder of ``serving.builders`` stamps its object with these, so the Services, the
NetworkPolicy, the autoscalers (``status.selector``) and the reconciler's indexes find a
variant's pods by the same labels. Pure: names in, label maps out.
"""

from __future__ import annotations

from typing import Any

from llama_operator import api

DEPLOYMENT_LABEL = f"{api.GROUP}/deployment"
# Fallback pods carry this instead of DEPLOYMENT_LABEL: the entry Service selects the
# primary's and a canary's pods by DEPLOYMENT_LABEL alone, and must never pick a
# fallback's by accident; it selects a fallback's only when one is active.
FALLBACK_OF_LABEL = f"{api.GROUP}/fallback-of"
FALLBACK_PREFIX = api.FALLBACK_PREFIX
VARIANT_LABEL = f"{api.GROUP}/variant"
# Named in api, whose MAX_NAME_LENGTH leaves room for them in every Service name.
PRIMARY = api.PRIMARY
CANARY = api.CANARY
MANAGER = "llama-operator"


def labels(*, name: str, variant: str) -> dict[str, str]:
    """Recommended ``app.kubernetes.io`` labels plus the operator's selector labels."""
    return {
        "app.kubernetes.io/name": api.SINGULAR,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": variant,
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": MANAGER,
        **selector(name=name, variant=variant),
    }


def selector(*, name: str, variant: str) -> dict[str, str]:
    """The labels that pick one variant's pods; a subset of ``labels``."""
    # A prefix test, not api.fallback_index: a fallback's other children are labelled
    # with components such as "fallback-0-license", and they are the fallback's too.
    if variant.startswith(FALLBACK_PREFIX):
        return {FALLBACK_OF_LABEL: name, VARIANT_LABEL: variant}
    return {DEPLOYMENT_LABEL: name, VARIANT_LABEL: variant}


def selector_string(*, name: str, variant: str) -> str:
    """``selector`` as a label-selector string, for ``status.selector`` (/scale)."""
    return ",".join(f"{key}={value}" for key, value in selector(name=name, variant=variant).items())


def serving_pods(*, name: str) -> dict[str, str]:
    """Labels every serving pod of this LlamaDeployment carries, and nothing else does:
    the primary's, a canary's and the fallbacks' alike (``labels``)."""
    return {
        "app.kubernetes.io/name": api.SINGULAR,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGER,
    }


def owner_reference(*, name: str, uid: str) -> dict[str, Any]:
    """Makes the LlamaDeployment the controller of a child, so deleting it deletes them."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
