"""Model licences: the registry of what each licence asks of a deployment, and detection.

Facts from each licence's own text (see docs/concepts/licenses.md), not legal advice:
the operator makes the obligations visible; it does not judge compliance.

``REGISTRY`` holds one ``License`` per licence id (the Hugging Face card ``license`` id,
or its ``license_name`` when the card says ``other``). ``detect`` decides which licence
a model is under, in order of trust: ``spec.license.id`` > the Hub card (a fine-tune
inherits its base model's licence whatever its card says) > the built-in catalog's
licence id > the model id pattern > unknown. Unknown is a state to show, not an error.

Pure: no I/O, and no imports from the rest of the operator. Callers pass in what they
know (card fields, base models, the catalog's licence id).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Source = Literal["spec", "card", "base-model", "catalog", "pattern", "unknown"]

_LLAMA_LICENSE_URL = "https://github.com/meta-llama/llama-models/blob/main/models/{}/LICENSE"


@dataclasses.dataclass(frozen=True)
class License:
    id: str
    name: str  # display name
    notice: str | None  # the exact NOTICE sentence, when the licence has one
    license_url: str
    aup_url: str | None = None
    attribution: str | None = None  # the line to display, e.g. "Built with Llama"
    acceptance_required: bool = False
    restricted: str | None = None  # why this licence excludes ordinary hosted use
    clauses: tuple[str, ...] = ()
    # Whether a model derived from one under this licence is still under it. Permissive
    # licences (Apache-2.0, MIT) let a fine-tune be published under other terms.
    binds_derivatives: bool = True

    def notice_text(self) -> str:
        """The NOTICE file: the sentence, then the attribution line when there is one."""
        return "\n".join(part for part in (self.notice, self.attribution) if part)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "notice": self.notice,
            "licenseURL": self.license_url,
            "aupURL": self.aup_url,
            "attribution": self.attribution,
            "acceptanceRequired": self.acceptance_required,
            "restricted": self.restricted,
            "clauses": list(self.clauses),
        }


_MAU_700M = (
    "700 million monthly active users in the month before the version's release date: "
    "a separate licence from Meta is needed"
)
_NO_IMPROVING_OTHER_LLMS = (
    "do not use the materials or their outputs to improve any other large language model"
)
_EU_MULTIMODAL = (
    "multimodal models: the licence is withheld from individuals domiciled in, or companies "
    "with principal place of business in, the EU; end users of a product that incorporates "
    "them are not affected"
)
_REDISTRIBUTE_3 = (
    "making the model available in a product or service: display the attribution on a "
    "related website, UI, blog post, about page or docs, and give recipients a copy of "
    "the agreement"
)


def _naming(prefix: str, *, outputs: bool) -> str:
    made = "created or fine-tuned with the materials" + (" or their outputs" if outputs else "")
    return f'a model {made} and made available must have a name that starts with "{prefix}"'


def _llama(
    *,
    license_id: str,
    version: str,
    folder: str,
    notice: str,
    aup_url: str,
    attribution: str | None,
    clauses: tuple[str, ...],
) -> License:
    return License(
        id=license_id,
        name=f"{version} Community License",
        notice=notice,
        license_url=_LLAMA_LICENSE_URL.format(folder),
        aup_url=aup_url,
        attribution=attribution,
        acceptance_required=True,
        clauses=clauses,
    )


_LICENSES: tuple[License, ...] = (
    _llama(
        license_id="llama2",
        version="Llama 2",
        folder="llama2",
        notice="Llama 2 is licensed under the LLAMA 2 Community License, "
        "Copyright (c) Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://ai.meta.com/llama/use-policy",
        attribution=None,
        clauses=(
            "redistribution: give recipients a copy of the agreement and keep the NOTICE",
            _MAU_700M,
            _NO_IMPROVING_OTHER_LLMS,
        ),
    ),
    _llama(
        license_id="llama3",
        version="Meta Llama 3",
        folder="llama3",
        notice="Meta Llama 3 is licensed under the Meta Llama 3 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://llama.meta.com/llama3/use-policy",
        attribution="Built with Meta Llama 3",
        clauses=(
            _REDISTRIBUTE_3,
            _naming("Llama 3", outputs=False),
            _MAU_700M,
            _NO_IMPROVING_OTHER_LLMS,
        ),
    ),
    _llama(
        license_id="llama3.1",
        version="Llama 3.1",
        folder="llama3_1",
        notice="Llama 3.1 is licensed under the Llama 3.1 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://llama.meta.com/llama3_1/use-policy",
        attribution="Built with Llama",
        clauses=(_REDISTRIBUTE_3, _naming("Llama", outputs=True), _MAU_700M),
    ),
    _llama(
        license_id="llama3.2",
        version="Llama 3.2",
        folder="llama3_2",
        notice="Llama 3.2 is licensed under the Llama 3.2 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://www.llama.com/llama3_2/use-policy",
        attribution="Built with Llama",
        clauses=(_REDISTRIBUTE_3, _naming("Llama", outputs=True), _MAU_700M, _EU_MULTIMODAL),
    ),
    _llama(
        license_id="llama3.3",
        version="Llama 3.3",
        folder="llama3_3",
        notice="Llama 3.3 is licensed under the Llama 3.3 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://www.llama.com/llama3_3/use-policy",
        attribution="Built with Llama",
        clauses=(_REDISTRIBUTE_3, _naming("Llama", outputs=True), _MAU_700M, _EU_MULTIMODAL),
    ),
    _llama(
        license_id="llama4",
        version="Llama 4",
        folder="llama4",
        notice="Llama 4 is licensed under the Llama 4 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        aup_url="https://www.llama.com/llama4/use-policy",
        attribution="Built with Llama",
        clauses=(_REDISTRIBUTE_3, _naming("Llama", outputs=True), _MAU_700M, _EU_MULTIMODAL),
    ),
    License(
        id="gemma",
        name="Gemma Terms of Use",
        notice=(
            "Gemma is provided under and subject to the Gemma Terms of Use found at "
            "ai.google.dev/gemma/terms"
        ),
        license_url="https://ai.google.dev/gemma/terms",
        aup_url="https://ai.google.dev/gemma/prohibited_use_policy",
        acceptance_required=True,
        clauses=(
            "the use restrictions (prohibited use policy) must be passed on to users as an "
            "enforceable term",
            "the NOTICE file is required for distribution other than hosting",
        ),
    ),
    License(
        id="qwen",
        name="Qwen LICENSE AGREEMENT",
        notice=(
            "Qwen is licensed under the Qwen LICENSE AGREEMENT, "
            "Copyright (c) Alibaba Cloud. All Rights Reserved."
        ),
        license_url="https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE",
        clauses=(
            "100 million monthly active users: a separate licence from Alibaba Cloud is needed",
        ),
    ),
    License(
        id="tongyi-qianwen",
        name="Tongyi Qianwen LICENSE AGREEMENT",
        notice=(
            "Tongyi Qianwen is licensed under the Tongyi Qianwen LICENSE AGREEMENT, "
            "Copyright (c) Alibaba Cloud. All Rights Reserved."
        ),
        license_url=(
            "https://github.com/QwenLM/Qwen/blob/main/Tongyi%20Qianwen%20LICENSE%20AGREEMENT"
        ),
        clauses=("redistribution: keep the NOTICE sentence",),
    ),
    License(
        id="mrl",
        name="Mistral AI Research License",
        notice=None,
        license_url="https://mistral.ai/licenses/MRL-0.1.md",
        restricted="research use only; hosting by a commercial entity is excluded",
        clauses=("research use only; hosting by a commercial entity is excluded",),
    ),
    License(
        id="mnpl",
        name="Mistral AI Non-Production License",
        notice=None,
        license_url="https://mistral.ai/licenses/MNPL-0.1.md",
        restricted="non-production use only (research, testing, evaluation); a production or "
        "commercial deployment needs a commercial licence from Mistral AI",
        clauses=(
            "non-production use only: research, testing and evaluation; no production or "
            "commercial use without a separate licence from Mistral AI",
        ),
    ),
    License(
        id="deepseek",
        name="DeepSeek License Agreement v1.0",
        notice=None,
        license_url="https://github.com/deepseek-ai/DeepSeek-V3/blob/main/LICENSE-MODEL",
        clauses=(
            "the use restrictions must bind users",
            "give recipients a copy of the licence",
        ),
    ),
    License(
        id="apache-2.0",
        name="Apache License 2.0",
        notice=None,
        license_url="https://www.apache.org/licenses/LICENSE-2.0",
        clauses=("no use policy; keep upstream NOTICE files if shipped",),
        binds_derivatives=False,
    ),
    License(
        id="mit",
        name="MIT License",
        notice=None,
        license_url="https://opensource.org/license/mit",
        clauses=("no use policy; keep the copyright and permission notice if shipped",),
        binds_derivatives=False,
    ),
)

REGISTRY: dict[str, License] = {lic.id: lic for lic in _LICENSES}

# Card ``license_name`` values (with ``license: other``) that name a registry licence.
_CARD_NAMES: dict[str, str] = {
    "qwen": "qwen",
    "tongyi-qianwen": "tongyi-qianwen",
    "mrl": "mrl",
    "mnpl": "mnpl",
    "deepseek": "deepseek",
    "deepseek-license": "deepseek",
}

# Repository id patterns, first match wins (case-insensitive, whole owner/name prefix).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), license_id)
    for pattern, license_id in (
        (r"^meta-llama/llama-2-", "llama2"),
        (r"^meta-llama/(meta-)?llama-3\.1-", "llama3.1"),
        (r"^meta-llama/(meta-)?llama-3\.2-", "llama3.2"),
        (r"^meta-llama/(meta-)?llama-3\.3-", "llama3.3"),
        (r"^meta-llama/(meta-)?llama-3-", "llama3"),
        (r"^meta-llama/llama-4-", "llama4"),
        (r"^google/gemma-(1|2|3|7b)", "gemma"),
        (r"^qwen/qwen2\.5-72b", "qwen"),
    )
)

_MULTIMODAL = re.compile(r"(^|/)llama-3\.2-\d+b-vision|(^|/)llama-4-(scout|maverick)", re.I)
_EU_MULTIMODAL_LICENSES = frozenset({"llama3.2", "llama3.3", "llama4"})


@dataclasses.dataclass(frozen=True)
class Detection:
    license: License | None
    source: Source
    detail: str

    @property
    def id(self) -> str | None:
        return self.license.id if self.license is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The ``license`` entry of ``llama-operator plan`` output."""
        lic = self.license
        return {
            "id": self.id,
            "source": self.source,
            "name": lic.name if lic else None,
            "notice": lic.notice if lic else None,
            "licenseURL": lic.license_url if lic else None,
            "aupURL": lic.aup_url if lic else None,
            "attribution": lic.attribution if lic else None,
            "acceptanceRequired": lic.acceptance_required if lic else None,
            "restricted": lic.restricted if lic else None,
            "detail": self.detail,
        }


