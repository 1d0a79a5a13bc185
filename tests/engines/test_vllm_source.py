"""Contract: the vLLM facts in ``engines.yaml`` hold in the source of every release they name.

``operator/llama_operator/data/engines.yaml`` lists, per vLLM profile, the releases its
facts were read from (``verifiedWith``). For each such release V this reads vLLM's own
Python source, unpacked from V's wheel on PyPI into ``.cache/engines/vllm-V/`` by
``hack/get_engine_sources.py`` (run by ``make setup``), and checks that the profile
``engine_profiles.get("vllm", V)`` picks says what the source says: flags, environment
variables, metric names, finish reasons, quantization methods and out-of-memory log
lines. It also checks that the hand-written metrics page the fake pods serve
(``tests/fixtures/metrics/vllm.prom``, filled in by ``tests/podserver.py``) is the page
vLLM 0.34.0's source would write.

vLLM is never imported (it needs CUDA and hundreds of dependencies): every file is read
with ``ast``, once per release. No network: a release whose source is missing fails, with
the command that fetches it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import pathlib
import re
import warnings
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import podserver
from llama_operator import api
from llama_operator.operations import capacity
from llama_operator.planning import engine_profiles, gpus

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENGINES = ROOT / ".cache" / "engines"
PROFILES = engine_profiles.profiles("vllm")
VERSIONS = sorted(
    {version for profile in PROFILES for version in profile.verifiedWith},
    key=lambda version: engine_profiles.parse_version(version) or (0, 0, 0),
)
# The release tests/fixtures/metrics/vllm.prom is written after (its header says so).
FIXTURE_VERSION = "0.34.0"

ARG_UTILS = "vllm/engine/arg_utils.py"
FRONTEND_ARGS = "vllm/entrypoints/**/cli_args.py"
ENVS = "vllm/envs.py"
LOGGERS = "vllm/v1/metrics/loggers.py"
FINISH_REASONS = "vllm/v1/engine/__init__.py"
QUANTIZATION = "vllm/model_executor/layers/quantization/__init__.py"
CACHE_CONFIG = "vllm/config/cache.py"
# log_metrics_info's ``type`` -> the config class whose metrics_info() labels the info
# gauge: log_engine_initialized calls log_metrics_info("cache_config",
# self.vllm_config.cache_config) (loggers.py).
INFO_CONFIGS = {"cache_config": (CACHE_CONFIG, "CacheConfig")}

# outOfMemoryLogs patterns that are not vLLM's words (engines.yaml says whose), mapped to
# the name vLLM's source must refer to instead, if any. Every other pattern must occur in
# vLLM's own string literals.
# - "CUDA out of memory. Tried to allocate": PyTorch's caching allocator
#   (c10/cuda/CUDACachingAllocator.cpp), raised as torch.OutOfMemoryError, whose class
#   name the traceback prints. vLLM catches it (0.24.0: `except torch.cuda.OutOfMemoryError`
#   in vllm/v1/worker/gpu_model_runner.py; 0.34.0: vllm/renderers/embed_utils.py and
#   others), so its source refers to OutOfMemoryError.
# - "CUDA error: out of memory": PyTorch's C10_CUDA_CHECK (c10/cuda/CUDAException.h)
#   around a CUDA call outside the caching allocator; nothing of vLLM's to check.
FOREIGN_OOM_PATTERNS: dict[str, str | None] = {
    "cuda out of memory": "OutOfMemoryError",
    "outofmemoryerror": "OutOfMemoryError",
    "cuda error: out of memory": None,
}


def source_root(version: str) -> pathlib.Path:
    """``.cache/engines/vllm-V``, or the test fails saying how to fetch it."""
    root = ENGINES / f"vllm-{version}"
    if not (root / ".complete").is_file():
        pytest.fail(
            f"no complete source of vLLM {version} in {root.relative_to(ROOT)}: "
            f"run `make setup` (hack/get_engine_sources.py) to fetch vLLM {version}'s source",
            pytrace=False,
        )
    return root


@functools.cache
def parse(version: str, relpath: str) -> ast.Module:
    """One file of vLLM ``version``, parsed (once)."""
    path = source_root(version) / relpath
    if not path.is_file():
        pytest.fail(f"vLLM {version}: {relpath} does not exist", pytrace=False)
    with warnings.catch_warnings():
        # vLLM has regex strings with invalid escapes: a SyntaxWarning (3.12) or
        # DeprecationWarning (3.11) at parse, an error under this suite's filterwarnings.
        warnings.simplefilter("ignore")
        return ast.parse(path.read_bytes(), filename=str(path))


def files(version: str, pattern: str = "vllm/**/*.py") -> list[str]:
    """The relative paths of vLLM ``version``'s files matching ``pattern``, sorted."""
    root = source_root(version)
    return sorted(str(path.relative_to(root)) for path in root.glob(pattern))


@functools.cache
def files_matching(version: str, needle: str, regex: str | None = None) -> tuple[str, ...]:
    """The files whose text holds ``needle`` and ``regex`` (case-insensitively): the only
    ones worth parsing for them."""
    root, needle = source_root(version), needle.lower()
    compiled = re.compile(regex or re.escape(needle), re.IGNORECASE)
    found = []
    for relpath in files(version):
        text = (root / relpath).read_text(encoding="utf-8", errors="replace")
        if needle in text.lower() and compiled.search(text):
            found.append(relpath)
    return tuple(found)


def module_value(module: ast.Module, name: str) -> ast.expr | None:
    """The value a module-level statement assigns to ``name`` (the last one), or None."""
    value = None
    for statement in module.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets = [statement.target]
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            value = statement.value
    return value


def module_constant(version: str, relpath: str, name: str) -> ast.expr:
    value = module_value(parse(version, relpath), name)
    if value is None:
        pytest.fail(f"vLLM {version}: {relpath} assigns no {name}", pytrace=False)
    return value


def profile_of(version: str) -> engine_profiles.Profile:
    """The profile whose ``verifiedWith`` lists ``version``; it must be the one chosen."""
    listing = [profile for profile in PROFILES if version in profile.verifiedWith]
    assert len(listing) == 1, f"vLLM {version} is listed by {len(listing)} profiles"
    chosen = engine_profiles.get("vllm", version)
    assert chosen == listing[0], (
        f"vLLM {version} is listed by the profile since {listing[0].since}, but "
        f"engine_profiles.get picks the one since {chosen.since}"
    )
    return chosen


# --- flags -------------------------------------------------------------------------------


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def dataclass_fields(cls: ast.ClassDef) -> set[str]:
    """The fields a dataclass body declares (annotated names, ClassVars excepted)."""
    return {
        statement.target.id
        for statement in cls.body
        if isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and "ClassVar" not in ast.unparse(statement.annotation)
    }


def classes(module: ast.Module) -> Iterator[ast.ClassDef]:
    return (node for node in module.body if isinstance(node, ast.ClassDef))


def as_flag(field: str) -> str:
    return "--" + field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class ServeFlags:
    """The flags of ``vllm serve`` at one release, by where they come from."""

    frontend: dict[str, str]  # flag -> file: the frontend args fields, make_arg_parser's own
    engine: frozenset[str]  # fields of EngineArgs (arg_utils.py) ...
    registered: frozenset[str]  # ... and the flags arg_utils.py passes to add_argument

    def source(self, flag: str) -> str | None:
        """Where ``flag`` is defined, or None when it is no flag of ``vllm serve``."""
        if flag in self.frontend:
            return self.frontend[flag]
        return ARG_UTILS if flag in self.engine and flag in self.registered else None

    def why_not(self, flag: str) -> str:
        if flag in self.engine:
            return f"{flag} is a field of EngineArgs but {ARG_UTILS} registers no such flag"
        return (
            f"{flag} is neither a field of EngineArgs ({ARG_UTILS}) nor of the frontend "
            f"args ({', '.join(sorted(set(self.frontend.values())))})"
        )


