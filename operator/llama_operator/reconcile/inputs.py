"""What one reconcile is given: the cluster, the outside world's readers, the clock, and
what the operator remembers of the object between reconciles.

The entry ``reconcile.reconcile`` takes these four instead of a long list of keyword
arguments; every phase receives only the parts it uses. The runtime (``handlers``) builds
them from Kopf's memo and indexes; tests build them with the defaults and the few parts a
test is about. The readers are plain callables, so a test stands in for the Hub, a token
Secret or a pod's metrics with a lambda.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.clients import hub, k8s
from llama_operator.licensing import gating
from llama_operator.operations import (
    adapter_loading,
    adapters,
    canary_analysis,
    capacity,
    rollout,
    slo,
)
from llama_operator.planning import facts

# (kind, namespace, name) -> the live object as last seen by a watch, or None.
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]
HubFetch = Callable[[api.ModelSpec, str], facts.PartialFacts]
# (repository, revision, the model whose token to use, namespace) -> its Hub card.
CardFetch = Callable[[str, str, api.ModelSpec, str], hub.Card]
# (model, namespace) -> whether the referenced token can read the repository.
AccessCheck = Callable[[api.ModelSpec, str], gating.AccessAnswer]
# (spec.adapters[i], the model whose token to fall back on, namespace) -> what the Hub says
# about the adapter (adapter_config.json and its card); a failure is in ``Found.error``.
AdapterRead = Callable[[api.Adapter, api.ModelSpec, str], adapters.Found]
# (spec.auth.apiKeySecretRef, namespace) -> whether that Secret holds a non-empty key.
KeyCheck = Callable[[api.APIKeySecretRef, str], bool]


@dataclasses.dataclass(frozen=True)
class MeasureRequest:
    """What a canary judgement needs: which pods to compare, how, against what."""

    namespace: str
    name: str
    uid: str
    revision: str  # the canary's: a judgement is only for the canary it measured
    canary_engine: api.Engine
    stable_engine: api.Engine
    analysis: api.Analysis
    # The engine releases (Plan.engineVersion): whose metric names and request outcomes
    # the scrapes are read with. None: the engine's default release.
    canary_engine_version: str | None = None
    stable_engine_version: str | None = None


# A judgement of the canary against the stable pods, or None when none is due yet (the
# interval has not passed, or the window has too few requests so far).
Measure = Callable[[MeasureRequest], "canary_analysis.Judgement | None"]
# (namespace, name, plan) -> the primary's waiting requests per ready pod, or None when
# no pod could be read (spec.failover.overloadQueuePerReplica). The plan names the engine
# release whose profile names the queue metric.
QueueRead = Callable[[str, str, api.Plan], float | None]
# (namespace, name, plan) -> the KV capacity each ready pod of the primary reports, by pod
# (None: its page carries none; pods that could not be read are left out), or None when
# no reading is due (capacity.due: the same ready pods as the plan's observation).
CapacityRead = Callable[[str, str, api.Plan], Mapping[str, "capacity.PodCapacity | None"] | None]


@dataclasses.dataclass(frozen=True)
class ServingRequest:
    """What the live serving figures need: whose primary pods, read how, over what window."""

    namespace: str
    name: str
    uid: str
    engine: api.Engine
    engine_version: str | None  # Plan.engineVersion: whose metric names the pages are read by
    window: float  # spec.slo.window (or its default) in seconds


# The scrapes of the primary's ready pods kept for the window, oldest first, the newest
# taken now (``slo.keep``); None when no scrape is due (``slo.due``): status.serving and
# SLOMet stay as they are.
ServingRead = Callable[[ServingRequest], "Sequence[slo.Scrape] | None"]


@dataclasses.dataclass(frozen=True)
class AdapterLoadRequest:
    """What runtime adapter loading needs: whose pods, which engine release, what each
    variant should hold, and the API key that guards the engine's endpoints."""

    namespace: str
    name: str
    engine: api.Engine
    engine_version: str | None  # Plan.engineVersion: whose endpoints (engine_profiles)
    # (variant, the adapters its pods should hold): the primary, and a canary in traffic.
    variants: tuple[tuple[str, tuple[api.PlanAdapter, ...]], ...]
    api_key: api.APIKeySecretRef | None  # spec.auth.apiKeySecretRef: sent, never stored