def by_pattern(model_id: str) -> License | None:
    """The licence a repository id implies by its name alone, or None."""
    for pattern, license_id in _PATTERNS:
        if pattern.search(model_id.strip()):
            return REGISTRY[license_id]
    return None


def from_card(license_id: str | None, license_name: str | None = None) -> License | None:
    """The licence a Hub card names (``license``, or ``license_name`` for ``other``)."""
    key = (license_id or "").strip().lower()
    if key == "other" or (not key and license_name):
        name = (license_name or "").strip().lower()
        return REGISTRY.get(_CARD_NAMES.get(name, name))
    return REGISTRY.get(key)


def _card_text(card_license: str | None, card_license_name: str | None) -> str:
    parts = [f"license {card_license!r}"] if card_license else []
    if card_license_name:
        parts.append(f"license_name {card_license_name!r}")
    return ", ".join(parts) or "no license"


def detect(
    *,
    model_id: str,
    override: str | None,
    card_license: str | None = None,
    card_license_name: str | None = None,
    base_models: Sequence[str] = (),
    base_cards: Mapping[str, tuple[str | None, str | None]] | None = None,
    catalog_license: str | None = None,
) -> Detection:
    """Which licence ``model_id`` is under, where that came from, and why.

    spec.license.id > the Hub card (the ``base_models`` chain first: a fine-tune inherits
    its base's licence even when its card says otherwise) > the catalog's licence id >
    the model id pattern > unknown.

    ``base_models`` lists every ancestor, nearest first; ``base_cards`` maps an ancestor
    to its own card's (``license``, ``license_name``). An ancestor passes its licence on
    when its repository name or, failing that, its card names a licence whose terms bind
    derivatives (every registry licence but the permissive apache-2.0 and mit, which do
    not override the fine-tune's own card).
    """
    if override is not None:
        return _from_spec(override)
    card = from_card(card_license, card_license_name)
    inherited = _inherited(base_models, base_cards=base_cards or {})
    # A card that agrees with an ancestor is simply right; one that does not is overruled.
    if inherited and all(passed is not card for _, passed in inherited):
        base, passed = inherited[0]
        said = _card_text(card_license, card_license_name)
        return Detection(
            passed,
            "base-model",
            f"fine-tune of {base}, and a fine-tune inherits its base's licence; its card "
            f"says {said}",
        )
    if card is not None:
        return Detection(
            card,
            "card",
            f"Hugging Face card of {model_id}: {_card_text(card_license, card_license_name)}",
        )

    if catalog_license is not None and catalog_license in REGISTRY:
        return Detection(
            REGISTRY[catalog_license], "catalog", f"built-in catalog entry for {model_id}"
        )

    matched = by_pattern(model_id)
    if matched is not None:
        return Detection(
            matched, "pattern", f"repository id {model_id} follows the {matched.name} naming"
        )
    return _unknown(model_id, card_license=card_license, card_license_name=card_license_name)


