"""Engine profiles: what the operator assumes about one release of one serving engine.

Pipeline position: read by the planner (which quantizations a release serves), by the
engine renderers in ``serving.engines`` (flags, environment, security context), by the
metric readers in ``serving.engine_metrics`` (metric names, what each request outcome
means) and by ``operations.health`` (the log lines that mean the GPU ran out of memory).
The facts are data, ``data/engines.yaml``, each with its source; this module loads them
and picks the profile of the image actually configured.

Pure: an image reference and the operator's image settings in, a ``Resolved`` out. The
version comes from the image tag (``vllm/vllm-openai:v0.34.0`` is vLLM 0.34.0), else from
``images.versions`` in the operator config (a digest or a custom build), else it is
unknown and the engine's default release is assumed; ``Resolved.note`` says which, and
the ``EngineProfile`` condition shows it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
import yaml

from llama_operator import api

# What a later feature asks an engine for, independent of the engine's own naming.
# "queue" / "inflight" / "kvCache" match ``api.Autoscaling.metric``.
Signal = Literal[
    "queue",
    "inflight",
    "kvCache",
    "finished",
    "failed",
    "e2eLatency",
    "timeToFirstToken",
    "kvCapacity",
    "generatedTokens",
]
Origin = Literal["tag", "config", "assumed"]


class QuantizationSupport(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    flag: str | None  # the flag's value; None: no flag (16-bit, or the checkpoint says)
    minCapability: float  # the lowest GPU compute capability it is planned on


class Outcomes(pydantic.BaseModel):
    """How a finished request ended, by the label the engine puts on its counter."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    label: str
    normal: tuple[str, ...]  # finished as asked
    serverFailures: tuple[str, ...]  # the server failed a request it had accepted
    other: tuple[str, ...]  # ended otherwise: the client's doing, or a refusal we asked for

    @property
    def known(self) -> frozenset[str]:
        return frozenset((*self.normal, *self.serverFailures, *self.other))


class BatchDefault(pydantic.BaseModel):
    """The batch the engine profiles with when not told: on GPUs of ``minGiB`` or more."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    minGiB: float
    exceptProducts: tuple[str, ...]  # GPU products (substrings) the rule skips
    tokens: int  # max_num_batched_tokens (vLLM) / max_batch_prefill_tokens (TGI)
    sequences: int  # max_num_seqs when not set


class ContextGiB(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    single: float  # TP 1
    parallel: float  # TP >= 2


class ForwardBuffers(pydantic.BaseModel):
    """Per batched token, 2-byte buffers of the forward pass: so many x intermediate / TP
    and so many x hidden."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    intermediate: float
    hidden: float


class MemoryFacts(pydantic.BaseModel):
    """How the release sizes its KV cache (``data/engines.yaml`` derives each number)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # fraction: KV = total x fraction - weights - overhead (vLLM); freeAfterWarmup:
    # KV = wiggleRoom x fraction x total - everything in use, context included (TGI).
    budget: Literal["fraction", "freeAfterWarmup"]
    wiggleRoom: float = 1.0
    blockSize: int
    cudaContextGiB: ContextGiB
    nonTorchGiB: float
    communicationGiBPerDoubling: float
    samplerBytesPerLogit: float
    forwardBuffers: ForwardBuffers
    cudaGraphGiBPerLayer: float
    cudaGraphsInBudget: bool
    batchDefaults: tuple[BatchDefault, ...]

    def batch(self, *, product: str, gpu_gib: float) -> BatchDefault:
        """The batch defaults the engine picks on this GPU (the last rule is the fallback)."""
        for rule in self.batchDefaults:
            if gpu_gib >= rule.minGiB and not any(
                p.lower() in product.lower() for p in rule.exceptProducts
            ):
                return rule
        return self.batchDefaults[-1]


class LoraRuntime(pydantic.BaseModel):
    """Loading adapters into a running server (``data/engines.yaml``, ``lora.runtime``)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    env: str  # the variable that opens the endpoints (vLLM VLLM_ALLOW_RUNTIME_LORA_UPDATING)
    value: str  # what it is set to
    modelsPath: str  # GET: the loaded adapters (OpenAI model cards with a parent)
    loadPath: str  # POST {lora_name, lora_path, load_inplace}
    unloadPath: str  # POST {lora_name}
    guardedByApiKey: bool  # the engine's API key guards these paths


