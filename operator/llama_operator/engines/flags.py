"""Spelling a planned quantization as an engine flag value, shared by both engines."""

from __future__ import annotations

from collections.abc import Mapping

from llama_operator import api


def quantization(
    *, table: Mapping[api.Quantization, str | None], engine: str, quantization: api.Quantization
) -> str | None:
    """The flag value for ``quantization`` (None: no flag), or ValueError naming the engine."""
    if quantization not in table:
        supported = ", ".join(sorted(table))
        raise ValueError(
            f"{engine} cannot serve quantization {quantization!r}; supported: {supported}"
        )
    return table[quantization]