def _from_spec(override: str) -> Detection:
    """spec.license.id, which wins over everything the operator could find itself."""
    chosen = REGISTRY.get(override.strip().lower())
    if chosen is None:
        return Detection(
            None,
            "spec",
            f"spec.license.id {override!r} is not a known licence id; use one of "
            f"{', '.join(REGISTRY)}",
        )
    return Detection(chosen, "spec", f"set by spec.license.id ({chosen.id})")


def _inherited(
    base_models: Sequence[str], *, base_cards: Mapping[str, tuple[str | None, str | None]]
) -> list[tuple[str, License]]:
    """(ancestor, the licence it passes on), nearest ancestor first."""
    inherited: list[tuple[str, License]] = []
    for base in base_models:
        passed = by_pattern(base)
        if passed is None and base in base_cards:
            passed = from_card(*base_cards[base])
        if passed is not None and passed.binds_derivatives:
            inherited.append((base, passed))
    return inherited


def _unknown(
    model_id: str, *, card_license: str | None, card_license_name: str | None
) -> Detection:
    seen = ""
    if card_license or card_license_name:
        seen = f" (its card says {_card_text(card_license, card_license_name)})"
    return Detection(
        None,
        "unknown",
        f"the licence of {model_id or 'this model'} is unknown{seen}; set spec.license.id to "
        f"one of {', '.join(REGISTRY)}",
    )