class LoraActivity(pydantic.BaseModel):
    """What a scrape says about each adapter (``data/engines.yaml``, ``lora.activity``)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    metric: str  # an info gauge, its value the time it was set (vLLM vllm:lora_requests_info)
    runningLabel: str  # adapters with running requests, comma-joined
    waitingLabel: str  # adapters with waiting requests, comma-joined
    slotsLabel: str  # the GPU slots (--max-loras)


class LoraFacts(pydantic.BaseModel):
    """How a release serves LoRA adapters (``data/engines.yaml``, ``lora``, with sources)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    enableFlag: str | None  # the switch that turns LoRA on; None: the adapters list does
    modulesFlag: str | None  # one flag carrying every adapter (vLLM --lora-modules)
    modulesEnv: str | None  # or one variable (TGI LORA_ADAPTERS)
    maxLorasFlag: str | None  # adapters on the GPU at once (vLLM --max-loras)
    maxLoraRankFlag: str | None
    maxCpuLorasFlag: str | None
    defaultMaxLoras: int  # the engine's default when the flag is absent (0: no such setting)
    defaultMaxLoraRank: int
    allowedRanks: tuple[int, ...]  # the values --max-lora-rank takes; empty: no such setting
    hubIdAsPath: bool  # a Hub repository id is fetched where a path is expected
    hubRevision: bool  # a Hub adapter's revision can be given
    hubAddressedBy: Literal["name", "repositoryId"]  # what clients send as `model`
    memory: Literal["slots", "adapters"]  # preallocated slots, or each adapter's weights
    runtime: LoraRuntime | None  # None: adapters load only at start
    activity: LoraActivity | None  # None: no metric names an adapter

    def rank_slot(self, rank: int) -> int | None:
        """The smallest allowed max rank >= ``rank``; None: above every allowed value."""
        if not self.allowedRanks:
            return rank
        return next((value for value in sorted(self.allowedRanks) if value >= rank), None)


