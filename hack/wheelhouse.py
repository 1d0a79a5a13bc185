"""A local wheelhouse, and the Dockerfile's build stage replayed offline from it.

There is no container engine on the development machines or in CI, so the image recipe
is proven by replaying it: ``build_venv`` reads the Dockerfile, copies exactly what the
build stage COPYs into a scratch build context, and runs the build stage's own RUN
commands there, with the image's virtualenv path (``/opt/llama-operator``) swapped for a
local directory. pip gets no network: the commands run with ``PIP_NO_INDEX=1`` and
``PIP_FIND_LINKS`` pointing at a local wheelhouse (environment variables, so the command
lines are the Dockerfile's, character for character), no pip config file, and an HTTP
proxy on a closed loopback port so any request that slipped through would fail.

The wheelhouse is the one input that needs the network, so ``make setup`` builds it:
wheels for the runtime dependencies (``[project].dependencies``, at the versions of
``constraints.txt``), the build backend (``[build-system].requires``) and pip itself
(the build stage upgrades pip first). A fingerprint of those inputs is written last, so
a partial or outdated wheelhouse is told apart from a complete one.

Usage: python hack/wheelhouse.py [DEST_DIR]   (default: .cache/wheelhouse, git-ignored)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
MARKER = "FINGERPRINT"
# A closed port on loopback: any HTTP(S) request pip or the operator attempts fails fast.
NO_NETWORK_PROXY = "http://127.0.0.1:9"
# PATH of the official python images, which ENV PATH=...:$PATH in the Dockerfile extends.
IMAGE_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RecipeError(Exception):
    """The Dockerfile has a step this offline replay does not know, or a step failed."""


# --- the wheelhouse ---------------------------------------------------------------------


def requirements(root: pathlib.Path = ROOT) -> list[str]:
    """What the image's build stage installs: runtime deps, build backend, and pip."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return [
        *project["project"]["dependencies"],
        *project["build-system"]["requires"],
        "pip",
    ]


def fingerprint(root: pathlib.Path = ROOT) -> str:
    """Changes whenever the wheelhouse would hold different wheels."""
    digest = hashlib.sha256()
    digest.update(json.dumps(requirements(root)).encode())
    digest.update((root / "constraints.txt").read_bytes())
    digest.update(f"{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def problem(wheelhouse: pathlib.Path = DEFAULT_WHEELHOUSE, root: pathlib.Path = ROOT) -> str | None:
    """Why ``wheelhouse`` cannot serve an offline build, or None when it can."""
    marker = wheelhouse / MARKER
    fix = "run `make setup` (or, if .venv is already set up: .venv/bin/python hack/wheelhouse.py)"
    if not marker.is_file():
        return f"no wheelhouse at {wheelhouse}: {fix}"
    if marker.read_text(encoding="utf-8").strip() != fingerprint(root):
        return f"the wheelhouse at {wheelhouse} is for other dependencies or Python: {fix}"
    return None


def build_wheelhouse(dest: pathlib.Path = DEFAULT_WHEELHOUSE, root: pathlib.Path = ROOT) -> None:
    """Fill ``dest`` with wheels only (sdists are built here, where the network is)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=dest.parent))
    try:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "wheel", "--quiet",
                "--wheel-dir", str(staging),
                "-c", str(root / "constraints.txt"),
                *requirements(root),
            ],
            check=True,
        )  # fmt: skip
        (staging / MARKER).write_text(fingerprint(root) + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- the Dockerfile ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    value: str  # the rest of the logical line, continuation lines joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of ``ENTRYPOINT [...]``-style instructions, else None."""
        if not self.value.startswith("["):
            return None
        parsed = json.loads(self.value)
        return [str(part) for part in parsed]

    def copy_parts(self) -> tuple[dict[str, str], list[str], str]:
        """COPY/ADD as (flags, sources, destination)."""
        words = shlex.split(self.value)
        flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        return flags, paths[:-1], paths[-1]

    def env_pairs(self) -> dict[str, str]:
        words = shlex.split(self.value)
        if words and "=" not in words[0]:  # legacy ``ENV KEY value with spaces``
            return {words[0]: " ".join(words[1:])}
        return dict(w.partition("=")[::2] for w in words)


@dataclasses.dataclass(frozen=True)
class Stage:
    base: str  # the image reference, build args substituted
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ENV"):
            merged.update(instruction.env_pairs())
        return merged


@dataclasses.dataclass(frozen=True)
class Dockerfile:
    args: dict[str, str]  # global ARG defaults, declared before the first FROM
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"no build stage named {name!r}")

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def venv(self) -> tuple[Stage, str]:
        """The stage that builds the virtualenv, and its path: the final stage's one COPY."""
        copies = self.final.all("COPY")
        if len(copies) != 1:
            raise RecipeError("the final stage should copy exactly one thing: the virtualenv")
        flags, sources, dest = copies[0].copy_parts()
        if "from" not in flags or sources != [dest]:
            raise RecipeError(f"Dockerfile:{copies[0].line}: expected COPY --from=STAGE DIR DIR")
        return self.stage(flags["from"]), dest


