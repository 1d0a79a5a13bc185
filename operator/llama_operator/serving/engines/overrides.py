"""spec.engineArgs against the flags the operator plans: the ``EngineArgs`` condition.

Pure, and shared by the reconciler (``reconcile.gates`` adds the condition and its hold to
the other gates) and the tests: the engine's arguments as the operator renders them
without spec.engineArgs, the user's arguments and the release's profile in, a verdict
out. A user's flag is recognised however the engine's parser reads it: ``--flag value``
and ``--flag=value``, the other names the profile lists (vLLM's ``-tp``, ``-q`` and
``--model``; TGI's ``--max-input-length`` and ``-p``) and, where the parser takes it,
``_`` for ``-`` (vLLM). Flags carrying a secret never get here: the CRD and
``api.parse_spec`` refuse them.

What each contradiction does:
- a flag that decides what is served or where it listens (the model, its revision, host,
  port) is refused: the plan, the licence and access gates, the Service and the probes are
  all for the operator's values. Serving waits, as for any closed gate: no serving
  Deployment is created or changed (one that serves keeps serving) until it is removed.
- on an engine whose parser refuses a flag given twice (TGI's launcher), a planned flag
  repeated in engineArgs is refused the same way: the launcher would exit at start. So is
  one of two settings the engine takes only one of, when the plan rendered the other
  (TGI's --dtype and --quantize).
- any other planned flag is the user's to override (vLLM keeps the last value; TGI's
  --max-concurrent-requests is left out when engineArgs names it): the pods run with the
  user's value, and a warning says the plan's sizing no longer holds, naming the planned
  value and the spec field that sizes with the planner instead.
- a value equal to the planned one contradicts nothing and is not reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from llama_operator.api import conditions
from llama_operator.planning import engine_profiles

# Settings whose flag the operator owns: what is served (the plan, the licence and access
# gates are for spec.model) and where the engine listens (the Service and the probes).
OWNED = ("model", "revision", "host", "port")
# Where to ask the planner for what a flag of each setting sets (None: no field).
FIELDS: dict[str, str | None] = {
    "model": "spec.model.id",
    "revision": "spec.model.revision",
    "servedModelName": "spec.model.servedName",
    "host": None,
    "port": None,
    "tensorParallel": "spec.placement.tensorParallel",
    "maxModelLen": "spec.placement.maxModelLen, or spec.limits.maxTokensPerRequest to cap "
    "requests only",
    "maxInputTokens": "spec.limits.maxTokensPerRequest",
    "memoryFraction": "spec.placement.gpuMemoryUtilization",
    "quantization": "spec.placement.quantization",
    "dtype": None,  # the planner picks the 16-bit type the GPU supports
    "maxConcurrentSequences": "spec.limits.maxConcurrentSequences",
}
# The setting of a leading positional argument (vLLM's model).
POSITIONAL = "model"

Effect = Literal["refused", "overrides"]


@dataclasses.dataclass(frozen=True)
class Named:
    """One argument of spec.engineArgs that names a planned flag."""

    setting: str  # a key of Profile.flags, or POSITIONAL
    written: str  # the flag as the user wrote it: "-tp", "--max_model_len"
    value: str | None  # the user's value; None: none follows it


@dataclasses.dataclass(frozen=True)
class Contradiction:
    named: Named
    flag: str  # the flag the operator renders for the setting ("" for the positional)
    planned: str  # the value the operator renders
    effect: Effect
    why: str  # for a person: what happens, and what to do instead


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The ``EngineArgs`` condition (None: spec.engineArgs is empty), and why serving must
    wait (None: it need not)."""

    check: conditions.Check | None
    hold: str | None
    contradictions: tuple[Contradiction, ...] = ()


def planned_values(arguments: Sequence[str], profile: engine_profiles.Profile) -> dict[str, str]:
    """setting -> value, from the arguments the operator renders (a leading positional is
    POSITIONAL's; every planned flag takes one value)."""
    by_flag = {flag: setting for setting, flag in profile.flags.items()}
    result: dict[str, str] = {}
    items = list(arguments)
    if items and not items[0].startswith("-"):
        result[POSITIONAL] = items[0]
        items = items[1:]
    for index, item in enumerate(items[:-1]):
        setting = by_flag.get(item)
        if setting is not None:
            result[setting] = items[index + 1]
    return result


def named(arguments: Sequence[str], profile: engine_profiles.Profile) -> list[Named]:
    """The arguments that name a planned setting's flag, in the parser's reading."""
    names = {flag: setting for setting, flag in profile.flags.items()}
    for aliased, aliases in profile.flagAliases.items():
        names.update(dict.fromkeys(aliases, aliased))
    result = []
    for index, argument in enumerate(arguments):
        if not argument.startswith("-"):
            continue  # a value, or a positional the engine will refuse on its own
        written, equals, inline = argument.partition("=")
        setting = names.get(_spelled(written, profile))
        if setting is None:
            continue
        value: str | None
        if equals:
            value = inline
        elif index + 1 < len(arguments) and not arguments[index + 1].startswith("-"):
            value = arguments[index + 1]
        else:
            value = None
        result.append(Named(setting=setting, written=written, value=value))
    return result


def _spelled(written: str, profile: engine_profiles.Profile) -> str:
    """A flag as the engine's parser reads it: vLLM turns "_" into "-" in a long flag's
    name up to its first "." (FlexibleArgumentParser.parse_args)."""
    if not profile.underscoreFlags or not written.startswith("--"):
        return written
    name, dot, rest = written[2:].partition(".")
    return "--" + name.replace("_", "-") + dot + rest


