"""The Argo CD integration in manifests/argocd: health check, argocd-cm patch, Applications.

Argo CD runs a custom health check in gopher-lua (Lua 5.1) with only the base, table and
package libraries (and a safe ``os``) opened, and hands over the resource as nested tables:
arrays 1-indexed, every number a float64 ``LNumber``. ``run`` reproduces that with lupa's
Lua 5.1: the same conversion, and a global environment holding ``obj`` and those libraries
only (no ``string``, ``math``, ``io`` or ``debug``, no string methods). Reading or assigning
any other global is an error, so a typo in the script cannot pass as ``nil``.

The verdicts are checked on hand-written statuses (every branch, and malformed ones) and on
statuses made by the real ``status.compute``, so the script and the operator cannot drift.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import hypothesis
import jsonschema
import pytest
import samples
import yaml
from hack import generate_argocd, generate_chart
from hypothesis import strategies as st
from lupa import lua51

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.planning import config
from llama_operator.reconcile import status

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
HEALTH_LUA = ARGOCD / "health.lua"
CM_PATCH = ARGOCD / "argocd-cm-patch.yaml"
OPERATOR_APP = ARGOCD / "application.yaml"
ENDPOINTS_APP = ARGOCD / "llamadeployments-app.yaml"
CHART = ROOT / "charts" / "llama-operator"
HELM = ROOT / ".cache" / "bin" / "helm"  # fetched by make setup (hack/get_helm.py)
HEALTH_KEY = "resource.customizations.health.llamaops.dev_LlamaDeployment"

SCRIPT = HEALTH_LUA.read_text()

# Runs a script the way Argo CD's Lua VM does (util/lua/lua.go): the global "obj" and what
# gopher-lua's base, table and package libraries define, nothing more (not string, math,
# io or debug; Argo CD's safe os is left out too, the script has no use for it). Reading
# or assigning any other global is an error rather than a silent nil. String methods go
# with the string library: ("x"):upper() fails there as well.
RUNNER = """
local source, obj = ...
local names = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
  "type", "unpack", "xpcall", "_VERSION", "table", "package", "require",
}
local allowed = {obj = obj}
for _, name in ipairs(names) do
  allowed[name] = _G[name]
end
local env = setmetatable({}, {
  __index = function(_, name)
    local value = allowed[name]
    if value == nil then
      error("read of undefined global " .. tostring(name), 2)
    end
    return value
  end,
  __newindex = function(_, name)
    error("assignment to global " .. tostring(name), 2)
  end,
})
local chunk = assert(loadstring(source, "=health.lua"))
setfenv(chunk, env)
debug.setmetatable("", nil)
return chunk()
"""


def to_lua(runtime: Any, value: Any) -> Any:
    """A JSON value as Argo CD's ``decodeValue`` hands it to Lua."""
    if isinstance(value, Mapping):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:  # a nil value is no key at all
                table[key] = to_lua(runtime, item)
        return table
    if isinstance(value, list | tuple):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # lua.LNumber is a float64
    return value


def evaluate(source: str, obj: Mapping[str, Any]) -> Any:
    """Run Lua ``source`` with ``obj`` as Argo CD would; its return value."""
    runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    return runtime.execute(RUNNER, source, to_lua(runtime, obj))


def run(obj: Mapping[str, Any]) -> dict[str, Any]:
    """health.lua's verdict on ``obj``: the table Argo CD turns into a HealthStatus."""
    result = evaluate(SCRIPT, obj)
    assert lua51.lua_type(result) == "table"
    verdict = dict(result.items())
    assert set(verdict) == {"status", "message"}
    assert verdict["status"] in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing"}
    assert isinstance(verdict["message"], str)
    assert verdict["message"]
    return verdict


PLAN = samples.PLAN
PLAN_JSON = PLAN.model_dump(mode="json", exclude_none=True)
SUMMARY = "l4 (1x NVIDIA-L4, none)"
NOW = "2026-01-01T00:00:00Z"
NO_FIT = "spec.placement.tensorParallel: 1x NVIDIA-L4 cannot hold 70.6B at 16-bit"


