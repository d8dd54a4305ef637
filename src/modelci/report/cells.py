"""How numbers and text from the stages' files are written into the report's tables."""

from __future__ import annotations


def num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def cell(text: str) -> str:
    """Text from the data, safe in a table cell: GitHub splits cells at every `|`, even in code."""
    return text.replace("|", "\\|").replace("\n", " ")