def added_flags(module: ast.Module) -> frozenset[str]:
    """The ``--flags`` a module spells out in ``add_argument(...)`` calls."""
    return frozenset(
        argument.value
        for node in ast.walk(module)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for argument in node.args
        if isinstance(argument, ast.Constant)
        and isinstance(argument.value, str)
        and argument.value.startswith("--")
    )


@functools.cache
def serve_flags(version: str) -> ServeFlags:
    # The frontend args (vllm/entrypoints/openai/cli_args.py in 0.24.0,
    # vllm/entrypoints/common/cli_args.py in 0.34.0) are @config dataclasses
    # (BaseFrontendArgs, FrontendArgs) whose add_cli_args registers every field as
    # f"--{key.replace('_', '-')}"; make_arg_parser there then calls
    # AsyncEngineArgs.add_cli_args, which registers EngineArgs' fields one by one
    # (`model_group.add_argument("--revision", **model_kwargs["revision"])`,
    # vllm/engine/arg_utils.py, 0.24.0 and 0.34.0). make_arg_parser also adds a few flags
    # by hand (--headless, --api-server-count, ...), which count too.
    frontend: dict[str, str] = {}
    for relpath in files(version, FRONTEND_ARGS):
        module = parse(version, relpath)
        for cls in classes(module):
            if {"dataclass", "config"} & {_decorator_name(d) for d in cls.decorator_list}:
                frontend.update(dict.fromkeys(map(as_flag, dataclass_fields(cls)), relpath))
        frontend.update(dict.fromkeys(added_flags(module), relpath))
    if not frontend:
        pytest.fail(f"vLLM {version}: no dataclass in {FRONTEND_ARGS}", pytrace=False)
    module = parse(version, ARG_UTILS)
    engine = {
        as_flag(field)
        for cls in classes(module)
        if cls.name in {"EngineArgs", "AsyncEngineArgs"}
        for field in dataclass_fields(cls)
    }
    if not engine:
        pytest.fail(f"vLLM {version}: no class EngineArgs in {ARG_UTILS}", pytrace=False)
    return ServeFlags(frontend, frozenset(engine), added_flags(module))


@pytest.mark.parametrize("version", VERSIONS)
def test_profile_listing_a_version_is_the_one_chosen_for_it(version: str) -> None:
    profile_of(version)


@pytest.mark.parametrize("version", VERSIONS)
def test_flags_are_flags_of_vllm_serve(version: str) -> None:
    flags = serve_flags(version)
    wrong = [
        f"flags.{setting} {flags.why_not(flag)}"
        for setting, flag in profile_of(version).flags.items()
        if flags.source(flag) is None
    ]
    assert not wrong, f"vLLM {version}: " + "; ".join(wrong)


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_flags_are_flags_of_vllm_serve(version: str) -> None:
    # --api-key: FrontendArgs.api_key; --hf-token: EngineArgs.hf_token, registered with
    # model_group.add_argument("--hf-token", ...) (0.24.0 through 0.34.0).
    flags = serve_flags(version)
    wrong = [
        flags.why_not(flag) for flag in profile_of(version).secretFlags if not flags.source(flag)
    ]
    assert not wrong, f"vLLM {version}: secretFlags: " + "; ".join(wrong)


def option_groups(module: ast.Module) -> list[frozenset[str]]:
    """The option strings of each ``add_argument(...)`` call that spells them out."""
    groups = []
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            options = frozenset(
                argument.value
                for argument in node.args
                if isinstance(argument, ast.Constant)
                and isinstance(argument.value, str)
                and argument.value.startswith("-")
            )
            if options:
                groups.append(options)
    return groups


@pytest.mark.parametrize("version", VERSIONS)
def test_flag_aliases_are_other_names_of_the_planned_flag(version: str) -> None:
    # engines.yaml flagAliases: `add_argument("--tensor-parallel-size", "-tp", ...)` and
    # `add_argument("--quantization", "-q", ...)`; --model is EngineArgs.model.
    profile = profile_of(version)
    groups = option_groups(parse(version, ARG_UTILS))
    wrong = []
    for setting, aliases in profile.flagAliases.items():
        for alias in aliases:
            if setting == "model":
                if serve_flags(version).source(alias) is None:
                    wrong.append(f"{alias}: {serve_flags(version).why_not(alias)}")
            elif not any({alias, profile.flags[setting]} <= group for group in groups):
                wrong.append(f"{alias} is not registered with {profile.flags[setting]}")
    assert not wrong, f"vLLM {version}: flagAliases: " + "; ".join(wrong)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_prefix_argparse_expands_to_a_secret_flag_is_refused(version: str) -> None:
    """argparse (allow_abbrev, left on by vLLM) takes a prefix only one flag starts with
    as that flag, and FlexibleArgumentParser reads "_" as "-": api.SECRET_FLAG_PATTERN
    must refuse every such spelling of a secret flag, and no other flag of `vllm serve`."""
    flags = serve_flags(version)
    known = set(flags.frontend) | set(flags.registered)
    secret = set(profile_of(version).secretFlags)
    missed = []
    for flag in sorted(secret):
        for end in range(3, len(flag) + 1):
            prefix = flag[:end]
            if [other for other in known if other.startswith(prefix)] != [flag]:
                continue  # ambiguous (or no flag): argparse refuses it itself
            for spelled in (prefix, "--" + prefix[2:].replace("-", "_")):
                for argument in (spelled, f"{spelled}=x"):
                    if not re.match(api.SECRET_FLAG_PATTERN, argument):
                        missed.append(argument)
    assert not missed, f"vLLM {version}: argparse reads these as a secret flag: {missed}"
    refused = [f for f in sorted(known - secret) if re.match(api.SECRET_FLAG_PATTERN, f)]
    assert not refused, f"vLLM {version}: flags refused though they carry no secret: {refused}"


# --- environment -------------------------------------------------------------------------


@functools.cache
def environment_variables(version: str) -> frozenset[str]:
    """The keys of ``environment_variables`` in vllm/envs.py: every variable vLLM reads."""
    value = module_constant(version, ENVS, "environment_variables")
    assert isinstance(value, ast.Dict), f"vLLM {version}: {ENVS}: environment_variables"
    return frozenset(
        key.value
        for key in value.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_environment_variables_are_vllms(version: str) -> None:
    profile = profile_of(version)
    wanted = [profile.apiKeyEnv, *(key for key in profile.env if key.startswith("VLLM_"))]
    known = environment_variables(version)
    missing = [name for name in wanted if name not in known]
    assert not missing, f"vLLM {version}: not a key of environment_variables in {ENVS}: {missing}"


def calls_getuser(module: ast.Module) -> bool:
    """Whether the module calls ``getpass.getuser()`` or a ``getuser`` from getpass."""
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "getpass"
        and any(alias.name == "getuser" for alias in node.names)
        for node in ast.walk(module)
    )
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "getuser"
            and isinstance(func.value, ast.Name)
            and func.value.id == "getpass"
        ):
            return True
        if imported and isinstance(func, ast.Name) and func.id == "getuser":
            return True
    return False


