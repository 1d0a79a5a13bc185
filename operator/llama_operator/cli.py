"""The ``llama-operator`` command: plan and render without a cluster, or run the operator.

``plan`` and ``render`` run exactly the pipeline the operator runs (``reconcile.desired``)
on LlamaDeployment files, so what they print is what the operator would do. ``run``
starts the Kopf operator with the handlers of ``llama_operator.handlers``; any Kopf
option after ``run`` passes through.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import yaml
from kopf import cli as kopf_cli

import llama_operator
from llama_operator import api, config, crd, facts, hub, pools, reconcile

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        # Everything after `run` belongs to Kopf, in order (argparse would reorder it).
        return _run(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
    except (OSError, yaml.YAMLError, config.ConfigError, pools.CatalogueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-operator",
        description="Size, deploy and run Llama-family LLM endpoints on Kubernetes.",
    )
    parser.add_argument(
        "--version", action="version", version=f"llama-operator {llama_operator.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-f",
            "--filename",
            required=True,
            action="append",
            help="LlamaDeployment YAML file or directory (repeatable; - for stdin)",
        )
        p.add_argument(
            "--pools", help="GPU pool catalogue YAML (default: operator config, else bundled)"
        )
        p.add_argument(
            "--config", help=f"operator config YAML (default: ${config.CONFIG_ENV} if set)"
        )

    plan = sub.add_parser("plan", help="print the plan (and why) for each LlamaDeployment")
    with_inputs(plan)
    plan.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    plan.set_defaults(func=_cmd_plan)

    render = sub.add_parser("render", help="print every object the operator would create")
    with_inputs(render)
    render.set_defaults(func=_cmd_render)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinition")
    crds.set_defaults(func=_cmd_crds)

    # Listed for --help only: main() hands everything after `run` to Kopf untouched.
    sub.add_parser(
        "run", help="run the operator (Kopf's options pass through, e.g. -n NS, --liveness URL)"
    )
    return parser


def _documents(paths: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
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


def _settings_and_pools(
    args: argparse.Namespace,
) -> tuple[config.OperatorConfig, tuple[pools.Pool, ...]]:
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


def _desired(
    doc: dict[str, Any], settings: config.OperatorConfig, catalogue: tuple[pools.Pool, ...]
) -> reconcile.Desired:
    meta = doc.get("metadata") or {}
    return reconcile.desired(
        name=meta.get("name", "unnamed"),
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", PLACEHOLDER_UID),
        raw_spec=doc.get("spec") or {},
        settings=settings,
        available=catalogue,
        fetch=_cli_fetch,
    )


def _cmd_plan(args: argparse.Namespace) -> int:
    settings, catalogue = _settings_and_pools(args)
    results: list[dict[str, Any]] = []
    failed = False
    for origin, doc in _documents(args.filename):
        meta = doc.get("metadata") or {}
        entry: dict[str, Any] = {
            "name": meta.get("name"),
            "namespace": meta.get("namespace", "default"),
            "file": origin,
            "model": (doc.get("spec") or {}).get("model", {}).get("id"),
        }
        try:
            wanted = _desired(doc, settings, catalogue)
        except reconcile.PlanningError as exc:
            failed = True
            entry["error"] = {"reason": exc.failure.reason, "message": exc.failure.message}
        else:
            entry["plan"] = wanted.plan.model_dump(mode="json")
        results.append(entry)

    if not results:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    if args.output == "text":
        for entry in results:
            print(_plan_text(entry))
    else:
        payload: Any = results[0] if len(results) == 1 else {"items": results}
        if args.output == "json":
            print(json.dumps(payload, indent=2))
        else:
            print(yaml.safe_dump(payload, sort_keys=False), end="")
    return 1 if failed or not results else 0


def _plan_text(entry: dict[str, Any]) -> str:
    head = f"{entry['namespace']}/{entry['name']} ({entry['model']})"
    if "error" in entry:
        return f"{head}\n  ERROR {entry['error']['reason']}: {entry['error']['message']}\n"
    p = entry["plan"]
    cost = f", ${p['costPerHour']:.2f}/h per replica" if p.get("costPerHour") is not None else ""
    return (
        f"{head}\n"
        f"  engine {p['engine']} on pool {p['pool']}: {p['gpusPerReplica']}x {p['gpuProduct']}, "
        f"tensorParallel {p['tensorParallel']}, quantization {p['quantization']} ({p['dtype']}), "
        f"maxModelLen {p['maxModelLen']}{cost}\n"
        f"  memory per GPU ~{p['estimatedGPUMemoryGiB']} GiB, KV cache {p['kvCacheGiB']} GiB "
        f"per replica ({p['maxConcurrentSequences']} full-length sequences)\n"
        f"  why: {p['reason']}\n"
    )


def _cmd_render(args: argparse.Namespace) -> int:
    settings, catalogue = _settings_and_pools(args)
    objects: list[dict[str, Any]] = []
    failed = False
    documents = list(_documents(args.filename))
    if not documents:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    for origin, doc in documents:
        try:
            objects.extend(_desired(doc, settings, catalogue).objects)
        except reconcile.PlanningError as exc:
            failed = True
            name = (doc.get("metadata") or {}).get("name")
            print(f"error: {origin}: {name}: {exc.failure.message}", file=sys.stderr)
    print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    return 1 if failed else 0


def _cmd_crds(_args: argparse.Namespace) -> int:
    print(crd.render_yaml(), end="")
    return 0


def _run(extra: list[str]) -> int:
    scoped = any(
        a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in extra
    )
    argv = ["run", "-m", "llama_operator.handlers", *([] if scoped else ["--all-namespaces"])]
    kopf_cli.main(args=[*argv, *extra], prog_name="llama-operator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
