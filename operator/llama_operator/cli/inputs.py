"""What ``plan`` and ``render`` read, and the operator's own pipeline run on it offline.

The LlamaDeployment files, the operator config and pool catalogue, the KV-cache
corrections, then ``reconcile.desired``, ``reconcile.gates`` and
``reconcile.plan_fallbacks`` exactly as the operator calls them, with the Hub read
through the local token: ``cli.offline``'s commands print what comes out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from llama_operator import api, reconcile
from llama_operator.clients import hub
from llama_operator.operations import adapters, capacity
from llama_operator.planning import config, facts, pools

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def documents(paths: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every LlamaDeployment in these files or directories (``-``: stdin), with its file."""
    for path in paths:
        if path == "-":
            sources: list[tuple[str, str]] = [("<stdin>", sys.stdin.read())]
        elif os.path.isdir(path):
            sources = [
                (str(p), p.read_text(encoding="utf-8"))
                for p in sorted(pathlib.Path(path).glob("*.y*ml"))
            ]
        else:
            sources = [(path, pathlib.Path(path).read_text(encoding="utf-8"))]
        for origin, text in sources:
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == api.KIND:
                    yield origin, doc


def settings_and_pools(
    args: argparse.Namespace,
) -> tuple[config.OperatorConfig, tuple[pools.Pool, ...]]:
    """The operator config (``--config``) and the pools to plan on (``--pools``, else the
    config's, else the bundled catalogue)."""
    settings = config.load(args.config) if args.config else config.load()
    if args.pools:
        catalogue = pools.load_catalogue(
            pathlib.Path(args.pools).read_text(encoding="utf-8"), origin=args.pools
        )
    else:
        catalogue = settings.pools or config.default_pools()
    return settings, catalogue


def _cli_fetch(model: api.ModelSpec, _namespace: str) -> facts.PartialFacts:
    # Locally the token comes from the environment, as for every Hugging Face tool.
    return hub.fetch(repo_id=model.id, revision=model.revision, token=os.environ.get("HF_TOKEN"))


def _cli_card(repo_id: str, revision: str, _model: api.ModelSpec, _namespace: str) -> hub.Card:
    return hub.card(repo_id=repo_id, revision=revision, token=lambda: os.environ.get("HF_TOKEN"))


def _cli_adapter(adapter: api.Adapter, _model: api.ModelSpec, _namespace: str) -> adapters.Found:
    # As the operator reads them (rank and targetModules from the spec when both are
    # given, else adapter_config.json), with the local token.
    found = reconcile.adapter_facts(adapter, token=lambda: os.environ.get("HF_TOKEN"))
    if found.error is not None and adapter.rank is not None and adapter.targetModules:
        # Offline, a preview: size it from the spec as the operator will. The operator
        # reads its card (the licence it declares, its base) before serving it; say so.
        print(
            f"note: spec.adapters {adapter.name}: {found.error}; planned from its rank and "
            "targetModules, its card (licence, base model) not checked here",
            file=sys.stderr,
        )
        return adapters.Found()
    return found


def corrections(path: str | None) -> reconcile.CorrectionsRead | None:
    """The corrections a --corrections file records (a ConfigMap, or its data)."""
    if not path:
        return None
    loaded = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a ConfigMap or a mapping of its data")
    data = loaded.get("data") if loaded.get("kind") == "ConfigMap" else loaded
    found = capacity.records(data if isinstance(data, dict) else {})
    return lambda: found


def desired(
    doc: dict[str, Any],
    *,
    settings: config.OperatorConfig,
    catalogue: tuple[pools.Pool, ...],
    corrections: reconcile.CorrectionsRead | None = None,
) -> reconcile.Desired:
    """``reconcile.desired`` on one document, as the operator calls it."""
    meta = doc.get("metadata") or {}
    failure = reconcile.name_failure(str(meta.get("name", "unnamed")))
    if failure is not None:  # the operator would create nothing for it either
        raise reconcile.PlanningError(failure)
    return reconcile.desired(
        name=meta.get("name", "unnamed"),
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", PLACEHOLDER_UID),
        raw_spec=doc.get("spec") or {},
        settings=settings,
        available=catalogue,
        fetch=_cli_fetch,
        card=_cli_card,
        corrections=corrections,
        adapter_read=_cli_adapter,
    )


def gate(
    wanted: reconcile.Desired, *, name: str, settings: config.OperatorConfig, namespace: str = ""
) -> reconcile.Gate:
    """The gates as the operator would first apply them: nothing serves yet, and the token
    itself is not checked (the CLI reads no Secrets), so a gated repository is held only
    when no token is referenced (from the Hub card, when the Hub can be read)."""
    return reconcile.gates(
        wanted,
        name=name,
        namespace=namespace,
        previous={},
        serving=False,
        creating_pods=True,
        access=None,
        settings=settings,
    )


def backups(
    doc: dict[str, Any],
    *,
    wanted: reconcile.Desired,
    settings: config.OperatorConfig,
    catalogue: tuple[pools.Pool, ...],
) -> list[reconcile.Backup]:
    """The fallbacks the operator would plan beside ``wanted``."""
    meta = doc.get("metadata") or {}
    return reconcile.plan_fallbacks(
        wanted,
        name=str(meta.get("name", "unnamed")),
        namespace=str(meta.get("namespace", "default")),
        uid=str(meta.get("uid", PLACEHOLDER_UID)),
        raw_spec=doc.get("spec") or {},
        settings=settings,
        available=catalogue,
        fetch=_cli_fetch,
        card=_cli_card,
    )