class Profile(pydantic.BaseModel):
    """The facts about one engine release (see ``data/engines.yaml`` for their sources)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    engine: api.Engine
    displayName: str
    repository: str
    tagPrefix: str
    default: str
    since: str  # the first release these facts hold for
    verifiedWith: tuple[str, ...]
    command: tuple[str, ...]
    flags: dict[str, str]
    secretFlags: tuple[str, ...]
    # How the engine's parser reads spec.engineArgs (serving.engines.overrides): other names of
    # a planned setting's flag, whether "_" stands for "-" in a flag's name, what a flag
    # given twice does (the last value wins, or the engine refuses to start), and settings
    # of which it takes only one.
    flagAliases: dict[str, tuple[str, ...]]
    underscoreFlags: bool
    repeatedFlags: Literal["lastWins", "refused"]
    exclusiveFlags: tuple[tuple[str, ...], ...]
    apiKeyEnv: str
    healthPath: str
    metricsPath: str
    quantizations: dict[api.Quantization, QuantizationSupport]
    metrics: dict[Signal, tuple[str, ...]]
    outcomes: Outcomes
    runAsRoot: bool
    env: dict[str, str]
    outOfMemoryLogs: tuple[str, ...]
    memory: MemoryFacts
    lora: LoraFacts

    def flag(self, setting: str) -> str:
        """The flag that carries ``setting`` (a key of ``flags``)."""
        return self.flags[setting]

    def image(self, version: str | None = None) -> str:
        return f"{self.repository}:{self.tagPrefix}{version or self.default}"

    def serves(self, quantization: api.Quantization) -> bool:
        return quantization in self.quantizations


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The profile for one image, and how its version was found."""

    profile: Profile
    version: str | None  # the engine release the image holds; None: not known
    origin: Origin
    verified: bool  # the version lies within the releases the facts were read from

    @property
    def label(self) -> str:
        """``vLLM 0.34.0``, or ``vLLM (version unknown)``."""
        shown = self.version or "(version unknown)"
        return f"{self.profile.displayName} {shown}"

    @property
    def note(self) -> str:
        """One line for status: which profile, from where, and whether it was checked."""
        match self.origin:
            case "tag":
                where = "from the image tag"
            case "config":
                where = "from images.versions in the operator config"
            case "assumed":
                where = (
                    "assumed: the image tag names no version; set it in the operator "
                    "config's images.versions"
                )
        checked = (
            f"facts checked against {self.profile.displayName} "
            f"{', '.join(self.profile.verifiedWith)}"
            if self.verified
            else f"not a release the operator was checked against; planned with the facts "
            f"of {self.profile.displayName} {self.profile.since}+"
        )
        return f"{self.label} ({where}); {checked}"


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` from a version or tag (``v0.34.0``, ``3.3.7-rocm``)."""
    match = _VERSION.match(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def tag_version(image: str) -> str | None:
    """The release an image's tag names, or None (no tag, a digest, a name like latest)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    parsed = parse_version(last.split(":", 1)[1])
    return None if parsed is None else ".".join(str(part) for part in parsed)


@functools.cache
def _data() -> dict[str, Any]:
    text = importlib.resources.files("llama_operator").joinpath("data/engines.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@functools.cache
def _releases(engine: api.Engine) -> tuple[Profile, ...]:
    """Every profile of ``engine``, oldest first: the base, then each release applied."""
    base = dict(_data()[engine])
    releases = base.pop("releases", []) or []
    profiles = [Profile.model_validate({"engine": engine, **base})]
    current = base
    for release in releases:
        current = {**current, **release}
        profiles.append(Profile.model_validate({"engine": engine, **current}))
    return tuple(profiles)


def profiles(engine: api.Engine) -> tuple[Profile, ...]:
    """Every profile of ``engine``, oldest first."""
    return _releases(engine)


# Cached: every scrape of every pod asks for its release's metric names.
@functools.cache
def get(engine: api.Engine, version: str | None = None) -> Profile:
    """The profile that holds for ``version`` of ``engine`` (None: its default release).

    A version older than the first profile gets the first; newer than the last, the last.
    """
    known = _releases(engine)
    wanted = parse_version(version or known[0].default)
    chosen = known[0]
    for profile in known:
        since = parse_version(profile.since)
        if wanted is not None and since is not None and since <= wanted:
            chosen = profile
    return chosen


def verified(profile: Profile, version: str) -> bool:
    """Whether ``version`` lies within the releases the profile's facts were read from."""
    wanted = parse_version(version)
    bounds = [parse_version(v) for v in profile.verifiedWith]
    if wanted is None or not bounds or any(b is None for b in bounds):
        return False
    low, high = min(b for b in bounds if b), max(b for b in bounds if b)
    # A patch release of the newest verified minor is the same code line.
    return low <= wanted and wanted[:2] <= high[:2]


def resolve(
    *, engine: api.Engine, image: str, versions: Mapping[str, str] | None = None
) -> Resolved:
    """The profile of ``image``: its tag, else ``versions[image]``, else the default."""
    configured = (versions or {}).get(image)
    version = tag_version(image)
    origin: Origin = "tag"
    if configured is not None:
        version, origin = configured, "config"
    elif version is None:
        origin = "assumed"
    profile = get(engine, version)
    return Resolved(
        profile=profile,
        version=version,
        origin=origin,
        verified=version is not None and verified(profile, version),
    )
