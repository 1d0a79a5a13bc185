"""The container image recipe, proven without a container engine.

Two halves:

- the Dockerfile read statically: two stages on one pinned slim Python, a final stage
  that copies the virtualenv and nothing else, a numeric non-root user, ``llama-operator
  run`` as the entrypoint with Kopf's liveness endpoint on the exposed port;
- the build stage replayed (``hack/wheelhouse.py``): its own COPY and RUN instructions,
  offline, from the wheelhouse ``make setup`` fills, into a fresh virtualenv that then
  runs ``llama-operator --version``, ``render`` and the ENTRYPOINT + CMD argument parse,
  from a directory outside the source tree and with no network.

The virtualenv is built once for the module (15-60 s). A missing wheelhouse fails
the build test with "run make setup": that is a broken setup, not a reason to skip.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from llama_operator import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import wheelhouse  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXAMPLE = ROOT / "manifests" / "examples" / "chat-8b.yaml"
RECIPE = wheelhouse.parse_dockerfile(ROOT / "Dockerfile")
# Installed in the image but pinned nowhere: the venv's own installer, Python 3.11's venv
# seeds setuptools, and the operator itself (its version is pyproject's).
UNPINNED = {"pip", "setuptools", "llama-operator"}


def norm(name: str) -> str:
    return str(canonicalize_name(name))


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("#")[0].strip().partition("==")
        if sep:
            found[norm(name)] = version.strip()
    return found


def extras_only() -> set[str]:
    """Every test and dev tool the pyproject names (none is a runtime dependency)."""
    runtime = {norm(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    names = {
        norm(Requirement(r).name)
        for group in PYPROJECT["project"]["optional-dependencies"].values()
        for r in group
    }
    return names - runtime


class TestDockerfile:
    def test_two_stages_on_one_base_image(self) -> None:
        assert len(RECIPE.stages) == 2
        build, final = RECIPE.stages
        assert build.base == final.base
        assert RECIPE.venv()[0] is build
        assert build.name is not None

    def test_base_image_is_a_pinned_slim_python(self) -> None:
        image = RECIPE.final.base
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?", image)
        assert match, f"{image}: want python:X.Y.Z-slim[-distro], never latest or X.Y"
        version = ".".join(match.groups()[:3])
        assert version in SpecifierSet(PYPROJECT["project"]["requires-python"])

    def test_final_stage_copies_only_the_virtualenv(self) -> None:
        final = RECIPE.final
        # No RUN, no ADD: nothing is installed in the final stage, so no compiler, no apt
        # lists and no pip cache can land there; its one COPY is the virtualenv.
        allowed = {"COPY", "ENV", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL", "ARG"}
        assert {i.keyword for i in final.instructions} <= allowed
        (copy,) = final.all("COPY")
        flags, sources, dest = copy.copy_parts()
        assert flags == {"from": RECIPE.stages[0].name}
        assert sources == [dest] == ["/opt/llama-operator"]

    def test_the_virtualenv_keeps_its_build_path(self) -> None:
        # A virtualenv is not relocatable (script shebangs, pyvenv.cfg): the build stage
        # must create it at the path the final stage copies it to, on the same Python.
        build, venv = RECIPE.venv()
        runs = " && ".join(i.value for i in build.all("RUN"))
        assert f"python -m venv {venv}" in runs
        assert RECIPE.final.env()["PATH"].startswith(f"{venv}/bin:")

    def test_build_stage_installs_the_tested_versions_without_a_pip_cache(self) -> None:
        build, venv = RECIPE.venv()
        runs = [" ".join(i.value.split()) for i in build.all("RUN")]
        assert any(f"{venv}/bin/pip install -c constraints.txt ." in r for r in runs)
        assert build.env().get("PIP_NO_CACHE_DIR") == "1"

    def test_runs_as_a_numeric_non_root_user(self) -> None:
        users = RECIPE.final.all("USER")
        assert users, "the final stage sets no USER: it would run as root"
        assert users[-1].value == "65532:65532"
        for part in users[-1].value.split(":"):
            assert part.isdigit(), "a numeric UID:GID, which runAsNonRoot can verify"
            assert int(part) != 0

    def test_entrypoint_runs_the_operator_with_a_liveness_endpoint(self) -> None:
        (entrypoint,) = RECIPE.final.all("ENTRYPOINT")
        (cmd,) = RECIPE.final.all("CMD")
        assert entrypoint.exec_form() == ["llama-operator", "run"]
        args = cmd.exec_form()
        assert args is not None, "CMD should be exec form (a JSON array)"
        liveness = [a.partition("=")[2] for a in args if a.startswith("--liveness=")]
        assert liveness == ["http://0.0.0.0:8080/healthz"]
        url = urllib.parse.urlsplit(liveness[0])
        exposed = {int(e.value.partition("/")[0]) for e in RECIPE.final.all("EXPOSE")}
        assert url.hostname == "0.0.0.0", "the kubelet probes the Pod IP, not loopback"
        assert url.port in exposed

    def test_replay_refuses_a_step_it_cannot_mirror(self, tmp_path: pathlib.Path) -> None:
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        patched = tmp_path / "Dockerfile"
        patched.write_text(
            text.replace("RUN python -m venv", "RUN apt-get install -y gcc && python -m venv"),
            encoding="utf-8",
        )
        with pytest.raises(wheelhouse.RecipeError, match="apt-get install"):
            wheelhouse.build_venv(tmp_path / "venv", root=ROOT, dockerfile=patched)
        assert not (tmp_path / "venv").exists()


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    problem = wheelhouse.problem()
    if problem is not None:
        pytest.fail(f"cannot build the image's virtualenv offline: {problem}", pytrace=False)
    return wheelhouse.build_venv(tmp_path_factory.mktemp("image") / "opt-llama-operator")


@pytest.fixture(scope="module")
def image_env(image_venv: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = wheelhouse.runtime_env(RECIPE, image_venv, tmp_path_factory.mktemp("home"))
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_CACHE=str(ROOT / "tests" / "fixtures" / "hf-cache"),
    )
    return env


def in_image(
    env: dict[str, str], cwd: pathlib.Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``llama-operator`` (the ENTRYPOINT's program) found on the image's PATH."""
    entrypoint = RECIPE.final.all("ENTRYPOINT")[0].exec_form()
    assert entrypoint is not None
    program = shutil.which(entrypoint[0], path=env["PATH"])
    assert program is not None
    return subprocess.run(
        [program, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestBuiltVirtualenv:
    def test_the_entrypoint_resolves_into_the_virtualenv(
        self, image_venv: pathlib.Path, image_env: dict[str, str]
    ) -> None:
        program = shutil.which("llama-operator", path=image_env["PATH"])
        assert program == str(image_venv / "bin" / "llama-operator")
        shebang = pathlib.Path(program).read_text(encoding="utf-8").splitlines()[0]
        assert shebang.startswith(f"#!{image_venv}/bin/python")

    def test_version_is_the_package_version(
        self, image_env: dict[str, str], tmp_path: pathlib.Path
    ) -> None:
        done = in_image(image_env, tmp_path, "--version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"llama-operator {PYPROJECT['project']['version']}"

    def test_render_prints_the_objects_the_source_tree_renders(
        self, image_env: dict[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        done = in_image(image_env, tmp_path, "render", "-f", str(EXAMPLE))
        assert done.returncode == 0, done.stderr
        objects = [o for o in yaml.safe_load_all(done.stdout) if o]
        assert "Deployment" in {o["kind"] for o in objects}
        # Same bytes as the tested source: the installed package data (pools, catalog) is
        # the source tree's.
        assert cli.main(["render", "-f", str(EXAMPLE)]) == 0
        assert done.stdout == capsys.readouterr().out

    def test_entrypoint_and_cmd_parse(
        self, image_env: dict[str, str], tmp_path: pathlib.Path
    ) -> None:
        # `--help` last: Kopf's parser rejects an unknown option before it prints help,
        # and printing help starts nothing, so this is the image's exact argv, parsed.
        entrypoint = RECIPE.final.all("ENTRYPOINT")[0].exec_form()
        cmd = RECIPE.final.all("CMD")[0].exec_form()
        assert entrypoint is not None
        assert cmd is not None
        done = in_image(image_env, tmp_path, *entrypoint[1:], *cmd, "--help")
        assert done.returncode == 0, done.stderr
        assert "--liveness" in done.stdout

    def test_the_operator_module_imports(
        self, image_venv: pathlib.Path, image_env: dict[str, str], tmp_path: pathlib.Path
    ) -> None:
        # What `run` loads (Kopf plus every handler), from the installed copy, not the tree.
        code = (
            "import llama_operator, llama_operator.runtime.handlers; print(llama_operator.__file__)"
        )
        done = subprocess.run(
            [str(image_venv / "bin" / "python"), "-c", code],
            env=image_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert pathlib.Path(done.stdout.strip()).is_relative_to(image_venv / "lib")

    def test_holds_runtime_dependencies_only_at_the_tested_versions(
        self, image_venv: pathlib.Path, image_env: dict[str, str]
    ) -> None:
        code = (
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
        )
        done = subprocess.run(
            [str(image_venv / "bin" / "python"), "-c", code],
            env=image_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        installed = {norm(k): str(v) for k, v in json.loads(done.stdout).items()}
        tools = extras_only() | {"pytest", "kmock", "ruff", "mypy"}
        assert not tools & installed.keys(), "test or dev tools in the image"
        pinned = pins()
        off_pin = {
            name: (version, pinned.get(name))
            for name, version in installed.items()
            if name not in UNPINNED and pinned.get(name) != version
        }
        assert not off_pin, "installed (version, constraints.txt pin) differ"
        runtime = {norm(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
        assert runtime <= installed.keys()
        assert installed["llama-operator"] == PYPROJECT["project"]["version"]
        # The build stage removes the installer once it is done: nothing to run pip with.
        assert "pip" not in installed
        assert "setuptools" not in installed
