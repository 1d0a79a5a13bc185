"""Fetch the Python source of every vLLM release the operator's engine facts name.

``operator/llama_operator/data/engines.yaml`` states what the operator assumes about vLLM
(flag names, environment variables, metric names, finish reasons, quantization methods,
out-of-memory log lines), per release, and lists under ``verifiedWith`` the releases
those facts were read from. ``tests/engines/test_vllm_source.py`` checks every such fact
against the real source of those releases. vLLM publishes no source archive per release
on PyPI, only wheels (~240 MB each, mostly compiled kernels), so this downloads each
release's wheel (``pip download vllm==V --no-deps``), keeps only its Python files and
its ``METADATA``, and deletes the wheel.

Result, per version V: ``DEST_DIR/vllm-V/vllm/**/*.py`` and
``DEST_DIR/vllm-V/vllm-V.dist-info/METADATA``, with ``.complete`` written last; a
version whose folder has it is skipped, a partial folder is fetched again. Run by
``make setup``; the test reads the folders and never downloads anything itself.

Usage: python hack/get_engine_sources.py [DEST_DIR] [--wheels DIR]
(DEST_DIR defaults to .cache/engines, git-ignored. ``--wheels DIR`` takes the wheels
already in DIR, or in DIR/V/, instead of downloading them, and leaves them in place.)
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from llama_operator.planning import engine_profiles

MARKER = ".complete"
# vLLM's wheels are per platform, but their Python files are the same on every one;
# naming the Linux x86_64 wheel (the platform every release publishes) makes the
# download work, and fetch the same files, on any development machine.
PLATFORM = "manylinux_2_28_x86_64"


def versions() -> list[str]:
    """Every release named under ``verifiedWith`` by a vLLM profile, oldest first."""
    named = {v for profile in engine_profiles.profiles("vllm") for v in profile.verifiedWith}
    return sorted(named, key=lambda v: engine_profiles.parse_version(v) or (0, 0, 0))


def wanted(name: str, version: str) -> bool:
    """Whether a wheel member is kept: vLLM's Python files and the wheel's METADATA."""
    return (name.startswith("vllm/") and name.endswith(".py")) or (
        name == f"vllm-{version}.dist-info/METADATA"
    )


def download(version: str, into: pathlib.Path) -> pathlib.Path:
    """Download vLLM ``version``'s wheel from PyPI into ``into``; its path."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-cache-dir",
            "--only-binary=:all:", "--platform", PLATFORM, f"vllm=={version}", "-d", str(into),
        ],
        check=True,
    )  # fmt: skip
    (wheel,) = into.glob(f"vllm-{version}-*.whl")
    return wheel


def local_wheel(wheels: pathlib.Path, version: str) -> pathlib.Path:
    """The wheel of ``version`` already in ``wheels`` (or ``wheels/version``)."""
    found = sorted(
        (*wheels.glob(f"vllm-{version}-*.whl"), *wheels.glob(f"{version}/vllm-{version}-*.whl"))
    )
    if not found:
        raise SystemExit(f"no wheel of vllm {version} in {wheels} or {wheels / version}")
    return found[0]


def extract(wheel: pathlib.Path, version: str, target: pathlib.Path) -> int:
    """Unpack the kept members of ``wheel`` under ``target``; how many files."""
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or not wanted(info.filename, version):
                continue
            path = target / info.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, path.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            count += 1
    return count


def fetch(version: str, dest: pathlib.Path, wheels: pathlib.Path | None) -> None:
    target = dest / f"vllm-{version}"
    if (target / MARKER).exists():
        return
    if target.exists():
        shutil.rmtree(target)  # left by an interrupted run
    started = time.monotonic()
    if wheels is not None:
        count = extract(local_wheel(wheels, version), version, target)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = download(version, pathlib.Path(tmp))
            count = extract(wheel, version, target)
            wheel.unlink()
    if not (target / "vllm" / "engine" / "arg_utils.py").exists():
        raise SystemExit(f"vllm {version}: the wheel holds no vllm/engine/arg_utils.py")
    (target / MARKER).write_text(f"vllm {version}: {count} files\n", encoding="utf-8")
    elapsed = time.monotonic() - started
    print(f"vllm {version}: {count} files into {target} in {elapsed:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", default=".cache/engines", type=pathlib.Path)
    parser.add_argument("--wheels", type=pathlib.Path, help="take the wheels from DIR")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    for version in versions():
        fetch(version, args.dest, args.wheels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