def contradictions(
    *,
    arguments: Sequence[str],
    baseline: Sequence[str],
    rendered: Sequence[str],
    profile: engine_profiles.Profile,
    unrendered: Mapping[str, str] | None = None,
) -> list[Contradiction]:
    """What ``arguments`` (spec.engineArgs) contradict. ``baseline``: the engine's planned
    arguments without engineArgs; ``rendered``: the planned part of what is rendered with
    them (TGI leaves --max-concurrent-requests out when engineArgs names it);
    ``unrendered``: planned values no flag carries (vLLM's 16-bit or pre-quantized
    weights, "none, with no flag")."""
    planned = {**(unrendered or {}), **planned_values(baseline, profile)}
    given = planned_values(rendered, profile)
    last: dict[str, Named] = {}
    for found in named(arguments, profile):
        if found.setting in planned or _exclusive(found.setting, given, profile):
            # The last one counts where the parser keeps the last value; either way one
            # report per setting.
            last[found.setting] = found
    result = []
    for setting, found in last.items():
        flag = profile.flags.get(setting, "")
        value = planned.get(setting, "")
        field = FIELDS.get(setting)
        instead = f"set {field} instead" if field else "remove it"
        if setting in OWNED:
            result.append(
                Contradiction(found, flag, value, "refused", _owned(setting, value, field))
            )
        elif profile.repeatedFlags == "refused" and setting in given:
            result.append(
                Contradiction(
                    found,
                    flag,
                    value,
                    "refused",
                    f"planned {value}; {profile.displayName}'s launcher refuses a flag given "
                    f"twice (or under both its names) and would exit at start: {instead}",
                )
            )
        elif other := _exclusive(setting, given, profile):
            result.append(
                Contradiction(
                    found,
                    flag,
                    value,
                    "refused",
                    f"planned {profile.flags[other]} {given[other]}; {profile.displayName} "
                    f"takes only one of {flag} and {profile.flags[other]} and would exit at "
                    f"start: {instead}",
                )
            )
        elif setting in planned and found.value != value:
            why = f"planned {value}; " + (
                f"instead set {field}" if field else "the planner picks it for the GPU"
            )
            result.append(Contradiction(found, flag, value, "overrides", why))
    return result


def _exclusive(setting: str, given: Mapping[str, str], profile: engine_profiles.Profile) -> str:
    """A rendered setting the engine takes only instead of ``setting``, or ""."""
    for group in profile.exclusiveFlags:
        if setting in group:
            for other in group:
                if other != setting and other in given:
                    return other
    return ""


def _owned(setting: str, value: str, field: str | None) -> str:
    match setting:
        case "model":
            return (
                f"the operator serves {value}: its plan, licence and access checks are for "
                f"that model; set {field} instead"
            )
        case "revision":
            return f"the operator serves revision {value}; set {field} instead"
        case "host":
            return (
                f"the engine listens on {value} so the Service and the kubelet's probes reach "
                "it; remove it"
            )
        case _:
            return f"the Service and the probes use port {value}; remove it"


def verdict(
    *,
    arguments: Sequence[str],
    baseline: Sequence[str],
    rendered: Sequence[str],
    profile: engine_profiles.Profile,
    unrendered: Mapping[str, str] | None = None,
) -> Verdict:
    """The ``EngineArgs`` condition for spec.engineArgs, and the hold it puts on serving."""
    if not arguments:
        return Verdict(None, None)
    found = contradictions(
        arguments=arguments,
        baseline=baseline,
        rendered=rendered,
        profile=profile,
        unrendered=unrendered,
    )
    refused = [c for c in found if c.effect == "refused"]
    overrides = [c for c in found if c.effect == "overrides"]
    if refused:
        message = (
            "spec.engineArgs: "
            + "; ".join(_shown(c) for c in refused)
            + ". No serving pod is created or changed while spec.engineArgs carries "
            + ("it" if len(refused) == 1 else "them")
            + "; what serves keeps serving unchanged"
        )
        if overrides:
            message += ". Also " + _overriding(overrides)
        return Verdict(_check("False", "Refused", message), message, tuple(found))
    if overrides:
        return Verdict(_check("False", "OverridesPlan", _overriding(overrides)), None, tuple(found))
    count = len(arguments)
    return Verdict(
        _check(
            "True",
            "NoConflict",
            f"spec.engineArgs ({count} argument{'s' if count != 1 else ''}) set no flag the "
            "operator plans",
        ),
        None,
    )


def _overriding(overrides: Sequence[Contradiction]) -> str:
    return (
        "spec.engineArgs override planned flags, and the pods run with these values: "
        + "; ".join(_shown(c) for c in overrides)
        + ". The plan's sizing no longer holds: the GPUs each pod requests, the memory and "
        "KV cache it was sized for and status.plan describe the planned values. To size with "
        "the planner, remove them from spec.engineArgs and set the fields named"
    )


def _shown(contradiction: Contradiction) -> str:
    """``-tp 4 (--tensor-parallel-size; planned 2; ...)``: as written, and why."""
    found, flag = contradiction.named, contradiction.flag
    value = found.value if found.value is not None else "(no value)"
    spelled = f"{flag}; " if flag and found.written != flag else ""
    return f"{found.written} {value} ({spelled}{contradiction.why})"


def _check(status: conditions.Status, reason: str, message: str) -> conditions.Check:
    return conditions.Check(conditions.ENGINE_ARGS, status, reason, message)