def _substitute(text: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), text)


def parse_dockerfile(path: pathlib.Path = ROOT / "Dockerfile") -> Dockerfile:
    """The instructions of each stage; comments dropped, continuation lines joined."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        logical.append((start, " ".join([*pending, stripped])))
        pending = []
    if pending:
        raise RecipeError(f"Dockerfile:{start}: the last instruction ends in a continuation")

    args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    for number, text in logical:
        keyword, _, value = text.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), number)
        if instruction.keyword == "FROM":
            parts = re.split(r"\s+as\s+", instruction.value, maxsplit=1, flags=re.I)
            image, name = parts[0], (parts[1] if len(parts) > 1 else "")
            current = []
            stages.append(Stage(_substitute(image, args), name or None, ()))
            continue
        if current is None:
            if instruction.keyword != "ARG":
                raise RecipeError(f"Dockerfile:{number}: {instruction.keyword} before FROM")
            key, _, default = instruction.value.partition("=")
            args[key] = default
            continue
        current.append(instruction)
        stages[-1] = dataclasses.replace(stages[-1], instructions=tuple(current))
    if not stages:
        raise RecipeError("the Dockerfile has no FROM")
    return Dockerfile(args, tuple(stages))


# --- replaying the build stage ----------------------------------------------------------

# Every command the build stage runs must be one of these (``VENV`` is the image's
# virtualenv path): each has an offline meaning here. Anything else (apt-get, curl, a
# shell script) stops the replay rather than run on this machine.
_ALLOWED_COMMANDS = (
    r"python3? -m venv {venv}",
    r"{venv}/bin/(pip|python -m pip) install( \S+)+",
    r"{venv}/bin/(pip|python -m pip) uninstall( \S+)+",
)


def _check_run(instruction: Instruction, venv: str) -> None:
    if re.search(r"[;|`<>]|\$\(|\|\|", instruction.value):
        raise RecipeError(f"Dockerfile:{instruction.line}: only `a && b` chains are replayed")
    commands = [" ".join(c.split()) for c in instruction.value.split("&&")]
    patterns = [re.compile(p.format(venv=re.escape(venv))) for p in _ALLOWED_COMMANDS]
    for command in commands:
        if not any(p.fullmatch(command) for p in patterns):
            raise RecipeError(
                f"Dockerfile:{instruction.line}: no offline replay for {command!r}; "
                "teach hack/wheelhouse.py (and its test) what it means"
            )


def _copy_into(root: pathlib.Path, sources: list[str], target: pathlib.Path, into: bool) -> None:
    """Docker's COPY: a directory's contents go to target; files go into it when ``into``."""
    for source in sources:
        origin = root / source
        if not origin.exists():
            raise RecipeError(f"COPY source {source} does not exist")
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True, symlinks=True)
        elif into:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / origin.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def offline_env(home: pathlib.Path, wheelhouse: pathlib.Path) -> dict[str, str]:
    """A minimal environment: nothing inherited, pip offline, no proxy that works."""
    return {
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PATH": IMAGE_BASE_PATH,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "http_proxy": NO_NETWORK_PROXY,
        "https_proxy": NO_NETWORK_PROXY,
        "HTTP_PROXY": NO_NETWORK_PROXY,
        "HTTPS_PROXY": NO_NETWORK_PROXY,
    }


def build_venv(
    dest: pathlib.Path,
    wheelhouse: pathlib.Path = DEFAULT_WHEELHOUSE,
    root: pathlib.Path = ROOT,
    dockerfile: pathlib.Path | None = None,
) -> pathlib.Path:
    """Replay the Dockerfile's virtualenv stage into ``dest``, offline; return ``dest``.

    The build context (a copy of what the stage COPYs) is thrown away afterwards, as the
    final image keeps only the virtualenv. ``python`` is this interpreter's base Python:
    the stand-in for the base image's.
    """
    recipe = parse_dockerfile(dockerfile or root / "Dockerfile")
    stage, venv = recipe.venv()
    runs = 0
    for instruction in stage.instructions:  # validate everything before running anything
        if instruction.keyword == "RUN":
            _check_run(instruction, venv)
            runs += 1
        elif instruction.keyword == "COPY" and "from" in instruction.copy_parts()[0]:
            raise RecipeError(f"Dockerfile:{instruction.line}: COPY --from in the build stage")
        elif instruction.keyword not in {"ENV", "WORKDIR", "COPY", "ARG", "LABEL"}:
            raise RecipeError(f"Dockerfile:{instruction.line}: {instruction.keyword} not replayed")
    if not runs:
        raise RecipeError(f"the stage {stage.name!r} runs nothing")

    dest = dest.resolve()
    with tempfile.TemporaryDirectory(prefix="image-build-") as scratch:
        context = pathlib.Path(scratch) / "fs"
        shims = pathlib.Path(scratch) / "shims"
        shims.mkdir()
        base_python = pathlib.Path(getattr(sys, "_base_executable", sys.executable))
        # Scripts, not symlinks: venv links bin/python to the path Python was started as,
        # and a symlink here would leave it pointing into this scratch directory.
        for name in ("python", "python3"):
            (shims / name).write_text(f'#!/bin/sh\nexec "{base_python}" "$@"\n')
            (shims / name).chmod(0o755)
        env = offline_env(pathlib.Path(scratch) / "home", wheelhouse.resolve())
        env["PATH"] = f"{shims}:{env['PATH']}"
        workdir = "/"  # the path inside the image; context / workdir on this machine

        def host(path: str) -> pathlib.Path:
            return context / posixpath.join(workdir, path).lstrip("/")

        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                env.update(instruction.env_pairs())
            elif instruction.keyword == "WORKDIR":
                workdir = posixpath.join(workdir, instruction.value)
                host(".").mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                _, sources, target = instruction.copy_parts()
                into = target.endswith("/") or len(sources) > 1
                _copy_into(root, sources, host(target), into)
            elif instruction.keyword == "RUN":
                command = instruction.value.replace(venv, str(dest))
                done = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=host("."),
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    raise RecipeError(
                        f"Dockerfile:{instruction.line}: {command!r} exited {done.returncode}\n"
                        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
                    )
    return dest


def runtime_env(recipe: Dockerfile, venv_dir: pathlib.Path, home: pathlib.Path) -> dict[str, str]:
    """The final stage's ENV with the virtualenv at ``venv_dir``, and no network."""
    _, venv = recipe.venv()
    env = offline_env(home, home)
    del env["PIP_NO_INDEX"], env["PIP_FIND_LINKS"]
    for key, value in recipe.final.env().items():
        env[key] = _substitute(value.replace(venv, str(venv_dir)), env)
    return env


def main() -> int:
    dest = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_WHEELHOUSE
    if problem(dest) is None:
        return 0
    build_wheelhouse(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
