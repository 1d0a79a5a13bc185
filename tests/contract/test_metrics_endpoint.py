"""The operator's /metrics endpoint, scraped while the real operator runs."""

from __future__ import annotations

import asyncio
import os
import urllib.request

from kube import (
    DEPLOYMENTS,
    LLAMA,
    TIMEOUT,
    ApplyingEmulator,
    create,
    eventually,
    llama,
    obj,
    status_of,
)
from prometheus_client import parser


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    port = os.environ["LLAMA_OPERATOR_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape_when_up() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The endpoint starts with the operator's startup activity: wait for it (by the clock,
    as long as any other wait: a loaded machine can take seconds to start the operator)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        try:
            return scrape()
        except OSError:  # connection refused: not listening yet
            await asyncio.sleep(0.05)
    return scrape()


class TestMetrics:
    async def test_reconciles_and_phases_are_exported(self, operator: ApplyingEmulator) -> None:
        before = await scrape_when_up()
        applied_key = ("llama_operator_reconciles_total", (("outcome", "applied"),))
        await create(operator, LLAMA, llama())
        await eventually(lambda: obj(operator, DEPLOYMENTS, "chat-primary"))
        await eventually(lambda: status_of(operator).get("phase") == "Pending")
        samples = await eventually(
            lambda: (m := scrape())[applied_key] > before.get(applied_key, 0) and m
        )
        assert samples[("llama_operator_applies_total", (("kind", "Deployment"),))] >= 1
        assert samples[("llama_operator_applies_total", (("kind", "Service"),))] >= 2
        pending = await eventually(
            lambda: scrape()[("llama_operator_llamadeployments", (("phase", "Pending"),))] >= 1
        )
        assert pending
        assert samples[("llama_operator_reconcile_duration_seconds_count", ())] >= 1
        versions = [k for k in samples if k[0] == "llama_operator_build_info"]
        assert versions