@pytest.mark.parametrize("version", VERSIONS)
def test_user_env_is_for_getpass_getuser(version: str) -> None:
    # USER / LOGNAME are not vLLM's variables: Python's getpass.getuser() reads them
    # (LOGNAME, USER, LNAME, USERNAME, then the passwd entry, which a non-root UID of the
    # image lacks: the getpass module's documentation). engines.yaml sets them because
    # torch's inductor calls getuser() at import (torch/_inductor/runtime/
    # cache_dir_utils.py, outside vLLM's source) and because vLLM calls it too; this
    # checks the latter: some file of vLLM calls getpass.getuser() (vllm/config/vllm.py
    # in 0.24.0 through 0.34.0; also vllm/vllm_flash_attn/cute/cache_utils.py in 0.34.0).
    profile = profile_of(version)
    # The pods run as a UID the image has no passwd entry for: the name must come from env.
    assert {"USER", "LOGNAME"} <= profile.env.keys(), f"vLLM {version}: USER/LOGNAME unset"
    callers = [
        relpath
        for relpath in files_matching(version, "getuser")
        if calls_getuser(parse(version, relpath))
    ]
    assert callers, (
        f"vLLM {version}: env sets USER/LOGNAME for getpass.getuser(), "
        "but no file under vllm/ calls it"
    )


# --- metrics -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricDef:
    """One ``self._<kind>_cls(name="vllm:...", ...)`` call in loggers.py."""

    name: str
    kind: str | None  # counter, gauge, histogram; None: not told by the callee
    documentation: str | None  # None: not a plain string literal
    labelnames: tuple[str, ...] | None  # None: not read from the source
    label_constants: frozenset[str]  # every string in the labelnames expression
    buckets: ast.expr | None
    line: int


def _assignments(module: ast.Module) -> dict[str, list[ast.expr]]:
    """Every single-name assignment in the module, in any scope, by name."""
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                found.setdefault(target.id, []).append(node.value)
        elif (
            isinstance(node, ast.AnnAssign)
            and node.value is not None
            and isinstance(node.target, ast.Name)
        ):
            found.setdefault(node.target.id, []).append(node.value)
    return found


def strings(node: ast.expr, assigned: dict[str, list[ast.expr]]) -> tuple[str, ...] | None:
    """The list of strings an expression builds from literals, ``+`` and names, or None."""
    if isinstance(node, ast.List | ast.Tuple):
        items = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(items) == len(node.elts) and all(isinstance(i, str) for i in items):
            return tuple(str(i) for i in items)
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = strings(node.left, assigned), strings(node.right, assigned)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        values = {strings(value, assigned) for value in assigned.get(node.id, [])}
        return values.pop() if len(values) == 1 else None
    return None


@functools.cache
def metric_defs(version: str) -> dict[str, tuple[MetricDef, ...]]:
    """The metrics loggers.py creates, by their ``name=`` (counters without ``_total``)."""
    module = parse(version, LOGGERS)
    assigned = _assignments(module)
    found: dict[str, list[MetricDef]] = {}
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        name = keywords.get("name")
        if not (isinstance(name, ast.Constant) and str(name.value).startswith("vllm:")):
            continue
        callee = ast.unparse(node.func).lower()
        kind = next((k for k in ("counter", "gauge", "histogram") if k in callee), None)
        doc = keywords.get("documentation")
        labels = keywords.get("labelnames")
        found.setdefault(str(name.value), []).append(
            MetricDef(
                name=str(name.value),
                kind=kind,
                documentation=(
                    doc.value
                    if isinstance(doc, ast.Constant) and isinstance(doc.value, str)
                    else None
                ),
                labelnames=None if labels is None else strings(labels, assigned),
                label_constants=frozenset(
                    n.value
                    for n in ast.walk(labels or ast.List(elts=[]))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ),
                buckets=keywords.get("buckets"),
                line=node.lineno,
            )
        )
    if not found:
        pytest.fail(f'vLLM {version}: no name="vllm:..." metric in {LOGGERS}', pytrace=False)
    for info in info_metric_defs(version):
        found.setdefault(info.name, []).append(info)
    return {name: tuple(defs) for name, defs in found.items()}


@functools.cache
def config_fields(version: str, relpath: str, cls: str) -> tuple[str, ...]:
    """The fields of a vLLM config class (``dataclass_fields``: private and init=False ones
    included, as all are in its instances' __dict__), sorted."""
    for node in classes(parse(version, relpath)):
        if node.name == cls:
            return tuple(sorted(dataclass_fields(node)))
    pytest.fail(f"vLLM {version}: {relpath} defines no class {cls}", pytrace=False)


def info_metric_defs(version: str) -> list[MetricDef]:
    """The info gauges log_metrics_info makes: per ``if type == "...":`` branch, the name=
    and documentation= it assigns, labelled with the config's metrics_info() keys (its
    fields) plus "engine"."""
    found = []
    for function in ast.walk(parse(version, LOGGERS)):
        if not (isinstance(function, ast.FunctionDef) and function.name == "log_metrics_info"):
            continue
        source = ast.unparse(function)
        assert "metrics_info['engine']" in source, f"vLLM {version}: {source}"
        for branch in ast.walk(function):
            if not (isinstance(branch, ast.If) and isinstance(branch.test, ast.Compare)):
                continue
            (kind,) = branch.test.comparators
            if not (isinstance(kind, ast.Constant) and kind.value in INFO_CONFIGS):
                continue
            assigned = {
                target.id: statement.value.value
                for statement in branch.body
                if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                for target in statement.targets
                if isinstance(target, ast.Name)
            }
            relpath, cls = INFO_CONFIGS[str(kind.value)]
            labels = (*config_fields(version, relpath, cls), "engine")
            found.append(
                MetricDef(
                    name=str(assigned["name"]),
                    kind="gauge",
                    documentation=str(assigned["documentation"]),
                    labelnames=labels,
                    label_constants=frozenset(labels),
                    buckets=None,
                    line=branch.lineno,
                )
            )
    return found


def find_metric(version: str, exposed: str) -> tuple[MetricDef, ...]:
    """The definitions of a metric by its name on the page (a counter's ends in _total)."""
    defs = metric_defs(version)
    if exposed in defs:
        return defs[exposed]
    # prometheus_client exposes a Counter named X as X_total.
    base = exposed.removesuffix("_total")
    if base != exposed:
        return tuple(d for d in defs.get(base, ()) if d.kind == "counter")
    return ()


@pytest.mark.parametrize("version", VERSIONS)
def test_current_metric_names_are_defined(version: str) -> None:
    # Only the first name per signal is the current one; later ones are fallbacks for
    # older pods and need not exist at this release.
    missing = [
        f"{signal}: {names[0]}"
        for signal, names in profile_of(version).metrics.items()
        if names and not find_metric(version, names[0])
    ]
    assert not missing, f"vLLM {version}: no such metric created in {LOGGERS}: {missing}"


@pytest.mark.parametrize("version", VERSIONS)
def test_kv_capacity_labels_are_cache_config_fields(version: str) -> None:
    # capacity.py reads the KV cache an engine allocated from these labels of
    # vllm:cache_config_info, in every release the profiles name.
    (metric,) = find_metric(version, capacity.metric_names("vllm", version)[0])
    labels = set(metric.labelnames or ())
    wanted = {capacity.TOKENS_LABEL, capacity.BLOCKS_LABEL, capacity.BLOCK_SIZE_LABEL}
    assert wanted <= labels, f"vLLM {version}: CacheConfig lacks {sorted(wanted - labels)}"
    # metrics_info() is every field as str(): what parse() reads back with int().
    (method,) = (
        node
        for node in ast.walk(parse(version, CACHE_CONFIG))
        if isinstance(node, ast.FunctionDef) and node.name == "metrics_info"
    )
    assert "str(value) for key, value in self.__dict__.items()" in ast.unparse(method)


