"""The licence and access gates: may this model's serving pods be created, and what to say.

Pure decisions over what ``terms.detect`` found, the spec, the previous status and,
when the Hub was asked, the answer about gated access. The reconciler holds back every
serving Deployment (primary, and later canary and fallback variants, each for its own
model) while a gate is closed, and leaves a Deployment that already serves untouched:
a licence or access problem never tears a running endpoint down.

Gates:
- ``LicenseAccepted``: a licence with a use policy (Llama, Gemma) is served only after
  ``spec.license.accept: true``. Setting it back to false on a serving deployment is
  refused (the endpoint keeps serving, nothing about it is changed) and reported.
  An unknown licence is shown as ``Unknown``, never guessed; an unknown
  ``spec.license.id`` is an error naming the field.
- ``ModelAccessible``: a gated repository needs a token that has been granted access;
  no grant, a bad token, or no token at all is ``False`` with the model page link.
  A Hub that cannot be reached is ``Unknown`` and does not hold serving back (the
  engine may reach a mirror or a cache the operator cannot).
- ``LicenseRestricted`` (a warning, never a gate): research-only licences, and the EU
  clause of multimodal Llama 3.2 / 4 models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.licensing import terms

MOUNT_PATH = "/licenses"

AccessReason = Literal[
    "Granted", "NotGranted", "NotFound", "BadToken", "SecretMissing", "Unreachable"
]


@dataclasses.dataclass(frozen=True)
class AccessAnswer:
    """What the Hub said about a token and a gated repository."""

    reason: AccessReason
    message: str  # never holds the token


@dataclasses.dataclass(frozen=True)
class Verdict:
    hold: str | None  # why serving Deployments may not be created or changed, or None
    accepted: bool  # the pods serve (or will serve) under an acceptance in the spec
    checks: tuple[conditions.Check, ...]
    removed: tuple[str, ...]  # condition types that no longer apply


def config_map_name(name: str) -> str:
    return f"{name}-license"


def license_verdict(
    *,
    detection: terms.Detection,
    model_id: str,
    spec_license: api.License | None,
    previous: Mapping[str, Any] | None,
    serving: bool,
) -> Verdict:
    """The LicenseAccepted (and LicenseRestricted) conditions and whether to hold serving.

    ``previous`` is ``status.license`` as last written; ``serving`` says whether a serving
    Deployment already exists for this model's variant.
    """
    accept = spec_license is not None and spec_license.accept
    lic = detection.license
    restricted = _restricted(lic, model_id)
    removed = () if restricted else (conditions.LICENSE_RESTRICTED,)
    extra = (restricted,) if restricted else ()

    if lic is None:
        if detection.source == "spec":  # spec.license.id names no licence we know
            check = conditions.Check(
                conditions.LICENSE_ACCEPTED, "False", "UnknownLicenseId", detection.detail
            )
            return Verdict(detection.detail, False, (check, *extra), removed)
        check = conditions.Check(
            conditions.LICENSE_ACCEPTED, "Unknown", "LicenseUnknown", detection.detail
        )
        return Verdict(None, accept, (check, *extra), removed)

    if not lic.acceptance_required:
        check = conditions.Check(
            conditions.LICENSE_ACCEPTED,
            "True",
            "NotRequired",
            f"{lic.name}: no use policy to accept; "
            + ("its NOTICE and the licence link are" if lic.notice else "the licence link is")
            + f" in the ConfigMap mounted at {MOUNT_PATH}",
        )
        return Verdict(None, accept, (check, *extra), removed)

    if accept:
        check = conditions.Check(
            conditions.LICENSE_ACCEPTED,
            "True",
            "Accepted",
            f"{lic.name} and its Acceptable Use Policy ({lic.aup_url}) accepted in "
            "spec.license.accept",
        )
        return Verdict(None, True, (check, *extra), removed)

    previous = previous or {}
    if serving and previous.get("accepted") is True and previous.get("id") == lic.id:
        message = (
            f"spec.license.accept was set to false while {model_id} is serving under the "
            f"{lic.name}: refused. The endpoint keeps serving as it was accepted, and no change "
            "to it is applied while acceptance is withdrawn. Set spec.license.accept: true "
            "again to resume, or delete the LlamaDeployment to stop serving"
        )
        check = conditions.Check(conditions.LICENSE_ACCEPTED, "False", "AcceptanceRevoked", message)
        return Verdict(message, True, (check, *extra), removed)

    message = (
        f"{model_id} is under the {lic.name}: read its Acceptable Use Policy at {lic.aup_url} "
        f"and the licence at {lic.license_url}, then set spec.license.accept: true to serve it"
    )
    if serving:
        message += "; the running pods keep serving unchanged until then"
    else:
        message += "; no serving pods are created until then"
    check = conditions.Check(conditions.LICENSE_ACCEPTED, "False", "NotAccepted", message)
    return Verdict(message, False, (check, *extra), removed)


def _restricted(lic: terms.License | None, model_id: str) -> conditions.Check | None:
    if lic is None:
        return None
    if lic.restricted:
        return conditions.Check(
            conditions.LICENSE_RESTRICTED,
            "True",
            "RestrictedLicense",
            f"{model_id} is under the {lic.name}: {lic.restricted} ({lic.license_url}). "
            "The operator serves it, but check that your use is permitted",
        )
    eu = terms.eu_multimodal_notice(lic, model_id)
    if eu is not None:
        return conditions.Check(
            conditions.LICENSE_RESTRICTED, "True", "EUMultimodalRestriction", eu
        )
    return None


def access_check(
    *,
    model_id: str,
    page: str,
    token_referenced: bool,
    card_gated: bool | None,
    answer: AccessAnswer | None,
) -> conditions.Check | None:
    """The ModelAccessible condition, or None to leave it as it is (nothing was asked).

    ``page`` is the model's page on the Hub; ``card_gated`` is None when the card could
    not be read; ``answer`` is None when access was not checked this time.
    """
    if token_referenced:
        if answer is None:
            return None
        if answer.reason == "Granted":
            return conditions.Check(
                conditions.MODEL_ACCESSIBLE,
                "True",
                "Granted",
                f"the token in spec.model.tokenSecretRef can read {model_id}",
            )
        if answer.reason == "Unreachable":
            return conditions.Check(
                conditions.MODEL_ACCESSIBLE, "Unknown", "HubUnreachable", answer.message
            )
        return conditions.Check(conditions.MODEL_ACCESSIBLE, "False", answer.reason, answer.message)
    if card_gated is True:
        return conditions.Check(
            conditions.MODEL_ACCESSIBLE,
            "False",
            "TokenRequired",
            f"{model_id} is gated: request access at {page}, then set spec.model.tokenSecretRef "
            "to a Secret holding a token of the account that was granted access",
        )
    if card_gated is False:
        return conditions.Check(
            conditions.MODEL_ACCESSIBLE, "True", "NotGated", f"{model_id} is not gated on the Hub"
        )
    return conditions.Check(
        conditions.MODEL_ACCESSIBLE,
        "Unknown",
        "NotChecked",
        f"no token is referenced and the Hub card of {model_id} could not be read, so gated "
        "access was not checked",
    )


def holds(check: conditions.Check | None) -> bool:
    """Whether an access condition keeps serving pods from being created."""
    return check is not None and check.status == "False"


def license_status(
    *, detection: terms.Detection, accepted: bool, config_map: str
) -> dict[str, Any]:
    """``status.license``, without empty fields."""
    lic = detection.license
    result: dict[str, Any] = {
        "id": detection.id,
        "name": lic.name if lic else None,
        "source": detection.source,
        "detail": detection.detail,
        "notice": lic.notice if lic else None,
        "attribution": lic.attribution if lic else None,
        "licenseURL": lic.license_url if lic else None,
        "aupURL": lic.aup_url if lic else None,
        "acceptanceRequired": bool(lic and lic.acceptance_required),
        "accepted": accepted,
        "configMap": config_map,
    }
    return {key: value for key, value in result.items() if value is not None}
