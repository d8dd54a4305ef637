"""A text model's texts, measured for online drift as the data check measured the training texts.

A model exported with its tokenizer (`frameworks.text`) takes a string column; when the artifact's data
profile describes that column's statistics (`data.text.profile`: `<column>.characters` and
`<column>.tokens`, each text's length in characters and words, and `<column>.token`, its words), each
text sent is measured into those columns, which the drift window keeps (the words flattened: a window of
the latest words, not rows).

NOTE: imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelci.data.text.tokens import words

META_TEXT = "modelci.text"  # NOTE: frameworks.text.network.META_TEXT, which imports torch
CHARACTERS, TOKENS, WORDS = "characters", "tokens", "token"  # NOTE: data.text.profile's names


def text_input(name: str, meta: dict[str, str]) -> bool:
    """Whether the model's input `name` is a text model's texts (the exported model's metadata says so)."""
    import json

    try:
        described = json.loads(meta.get(META_TEXT, "{}"))
    except ValueError:
        return False
    return isinstance(described, dict) and described.get("input") == name


def statistics(name: str) -> dict[str, bool]:
    """The statistics' columns, each with whether the window takes it as text (the words) or as numbers."""
    return {f"{name}.{CHARACTERS}": False, f"{name}.{TOKENS}": False, f"{name}.{WORDS}": True}


def word_columns(name: str) -> set[str]:
    """The columns whose value in a row is a list of values (each text's words), flattened into the window."""
    return {f"{name}.{WORDS}"}


def text_columns(name: str, texts: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """Each text's length in characters and words, and its words, a column each."""
    split = [words(str(text)) for text in texts]
    found = np.empty(len(split), dtype=object)
    for row, row_words in enumerate(split):
        found[row] = row_words  # NOTE: one by one: lists of one length would make numpy a 2-D array
    return {f"{name}.{CHARACTERS}": np.array([len(str(t)) for t in texts], dtype=np.float64),
            f"{name}.{TOKENS}": np.array([len(w) for w in split], dtype=np.float64), f"{name}.{WORDS}": found}