def llama(
    status_: Mapping[str, Any] | None = None,
    *,
    generation: int | None = 1,
    replicas: int = 1,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "chat", "namespace": "ai", "uid": "u-1"}
    if generation is not None:
        metadata["generation"] = generation
    obj: dict[str, Any] = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": metadata,
        "spec": {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "replicas": replicas},
    }
    if status_ is not None:
        obj["status"] = dict(status_)
    return obj


def cond(type_: str, status_: str, reason: str, message: str = "", gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status_,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": gen,
    }


PLANNED = cond("Planned", "True", "PlanChosen", PLAN.reason)
AVAILABLE = cond("Available", "True", "MinimumReplicasAvailable", "1 replica(s) ready")
NOT_AVAILABLE = cond("Available", "False", "NoReadyReplicas", "no serving pod is ready yet")
READY = cond("Ready", "True", "AllReplicasReady", "1/1 replicas ready")


def st_(phase: str | None, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A status with the usual fields; ``extra`` overrides or adds."""
    value: dict[str, Any] = {
        "phase": phase,
        "plan": PLAN_JSON,
        "replicas": 1,
        "readyReplicas": 1 if phase == "Ready" else 0,
        "selector": "llamaops.dev/deployment=chat,llamaops.dev/variant=primary",
        "observedGeneration": 1,
        "conditions": list(conditions),
    }
    value.update(extra)
    return value


REFUSED = "apply Service/chat-primary: the API server answered 422 Invalid: denied by a webhook"
INVALID_NAME = "metadata.name 'a.b.c' is not a DNS-1035 label"
PENDING_MSG = "waiting for serving pods to be created and scheduled"
PROGRESSING_MSG = "0/1 replicas ready; the first start downloads the model and can take a long time"
LAST_GOOD = (
    "spec.placement.pools: no GPU pool is available; the last good plan keeps serving unchanged"
)

STEP_1 = "canary at step 1/2, 10% of traffic"
ROLLED_BACK = (
    "canary error rate 12.5% > 5% and p95 latency 2.4s > 1.5s at step 1/2; "
    "the previous template keeps serving until the spec changes again"
)


def rollout_status(phase: str, *, weight: int, step: int) -> dict[str, Any]:
    """status.rollout as the operator reports a two-step canary."""
    return {
        "phase": phase,
        "reason": phase,
        "message": f"{phase} at step {step}/2",
        "weight": weight,
        "effectiveWeight": weight,
        "step": step,
        "steps": 2,
    }


# (id, object, Argo CD health, exact message)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "no status",
        llama(),
        "Progressing",
        "Waiting for the operator to report status",
    ),
    ("empty status", llama({}), "Progressing", "Waiting for the operator to report status"),
    (
        "status without conditions",
        llama({"phase": "Pending", "observedGeneration": 1}),
        "Progressing",
        "Planning: waiting for the operator to choose a plan",
    ),
    (
        "Planned=False NoFeasiblePlan, nothing serves (Failed)",
        llama(
            st_(
                "Failed",
                cond("Planned", "False", "NoFeasiblePlan", NO_FIT),
                cond("Available", "False", "NoReadyReplicas", "no serving pod is ready yet"),
                cond("Ready", "False", "Failed", "the spec cannot be planned; see Planned"),
                plan=None,
                replicas=0,
            )
        ),
        "Degraded",
        f"NoFeasiblePlan: {NO_FIT}",
    ),
    (
        "phase Failed without a Planned condition",
        llama(
            st_(
                "Failed",
                cond("Ready", "False", "Failed", "the spec cannot be planned"),
                plan=None,
            )
        ),
        "Degraded",
        "Failed: the spec cannot be planned",
    ),
    (
        "phase Degraded: bad edit, the last good plan keeps serving",
        llama(
            st_(
                "Degraded",
                cond("Planned", "False", "NoGPUPools", LAST_GOOD, gen=2),
                cond("Available", "True", "MinimumReplicasAvailable", "1 replica(s) ready", 2),
                cond("Ready", "False", "Degraded", "the latest spec could not be planned", 2),
                readyReplicas=1,
                observedGeneration=2,
            ),
            generation=2,
        ),
        "Degraded",
        f"NoGPUPools: {LAST_GOOD}",
    ),
    (
        "phase Degraded: progress deadline exceeded",
        llama(
            st_(
                "Degraded",
                PLANNED,
                NOT_AVAILABLE,
                cond("Ready", "False", "Degraded", "the Deployment exceeded its progress deadline"),
            )
        ),
        "Degraded",
        f"Degraded: the Deployment exceeded its progress deadline; planned on {SUMMARY}",
    ),
    (
        "Pending",
        llama(
            st_(
                "Pending",
                PLANNED,
                NOT_AVAILABLE,
                cond("Ready", "False", "Pending", PENDING_MSG),
                replicas=0,
            )
        ),
        "Progressing",
        f"Pending: {PENDING_MSG}; planned on {SUMMARY}",
    ),
    (
        "Progressing (first model download)",
        llama(
            st_(
                "Progressing",
                PLANNED,
                NOT_AVAILABLE,
                cond("Ready", "False", "Progressing", PROGRESSING_MSG),
            )
        ),
        "Progressing",
        f"Progressing: {PROGRESSING_MSG}; planned on {SUMMARY}",
    ),
    (
        "Ready, observedGeneration current",
        llama(st_("Ready", PLANNED, AVAILABLE, READY)),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "Ready, observedGeneration stale",
        llama(st_("Ready", PLANNED, AVAILABLE, READY), generation=2),
        "Progressing",
        "Waiting for the operator to reconcile generation 2 (status is for generation 1)",
    ),
    (
        "Ready, status without observedGeneration",
        llama(st_("Ready", PLANNED, AVAILABLE, READY, observedGeneration=None)),
        "Progressing",
        "Waiting for the operator to reconcile generation 1",
    ),
    (
        "Ready, Ready condition for an older generation",
        llama(st_("Ready", PLANNED, AVAILABLE, READY, observedGeneration=2), generation=2),
        "Progressing",
        f"Ready condition is True for generation 1: 1/1 replicas ready; planned on {SUMMARY}",
    ),
    (
        "phase Ready but Ready condition False",
        llama(st_("Ready", PLANNED, AVAILABLE, cond("Ready", "False", "Progressing", "0/1 ready"))),
        "Progressing",
        f"Ready condition is False: 0/1 ready; planned on {SUMMARY}",
    ),
    (
        "phase Ready but no Ready condition",
        llama(st_("Ready", PLANNED, AVAILABLE)),
        "Progressing",
        f"Ready condition is missing; planned on {SUMMARY}",
    ),
    (
        "missing metadata.generation",
        llama(st_("Ready", PLANNED, AVAILABLE, READY), generation=None),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "Planned=Unknown",
        llama(st_(None, cond("Planned", "Unknown", "Planning", "fetching model facts"), plan=None)),
        "Progressing",
        "Planning: waiting for the operator to choose a plan (fetching model facts)",
    ),
    (
        "scaled to zero",
        llama(
            st_(
                "Ready",
                PLANNED,
                cond("Available", "False", "ScaledToZero", "spec.replicas is 0"),
                cond("Ready", "True", "AllReplicasReady", "0/0 replicas ready"),
                replicas=0,
            ),
            replicas=0,
        ),
        "Healthy",
        f"Scaled to zero on {SUMMARY}",
    ),
    (
        "Ready without a plan in status",
        llama(st_("Ready", PLANNED, AVAILABLE, READY, plan=None)),
        "Healthy",
        "1/1 ready",
    ),
    (
        "numbers as strings (json.Number)",
        {
            **llama(
                st_(
                    "Ready",
                    cond("Planned", "True", "PlanChosen", PLAN.reason, gen=3),
                    cond("Ready", "True", "AllReplicasReady", "1/1 replicas ready", gen=3),
                    observedGeneration="3",
                    readyReplicas="1",
                )
            ),
            "metadata": {"name": "chat", "generation": "3"},
        },
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "malformed: conditions a map, plan a string, no metadata or spec",
        {"status": {"phase": "Ready", "conditions": {"type": "Ready"}, "plan": "l4"}},
        "Progressing",
        "Planning: waiting for the operator to choose a plan",
    ),
    (
        "malformed: conditions without fields, unknown phase",
        llama(st_("Paused", {}, cond("Planned", "True", "PlanChosen"), plan={"gpuProduct": "x"})),
        "Progressing",
        "Paused: waiting for serving pods",
    ),
    (
        "NotYetActive does not change the verdict",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("NotYetActive", "True", "FieldsNotActive", "spec.rollout: not yet"),
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "licence not accepted: waits for a person, so Degraded with the reason",
        llama(
            st_(
                "Pending",
                PLANNED,
                cond("LicenseAccepted", "False", "NotAccepted", "set spec.license.accept: true"),
            )
        ),
        "Degraded",
        "NotAccepted: set spec.license.accept: true",
    ),
    (
        "no access to a gated model",
        llama(
            st_(
                "Pending",
                PLANNED,
                cond("LicenseAccepted", "True", "Accepted", "accepted"),
                cond("ModelAccessible", "False", "NotGranted", "request access at https://hf/x"),
            )
        ),
        "Degraded",
        "NotGranted: request access at https://hf/x",
    ),
    (
        "no API key to serve with (API keys required)",
        llama(
            st_(
                "Pending",
                PLANNED,
                cond(
                    "Authenticated",
                    "False",
                    "APIKeyRequired",
                    "spec.auth.apiKeySecretRef is required",
                ),
            )
        ),
        "Degraded",
        "APIKeyRequired: spec.auth.apiKeySecretRef is required",
    ),
    (
        "the API-key Secret is missing",
        llama(
            st_(
                "Pending",
                PLANNED,
                cond(
                    "Authenticated",
                    "False",
                    "SecretMissing",
                    "spec.auth.apiKeySecretRef: no Secret",
                ),
            )
        ),
        "Degraded",
        "SecretMissing: spec.auth.apiKeySecretRef: no Secret",
    ),
    (
        "an endpoint open on purpose (auth optional) is healthy",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Authenticated", "False", "AuthOptional", "anyone can use it"),
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "gates that are open or unknown do not change the verdict",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("LicenseAccepted", "Unknown", "LicenseUnknown", "unknown"),
                cond("ModelAccessible", "True", "Granted", "ok"),
                cond("LicenseRestricted", "True", "RestrictedLicense", "research only"),
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "canary rollout in progress: a Ready endpoint is Progressing, as Argo Rollouts says",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Rollout", "True", "Progressing", STEP_1),
                rollout=rollout_status("Progressing", weight=10, step=1),
            )
        ),
        "Progressing",
        f"Rollout Progressing: {STEP_1}",
    ),
    (
        "canary rollout starting while the canary's pods start",
        llama(
            st_(
                "Progressing",
                PLANNED,
                AVAILABLE,
                cond("Ready", "False", "Progressing", "1/2 replicas ready"),
                cond("Rollout", "True", "Starting", "waiting for the canary's pods"),
                rollout=rollout_status("Starting", weight=0, step=0),
            )
        ),
        "Progressing",
        "Rollout Starting: waiting for the canary's pods",
    ),
    (
        "canary rollout paused for a person is still in progress",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Rollout", "True", "Paused", "paused at step 1/2, 10% of traffic"),
                rollout=rollout_status("Paused", weight=10, step=1),
            )
        ),
        "Progressing",
        "Rollout Paused: paused at step 1/2, 10% of traffic",
    ),
    (
        "canary being promoted",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Rollout", "True", "Promoting", "the primary takes the new template"),
                rollout=rollout_status("Promoting", weight=100, step=2),
            )
        ),
        "Progressing",
        "Rollout Promoting: the primary takes the new template",
    ),
    (
        "Rollout=True without reason or message",
        llama(st_("Ready", PLANNED, AVAILABLE, READY, {"type": "Rollout", "status": "True"})),
        "Progressing",
        "Rollout: in progress",
    ),
    (
        "rollout completed: Healthy again",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Rollout", "False", "Completed", "the new template serves all traffic"),
                cond("RolledBack", "False", "Completed", "the last rollout completed"),
                rollout=rollout_status("Completed", weight=100, step=2),
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "rollout cancelled: Healthy again",
        llama(
            st_(
                "Ready",
                PLANNED,
                AVAILABLE,
                READY,
                cond("Rollout", "False", "Cancelled", "the spec went back to the serving one"),
                rollout=rollout_status("Cancelled", weight=0, step=1),
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "rolled back: Degraded with the numbers against the thresholds",
        llama(
            st_(
                "Degraded",
                PLANNED,
                AVAILABLE,
                cond("Ready", "False", "Degraded", "the spec change is held back"),
                cond("Rollout", "False", "RolledBack", "the canary failed its analysis"),
                cond("RolledBack", "True", "AnalysisFailed", ROLLED_BACK),
                rollout=rollout_status("RolledBack", weight=0, step=1),
                readyReplicas=1,
            )
        ),
        "Degraded",
        f"RolledBack: {ROLLED_BACK}",
    ),
    (
        "rolled back, without a message",
        llama(st_("Degraded", PLANNED, AVAILABLE, {"type": "RolledBack", "status": "True"})),
        "Degraded",
        "RolledBack: the canary was rolled back; see the conditions",
    ),
    (
        "a closed licence gate goes before a rollback",
        llama(
            st_(
                "Degraded",
                PLANNED,
                cond("LicenseAccepted", "False", "NotAccepted", "set spec.license.accept: true"),
                cond("RolledBack", "True", "AnalysisFailed", ROLLED_BACK),
            )
        ),
        "Degraded",
        "NotAccepted: set spec.license.accept: true",
    ),
    (
        "Reconciled=False: an apply the API server refused, while the last template serves",
        llama(
            st_(
                "Ready",
                PLANNED,
                cond("Reconciled", "False", "APIError", REFUSED),
                AVAILABLE,
                READY,
            )
        ),
        "Degraded",
        f"APIError: {REFUSED}",
    ),
    (
        "a failed reconcile goes before an older Planned=False",
        llama(
            st_(
                "Failed",
                cond("Planned", "False", "InvalidName", INVALID_NAME),
                cond("Reconciled", "False", "APIError", REFUSED),
                plan=None,
            )
        ),
        "Degraded",
        f"APIError: {REFUSED}",
    ),
    (
        "the first reconcile of a new object failed: only Reconciled in status",
        llama({"conditions": [cond("Reconciled", "False", "UnexpectedError", "KeyError: 'x'")]}),
        "Degraded",
        "UnexpectedError: KeyError: 'x'",
    ),
    (
        "a new generation failed: status.observedGeneration is still the last good one",
        llama(
            st_(
                "Ready",
                PLANNED,
                cond("Reconciled", "False", "APIError", REFUSED, gen=2),
                AVAILABLE,
                READY,
            ),
            generation=2,
        ),
        "Degraded",
        f"APIError: {REFUSED}",
    ),
    (
        "a failure of an older generation waits for the new one to be reconciled",
        llama(
            st_(
                "Ready", PLANNED, cond("Reconciled", "False", "APIError", REFUSED), AVAILABLE, READY
            ),
            generation=2,
        ),
        "Progressing",
        "Waiting for the operator to reconcile generation 2 (status is for generation 1)",
    ),
    (
        "Reconciled=True changes nothing",
        llama(
            st_(
                "Ready",
                PLANNED,
                cond("Reconciled", "True", "Succeeded", "the last reconcile completed"),
                AVAILABLE,
                READY,
            )
        ),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
    (
        "an unplannable spec goes before a rollback",
        llama(
            st_(
                "Degraded",
                cond("Planned", "False", "NoGPUPools", LAST_GOOD),
                cond("RolledBack", "True", "AnalysisFailed", ROLLED_BACK),
            )
        ),
        "Degraded",
        f"NoGPUPools: {LAST_GOOD}",
    ),
    (
        "a failing endpoint during a rollout is Degraded, not Progressing",
        llama(
            st_(
                "Degraded",
                PLANNED,
                NOT_AVAILABLE,
                cond("Ready", "False", "Degraded", "the Deployment exceeded its progress deadline"),
                cond("Rollout", "True", "Progressing", STEP_1),
            )
        ),
        "Degraded",
        f"Degraded: the Deployment exceeded its progress deadline; planned on {SUMMARY}",
    ),
    (
        "a rollout status for an older generation waits for the operator",
        llama(
            st_("Ready", PLANNED, AVAILABLE, READY, cond("Rollout", "True", "Progressing", STEP_1)),
            generation=2,
        ),
        "Progressing",
        "Waiting for the operator to reconcile generation 2 (status is for generation 1)",
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected", "message"),
    [pytest.param(obj, exp, msg, id=name) for name, obj, exp, msg in CASES],
)
def test_verdict_table(obj: dict[str, Any], expected: str, message: str) -> None:
    assert run(obj) == {"status": expected, "message": message}


def test_the_sandbox_really_lacks_the_string_library() -> None:
    # Guards the harness: if these passed, a script using them would pass here and fail
    # in Argo CD.
    for source, error in [
        ('return ("x"):upper()', "attempt to index"),
        ('return string.format("%d", 1)', "undefined global string"),
        ("return math.floor(1.5)", "undefined global math"),
        ("return stauts", "undefined global stauts"),
        ("hs = {}", "assignment to global hs"),
    ]:
        with pytest.raises(lua51.LuaError, match=error):
            evaluate(source, {})
    assert evaluate("return obj.kind .. table.concat({1, 2})", {"kind": "K"}) == "K12"


# Statuses made by the operator's own status.compute, so the script reads what the
# operator really writes.


deployment = samples.deployment
observe = samples.observe


def computed(observation: status.Observation, *, generation: int | None = None) -> dict[str, Any]:
    """The LlamaDeployment as Argo CD sees it after the operator wrote this status."""
    return llama(
        status.compute(observation),
        generation=observation.generation if generation is None else generation,
        replicas=observation.desired_replicas,
    )


FAILURE = status.PlanningFailure("NoFeasiblePlan", NO_FIT)
GOOD = status.compute(observe(deployment=deployment(ready=1)))
PHASE_HEALTH = {
    "Ready": "Healthy",
    "Pending": "Progressing",
    "Progressing": "Progressing",
    "Degraded": "Degraded",
    "Failed": "Degraded",
}

REAL: list[tuple[str, status.Observation, str, str]] = [
    ("ready", observe(deployment=deployment(ready=1)), "Healthy", f"1/1 ready on {SUMMARY}"),
    ("no Deployment yet", observe(), "Progressing", "Pending: "),
    ("pods starting", observe(deployment=deployment()), "Progressing", "downloads the model"),
    (
        "rolling out a new template",
        observe(deployment=deployment(replicas=2, ready=1, updated=1), desired_replicas=2),
        "Progressing",
        "1/2 replicas ready",
    ),
    (
        "progress deadline exceeded",
        observe(deployment=deployment(deadline=True)),
        "Degraded",
        "progress deadline",
    ),
    (
        "ready pods failing",
        observe(deployment=deployment(replicas=2, ready=1), desired_replicas=2),
        "Degraded",
        "Degraded: 1/2 replicas ready",
    ),
    (
        "planning failure, nothing serves",
        observe(plan=None, failure=FAILURE),
        "Degraded",
        f"NoFeasiblePlan: {NO_FIT}",
    ),
    (
        "planning failure, the last good plan keeps serving",
        observe(
            previous=GOOD,
            plan=None,
            failure=FAILURE,
            generation=2,
            deployment=deployment(ready=1),
        ),
        "Degraded",
        "the last good plan keeps serving unchanged",
    ),
    (
        "scaled to zero",
        observe(deployment=deployment(replicas=0), desired_replicas=0),
        "Healthy",
        f"Scaled to zero on {SUMMARY}",
    ),
    (
        "ready with not-yet-active fields",
        observe(deployment=deployment(ready=1), not_yet_active=["rollout"]),
        "Healthy",
        f"1/1 ready on {SUMMARY}",
    ),
]


@pytest.mark.parametrize(
    ("observation", "expected", "fragment"),
    [pytest.param(obs, exp, frag, id=name) for name, obs, exp, frag in REAL],
)
def test_verdicts_on_statuses_the_operator_computes(
    observation: status.Observation, expected: str, fragment: str
) -> None:
    obj = computed(observation)
    verdict = run(obj)
    assert verdict["status"] == expected
    assert verdict["status"] == PHASE_HEALTH[obj["status"]["phase"]]
    assert fragment in verdict["message"]


def test_a_failed_reconcile_of_a_computed_status_is_degraded() -> None:
    good = status.compute(observe(deployment=deployment(ready=1)))
    assert run(llama(good))["status"] == "Healthy"
    failed = status.failed(good, reason="APIError", message=REFUSED, generation=1, now=NOW)
    assert run(llama(failed)) == {"status": "Degraded", "message": f"APIError: {REFUSED}"}


def test_a_computed_status_for_an_older_generation_is_progressing() -> None:
    verdict = run(computed(observe(deployment=deployment(ready=1)), generation=2))
    assert verdict["status"] == "Progressing"
    assert "generation 2" in verdict["message"]


@st.composite
def observations(draw: st.DrawFn) -> status.Observation:
    # Weighted towards a healthy rollout, so every phase turns up often.
    desired = draw(st.integers(0, 3))
    failed = draw(st.sampled_from([False, False, False, True]))
    live: dict[str, Any] | None = None
    if draw(st.integers(0, 4)) > 0:
        replicas = draw(st.one_of(st.just(desired), st.integers(0, 4)))
        live = deployment(
            replicas=replicas,
            ready=draw(st.one_of(st.just(replicas), st.integers(0, replicas))),
            updated=draw(st.one_of(st.just(replicas), st.integers(0, replicas))),
            deadline=draw(st.sampled_from([False, False, False, True])),
        )
    return observe(
        generation=draw(st.integers(1, 5)),
        previous=draw(st.sampled_from([{}, GOOD])),
        plan=None if failed else PLAN,
        failure=FAILURE if failed else None,
        deployment=live,
        desired_replicas=desired,
        not_yet_active=draw(st.sampled_from([(), ("rollout",)])),
        checks=draw(st.sampled_from(GATES)),
        held_back=draw(st.sampled_from([None, None, "set spec.license.accept: true"])),
    )


# Licence and access conditions as the reconciler sets them (conditions.Check).
GATES: list[tuple[conditions.Check, ...]] = [
    (),
    (conditions.Check("LicenseAccepted", "True", "Accepted", "accepted"),),
    (conditions.Check("LicenseAccepted", "Unknown", "LicenseUnknown", "unknown"),),
    (conditions.Check("LicenseAccepted", "False", "NotAccepted", "accept it"),),
    (conditions.Check("ModelAccessible", "False", "NotGranted", "ask for access"),),
    (conditions.Check("LicenseRestricted", "True", "RestrictedLicense", "research only"),),
]


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(observations())
def test_every_computed_phase_maps_to_its_health(observation: status.Observation) -> None:
    obj = computed(observation)
    verdict = run(obj)["status"]
    if any(check.status == "False" for check in observation.checks):
        assert verdict == "Degraded"  # a closed gate waits for a person, not for time
    else:
        assert verdict == PHASE_HEALTH[obj["status"]["phase"]]


# The generated argocd-cm patch and the example Applications.


class TestConfigMapPatch:
    def test_committed_patch_is_what_the_generator_renders(self) -> None:
        assert CM_PATCH.read_text() == generate_argocd.render(SCRIPT), (
            "run: python hack/generate_argocd.py"
        )

    def test_generator_check_mode_agrees(self) -> None:
        assert generate_argocd.main(["--check"]) == 0

    def test_key_is_argo_cds_group_kind_format(self) -> None:
        patch = yaml.safe_load(CM_PATCH.read_text())
        assert list(patch["data"]) == [HEALTH_KEY]
        assert (
            generate_argocd.HEALTH_KEY
            == HEALTH_KEY
            == (f"resource.customizations.health.{api.GROUP}_{api.KIND}")
        )

    def test_embeds_health_lua_byte_for_byte(self) -> None:
        patch = yaml.safe_load(CM_PATCH.read_text())
        assert patch["apiVersion"] == "v1"
        assert patch["kind"] == "ConfigMap"
        assert patch["metadata"]["name"] == "argocd-cm"
        assert patch["data"][HEALTH_KEY] == SCRIPT

    @pytest.mark.parametrize("lua", ["", "x", "x\n\n", "\tx\n", "x  \n", " x\n", "x\r\n"])
    def test_refuses_scripts_yaml_would_not_return_unchanged(self, lua: str) -> None:
        with pytest.raises(ValueError, match=r"health\.lua"):
            generate_argocd.render(lua)


def load_app(path: pathlib.Path) -> dict[str, Any]:
    (document,) = list(yaml.safe_load_all(path.read_text()))
    assert document["apiVersion"] == "argoproj.io/v1alpha1"
    assert document["kind"] == "Application"
    return dict(document)


class TestApplications:
    def test_operator_application(self) -> None:
        app = load_app(OPERATOR_APP)
        spec = app["spec"]
        assert spec["source"]["repoURL"] == "https://github.com/llamaops/llama-operator.git"
        assert spec["source"]["path"] == "charts/llama-operator"
        assert isinstance(spec["source"]["helm"]["valuesObject"], dict)
        assert spec["destination"]["namespace"] == "llama-operator"
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert {"ServerSideApply=true", "CreateNamespace=true"} <= set(
            spec["syncPolicy"]["syncOptions"]
        )
        # A cascading delete would take the CRD, and every LlamaDeployment, with it.
        assert "finalizers" not in app["metadata"]

    def test_endpoints_application_leaves_autoscaled_replicas_alone(self) -> None:
        spec = load_app(ENDPOINTS_APP)["spec"]
        (rule,) = spec["ignoreDifferences"]
        assert (rule["group"], rule["kind"]) == (api.GROUP, api.KIND)
        assert rule["jsonPointers"] == ["/spec/replicas"]
        assert {
            "ServerSideApply=true",
            "RespectIgnoreDifferences=true",
            "SkipDryRunOnMissingResource=true",
        } <= set(spec["syncPolicy"]["syncOptions"])

    def test_operator_syncs_before_the_endpoints(self) -> None:
        def wave(path: pathlib.Path) -> int:
            return int(load_app(path)["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

        assert wave(OPERATOR_APP) < wave(ENDPOINTS_APP)

    def test_example_operator_config_is_valid(self) -> None:
        values = load_app(OPERATOR_APP)["spec"]["source"]["helm"]["valuesObject"]
        parsed = config.parse(values["config"], origin="application.yaml")
        assert [pool.name for pool in parsed.pools] == ["l4"]

    def test_example_values_pass_the_chart_schema(self) -> None:
        values = merged(
            yaml.safe_load((CHART / "values.yaml").read_text()),
            load_app(OPERATOR_APP)["spec"]["source"]["helm"]["valuesObject"],
        )
        schema = json.loads((CHART / "values.schema.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(values)

    def test_example_values_render_the_crd_in_an_earlier_wave(self, tmp_path: pathlib.Path) -> None:
        if not HELM.exists():
            pytest.fail(f"helm not found at {HELM}: run make setup", pytrace=False)
        values = tmp_path / "values.json"
        values.write_text(
            json.dumps(load_app(OPERATOR_APP)["spec"]["source"]["helm"]["valuesObject"])
        )
        rendered = generate_chart.helm(
            "template",
            "llama-operator",
            str(CHART),
            "-f",
            str(values),
            "--namespace",
            "llama-operator",
            "--kube-version",
            "1.30.0",
            helm_path=HELM,
        )
        assert rendered.returncode == 0, rendered.stderr
        waves = {
            (doc["kind"], doc["metadata"]["name"]): int(
                (doc["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", 0)
            )
            for doc in yaml.safe_load_all(rendered.stdout)
            if doc
        }
        crd = ("CustomResourceDefinition", f"{api.PLURAL}.{api.GROUP}")
        assert waves.pop(crd) < 0
        assert waves
        assert all(wave >= 0 for kind, wave in waves.items() if kind[0] != crd[0])


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result
