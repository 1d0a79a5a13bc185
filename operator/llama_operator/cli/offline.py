"""The commands that need no cluster: ``plan``, ``render``, ``licenses`` and ``crds``.

``plan`` and ``render`` run the operator's own pipeline on LlamaDeployment files
(``cli.inputs``), so what they print is what the operator would do: ``plan`` its
decisions (``cli.entries``, as text through ``cli.text``), ``render`` the objects it
would apply. ``licenses`` prints the licence registry, ``crds`` the generated CRD.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from llama_operator import api, reconcile
from llama_operator.api import crd
from llama_operator.cli import entries, inputs, text
from llama_operator.licensing import terms


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: each LlamaDeployment's plan and why, its licence, security, rollout and
    fallbacks; 1 when any could not be planned."""
    settings, catalogue = inputs.settings_and_pools(args)
    corrections = inputs.corrections(args.corrections)
    results: list[dict[str, Any]] = []
    failed = False
    for origin, doc in inputs.documents(args.filename):
        meta = doc.get("metadata") or {}
        entry: dict[str, Any] = {
            "name": meta.get("name"),
            "namespace": meta.get("namespace", "default"),
            "file": origin,
            "model": (doc.get("spec") or {}).get("model", {}).get("id"),
        }
        try:
            wanted = inputs.desired(
                doc, settings=settings, catalogue=catalogue, corrections=corrections
            )
        except reconcile.PlanningError as exc:
            failed = True
            entry["error"] = {"reason": exc.failure.reason, "message": exc.failure.message}
            entry["license"] = entries.license_entry(doc)
        else:
            entry["plan"] = wanted.plan.model_dump(mode="json")
            gate = inputs.gate(
                wanted,
                name=str(meta.get("name", "unnamed")),
                settings=settings,
                namespace=str(entry["namespace"]),
            )
            entry["license"] = entries.license_entry(doc, wanted=wanted, gate=gate)
            entry["security"] = entries.security_entry(
                doc, wanted=wanted, settings=settings, gate=gate
            )
            entry["rollout"] = entries.rollout_entry(wanted.spec)
            entry["fallbacks"] = [
                entries.fallback_entry(backup)
                for backup in inputs.backups(
                    doc, wanted=wanted, settings=settings, catalogue=catalogue
                )
            ]
        results.append(entry)

    if not results:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    if args.output == "text":
        for entry in results:
            print(text.plan_text(entry))
    else:
        payload: Any = results[0] if len(results) == 1 else {"items": results}
        # Unescaped, so the licence notice reads exactly as it must be reproduced.
        if args.output == "json":
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        else:
            print(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True), end="")
    return 1 if failed or not results else 0


def cmd_render(args: argparse.Namespace) -> int:
    """``render``: every object the operator would apply, as a YAML stream on stdout; the
    plans, and what a closed gate holds back, as notes on stderr."""
    settings, catalogue = inputs.settings_and_pools(args)
    corrections = inputs.corrections(args.corrections)
    objects: list[dict[str, Any]] = []
    failed = False
    documents = list(inputs.documents(args.filename))
    if not documents:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    for origin, doc in documents:
        name = (doc.get("metadata") or {}).get("name")
        try:
            wanted = inputs.desired(
                doc, settings=settings, catalogue=catalogue, corrections=corrections
            )
        except reconcile.PlanningError as exc:
            failed = True
            print(f"error: {origin}: {name}: {exc.failure.message}", file=sys.stderr)
            continue
        namespace = str((doc.get("metadata") or {}).get("namespace", "default"))
        plan = wanted.plan.model_dump(mode="json", exclude_none=True)
        # On stderr, so stdout stays a YAML stream to pipe into kubectl apply.
        print(
            f"note: {origin}: {name}: {plan['gpusPerReplica']}x {plan['gpuProduct']} at "
            f"{plan['quantization']}, KV cache {plan.get('kvCacheTokens', '?')} tokens per "
            f"replica\n{text.margin_text(plan)}",
            file=sys.stderr,
            end="",
        )
        hold = inputs.gate(wanted, name=str(name), settings=settings, namespace=namespace).hold
        meta = doc.get("metadata") or {}
        children = reconcile.steady_children(
            wanted,
            name=str(meta.get("name", "unnamed")),
            namespace=str(meta.get("namespace", "default")),
            uid=str(meta.get("uid", inputs.PLACEHOLDER_UID)),
            settings=settings,
            backups=inputs.backups(doc, wanted=wanted, settings=settings, catalogue=catalogue),
        )
        for obj in children:
            if obj["kind"] == "Deployment" and hold is not None:
                # What the operator does: no serving pods until the gate opens.
                print(
                    f"note: {origin}: {name}: Deployment {obj['metadata']['name']} is held "
                    f"back: {hold}",
                    file=sys.stderr,
                )
                continue
            objects.append(obj)
    # Unescaped, so the NOTICE in the licence ConfigMap reads as it must be reproduced.
    print(yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True), end="")
    return 1 if failed else 0


def cmd_licenses(args: argparse.Namespace) -> int:
    """``licenses``: the licence registry."""
    items = [lic.as_dict() for lic in terms.REGISTRY.values()]
    if args.output == "json":
        print(json.dumps({"items": items}, indent=2, ensure_ascii=False))
    elif args.output == "yaml":
        print(yaml.safe_dump({"items": items}, sort_keys=False, allow_unicode=True), end="")
    else:
        for lic in terms.REGISTRY.values():
            print(text.license_block(lic))
    return 0


def cmd_crds(_args: argparse.Namespace) -> int:
    """``crds``: the CustomResourceDefinition, generated from the API models."""
    print(crd.render_yaml(), end="")
    return 0
