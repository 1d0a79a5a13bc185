"""The ``llama-operator`` command: plan and render without a cluster, or run the operator.

``plan`` and ``render`` run exactly the pipeline the operator runs (``reconcile.desired``)
on LlamaDeployment files, so what they print is what the operator would do. ``run``
starts the Kopf operator with the handlers of ``llama_operator.runtime.handlers``; any Kopf
option after ``run`` passes through. ``release-finalizers`` removes the operator's
finalizer from the LlamaDeployments once the operator is gone (``finalizers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from kopf import cli as kopf_cli

import llama_operator
from llama_operator import api, reconcile
from llama_operator.api import conditions, crd
from llama_operator.clients import hub, k8s
from llama_operator.licensing import gating, terms
from llama_operator.operations import capacity, rollout
from llama_operator.planning import catalog, config, facts, pools
from llama_operator.runtime import finalizers
from llama_operator.serving import builders, engines, security

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
    hub.bound_requests()  # plan and render may read Hub cards: never wait forever
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
        p.add_argument(
            "--corrections",
            help=(
                "KV-cache corrections learnt from running pods: the calibration ConfigMap "
                "as `kubectl get configmap <release>-calibration -o yaml` prints it (or its "
                "data), so offline plans match what the operator would plan"
            ),
        )

    plan = sub.add_parser("plan", help="print the plan (and why) for each LlamaDeployment")
    with_inputs(plan)
    plan.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    plan.set_defaults(func=_cmd_plan)

    render = sub.add_parser("render", help="print every object the operator would create")
    with_inputs(render)
    render.set_defaults(func=_cmd_render)

    lic = sub.add_parser("licenses", help="list the model licences the operator knows")
    lic.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    lic.set_defaults(func=_cmd_licenses)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinition")
    crds.set_defaults(func=_cmd_crds)

    release = sub.add_parser(
        "release-finalizers",
        help=f"remove {finalizers.FINALIZER} from LlamaDeployments (once no operator runs)",
    )
    release.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="only the LlamaDeployments of NS (repeatable; default: all namespaces)",
    )
    release.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="check again for this long that the finalizer stays gone: a stopping "
        "operator may put it back once (default: 0, one pass)",
    )
    release.set_defaults(func=_cmd_release_finalizers)

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


def _cli_card(repo_id: str, revision: str, _model: api.ModelSpec, _namespace: str) -> hub.Card:
    return hub.card(repo_id=repo_id, revision=revision, token=lambda: os.environ.get("HF_TOKEN"))


def _corrections(path: str | None) -> reconcile.CorrectionsRead | None:
    """The corrections a --corrections file records (a ConfigMap, or its data)."""
    if not path:
        return None
    loaded = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a ConfigMap or a mapping of its data")
    data = loaded.get("data") if loaded.get("kind") == "ConfigMap" else loaded
    found = capacity.records(data if isinstance(data, dict) else {})
    return lambda: found


def _desired(
    doc: dict[str, Any],
    settings: config.OperatorConfig,
    catalogue: tuple[pools.Pool, ...],
    corrections: reconcile.CorrectionsRead | None = None,
) -> reconcile.Desired:
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
    )


def _gate(
    wanted: reconcile.Desired, name: str, settings: config.OperatorConfig, namespace: str = ""
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


def _cmd_plan(args: argparse.Namespace) -> int:
    settings, catalogue = _settings_and_pools(args)
    corrections = _corrections(args.corrections)
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
            wanted = _desired(doc, settings, catalogue, corrections)
        except reconcile.PlanningError as exc:
            failed = True
            entry["error"] = {"reason": exc.failure.reason, "message": exc.failure.message}
            entry["license"] = _license_entry(doc)
        else:
            entry["plan"] = wanted.plan.model_dump(mode="json")
            gate = _gate(
                wanted, str(meta.get("name", "unnamed")), settings, str(entry["namespace"])
            )
            entry["license"] = _license_entry(doc, wanted, gate)
            entry["security"] = _security_entry(doc, wanted, settings, gate)
            entry["rollout"] = _rollout_entry(wanted.spec)
            entry["fallbacks"] = [
                _fallback_entry(backup) for backup in _backups(doc, wanted, settings, catalogue)
            ]
        results.append(entry)

    if not results:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    if args.output == "text":
        for entry in results:
            print(_plan_text(entry))
    else:
        payload: Any = results[0] if len(results) == 1 else {"items": results}
        # Unescaped, so the licence notice reads exactly as it must be reproduced.
        if args.output == "json":
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        else:
            print(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True), end="")
    return 1 if failed or not results else 0


def _license_entry(
    doc: dict[str, Any],
    wanted: reconcile.Desired | None = None,
    gate: reconcile.Gate | None = None,
) -> dict[str, Any]:
    """The licence of a document's model, and what the operator does about it.

    With a plan, the detection the operator itself made (Hub card included when the Hub
    is reachable) plus the gate and what is injected into the pods; without one (the
    spec could not be planned), what is known offline.
    """
    spec = _mapping(doc.get("spec"))
    model, chosen = _mapping(spec.get("model")), _mapping(spec.get("license"))
    model_id = str(model.get("id") or "")
    if wanted is None or gate is None:
        override = chosen.get("id")
        entry = catalog.lookup(model_id) if model_id else None
        found = terms.detect(
            model_id=model_id,
            override=str(override) if override is not None else None,
            catalog_license=entry.license if entry is not None else None,
        )
        return {
            **found.as_dict(),
            "euMultimodal": terms.eu_multimodal_notice(found.license, model_id),
        }
    found = wanted.detection
    # The licence's own part of the gate: an API key the spec lacks is the security
    # entry's to report.
    held = gate.hold if gate.hold != gate.auth.hold else None
    (config_map,) = [o for o in wanted.objects if o["kind"] == "ConfigMap"]
    return {
        **found.as_dict(),
        "euMultimodal": terms.eu_multimodal_notice(found.license, model_id),
        "accepted": bool(gate.license is not None and gate.license["accepted"]),
        "serving": "held" if held else "allowed",
        "held": held,
        "injected": {
            "configMap": config_map["metadata"]["name"],
            "mountPath": gating.MOUNT_PATH,
            "files": sorted(config_map["data"]),
            "annotations": builders.license_annotations(found),
        },
    }


def _security_entry(
    doc: dict[str, Any],
    wanted: reconcile.Desired,
    settings: config.OperatorConfig,
    gate: reconcile.Gate,
) -> dict[str, Any]:
    """The API-key gate, the NetworkPolicy and the input limits the engine is given."""
    spec = wanted.spec
    name = str((doc.get("metadata") or {}).get("name", "unnamed"))
    verdict = gate.auth
    ref = spec.auth.apiKeySecretRef
    limits = engines.limits(spec=spec, plan=wanted.plan)
    policy = security.network_policy_enabled(spec, settings)
    return {
        "auth": {
            "mode": security.auth_mode(spec, settings),
            "apiKeySecret": f"{ref.name}/{ref.key}" if ref is not None else None,
            "serving": "held" if verdict.hold else "allowed",
            "held": verdict.hold,
        },
        "networkPolicy": builders.network_policy_name(name) if policy else None,
        "egress": "restricted" if policy and spec.network.egress.restrict else "open",
        "limits": {
            "maxTokensPerRequest": limits.max_tokens_per_request,
            "maxConcurrentSequences": limits.max_concurrent_sequences,
        },
        # The Pod Security Standard level the serving pods meet (TGI's image runs as root).
        "podSecurity": engines.pod_security_level(plan=wanted.plan),
        "engineProfile": next(
            {"verified": check.status == "True", "reason": check.reason, "note": check.message}
            for check in gate.checks
            if check.type == conditions.ENGINE_PROFILE
        ),
    }


def _rollout_entry(spec: api.LlamaDeploymentSpec) -> dict[str, Any]:
    """How a change of this spec's pod template would reach users (spec.rollout)."""
    policy = rollout.policy_of(spec)
    traffic = "HTTPRoute" if spec.traffic is not None and spec.traffic.gatewayRef else "Service"
    return {
        "strategy": policy.strategy,
        "steps": [step.model_dump(mode="json") for step in policy.steps],
        "analysis": policy.analysis.model_dump(mode="json", exclude_none=True),
        "traffic": traffic,
        "maxSurge": policy.maxSurge,
        "maxUnavailable": policy.maxUnavailable,
    }