def multimodal(model_id: str) -> bool:
    """Whether the model takes images: Llama 3.2 Vision, Llama 4 Scout and Maverick."""
    return bool(_MULTIMODAL.search(model_id.strip()))


def eu_multimodal_notice(license: License | None, model_id: str) -> str | None:
    """The EU restriction of the 3.2, 3.3 and 4 use policies, when it applies to this model."""
    if license is None or license.id not in _EU_MULTIMODAL_LICENSES or not multimodal(model_id):
        return None
    return (
        f"{model_id} is a multimodal model: the {license.name} Acceptable Use Policy "
        f"({license.aup_url}) withholds the licence from individuals domiciled in, or "
        "companies with principal place of business in, the EU; end users of a product "
        "that incorporates it are not affected"
    )


def adapters_notice(
    *, adapters: Sequence[tuple[str, str]], model_id: str, license: License | None
) -> str:
    """The NOTICE's part about LoRA adapters: each (name, source) and the base model's
    licence over it; empty without adapters. An adapter changes the base model's weights
    at serving time, a derivative of it (docs/concepts/adapters.md)."""
    if not adapters:
        return ""
    lines = [f"LoRA adapters served on {model_id}:"]
    lines += [f"  {name} ({source}), an adapter of {model_id}" for name, source in adapters]
    if license is None:
        lines.append(
            f"The licence of {model_id} is unknown; the adapters are served under whatever "
            "it is and whatever their own cards declare."
        )
    elif license.binds_derivatives:
        policy = f" and its use policy ({license.aup_url})" if license.aup_url else ""
        lines.append(
            f"They are derivatives of {model_id}: its licence, {license.name} "
            f"({license.license_url}){policy}, covers them."
        )
    else:
        lines.append(
            f"{license.name} does not bind derivatives of {model_id}: each adapter is under "
            "the licence its own card declares (status.adapters[].license)."
        )
    return "\n".join(lines)


def readme(detection: Detection, model_id: str) -> str:
    """The ``README`` of the licence ConfigMap: what the licence asks of this deployment.

    Plain text for whoever opens ``/licenses`` in a pod or the ConfigMap: the licence,
    where it was detected from, the files beside it, and the obligations. Facts from
    the licence texts, not legal advice.
    """
    lic = detection.license
    lines = [f"Model: {model_id}"]
    if lic is None:
        lines += [
            "Licence: unknown",
            f"Why: {detection.detail}",
            "",
            "The operator could not tell which licence this model is under, so it carries",
            "no NOTICE for it. Read the model card, then set spec.license.id.",
        ]
        return "\n".join(lines) + "\n"
    lines += [f"Licence: {lic.name} ({lic.id})", f"Detected from: {detection.detail}", ""]
    lines.append("Files here:")
    if lic.notice or lic.attribution:
        lines.append("  NOTICE       the notice to keep with the model (and the attribution line)")
    lines.append("  LICENSE_ID   the licence id")
    lines.append("  LICENSE_URL  the licence text")
    if lic.aup_url:
        lines.append("  AUP_URL      the Acceptable Use Policy")
    lines.append("  README       this file")
    lines += ["", "Obligations:"]
    if lic.acceptance_required:
        lines.append(
            f"  - serving requires accepting the licence and its use policy ({lic.aup_url})"
        )
    if lic.attribution:
        lines.append(f'  - display "{lic.attribution}" where the service is presented')
    if lic.restricted:
        lines.append(f"  - RESTRICTED: {lic.restricted}")
    lines.extend(f"  - {clause}" for clause in lic.clauses)
    eu = eu_multimodal_notice(lic, model_id)
    if eu is not None:
        lines.append(f"  - {eu}")
    lines += [
        "",
        "These are facts from the licence text, made visible by llama-operator.",
        "This is not legal advice; the licence text is what binds.",
    ]
    return "\n".join(lines) + "\n"