# The ready pods of the request's variants after this reconcile's loads and unloads, by
# pod name; None when nothing could be asked (no endpoints index, an unexpected failure):
# status.adapters[].loadedPods and AdaptersReady then say what the decision says.
AdapterLoad = Callable[[AdapterLoadRequest], "Mapping[str, adapter_loading.PodState] | None"]
# () -> the KV-cache corrections recorded so far (the calibration ConfigMap), by data key.
# Called only when a plan is made anew: a kept plan is never re-planned for a correction.
CorrectionsRead = Callable[[], Mapping[str, "capacity.Correction"]]


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The Kubernetes side of a reconcile.

    ``client`` makes every API request (reads of pods and Secrets, applies, deletes);
    ``lookup`` answers from the watches (the handlers' Kopf indexes), so a reconcile with
    nothing to change asks the API server nothing; ``gpu_nodes`` are the labelled GPU nodes
    pools are discovered from when the operator config names none.
    """

    client: k8s.Client
    lookup: Lookup
    gpu_nodes: Iterable[Mapping[str, Any]] = ()


@dataclasses.dataclass(frozen=True)
class Readers:
    """The outside world a reconcile may consult; None: not available (the offline CLI,
    tests), which leaves that part unread.

    ``fetch`` reads model facts from the Hub, for a model neither the spec nor the catalog
    describes. ``card`` reads Hub cards (licence detection, gating); ``access`` checks a
    referenced token against a gated repository, and is called only when a serving
    Deployment is about to be created or changed. Without them the licence is left to the
    catalog and access unchecked. ``api_key`` checks that the Secret of
    spec.auth.apiKeySecretRef holds its key, only when serving pods are about to be created
    or changed; None leaves it unchecked.

    ``measure`` scrapes and judges a canary in traffic (``canary_probe.Analyzer``); None
    leaves canaries unjudged (their steps then wait, as with too little traffic). ``queue``
    reads the primary's queue for the failover's overload threshold.

    ``kv_capacity`` reads the KV cache the primary's ready pods allocated, once the primary
    is rolled out on its current template (``status.plan.observed``, the KVCacheCapacity
    condition, a correction recorded for the next plans); None leaves it unobserved.
    ``corrections`` reads the corrections recorded so far, for a primary planned anew.
    ``serving`` scrapes the primary's ready pods for the live figures and the SLO
    (``status.serving``, the SLOMet condition; ``runtime.slo_probe``); None leaves them
    unread.

    ``adapter`` reads each spec.adapters entry's facts (rank, target modules, base model,
    the licence its card declares) from the Hub; None leaves them to the spec (an adapter
    without rank and targetModules there is then held back as AdapterUnavailable).
    ``adapter_load`` lists and loads the adapters of the ready pods that load them at
    runtime (``runtime.adapter_loader``); None leaves them unloaded and unreported.
    """

    fetch: HubFetch | None = None
    card: CardFetch | None = None
    access: AccessCheck | None = None
    api_key: KeyCheck | None = None
    measure: Measure | None = None
    queue: QueueRead | None = None
    kv_capacity: CapacityRead | None = None
    corrections: CorrectionsRead | None = None
    serving: ServingRead | None = None
    adapter: AdapterRead | None = None
    adapter_load: AdapterLoad | None = None

    def asking_key_once(self) -> Readers:
        """These readers, with ``api_key`` answering each Secret from its first answer: the
        primary and every fallback name the same Secret, asked about once per reconcile."""
        return dataclasses.replace(self, api_key=_asked_once(self.api_key))


def _asked_once(check: KeyCheck | None) -> KeyCheck | None:
    """``check`` answering each (Secret, key, namespace) from the first answer."""
    if check is None:
        return None
    answers: dict[tuple[str, str, str], bool] = {}

    def once(ref: api.APIKeySecretRef, namespace: str) -> bool:
        where = (ref.name, ref.key, namespace)
        if where not in answers:
            answers[where] = check(ref, namespace)
        return answers[where]

    return once


@dataclasses.dataclass(frozen=True)
class Clock:
    """When this reconcile runs.

    ``now`` is the time status records (RFC 3339). ``instant`` is ``now`` in seconds since
    the epoch with its fraction (rollout pauses, failover and re-planning periods are timed
    from it); None reads it from ``now``. ``monotonic`` times the periodic re-apply of the
    unwatched children.
    """

    now: str
    instant: float | None = None
    monotonic: Callable[[], float] = time.monotonic

    @property
    def seconds(self) -> float:
        """``now`` in seconds since the epoch."""
        return rollout.epoch(self.now) if self.instant is None else self.instant


@dataclasses.dataclass(frozen=True)
class Memory:
    """What this process remembers of one LlamaDeployment between reconciles (the handlers
    keep these maps in the object's Kopf memo; a restart forgets them).

    ``generations`` remembers, per child ("Kind/name"), the ``metadata.generation`` our last
    apply produced: a live generation past it means someone else edited the child, which is
    then re-applied. A child this process has not applied yet (the first reconcile after a
    start) is applied once, quietly, whatever its annotations say: an edit made while no
    operator watched left the hash annotation as it was, and only the apply itself compares
    the live fields with ours. When that apply changes the object's generation, the edit is
    reverted and a ``DriftReverted`` Warning says which child.

    ``unwatched`` remembers, per unwatched child ("Kind/name"), the hash last applied and
    when (``apply.UNWATCHED_KINDS``). ``handled`` remembers the rollout actions already acted
    on, so a stale copy of the object that still carries the annotation does not act twice.
    """

    generations: MutableMapping[str, int] = dataclasses.field(default_factory=dict)
    unwatched: MutableMapping[str, tuple[str | None, float]] = dataclasses.field(
        default_factory=dict
    )
    handled: MutableMapping[str, str] = dataclasses.field(default_factory=dict)
