"""Test-wide guarantees: no test reaches the Hugging Face Hub or any other network.

Set at import, before anything imports huggingface_hub (it reads these once).
"""

import os
import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_CACHE", str(FIXTURES / "hf-cache"))
os.environ.pop("HF_TOKEN", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--with-e2e",
        action="store_true",
        help="also run tests/e2e against the current kube context (a disposable test cluster)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # e2e tests are not part of a normal run at all (deselected, not skipped): they need
    # a real cluster, which CI and a fresh machine do not have.
    if config.getoption("--with-e2e"):
        return
    selected = [item for item in items if item.get_closest_marker("e2e") is None]
    deselected = [item for item in items if item.get_closest_marker("e2e") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
