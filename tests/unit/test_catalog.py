"""The built-in model catalog: every Llama row of facts.md, found by any published id.

The table below is copied from ``facts.md`` ("Llama model shapes"); the catalog must
agree with it number for number.
"""

from __future__ import annotations

import pytest

from llama_operator.planning import catalog

B = 1e9

# repo id, params, layers, hidden, heads, kv heads, head dim, context, MoE
FACTS_MD: tuple[tuple[str, float, int, int, int, int, int, int, bool], ...] = (
    ("meta-llama/Llama-2-7b-hf", 6.74 * B, 32, 4096, 32, 32, 128, 4096, False),
    ("meta-llama/Llama-2-13b-hf", 13.0 * B, 40, 5120, 40, 40, 128, 4096, False),
    ("meta-llama/Llama-2-70b-hf", 69.0 * B, 80, 8192, 64, 8, 128, 4096, False),
    ("meta-llama/Meta-Llama-3-8B", 8.03 * B, 32, 4096, 32, 8, 128, 8192, False),
    ("meta-llama/Meta-Llama-3-70B", 70.6 * B, 80, 8192, 64, 8, 128, 8192, False),
    ("meta-llama/Llama-3.1-8B", 8.03 * B, 32, 4096, 32, 8, 128, 131072, False),
    ("meta-llama/Llama-3.1-70B", 70.6 * B, 80, 8192, 64, 8, 128, 131072, False),
    ("meta-llama/Llama-3.1-405B", 405.9 * B, 126, 16384, 128, 8, 128, 131072, False),
    ("meta-llama/Llama-3.2-1B", 1.24 * B, 16, 2048, 32, 8, 64, 131072, False),
    ("meta-llama/Llama-3.2-3B", 3.21 * B, 28, 3072, 24, 8, 128, 131072, False),
    ("meta-llama/Llama-3.2-11B-Vision", 10.6 * B, 40, 4096, 32, 8, 128, 131072, False),
    ("meta-llama/Llama-3.2-90B-Vision", 88.6 * B, 100, 8192, 64, 8, 128, 131072, False),
    ("meta-llama/Llama-3.3-70B-Instruct", 70.6 * B, 80, 8192, 64, 8, 128, 131072, False),
    # facts.md: "10M (serve far less)" and "1M"; the configs say 10485760 and 1048576.
    ("meta-llama/Llama-4-Scout-17B-16E", 109 * B, 48, 5120, 40, 8, 128, 10_485_760, True),
    ("meta-llama/Llama-4-Maverick-17B-128E", 400 * B, 48, 5120, 40, 8, 128, 1_048_576, True),
)


@pytest.mark.parametrize("row", FACTS_MD, ids=[row[0].split("/")[1] for row in FACTS_MD])
def test_every_facts_md_row_is_in_the_catalog_exactly(
    row: tuple[str, float, int, int, int, int, int, int, bool],
) -> None:
    repo_id, params, layers, hidden, heads, kv_heads, head_dim, context, moe = row
    entry = catalog.lookup(repo_id)
    assert entry is not None
    assert entry.parameters == pytest.approx(params, rel=1e-12)
    assert (
        entry.layers,
        entry.hidden_size,
        entry.attention_heads,
        entry.kv_heads,
        entry.head_dim,
        entry.max_context,
        entry.moe,
    ) == (layers, hidden, heads, kv_heads, head_dim, context, moe)
    assert entry.source == "catalog"
    assert entry.license


def test_catalog_has_nothing_beyond_facts_md() -> None:
    listed = {catalog.lookup(row[0]) for row in FACTS_MD}
    assert set(catalog.ENTRIES) == listed
    assert len(catalog.ENTRIES) == len(FACTS_MD)


def test_entries_are_consistent_shapes() -> None:
    for entry in catalog.ENTRIES:
        assert entry.attention_heads % entry.kv_heads == 0, entry.id
        assert entry.hidden_size == entry.attention_heads * entry.head_dim, entry.id


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
        ("META-LLAMA/LLAMA-3.1-8B-INSTRUCT", "meta-llama/Llama-3.1-8B"),
        ("meta-llama/llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
        ("  meta-llama/Llama-3.1-8B  ", "meta-llama/Llama-3.1-8B"),
        ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-hf"),
        ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"),
        ("meta-llama/Llama-2-70b-chat-hf", "meta-llama/Llama-2-70b-hf"),
        ("meta-llama/Llama-2-13b", "meta-llama/Llama-2-13b-hf"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "meta-llama/Meta-Llama-3-70B"),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-3.2-11B-Vision"),
        ("meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct"),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "meta-llama/Llama-4-Scout-17B-16E"),
    ],
)
def test_lookup_is_case_insensitive_and_suffix_tolerant(query: str, expected: str) -> None:
    entry = catalog.lookup(query)
    assert entry is not None
    assert entry.id == expected


@pytest.mark.parametrize(
    "query",
    [
        "meta-llama/Llama-3.1-9B",
        "mistralai/Mistral-7B-v0.1",
        "Llama-3.1-8B",  # the organisation is part of the id
        "meta-llama/Llama-3.1-8B-Instruct-extra",
        "",
    ],
)
def test_unknown_ids_are_none(query: str) -> None:
    assert catalog.lookup(query) is None
