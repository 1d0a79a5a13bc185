"""Install footprint: the image's virtualenv on disk and in memory, and the install manifest.

Builds the virtualenv exactly as the Dockerfile's build stage does (``hack/wheelhouse.py``
replays the stage's own COPY and RUN instructions, offline, from the wheelhouse that
``make setup`` fills), then prints:

- the virtualenv's size in MiB (the bulk of the image above the Python base): in total,
  the share of ``__pycache__``, of pip and setuptools (installers, unused at run time), and
  the largest distributions by their installed files;
- the resident memory of a fresh interpreter from that virtualenv, run with the final
  stage's environment: bare, after ``import llama_operator.cli`` (what ``plan`` and
  ``render`` load) and after ``import llama_operator.runtime.handlers`` (what ``run`` loads: Kopf
  and every handler), as VmRSS and peak VmHWM from ``/proc/self/status``, and the import
  time (best of 3; this machine's);
- ``manifests/install.yaml``, when it has been generated: its size and objects by kind.

Run from the repository root: ``.venv/bin/python benchmarks/bench_footprint.py``. Nothing
leaves this machine.
"""

from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
import wheelhouse  # noqa: E402

MIB = 1024 * 1024
INSTALL_MANIFEST = ROOT / "manifests" / "install.yaml"
TOP = 8
PROBES = {
    "bare interpreter": "pass",
    "import llama_operator.cli": "import llama_operator.cli",
    "import llama_operator.runtime.handlers": "import llama_operator.runtime.handlers",
}
MEMORY_PROBE = """
import time
t0 = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t0
import json
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({{
    "rss_kib": int(fields["VmRSS"].split()[0]),
    "hwm_kib": int(fields["VmHWM"].split()[0]),
    "seconds": elapsed,
}}))
"""
DIST_SIZES = """
import importlib.metadata as m, json, os
sizes = {}
for dist in m.distributions():
    total = 0
    for f in dist.files or ():
        path = dist.locate_file(f)
        if os.path.isfile(path) and not os.path.islink(path):
            total += os.path.getsize(path)
    sizes[f"{dist.metadata['Name']} {dist.version}"] = total
print(json.dumps(sizes))
"""


def tree_bytes(path: pathlib.Path, *, pycache_only: bool = False) -> int:
    total = 0
    for item in path.rglob("*"):
        if item.is_symlink() or not item.is_file():
            continue
        if pycache_only and "__pycache__" not in item.parts:
            continue
        total += item.stat().st_size
    return total


def python_json(venv: pathlib.Path, env: dict[str, str], code: str, cwd: pathlib.Path) -> object:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def report_disk(venv: pathlib.Path, env: dict[str, str], cwd: pathlib.Path) -> None:
    sizes = python_json(venv, env, DIST_SIZES, cwd)
    assert isinstance(sizes, dict)
    total = tree_bytes(venv)
    installers = sum(v for k, v in sizes.items() if k.split()[0] in {"pip", "setuptools"})
    print("virtualenv (/opt/llama-operator in the image)")
    print(f"  {'total':<34} {total / MIB:8.1f} MiB")
    print(f"  {'of which __pycache__':<34} {tree_bytes(venv, pycache_only=True) / MIB:8.1f} MiB")
    print(f"  {'of which pip + setuptools':<34} {installers / MIB:8.1f} MiB")
    print(f"  {len(sizes)} distributions; the largest:")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"    {name:<32} {size / MIB:8.1f} MiB")


def report_memory(venv: pathlib.Path, env: dict[str, str], cwd: pathlib.Path) -> None:
    print("\nmemory of one process from the virtualenv (final stage's environment)")
    print(f"  {'after':<34} {'VmRSS':>9} {'VmHWM':>9} {'import':>9}")
    for label, statement in PROBES.items():
        runs = [
            python_json(venv, env, MEMORY_PROBE.format(statement=statement), cwd) for _ in range(3)
        ]
        last = runs[-1]
        assert isinstance(last, dict)
        seconds = min(r["seconds"] for r in runs if isinstance(r, dict))
        print(
            f"  {label:<34} {last['rss_kib'] / 1024:5.1f} MiB {last['hwm_kib'] / 1024:5.1f} MiB"
            f" {seconds * 1000:6.0f} ms"
        )


def report_manifest() -> None:
    print(f"\n{INSTALL_MANIFEST.relative_to(ROOT)}")
    if not INSTALL_MANIFEST.is_file():
        print("  not generated yet")
        return
    text = INSTALL_MANIFEST.read_text(encoding="utf-8")
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    kinds = collections.Counter(str(doc.get("kind")) for doc in objects)
    print(f"  {len(text.encode()):,} bytes, {len(objects)} objects")
    for kind, count in sorted(kinds.items()):
        print(f"    {kind:<32} {count:>3}")


def main() -> int:
    problem = wheelhouse.problem()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    recipe = wheelhouse.parse_dockerfile()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as scratch:
        work = pathlib.Path(scratch)
        venv = wheelhouse.build_venv(work / "opt-llama-operator")
        env = wheelhouse.runtime_env(recipe, venv, work) | {"HF_HUB_OFFLINE": "1"}
        print(f"image base {recipe.final.base}; this machine's Python {sys.version.split()[0]}\n")
        report_disk(venv, env, work)
        report_memory(venv, env, work)
    report_manifest()
    return 0


if __name__ == "__main__":
    sys.exit(main())
