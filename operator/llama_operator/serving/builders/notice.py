"""The licence a variant serves, made visible: its ``<name>-license`` ConfigMap (mounted
into the pods at /licenses) and the licence annotations on its pods and Services.

Built from what ``licensing.terms.detect`` found; the gate that decides whether the pods
may run at all is ``licensing.gating``'s. Pure: a detection in, objects out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.licensing import gating, terms
from llama_operator.serving.builders import identity

LICENSE_ANNOTATION = f"{api.GROUP}/license"
AUP_ANNOTATION = f"{api.GROUP}/aup-url"


def license_config_map_name(*, name: str, variant: str = identity.PRIMARY) -> str:
    """``<name>-license`` for the primary; a canary of another model carries its own."""
    if variant == identity.PRIMARY:
        return gating.config_map_name(name)
    return gating.config_map_name(f"{name}-{variant}")


def license_annotations(detection: terms.Detection) -> dict[str, str]:
    """The licence id (``unknown`` when it is) and the use-policy link, for pods and Services."""
    result = {LICENSE_ANNOTATION: detection.id or "unknown"}
    if detection.license is not None and detection.license.aup_url:
        result[AUP_ANNOTATION] = detection.license.aup_url
    return result


def license_annotations_of_status(license: Mapping[str, Any] | None) -> dict[str, str]:
    """``license_annotations`` from ``status.license``: what the running primary serves."""
    license = license or {}
    result = {LICENSE_ANNOTATION: str(license.get("id") or "unknown")}
    if license.get("aupURL"):
        result[AUP_ANNOTATION] = str(license["aupURL"])
    return result


def license_config_map(
    *,
    name: str,
    namespace: str,
    uid: str,
    model_id: str,
    detection: terms.Detection,
    variant: str = identity.PRIMARY,
    adapters: Sequence[api.PlanAdapter] = (),
) -> dict[str, Any]:
    """``<name>-license``: the NOTICE, the links and the obligations, mounted at /licenses.

    Keys are files in the mount: ``NOTICE`` (the licence's exact sentence, then the
    attribution line) only when the licence has one, ``LICENSE_URL`` and ``AUP_URL`` when
    known, ``LICENSE_ID`` and ``README`` always. With LoRA adapters (the plan's), the
    NOTICE also names each adapter and its base model and says which licence covers it.
    """
    lic = detection.license
    data: dict[str, str] = {"LICENSE_ID": (detection.id or "unknown") + "\n"}
    if lic is not None:
        if lic.notice_text():
            data["NOTICE"] = lic.notice_text() + "\n"
        data["LICENSE_URL"] = lic.license_url + "\n"
        if lic.aup_url:
            data["AUP_URL"] = lic.aup_url + "\n"
    served = terms.adapters_notice(
        adapters=[(a.name, _source(a)) for a in adapters], model_id=model_id, license=lic
    )
    if served:
        base = data.get("NOTICE", "")
        data["NOTICE"] = (base + "\n" if base else "") + served + "\n"
    data["README"] = terms.readme(detection, model_id)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": license_config_map_name(name=name, variant=variant),
            "namespace": namespace,
            "labels": identity.labels(
                name=name,
                variant="license" if variant == identity.PRIMARY else f"{variant}-license",
            ),
            "annotations": license_annotations(detection),
            "ownerReferences": [identity.owner_reference(name=name, uid=uid)],
        },
        "data": data,
    }


def _source(adapter: api.PlanAdapter) -> str:
    return f"{adapter.source}@{adapter.revision}" if adapter.revision else adapter.source
