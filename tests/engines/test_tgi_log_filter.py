"""The TGI LOG_LEVEL directive hides the launcher's Args dump (API key included), checked
with a real tracing-subscriber.

What TGI does (huggingface/text-generation-inference, tag v3.3.7):

- launcher/src/main.rs, ``fn main``: LOG_LEVEL "warn"/"info"/"debug" map to fixed
  directives ("info" is ``text_generation_launcher=info,text_generation_router=info``);
  any other value goes to ``EnvFilter::builder().with_default_directive(LevelFilter::INFO
  .into()).parse_lossy(log_level)``; unset is ``EnvFilter::new("info")``. The filter is
  installed with ``fmt().with_env_filter(..).compact()``, then ``tracing::info!("{:#?}",
  args)`` logs the parsed Args, ``api_key`` included, outside any span (target
  ``text_generation_launcher``, the launcher crate).
- Same file: ``download_convert_model`` enters ``span!(Level::INFO, "download")`` and
  ``shard_manager`` (run on a thread of its own) enters ``span!(Level::INFO,
  "shard-manager", rank = rank)``; their own progress and error events are inside them.
  Both forward the Python process's log lines through ``log_lines``, on a thread they
  spawn, which has no current span.
- router/src/logging.rs, ``init_logging``: the router (a separate process; targets
  ``text_generation_router`` and ``text_generation_router_v3``) reads LOG_LEVEL the same
  way.

``tgi_log_filter/`` is our own small program (not TGI's code) that builds the filter the
same way and emits one event of each of those kinds, each with a marker. The tests run
it with the operator's directive, as ``engines.container()`` renders it into a TGI
container (from ``data/engines.yaml``, tgi -> env -> LOG_LEVEL): the planted API key and
the launcher's other INFO events outside spans are gone, while INFO inside "download"
and "shard-manager", WARN and ERROR of the launcher and INFO of the router are kept. The
controls, LOG_LEVEL unset and LOG_LEVEL=info, print the key, so the test can fail. A
known cost is pinned too: INFO lines forwarded from the Python download and shard
processes are dropped (WARN and above are kept). No directive can keep them and drop the
dump: both are INFO events of target ``text_generation_launcher`` outside any span, with
only a message field.

The crates are Debian's (``apt-get install librust-tracing-subscriber-dev
librust-tracing-dev``; bookworm: tracing-subscriber 0.3.16, tracing 0.1.37), built offline
with crates-io replaced by /usr/share/cargo/registry. TGI v3.3.7's Cargo.lock pins
tracing-subscriber 0.3.19 (tracing 0.1.41). Between tokio-rs/tracing's tags
tracing-subscriber-0.3.16 and tracing-subscriber-0.3.19, ``src/filter/env/`` and
``src/filter/directive.rs`` change only in comments, formatting, ``cfg`` gates and the
name of the colour crate's feature for parse warnings, and the CHANGELOG for 0.3.17-0.3.19
lists no change to how EnvFilter matches targets, spans or levels (0.3.17's env-filter
entry is a build fix for newer ``regex``). Debian's patches to 0.3.16 (its debian/patches)
touch colours (ansi_term back for nu-ansi-term), the optional ``valuable`` support and
tests, not the filter. So the span-directive semantics tested here are 0.3.19's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llama_operator import api
from llama_operator.planning import config, engine_profiles
from llama_operator.serving import engines
from plans import make_plan

CRATE = Path(__file__).parent / "tgi_log_filter"
REPO = Path(__file__).resolve().parents[2]
# Under .cache/ (gitignored): the copied crate, its Cargo.lock, the target dir, and an
# empty CARGO_HOME so no user cargo config or registry cache takes part.
BUILD_DIR = REPO / ".cache" / "tgi-log-filter"
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
INSTALL_HINT = (
    "install Debian's vendored crates as root: apt-get install -y "
    "librust-tracing-subscriber-dev librust-tracing-dev (.ci/run does)"
)
CARGO_HINT = "install Rust's cargo (rustup, or apt-get install -y cargo)"

API_KEY = "sk-planted-4f1c9e27d8"

# Kept by the operator's directive.
KEPT = (
    "MARK_DOWNLOAD_INFO",  # INFO inside the "download" span
    "MARK_DOWNLOAD_ERROR",
    "MARK_SHARD_INFO",  # INFO inside the "shard-manager" span, on the shard thread
    "MARK_SHARD_ERROR",
    "MARK_DOWNLOAD_PYTHON_WARN",  # forwarded Python warnings, no span
    "MARK_SHARD_PYTHON_WARN",
    "MARK_LAUNCHER_WARN",  # the launcher outside spans, WARN and ERROR
    "MARK_LAUNCHER_ERROR",
    "MARK_ROUTER_INFO",  # the router and its v3 backend at INFO
    "MARK_ROUTER_SERVER_INFO",
    "MARK_ROUTER_V3_INFO",
)
# Dropped by the operator's directive, besides the key itself.
DROPPED = (
    "MARK_ARGS_DUMP",  # the Args dump
    "MARK_LAUNCHER_INFO",  # other launcher INFO outside spans
    "MARK_DOWNLOAD_DEBUG",  # the spans enable INFO, not DEBUG
    "MARK_OTHER_CRATE_INFO",  # a dependency's INFO: no default directive once any is given
)
# Dropped too, the known cost: INFO lines forwarded from the Python processes.
FORWARDED_INFO = ("MARK_DOWNLOAD_PYTHON_INFO", "MARK_SHARD_PYTHON_INFO")

Run = Callable[[str | None], str]


def operator_directive() -> str:
    """LOG_LEVEL as the operator renders it into a TGI container."""
    spec = api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}})
    plan = make_plan(engine="tgi")
    container = engines.container(
        name="chat", spec=spec, plan=plan, settings=config.OperatorConfig()
    )
    values = [item["value"] for item in container["env"] if item["name"] == "LOG_LEVEL"]
    assert values == [engine_profiles.get("tgi").env["LOG_LEVEL"]], container["env"]
    return str(values[0])


def find_cargo() -> str:
    found = shutil.which("cargo")
    if found is None and (Path.home() / ".cargo" / "bin" / "cargo").exists():
        found = str(Path.home() / ".cargo" / "bin" / "cargo")
    if found is None:
        pytest.fail(f"cargo not found on PATH or in ~/.cargo/bin: {CARGO_HINT}")
    return found


def check_debian_crates() -> None:
    for crate in ("tracing-subscriber-0.3.", "tracing-0.1."):
        if not any(DEBIAN_REGISTRY.glob(f"{crate}*/Cargo.toml")):
            pytest.fail(f"no {crate}* crate in {DEBIAN_REGISTRY}: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def run_launcher() -> Run:
    """Builds tgi_log_filter once; runs it with LOG_LEVEL set (or unset: None)."""
    cargo = find_cargo()
    check_debian_crates()
    source = BUILD_DIR / "crate"
    shutil.rmtree(source, ignore_errors=True)
    (source / "src").mkdir(parents=True)
    shutil.copy2(CRATE / "Cargo.toml", source / "Cargo.toml")
    shutil.copy2(CRATE / "src" / "main.rs", source / "src" / "main.rs")
    cargo_home = BUILD_DIR / "cargo-home"
    cargo_home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_")}
    env["CARGO_HOME"] = str(cargo_home)
    command = [
        cargo,
        "build",
        "--offline",
        "--release",
        "--quiet",
        "--config",
        'source.crates-io.replace-with="debian"',
        "--config",
        f'source.debian.directory="{DEBIAN_REGISTRY}"',
        "--target-dir",
        str(BUILD_DIR / "target"),
    ]
    started = time.monotonic()
    built = subprocess.run(
        command, cwd=source, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if built.returncode != 0:
        pytest.fail(
            f"building {CRATE.name} failed after {time.monotonic() - started:.0f}s "
            f"(missing crates? {INSTALL_HINT}):\n{built.stderr}"
        )
    binary = BUILD_DIR / "target" / "release" / "tgi_log_filter"

    def run(log_level: str | None) -> str:
        run_env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        if log_level is not None:
            run_env["LOG_LEVEL"] = log_level
        result = subprocess.run(
            [str(binary), API_KEY],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # parse_lossy drops a directive it cannot parse with a line on stderr: none may be.
        assert result.stderr == "", f"LOG_LEVEL={log_level!r}: {result.stderr}"
        assert "MARK_LAUNCHER_ERROR" in result.stdout, result.stdout  # it ran and logged
        return result.stdout

    return run


def test_operator_directive_hides_the_args_dump_and_keeps_the_rest(run_launcher: Run) -> None:
    directive = operator_directive()
    out = run_launcher(directive)
    assert API_KEY not in out, f"LOG_LEVEL={directive!r} prints the API key:\n{out}"
    assert [m for m in DROPPED if m in out] == [], out
    assert [m for m in KEPT if m not in out] == [], out
    assert "rank=0" in out  # the shard-manager span's field is kept on its lines


def test_operator_directive_drops_info_forwarded_from_python(run_launcher: Run) -> None:
    # A known cost, not a goal: TGI forwards the Python processes' log lines from threads
    # outside the spans, so their INFO goes with the dump. WARN and above stay (see KEPT).
    out = run_launcher(operator_directive())
    assert [m for m in FORWARDED_INFO if m in out] == [], out


@pytest.mark.parametrize("log_level", [None, "info"], ids=["unset", "info"])
def test_controls_print_the_api_key(run_launcher: Run, log_level: str | None) -> None:
    out = run_launcher(log_level)
    assert f'api_key: Some(\n        "{API_KEY}",\n    )' in out, out
    assert "MARK_ARGS_DUMP" in out
    assert [m for m in (*KEPT, *FORWARDED_INFO) if m not in out] == [], out