def _backups(
    doc: dict[str, Any],
    wanted: reconcile.Desired,
    settings: config.OperatorConfig,
    catalogue: tuple[pools.Pool, ...],
) -> list[reconcile.Backup]:
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


def _fallback_entry(backup: reconcile.Backup) -> dict[str, Any]:
    c = backup.candidate
    found: dict[str, Any] = {
        "name": f"fallback-{c.index}",
        "model": c.model,
        "replicas": c.configured,
        "servable": c.servable,
    }
    if backup.wanted is not None:
        found["plan"] = backup.wanted.plan.model_dump(mode="json", exclude_none=True)
        found["license"] = backup.wanted.detection.id
    if c.reason:
        found["reason"] = c.reason
    return found


def _fallbacks_text(fallbacks: list[dict[str, Any]]) -> str:
    lines = []
    for f in fallbacks:
        standby = f"{f['replicas']} warm" if f["replicas"] else "cold"
        if "plan" in f:
            p = f["plan"]
            where = (
                f"{p['engine']} on pool {p['pool']}: {p['gpusPerReplica']}x {p['gpuProduct']}, "
                f"{p['quantization']}, maxModelLen {p['maxModelLen']}"
            )
        else:
            where = "no plan"
        line = f"  {f['name']}: {f['model']} ({standby}), {where}"
        if not f["servable"]:
            line += f"; NOT SERVABLE: {f.get('reason', '')}"
        lines.append(line + "\n")
    return "".join(lines)


