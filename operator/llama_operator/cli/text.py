"""The text form of the CLI's output: ``plan``'s entries (``cli.entries``) as a few lines
per LlamaDeployment, the memory margin ``render`` notes on stderr, and ``licenses``.

Formatting only: every number and word comes from an entry or a licence as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator.licensing import terms


def plan_text(entry: dict[str, Any]) -> str:
    """One LlamaDeployment's entry: a head line, then one indented line per decision."""
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
        f"{margin_text(p)}"
        f"{adapters_text(p)}"
        f"  why: {p['reason']}\n"
        f"{_security_text(entry['security'])}"
        f"{_rollout_text(entry['rollout'])}"
        f"{_fallbacks_text(entry.get('fallbacks') or [])}"
        f"{found}"
    )


def margin_text(plan: Mapping[str, Any]) -> str:
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


def adapters_text(plan: Mapping[str, Any]) -> str:
    """The LoRA adapters the plan serves and the memory they take per GPU; empty without."""
    served = plan.get("adapters") or []
    lora = plan.get("lora")
    if not lora or not (served or lora.get("runtime")):
        return ""
    each = (
        ", ".join(
            f"{a['name']} ({a['source']}{'@' + a['revision'] if a.get('revision') else ''}, "
            f"rank {a['rank']}{'' if a['model'] == a['name'] else ', clients send ' + a['model']})"
            for a in served
        )
        or "none yet"
    )
    loaded = "; loaded into the running pods by the operator" if lora.get("runtime") else ""
    return (
        f"  adapters: {each}; LoRA {lora['loraGiB']} GiB per GPU (maxLoras {lora['maxLoras']}, "
        f"maxLoraRank {lora['maxLoraRank']}){loaded}\n"
    )


def license_block(lic: terms.License) -> str:
    """One licence of the registry, as ``licenses`` prints it."""
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


def _tokens_text(plan: Mapping[str, Any]) -> str:
    tokens = plan.get("kvCacheTokens")
    return f", {tokens} tokens" if tokens else ""


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
