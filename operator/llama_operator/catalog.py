"""The built-in model catalog: shapes of every Llama release, from each config.json.

Lets ``plan`` and ``render`` work offline for the models people actually deploy.
Repository ids are matched case-insensitively, with and without the ``-Instruct``,
``-chat`` and ``-hf`` suffixes (the suffix changes the weights, not the shape).
"""

from __future__ import annotations

from llama_operator import facts

B = 1e9


def _f(  # noqa: PLR0917 - one positional row per line of the facts.md table
    name: str,
    params: float,
    layers: int,
    hidden: int,
    heads: int,
    kv: int,
    head_dim: int,
    context: int,
    license_id: str,
    *,
    moe: bool = False,
) -> facts.ModelFacts:
    return facts.ModelFacts(
        id=name,
        parameters=params,
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        max_context=context,
        moe=moe,
        license=license_id,
        source="catalog",
    )


# One entry per shape; ``aliases`` below maps every published repo id onto it.
ENTRIES: tuple[facts.ModelFacts, ...] = (
    _f("meta-llama/Llama-2-7b-hf", 6.74 * B, 32, 4096, 32, 32, 128, 4096, "llama2"),
    _f("meta-llama/Llama-2-13b-hf", 13.0 * B, 40, 5120, 40, 40, 128, 4096, "llama2"),
    _f("meta-llama/Llama-2-70b-hf", 69.0 * B, 80, 8192, 64, 8, 128, 4096, "llama2"),
    _f("meta-llama/Meta-Llama-3-8B", 8.03 * B, 32, 4096, 32, 8, 128, 8192, "llama3"),
    _f("meta-llama/Meta-Llama-3-70B", 70.6 * B, 80, 8192, 64, 8, 128, 8192, "llama3"),
    _f("meta-llama/Llama-3.1-8B", 8.03 * B, 32, 4096, 32, 8, 128, 131072, "llama3.1"),
    _f("meta-llama/Llama-3.1-70B", 70.6 * B, 80, 8192, 64, 8, 128, 131072, "llama3.1"),
    _f("meta-llama/Llama-3.1-405B", 405.9 * B, 126, 16384, 128, 8, 128, 131072, "llama3.1"),
    _f("meta-llama/Llama-3.2-1B", 1.24 * B, 16, 2048, 32, 8, 64, 131072, "llama3.2"),
    _f("meta-llama/Llama-3.2-3B", 3.21 * B, 28, 3072, 24, 8, 128, 131072, "llama3.2"),
    _f("meta-llama/Llama-3.2-11B-Vision", 10.6 * B, 40, 4096, 32, 8, 128, 131072, "llama3.2"),
    _f("meta-llama/Llama-3.2-90B-Vision", 88.6 * B, 100, 8192, 64, 8, 128, 131072, "llama3.2"),
    _f("meta-llama/Llama-3.3-70B-Instruct", 70.6 * B, 80, 8192, 64, 8, 128, 131072, "llama3.3"),
    _f(
        "meta-llama/Llama-4-Scout-17B-16E",
        109 * B,
        48,
        5120,
        40,
        8,
        128,
        10_485_760,
        "llama4",
        moe=True,
    ),
    _f(
        "meta-llama/Llama-4-Maverick-17B-128E",
        400 * B,
        48,
        5120,
        40,
        8,
        128,
        1_048_576,
        "llama4",
        moe=True,
    ),
)

_SUFFIXES = ("-instruct", "-chat-hf", "-chat", "-hf")


def _key(repo_id: str) -> str:
    key = repo_id.strip().lower()
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                key = key[: -len(suffix)]
                changed = True
    return key


_INDEX: dict[str, facts.ModelFacts] = {_key(entry.id): entry for entry in ENTRIES}


def lookup(repo_id: str) -> facts.ModelFacts | None:
    """The catalog entry for a repo id (any published variant of it), or None."""
    return _INDEX.get(_key(repo_id))