def _rollout_text(rollout: dict[str, Any]) -> str:
    if rollout["strategy"] == "Rolling":
        return (
            f"  rollout: Rolling (maxSurge {rollout['maxSurge']}, "
            f"maxUnavailable {rollout['maxUnavailable']})\n"
        )
    steps = " -> ".join(
        f"{step['weight']}%/{step['pause'] or 'manual'}" for step in rollout["steps"]
    )
    a = rollout["analysis"]
    # Server failures always count; the kinds the user added are named.
    counted = sorted(
        {*(a.get("countAsErrors") or []), *(["abort"] if a.get("countAborted") else [])}
    )
    also = f" (also counting {', '.join(counted)})" if counted else ""
    checks = [f"error rate <= {a['maxErrorRate']:g}{also}"]
    if a.get("maxP95LatencySeconds") is not None:
        checks.append(f"p95 latency <= {a['maxP95LatencySeconds']:g}s")
    if a.get("maxP95TimeToFirstTokenSeconds") is not None:
        checks.append(f"p95 TTFT <= {a['maxP95TimeToFirstTokenSeconds']:g}s")
    if a.get("maxLatencyRatio") is not None:
        checks.append(f"p95 latency <= {a['maxLatencyRatio']:g}x stable")
    return (
        f"  rollout: Canary by {rollout['traffic']} {steps}; every {a['interval']} "
        f"(>= {a['minRequests']} requests): {', '.join(checks)}\n"
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _license_text(found: dict[str, Any]) -> str:
    if found["id"] is None:
        text = f"  license: unknown ({found['source']}) {found['detail']}\n"
    else:
        text = _known_license_text(found)
    injected = found.get("injected")
    if injected:
        text += (
            f"  injected: ConfigMap {injected['configMap']} ({', '.join(injected['files'])}) "
            f"at {injected['mountPath']}; annotations "
            + ", ".join(f"{k}={v}" for k, v in injected["annotations"].items())
            + "\n"
        )
    if found.get("held"):
        text += f"  HELD: {found['held']}\n"
    return text


def _known_license_text(found: dict[str, Any]) -> str:
    parts = [str(found["name"])]
    if found["acceptanceRequired"]:
        parts.append(f"accept the use policy {found['aupURL']}")
    if found["attribution"]:
        parts.append(f'display "{found["attribution"]}"')
    if found["restricted"]:
        parts.append(f"RESTRICTED: {found['restricted']}")
    if found["euMultimodal"]:
        parts.append("multimodal: not licensed in the EU (see the use policy)")
    return f"  license: {found['id']} ({found['source']}) {'; '.join(parts)}\n"


def _plan_text(entry: dict[str, Any]) -> str:
    head = f"{entry['namespace']}/{entry['name']} ({entry['model']})"
    found = _license_text(entry["license"])
    if "error" in entry:
        return f"{head}\n  ERROR {entry['error']['reason']}: {entry['error']['message']}\n{found}"
    p = entry["plan"]
    cost = f", ${p['costPerHour']:.2f}/h per replica" if p.get("costPerHour") is not None else ""
    return (
        f"{head}\n"
        f"  engine {p['engine']} {p.get('engineVersion') or '(version unknown)'} on pool "
        f"{p['pool']}: {p['gpusPerReplica']}x {p['gpuProduct']}, "
        f"tensorParallel {p['tensorParallel']}, quantization {p['quantization']} ({p['dtype']}), "
        f"maxModelLen {p['maxModelLen']}{cost}\n"
        f"  memory per GPU ~{p['estimatedGPUMemoryGiB']} GiB, KV cache {p['kvCacheGiB']} GiB "
        f"per replica ({p['maxConcurrentSequences']} full-length sequences"
        f"{_tokens_text(p)})\n"
        f"{_margin_text(p)}"
        f"  why: {p['reason']}\n"
        f"{_security_text(entry['security'])}"
        f"{_rollout_text(entry['rollout'])}"
        f"{_fallbacks_text(entry.get('fallbacks') or [])}"
        f"{found}"
    )


def _tokens_text(plan: Mapping[str, Any]) -> str:
    tokens = plan.get("kvCacheTokens")
    return f", {tokens} tokens" if tokens else ""


def _margin_text(plan: Mapping[str, Any]) -> str:
    """One GPU's budget and what fills it, so a tight plan shows before it is deployed."""
    memory = plan.get("memory")
    if not memory:
        return ""
    # Tight: the KV cache is a small share of the budget, so a few percent of error in
    # the overhead or weights decides whether the engine starts.
    share = memory["kvCacheGiB"] / memory["budgetGiB"] if memory["budgetGiB"] else 0.0
    tight = f" (tight: KV cache is {share:.0%} of the budget)" if share < 0.1 else ""
    return (
        f"  per GPU: budget {memory['budgetGiB']} of {memory['gpuGiB']} GiB "
        f"(gpuMemoryUtilization {plan['gpuMemoryUtilization']}) = weights "
        f"{memory['weightsGiB']} + overhead {memory['overheadGiB']} + KV cache "
        f"{memory['kvCacheGiB']}; the plan needs {memory['neededKVCacheGiB']} of KV cache: "
        f"margin {memory['marginGiB']} GiB{tight}; outside the budget "
        f"{memory['outsideBudgetGiB']} GiB (CUDA context)\n"
    )


def _security_text(found: dict[str, Any]) -> str:
    auth, limits = found["auth"], found["limits"]
    key = f"API key {auth['apiKeySecret']}" if auth["apiKeySecret"] else "no API key"
    policy = (
        f"NetworkPolicy {found['networkPolicy']} (egress {found['egress']})"
        if found["networkPolicy"]
        else "no NetworkPolicy"
    )
    text = (
        f"  security: auth {auth['mode']}, {key}; {policy}; limits "
        f"{limits['maxTokensPerRequest']} tokens/request, "
        f"{limits['maxConcurrentSequences']} concurrent sequences/replica; "
        f"pods {found['podSecurity']}\n"
    )
    if auth["held"]:
        text += f"  HELD: {auth['held']}\n"
    if not found["engineProfile"]["verified"]:
        text += f"  ENGINE {found['engineProfile']['reason']}: {found['engineProfile']['note']}\n"
    return text


def _cmd_licenses(args: argparse.Namespace) -> int:
    items = [lic.as_dict() for lic in terms.REGISTRY.values()]
    if args.output == "json":
        print(json.dumps({"items": items}, indent=2, ensure_ascii=False))
    elif args.output == "yaml":
        print(yaml.safe_dump({"items": items}, sort_keys=False, allow_unicode=True), end="")
    else:
        for lic in terms.REGISTRY.values():
            print(_license_block(lic))
    return 0


def _license_block(lic: terms.License) -> str:
    gate = "acceptance required" if lic.acceptance_required else "no acceptance needed"
    lines = [f"{lic.id}: {lic.name} ({gate})", f"  licence: {lic.license_url}"]
    if lic.notice:
        lines.append(f"  notice: {lic.notice}")
    if lic.attribution:
        lines.append(f"  attribution: {lic.attribution}")
    if lic.aup_url:
        lines.append(f"  use policy: {lic.aup_url}")
    if lic.restricted:
        lines.append(f"  RESTRICTED: {lic.restricted}")
    lines.extend(f"  - {clause}" for clause in lic.clauses)
    return "\n".join(lines) + "\n"


def _cmd_render(args: argparse.Namespace) -> int:
    settings, catalogue = _settings_and_pools(args)
    corrections = _corrections(args.corrections)
    objects: list[dict[str, Any]] = []
    failed = False
    documents = list(_documents(args.filename))
    if not documents:
        print(f"error: no {api.KIND} found in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    for origin, doc in documents:
        name = (doc.get("metadata") or {}).get("name")
        try:
            wanted = _desired(doc, settings, catalogue, corrections)
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
            f"replica\n{_margin_text(plan)}",
            file=sys.stderr,
            end="",
        )
        hold = _gate(wanted, str(name), settings, namespace).hold
        meta = doc.get("metadata") or {}
        children = reconcile.steady_children(
            wanted,
            name=str(meta.get("name", "unnamed")),
            namespace=str(meta.get("namespace", "default")),
            uid=str(meta.get("uid", PLACEHOLDER_UID)),
            settings=settings,
            backups=_backups(doc, wanted, settings, catalogue),
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


def _cmd_crds(_args: argparse.Namespace) -> int:
    print(crd.render_yaml(), end="")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _cmd_release_finalizers(args: argparse.Namespace) -> int:
    try:
        client = k8s.Client.from_environment()
    except k8s.CredentialsError as exc:
        print(f"error: no cluster credentials: {exc}", file=sys.stderr)
        return 1
    outcome = finalizers.release(client=client, namespaces=args.namespaces, wait=args.wait)
    for released in outcome.released:
        again = " (it had come back)" if released.pass_number > 1 else ""
        print(f"released {finalizers.FINALIZER} from {released.namespace}/{released.name}{again}")
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if outcome.came_back:
        print(
            f"error: {finalizers.FINALIZER} came back on {', '.join(outcome.came_back)} "
            f"until the end of the wait ({args.wait:g} s): is an operator still running?",
            file=sys.stderr,
        )
    if not outcome.released and outcome.ok:
        print(f"no LlamaDeployment carries {finalizers.FINALIZER}")
    return 0 if outcome.ok else 1


def _run(extra: list[str]) -> int:
    scoped = any(
        a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in extra
    )
    argv = [
        "run",
        "-m",
        "llama_operator.runtime.handlers",
        *([] if scoped else ["--all-namespaces"]),
    ]
    kopf_cli.main(args=[*argv, *extra], prog_name="llama-operator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