@pytest.mark.parametrize("version", VERSIONS)
def test_kv_cache_size_tokens_is_the_logged_capacity(version: str) -> None:
    # Plan.kvCacheTokens promises "GPU KV cache size: N tokens"; the label carries that N:
    # the same get_kv_cache_capacity result is logged and stored in the field.
    text = (source_root(version) / "vllm/v1/core/kv_cache_utils.py").read_text(encoding="utf-8")
    assert "KV cache size: %s tokens" in text
    assigned = [
        relpath
        for relpath in files_matching(version, "kv_cache_size_tokens = num_tokens")
        if "get_kv_cache_capacity" in (source_root(version) / relpath).read_text(encoding="utf-8")
    ]
    assert assigned, f"vLLM {version}: kv_cache_size_tokens is not get_kv_cache_capacity's"


# --- outcomes ----------------------------------------------------------------------------


@functools.cache
def finish_reasons(version: str) -> frozenset[str]:
    value = module_constant(version, FINISH_REASONS, "FINISH_REASON_STRINGS")
    reasons = ast.literal_eval(value)
    assert isinstance(reasons, tuple | list), f"vLLM {version}: FINISH_REASON_STRINGS"
    return frozenset(str(reason) for reason in reasons)


@pytest.mark.parametrize("version", VERSIONS)
def test_outcomes_are_the_finish_reasons(version: str) -> None:
    outcomes = profile_of(version).outcomes
    source = finish_reasons(version)
    assert outcomes.known == source, (
        f"vLLM {version}: FINISH_REASON_STRINGS in {FINISH_REASONS} is {sorted(source)}; "
        f"outcomes lack {sorted(source - outcomes.known)}, "
        f"and name {sorted(outcomes.known - source)} that it lacks"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_finished_counter_carries_the_outcome_label(version: str) -> None:
    profile = profile_of(version)
    (name, *_) = profile.metrics["finished"]
    defs = find_metric(version, name)
    assert defs, f"vLLM {version}: {LOGGERS} creates no metric {name}"
    label = profile.outcomes.label
    without = [
        f"line {d.line}: labelnames {d.labelnames or sorted(d.label_constants)}"
        for d in defs
        if label not in (d.labelnames or d.label_constants)
    ]
    assert not without, (
        f"vLLM {version}: {LOGGERS} creates {name} without the label {label!r}: {without}"
    )


# --- quantization ------------------------------------------------------------------------


@functools.cache
def quantization_methods(version: str) -> frozenset[str]:
    """The members of ``QuantizationMethods = Literal[...]``: what --quantization takes."""
    value = module_constant(version, QUANTIZATION, "QuantizationMethods")
    assert isinstance(value, ast.Subscript), f"vLLM {version}: {QUANTIZATION}"
    members = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
    return frozenset(
        m.value for m in members if isinstance(m, ast.Constant) and isinstance(m.value, str)
    )


def quantization_flags(profile: engine_profiles.Profile) -> dict[str, str]:
    """flag value -> the planned quantization it serves, for those with a flag."""
    return {s.flag: q for q, s in profile.quantizations.items() if s.flag is not None}


@pytest.mark.parametrize("version", VERSIONS)
def test_quantization_flags_are_methods(version: str) -> None:
    methods = quantization_methods(version)
    missing = [
        f"{planned}: --quantization {flag}"
        for flag, planned in quantization_flags(profile_of(version)).items()
        if flag not in methods
    ]
    assert not missing, f"vLLM {version}: not in QuantizationMethods ({QUANTIZATION}): {missing}"


@pytest.mark.parametrize(
    "version",
    [version for version in VERSIONS if PROFILES.index(profile_of(version)) > 0],
)
def test_quantizations_a_profile_dropped_are_gone(version: str) -> None:
    # A profile that stops serving a quantization its predecessor served says vLLM
    # dropped the method (bitsandbytes: in 0.27.1's QuantizationMethods, not 0.28.0's).
    # The first profile has no predecessor, so its versions are not parametrized here.
    profile = profile_of(version)
    index = PROFILES.index(profile)
    dropped = quantization_flags(PROFILES[index - 1]).keys() - quantization_flags(profile).keys()
    still = sorted(dropped & quantization_methods(version))
    assert not still, (
        f"vLLM {version}: the profile since {profile.since} drops {still}, but they are "
        f"still in QuantizationMethods ({QUANTIZATION})"
    )


# --- out-of-memory log lines -------------------------------------------------------------


def _string_parts(node: ast.expr) -> str | None:
    """The text a string expression holds: literals joined, each formatted value a gap."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_string_parts(v) or "\0" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string_parts(node.left), _string_parts(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def string_literals(module: ast.Module) -> Iterator[str]:
    """Every string the module spells, adjacent pieces joined, lower-case, spaces collapsed."""
    for node in ast.walk(module):
        if isinstance(node, ast.expr) and (text := _string_parts(node)) is not None:
            yield normalized(text)


def literal_regex(pattern: str) -> str:
    """A regex for ``pattern``'s words in source text, where a string literal may be split
    between them (``"... KV cache "`` newline ``"memory"``, or an ``f"`` piece)."""
    gap = r"""(?:\s|["']|\b[rbuf]{1,2}["'])+"""
    return gap.join(re.escape(word) for word in pattern.split())


@functools.cache
def files_saying(version: str, pattern: str) -> tuple[str, ...]:
    """The files of vLLM ``version`` with a string literal containing ``pattern``."""
    # Only files the regex finds are parsed (a literal split inside a word would be
    # missed, and fail the test: never a false pass).
    return tuple(
        relpath
        for relpath in files_matching(
            version, max(pattern.split(), key=len), literal_regex(pattern)
        )
        if any(pattern in text for text in string_literals(parse(version, relpath)))
    )


def refers_to(module: ast.Module, identifier: str) -> bool:
    return any(
        (isinstance(node, ast.Name) and node.id == identifier)
        or (isinstance(node, ast.Attribute) and node.attr == identifier)
        for node in ast.walk(module)
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_out_of_memory_log_lines_are_vllms(version: str) -> None:
    patterns = [p for p in profile_of(version).outOfMemoryLogs if p not in FOREIGN_OOM_PATTERNS]
    missing = [p for p in patterns if not files_saying(version, normalized(p))]
    assert not missing, (
        f"vLLM {version}: no string literal under vllm/ contains (case-insensitively) {missing}"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_vllm_meets_the_foreign_out_of_memory_errors(version: str) -> None:
    wanted = {
        identifier
        for pattern in profile_of(version).outOfMemoryLogs
        if (identifier := FOREIGN_OOM_PATTERNS.get(pattern))
    }
    # Every profile watches for PyTorch's out-of-memory exception, whatever vLLM prints.
    assert wanted, f"vLLM {version}: no PyTorch out-of-memory pattern in outOfMemoryLogs"
    missing = [
        identifier
        for identifier in sorted(wanted)
        if not any(
            refers_to(parse(version, relpath), identifier)
            for relpath in files_matching(version, identifier)
        )
    ]
    assert not missing, f"vLLM {version}: no file under vllm/ refers to {missing}"


# --- the metrics page the fake pods serve ------------------------------------------------


def histogram_family_buckets(version: str, relpath: str, family: str) -> tuple[float, ...]:
    """The default bounds ``histogram_buckets(family)`` returns (vllm/v1/metrics/buckets.py
    in 0.34.0): the entry for ``family`` of the module-level dict the function reads."""
    module = parse(version, relpath)
    function = next(
        (
            n
            for n in module.body
            if isinstance(n, ast.FunctionDef) and n.name == "histogram_buckets"
        ),
        None,
    )
    assert function is not None, f"vLLM {version}: {relpath} defines no histogram_buckets"
    read = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    # _STATIC_FAMILY_DEFAULTS (0.34.0): the module-level dicts the function reads.
    for name in sorted(read):
        value = module_value(module, name)
        if not isinstance(value, ast.Dict):
            continue
        for key, entry in zip(value.keys, value.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == family:
                # "time_to_first_token": TIME_TO_FIRST_TOKEN_BUCKETS (0.34.0)
                bounds = (
                    module_constant(version, relpath, entry.id)
                    if isinstance(entry, ast.Name)
                    else entry
                )
                return tuple(float(bound) for bound in ast.literal_eval(bounds))
    pytest.fail(f"vLLM {version}: {relpath}: no default buckets for {family!r}", pytrace=False)


def bucket_bounds(version: str, metric: MetricDef) -> tuple[float, ...]:
    """The default bucket bounds loggers.py gives a histogram, read from the source."""
    module = parse(version, LOGGERS)
    node = metric.buckets
    assert node is not None, f"vLLM {version}: {LOGGERS}:{metric.line} passes no buckets"
    if isinstance(node, ast.Name):
        (node,) = _assignments(module)[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        return tuple(float(bound) for bound in ast.literal_eval(node))
    # time_to_first_token_buckets = histogram_buckets("time_to_first_token", ...) (0.34.0)
    assert isinstance(node, ast.Call), ast.unparse(node)
    assert ast.unparse(node.func) == "histogram_buckets", ast.unparse(node)
    family = node.args[0]
    assert isinstance(family, ast.Constant), ast.unparse(node)
    assert isinstance(family.value, str), ast.unparse(node)
    (origin,) = (
        n.module
        for n in module.body
        if isinstance(n, ast.ImportFrom) and any(a.name == "histogram_buckets" for a in n.names)
    )
    assert origin is not None
    return histogram_family_buckets(version, origin.replace(".", "/") + ".py", family.value)


def fixture_page() -> str:
    """tests/fixtures/metrics/vllm.prom as a fake pod serves it, numbers filled in."""
    return podserver.FakePod("vllm", waiting=2, running=3).text()


def test_fixture_version_is_verified() -> None:
    assert FIXTURE_VERSION in VERSIONS, f"vLLM {FIXTURE_VERSION} is in no verifiedWith"
    header = (podserver.FIXTURES / "vllm.prom").read_text(encoding="utf-8").splitlines()[0]
    assert f"vLLM {FIXTURE_VERSION}" in header, header


def test_fixture_families_are_vllms() -> None:
    version = FIXTURE_VERSION
    wrong = []
    for family in text_string_to_metric_families(fixture_page()):
        exposed = family.name + ("_total" if family.type == "counter" else "")
        defs = [d for d in find_metric(version, exposed) if d.kind == family.type]
        if not defs:
            wrong.append(f"{exposed}: no {family.type} of that name")
            continue
        (metric, *_) = defs
        if metric.documentation != family.documentation:
            wrong.append(
                f"{exposed}: HELP {family.documentation!r}, source {metric.documentation!r}"
            )
        labels = set(metric.labelnames or ())
        for sample in family.samples:
            got = set(sample.labels) - ({"le"} if sample.name.endswith("_bucket") else set())
            if got != labels:
                wrong.append(f"{sample.name}: labels {sorted(got)}, source {sorted(labels)}")
    assert not wrong, f"tests/fixtures/metrics/vllm.prom vs vLLM {version}'s {LOGGERS}: {wrong}"


def test_fixture_labels_are_in_exposition_order() -> None:
    # prometheus_client, which serves vLLM's /metrics (make_asgi_app,
    # vllm/entrypoints/serve/instrumentator/metrics.py, 0.34.0), writes a sample's labels
    # sorted by name, whatever the order of labelnames.
    unsorted = []
    for line in fixture_page().splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        names = re.findall(r'(\w+)="', line.split("{", 1)[1].rsplit("}", 1)[0])
        if names != sorted(names):
            unsorted.append(line)
    assert not unsorted, unsorted


def test_fixture_has_a_series_per_finish_reason() -> None:
    (name, *_) = profile_of(FIXTURE_VERSION).metrics["finished"]
    label = profile_of(FIXTURE_VERSION).outcomes.label
    (family,) = (
        f
        for f in text_string_to_metric_families(fixture_page())
        if f.name == name.removesuffix("_total")
    )
    reasons = {sample.labels[label] for sample in family.samples}
    assert reasons == finish_reasons(FIXTURE_VERSION), (
        f"tests/fixtures/metrics/vllm.prom has {name} series for {sorted(reasons)}; "
        f"FINISH_REASON_STRINGS ({FINISH_REASONS}, {FIXTURE_VERSION}) is "
        f"{sorted(finish_reasons(FIXTURE_VERSION))}"
    )


@pytest.mark.parametrize(
    ("family", "bounds"),
    [
        ("vllm:time_to_first_token_seconds", podserver.VLLM_TTFT_BOUNDS),
        ("vllm:e2e_request_latency_seconds", podserver.VLLM_LATENCY_BOUNDS),
    ],
)
def test_podserver_bucket_bounds_are_vllms(family: str, bounds: tuple[float, ...]) -> None:
    (metric, *_) = metric_defs(FIXTURE_VERSION)[family]
    source = bucket_bounds(FIXTURE_VERSION, metric)
    assert bounds == source, (
        f"tests/podserver.py's bounds for {family} differ from vLLM {FIXTURE_VERSION}'s "
        f"defaults: {bounds} != {source}"
    )
    page = {
        float(sample.labels["le"])
        for f in text_string_to_metric_families(fixture_page())
        if f.name == family
        for sample in f.samples
        if sample.name.endswith("_bucket")
    }
    assert page == {*source, math.inf}, f"{family}: the page's le bounds {sorted(page)}"


# The memory facts (``memory:`` of the vLLM profile, used by sizing.py): the batch vLLM
# profiles with when not told, the CUDA-graph estimate charged to the budget, the block
# size tokens are rounded to, and the fp8 floor.


@dataclasses.dataclass(frozen=True)
class BatchBranch:
    """One branch of EngineArgs.get_batch_defaults: from ``min_gib`` of device memory,
    not on devices whose name holds one of ``excluded``."""

    min_gib: float
    excluded: tuple[str, ...]
    tokens: int
    sequences: int


def _api_server_value(body: list[ast.stmt], target: str) -> int | None:
    """The OPENAI_API_SERVER entry of the dict assigned to ``target`` in ``body``."""
    for statement in body:
        if not isinstance(statement, ast.Assign | ast.AnnAssign):
            continue
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        if not any(isinstance(t, ast.Name) and t.id == target for t in targets):
            continue
        if isinstance(statement.value, ast.Dict):
            for key, value in zip(statement.value.keys, statement.value.values, strict=True):
                if (
                    isinstance(key, ast.Attribute)
                    and key.attr == "OPENAI_API_SERVER"
                    and isinstance(value, ast.Constant)
                ):
                    return int(value.value)
    return None


def _branch(test: ast.expr | None, body: list[ast.stmt]) -> BatchBranch | None:
    tokens = _api_server_value(body, "default_max_num_batched_tokens")
    sequences = _api_server_value(body, "default_max_num_seqs")
    if tokens is None or sequences is None:
        return None
    text = ast.unparse(test) if test is not None else ""
    found = re.search(r"device_memory >= (\d+) \* GiB_bytes", text)
    excluded = tuple(re.findall(r"'([^']+)' not in device_name", text))
    return BatchBranch(float(found.group(1)) if found else 0.0, excluded, tokens, sequences)


@functools.cache
def batch_branches(version: str) -> tuple[BatchBranch, ...]:
    """The GPU-dependent branches of get_batch_defaults, in the order vLLM tries them."""
    module = parse(version, ARG_UTILS)
    function = next(
        node
        for node in ast.walk(module)
        if isinstance(node, ast.FunctionDef) and node.name == "get_batch_defaults"
    )
    branches: list[BatchBranch] = []
    node: ast.stmt | None = next(
        s for s in function.body if isinstance(s, ast.If) and "GiB_bytes" in ast.unparse(s.test)
    )
    while isinstance(node, ast.If):
        branch = _branch(node.test, node.body)
        if branch is not None:
            branches.append(branch)
        orelse = node.orelse
        if len(orelse) == 1 and isinstance(orelse[0], ast.If):
            node = orelse[0]
        else:
            last = _branch(None, orelse)
            if last is not None:
                branches.append(last)
            node = None
    return tuple(branches)


def vllm_batch(branches: tuple[BatchBranch, ...], product: str, gib: float) -> BatchBranch:
    for branch in branches:
        if gib >= branch.min_gib and not any(name in product.lower() for name in branch.excluded):
            return branch
    return branches[-1]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_planned_batch_is_never_smaller_than_vllms_default(version: str) -> None:
    """On every GPU of the table, the batch the memory model assumes is at least the one
    vLLM profiles with (a larger batch only makes the planned activation peak larger)."""
    branches = batch_branches(version)
    assert len(branches) >= 2, branches
    memory = profile_of(version).memory
    for gpu in gpus.KNOWN.values():
        ours = memory.batch(product=gpu.product, gpu_gib=gpu.memory_gib)
        theirs = vllm_batch(branches, gpu.product, gpu.memory_gib)
        assert ours.tokens >= theirs.tokens, (gpu.product, ours, theirs)
        assert ours.sequences >= theirs.sequences, (gpu.product, ours, theirs)


def test_the_batch_rules_are_the_newest_releases() -> None:
    """From the newest verified release, rule for rule (engines.yaml's batchDefaults)."""
    newest = VERSIONS[-1]
    rules = profile_of(newest).memory.batchDefaults
    assert [
        (rule.minGiB, tuple(p.lower() for p in rule.exceptProducts), rule.tokens, rule.sequences)
        for rule in rules
    ] == [
        (branch.min_gib, branch.excluded, branch.tokens, branch.sequences)
        for branch in batch_branches(newest)
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_graphs_are_charged_to_the_budget_by_default(version: str) -> None:
    """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to "1" (envs.py), and
    determine_available_memory subtracts the estimate (gpu_worker.py)."""
    assert profile_of(version).memory.cudaGraphsInBudget
    envs = (source_root(version) / ENVS).read_text()
    assert re.search(
        r'os\.getenv\(\s*"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS",\s*"1"\s*\)', envs
    ), "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS no longer defaults to 1"
    worker = ast.unparse(parse(version, "vllm/v1/worker/gpu_worker.py"))
    assert "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS" in worker
    assert "requested_memory" in worker


@pytest.mark.parametrize("version", VERSIONS)
def test_tokens_are_rounded_to_a_multiple_of_vllms_block_size(version: str) -> None:
    """CacheConfig.block_size's default divides the block size sizing rounds down to, so
    the planned tokens are never more than whole vLLM blocks hold."""
    module = parse(version, CACHE_CONFIG)
    cache_config = next(c for c in classes(module) if c.name == "CacheConfig")
    defaults = [
        int(node.value.value)
        for node in cache_config.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "block_size"
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, int)
    ]
    if defaults:
        (block,) = defaults
    else:  # block_size: int = Field(default=None, ...), resolved to DEFAULT_BLOCK_SIZE
        text = (source_root(version) / CACHE_CONFIG).read_text()
        found = re.search(r"DEFAULT_BLOCK_SIZE\b[^=\n]*=\s*(\d+)", text)
        assert found, f"no block_size default in {CACHE_CONFIG} of vLLM {version}"
        block = int(found.group(1))
    assert profile_of(version).memory.blockSize % block == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_fp8_is_planned_from_the_capability_vllm_allows(version: str) -> None:
    """Fp8Config.get_min_capability() (model_executor/layers/quantization/fp8.py)."""
    module = parse(version, "vllm/model_executor/layers/quantization/fp8.py")
    fp8 = next(c for c in classes(module) if c.name == "Fp8Config")
    method = next(
        node
        for node in fp8.body
        if isinstance(node, ast.FunctionDef) and node.name == "get_min_capability"
    )
    (statement,) = method.body
    assert isinstance(statement, ast.Return)
    assert isinstance(statement.value, ast.Constant)
    floor = int(statement.value.value) / 10
    assert profile_of(version).quantizations["fp8"].minCapability == floor


# --- LoRA adapters -----------------------------------------------------------------------

LORA_CONFIG = "vllm/config/lora.py"
LORA_UTILS = "vllm/lora/utils.py"


def lora_config_defaults(version: str) -> dict[str, ast.expr | None]:
    """LoRAConfig's field defaults (``max_loras: int = Field(default=1, ge=1)`` counts
    its ``default=``)."""
    module = parse(version, LORA_CONFIG)
    cls = next((c for c in classes(module) if c.name == "LoRAConfig"), None)
    assert cls is not None, f"vLLM {version}: {LORA_CONFIG} has no class LoRAConfig"
    result: dict[str, ast.expr | None] = {}
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            value = statement.value
            if isinstance(value, ast.Call) and _decorator_name(value) == "Field":
                value = next((k.value for k in value.keywords if k.arg == "default"), None)
            result[statement.target.id] = value
    return result


@pytest.mark.parametrize("version", VERSIONS)
def test_lora_flags_are_flags_of_vllm_serve(version: str) -> None:
    lora, flags = profile_of(version).lora, serve_flags(version)
    named = [
        lora.enableFlag,
        lora.modulesFlag,
        lora.maxLorasFlag,
        lora.maxLoraRankFlag,
        lora.maxCpuLorasFlag,
    ]
    wrong = [flags.why_not(flag) for flag in named if flag is None or flags.source(flag) is None]
    assert not wrong, f"vLLM {version}: " + "; ".join(wrong)
    assert lora.modulesEnv is None, "vLLM takes its adapters as flags"


@pytest.mark.parametrize("version", VERSIONS)
def test_lora_defaults_and_allowed_ranks_are_lora_configs(version: str) -> None:
    lora = profile_of(version).lora
    defaults = lora_config_defaults(version)
    assert ast.literal_eval(defaults["max_loras"]) == lora.defaultMaxLoras  # type: ignore[arg-type]
    assert ast.literal_eval(defaults["max_lora_rank"]) == lora.defaultMaxLoraRank  # type: ignore[arg-type]
    # max_cpu_loras None: _validate_lora_config makes it max_loras, so the renderer always
    # sets it explicitly to every adapter.
    assert ast.literal_eval(defaults["max_cpu_loras"]) is None  # type: ignore[arg-type]
    ranks = module_constant(version, LORA_CONFIG, "MaxLoRARanks")
    assert isinstance(ranks, ast.Subscript), f"vLLM {version}: MaxLoRARanks is no Literal"
    allowed = tuple(ast.literal_eval(element) for element in ranks.slice.elts)  # type: ignore[attr-defined]
    assert allowed == lora.allowedRanks


@pytest.mark.parametrize("version", VERSIONS)
def test_lora_modules_take_name_equals_path(version: str) -> None:
    # LoRAParserAction: `if "=" in item and "," not in item:  # Old format: name=path`,
    # then `item.split("=")` (0.24.0 through 0.28.0; one "=" only) or `split("=", 1)`.
    (relpath,) = files_matching(version, "class LoRAParserAction")
    text = (source_root(version) / relpath).read_text(encoding="utf-8")
    assert 'if "=" in item and "," not in item:' in text
    assert re.search(r'name, path = item\.split\("="(, 1)?\)', text)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_hub_id_is_fetched_without_a_revision(version: str) -> None:
    lora = profile_of(version).lora
    module = parse(version, LORA_UTILS)
    function = next(
        (
            node
            for node in ast.walk(module)
            if isinstance(node, ast.FunctionDef) and node.name == "get_adapter_absolute_path"
        ),
        None,
    )
    assert function is not None, f"vLLM {version}: no get_adapter_absolute_path"
    downloads = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "snapshot_download"
    ]
    assert downloads
    assert lora.hubIdAsPath
    keywords = {k.arg for call in downloads for k in call.keywords}
    assert "revision" not in keywords
    assert not lora.hubRevision


# --- LoRA adapters in a running server (lora.runtime, lora.activity) -----------------------

LORA_ROUTER = "vllm/entrypoints/serve/lora/api_router.py"
LORA_PROTOCOL = "vllm/entrypoints/serve/lora/protocol.py"
MODELS_ROUTER = "vllm/entrypoints/openai/models/api_router.py"
MODELS_SERVING = "vllm/entrypoints/openai/models/serving.py"
LORA_REQUEST = "vllm/lora/request.py"


def lora_runtime(version: str) -> engine_profiles.LoraRuntime:
    runtime = profile_of(version).lora.runtime
    assert runtime is not None, f"vLLM {version}: lora.runtime is null"
    return runtime


def lora_activity(version: str) -> engine_profiles.LoraActivity:
    activity = profile_of(version).lora.activity
    assert activity is not None, f"vLLM {version}: lora.activity is null"
    return activity


def function_named(node: ast.AST, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    found = [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    ]
    assert found, f"no function {name}"
    return found[0]


def class_named(module: ast.Module, name: str) -> ast.ClassDef:
    found = [c for c in classes(module) if c.name == name]
    assert found, f"no class {name}"
    return found[0]


def routes(module: ast.Module, method: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """path -> the handler of each ``@router.<method>("<path>", ...)`` in the module."""
    found = {}
    for node in ast.walk(module):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and ast.unparse(decorator.func) == f"router.{method}"
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
            ):
                found[str(decorator.args[0].value)] = node
    return found


def defaults(cls: ast.ClassDef) -> dict[str, ast.expr | None]:
    """A pydantic model's fields and their defaults (None: required)."""
    return {
        statement.target.id: statement.value
        for statement in cls.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_the_runtime_variable_is_vllms_and_its_value_reads_as_true(version: str) -> None:
    # envs.py: "VLLM_ALLOW_RUNTIME_LORA_UPDATING": lambda: (os.environ.get(NAME, "0")
    # .strip().lower() in ("1", "true")), 0.24.0 through 0.34.0.
    runtime = lora_runtime(version)
    value = module_constant(version, ENVS, "environment_variables")
    assert isinstance(value, ast.Dict)
    (reader,) = (
        v
        for k, v in zip(value.keys, value.values, strict=True)
        if isinstance(k, ast.Constant) and k.value == runtime.env
    )
    (get,) = (
        n
        for n in ast.walk(reader)
        if isinstance(n, ast.Call) and ast.unparse(n.func) in {"os.environ.get", "os.getenv"}
    )
    assert [ast.literal_eval(a) for a in get.args] == [runtime.env, "0"], ast.unparse(reader)
    (test,) = (n for n in ast.walk(reader) if isinstance(n, ast.Compare))
    assert isinstance(test.ops[0], ast.In), ast.unparse(reader)
    assert ast.unparse(test.left).endswith(".strip().lower()"), ast.unparse(reader)
    truthy = ast.literal_eval(test.comparators[0])
    assert truthy == ("1", "true"), f"vLLM {version}: {runtime.env} reads {truthy} as true"
    assert runtime.value.strip().lower() in truthy
    assert "0" not in truthy  # off by default


@pytest.mark.parametrize("version", VERSIONS)
def test_the_adapter_endpoints_exist_only_with_the_variable(version: str) -> None:
    runtime = lora_runtime(version)
    module = parse(version, LORA_ROUTER)
    posts = routes(module, "post")
    assert set(posts) == {runtime.loadPath, runtime.unloadPath}, sorted(posts)
    # Each handler validates the body as the request model the client sends.
    assert ast.unparse(posts[runtime.loadPath].args.args[0].annotation or ast.Name("")) == (
        "LoadLoRAAdapterRequest"
    )
    assert ast.unparse(posts[runtime.unloadPath].args.args[0].annotation or ast.Name("")) == (
        "UnloadLoRAAdapterRequest"
    )
    # ... only as JSON (validate_json_request).
    for handler in posts.values():
        (decorator,) = (d for d in handler.decorator_list if "router.post" in ast.unparse(d))
        assert "Depends(validate_json_request)" in ast.unparse(decorator)
    # attach_router returns before anything else when the variable is off (0.34.0 has a
    # docstring first).
    attach = function_named(module, "attach_router")
    body = [
        s
        for s in attach.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    first = body[0]
    assert isinstance(first, ast.If), ast.unparse(first)
    assert ast.unparse(first.test) == f"not envs.{runtime.env}"
    assert any(isinstance(s, ast.Return) for s in first.body)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_adapter_requests_take_the_fields_the_client_sends(version: str) -> None:
    module = parse(version, LORA_PROTOCOL)
    load = defaults(class_named(module, "LoadLoRAAdapterRequest"))
    unload = defaults(class_named(module, "UnloadLoRAAdapterRequest"))
    assert {"lora_name", "lora_path", "load_inplace"} <= load.keys()
    assert load["lora_name"] is None
    assert load["lora_path"] is None
    assert ast.literal_eval(load["load_inplace"]) is False  # type: ignore[arg-type]
    # {"lora_name": ...} alone is a valid unload: every other field has a default.
    assert unload["lora_name"] is None
    assert all(default is not None for field, default in unload.items() if field != "lora_name")
    # And a load's other fields too (is_3d_lora_weight).
    assert all(
        default is not None
        for field, default in load.items()
        if field not in {"lora_name", "lora_path"}
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_a_loaded_name_and_an_unknown_unload_are_refused(version: str) -> None:
    module = parse(version, MODELS_SERVING)
    check_load = ast.unparse(function_named(module, "_check_load_lora_adapter_request"))
    assert "not request.load_inplace and request.lora_name in self.lora_requests" in check_load
    assert "HTTPStatus.BAD_REQUEST" in check_load
    check_unload = ast.unparse(function_named(module, "_check_unload_lora_adapter_request"))
    assert "request.lora_name not in self.lora_requests" in check_unload
    assert "HTTPStatus.NOT_FOUND" in check_unload


@functools.cache
def model_card_file(version: str) -> str:
    """Where ModelCard is (vllm/entrypoints/openai/engine/protocol.py in 0.24.0-0.28.0,
    vllm/entrypoints/serve/engine/protocol.py in 0.34.0)."""
    (relpath,) = files_matching(version, "class ModelCard(")
    return relpath


@pytest.mark.parametrize("version", VERSIONS)
def test_the_models_path_lists_each_adapter_with_its_path_and_parent(version: str) -> None:
    runtime = lora_runtime(version)
    assert runtime.modelsPath in routes(parse(version, MODELS_ROUTER), "get")
    module = parse(version, model_card_file(version))
    card = defaults(class_named(module, "ModelCard"))
    assert {"id", "root", "parent"} <= card.keys()
    assert ast.literal_eval(card["root"]) is None  # type: ignore[arg-type]
    assert ast.literal_eval(card["parent"]) is None  # type: ignore[arg-type]
    error = defaults(class_named(module, "ErrorInfo"))
    assert list(error) == ["message", "type", "param", "code"]
    assert list(defaults(class_named(module, "ErrorResponse"))) == ["error"]
    # OpenAIServingModels.show_available_models: a card per adapter, id its name, root its
    # path (LoRARequest.path is lora_path), parent set; the base model's card has none.
    serving = parse(version, MODELS_SERVING)
    cards = {
        keyword.arg: ast.unparse(keyword.value)
        for function in ast.walk(serving)
        if isinstance(function, ast.AsyncFunctionDef) and function.name == "show_available_models"
        for call in ast.walk(function)
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "ModelCard"
        for keyword in call.keywords
        if "lora" in ast.unparse(call)
    }
    assert cards["id"] == "lora.lora_name"
    assert cards["root"] == "lora.path"
    assert "parent" in cards
    base_cards = [
        call
        for call in ast.walk(class_named(serving, "OpenAIModelRegistry"))
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "ModelCard"
    ]
    assert base_cards
    assert all("parent" not in {k.arg for k in call.keywords} for call in base_cards)
    path = function_named(class_named(parse(version, LORA_REQUEST), "LoRARequest"), "path")
    assert ast.unparse(path.body[-1]) == "return self.lora_path"


@functools.cache
def guard_file(version: str) -> str:
    """Where GUARDED_PREFIX is (0.24.0-0.28.0 vllm/entrypoints/serve/utils/server_utils.py,
    0.34.0 vllm/entrypoints/serve/middleware/authenticate.py)."""
    (relpath,) = files_matching(version, "GUARDED_PREFIX =")
    return relpath


@pytest.mark.parametrize("version", VERSIONS)
def test_the_api_key_guards_the_adapter_paths(version: str) -> None:
    runtime = lora_runtime(version)
    prefixes = ast.literal_eval(module_constant(version, guard_file(version), "GUARDED_PREFIX"))
    assert "/v1" in prefixes
    for path in (runtime.modelsPath, runtime.loadPath, runtime.unloadPath):
        assert path.startswith(tuple(prefixes)) == runtime.guardedByApiKey, path
    middleware = ast.unparse(
        class_named(parse(version, guard_file(version)), "AuthenticationMiddleware")
    )
    assert "scheme.lower() != 'bearer'" in middleware
    # The 401 the fake pods answer.
    assert f"JSONResponse(content={podserver.VLLM_UNAUTHORIZED!r}, status_code=401)" in middleware
    if version == FIXTURE_VERSION:
        assert tuple(prefixes) == podserver.VLLM_GUARDED_PREFIX


@functools.cache
def lora_info_labels(version: str, metric: str) -> tuple[str, ...]:
    """The labelnames of ``metric``, each ``self.labelname_x`` resolved to the string
    loggers.py assigns it."""
    module = parse(version, LOGGERS)
    attributes = {
        ast.unparse(target): node.value.value
        for node in ast.walk(module)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Attribute)
    }
    (call,) = (
        node
        for node in ast.walk(module)
        if isinstance(node, ast.Call)
        and any(
            k.arg == "name" and isinstance(k.value, ast.Constant) and k.value.value == metric
            for k in node.keywords
        )
    )
    assert "gauge" in ast.unparse(call.func).lower(), ast.unparse(call)
    (labelnames,) = (k.value for k in call.keywords if k.arg == "labelnames")
    assert isinstance(labelnames, ast.List), ast.unparse(labelnames)
    return tuple(
        element.value if isinstance(element, ast.Constant) else attributes[ast.unparse(element)]
        for element in labelnames.elts
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_lora_requests_info_carries_the_activity_labels(version: str) -> None:
    activity = lora_activity(version)
    labels = lora_info_labels(version, activity.metric)
    assert labels == (activity.slotsLabel, activity.waitingLabel, activity.runningLabel)
    # Set to the current time, labelled with the adapters comma-joined and max_loras.
    text = ast.unparse(parse(version, LOGGERS))
    assert "self.gauge_lora_info.labels(**lora_info_labels).set_to_current_time()" in text
    for label, value in (
        ("running", "','.join(scheduler_stats.running_lora_adapters.keys())"),
        ("waiting", "','.join(scheduler_stats.waiting_lora_adapters.keys())"),
    ):
        assert f"{label}_lora_adapters = {value}" in text
    assert "self.max_lora = vllm_config.lora_config.max_loras" in text


def test_the_fake_pods_adapter_answers_are_vllms() -> None:
    """tests/podserver.py's texts are string literals of vLLM 0.34.0's serving.py, with
    the adapter's name where vLLM formats one in, and its lora_requests_info page is the
    gauge loggers.py declares."""
    literals = set(string_literals(parse(FIXTURE_VERSION, MODELS_SERVING)))
    pod = podserver.FakePod(runtime_lora=True)
    name = "\0"  # what _string_parts puts for a formatted value
    answers = [
        pod.load({"lora_name": name, "lora_path": "/a"}),
        pod.load({"lora_name": name, "lora_path": "/a"}),  # already loaded
        pod.unload({"lora_name": name}),
        pod.unload({"lora_name": name}),  # unknown now
        pod.load({"lora_name": "", "lora_path": ""}),
        pod.unload({"lora_name": ""}),
    ]
    texts = [a if isinstance(a, str) else a["error"]["message"] for _, a in answers]
    assert [status for status, _ in answers] == [200, 400, 200, 404, 400, 400]
    missing = [text for text in texts if normalized(text) not in literals]
    assert not missing, missing
    pod.served_model = name
    (_, conflict) = pod.load({"lora_name": name, "lora_path": "/a"})
    assert isinstance(conflict, dict)
    assert normalized(conflict["error"]["message"]) in literals
    pod.lora_info = [("a,b", "c", 1.7e9)]
    (family,) = (
        f for f in text_string_to_metric_families(pod.text()) if f.name == podserver.VLLM_LORA_INFO
    )
    (metric,) = (
        node
        for node in ast.walk(parse(FIXTURE_VERSION, LOGGERS))
        if isinstance(node, ast.Call)
        and any(
            k.arg == "name"
            and isinstance(k.value, ast.Constant)
            and k.value.value == podserver.VLLM_LORA_INFO
            for k in node.keywords
        )
    )
    (documentation,) = (k.value for k in metric.keywords if k.arg == "documentation")
    assert isinstance(documentation, ast.Constant)
    assert (family.type, family.documentation) == ("gauge", documentation.value)
    assert [sample.labels for sample in family.samples] == [
        {"max_lora": "1", "running_lora_adapters": "a,b", "waiting_lora_adapters": "c"}
    ]
    assert set(family.samples[0].labels) == set(lora_info_labels(FIXTURE_VERSION, family.name))
