"""A text model's texts, measured for online drift as the data check measured the training texts.

A model exported with its tokenizer (`frameworks.text`) takes a string column; when the artifact's data
profile describes that column's statistics (`data.text.profile`: `<column>.characters` and
`<column>.tokens`, each text's length in characters and words, and `<column>.token`, its words), each
text sent is measured into those columns, which the drift window keeps (the words flattened: a window of
the latest words, not rows; each text's first WINDOW_WORDS). Measuring takes time in proportion to the text
(16 MB at most, the largest body), so the server parses such requests off its event loop.

NOTE: imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelci.data.text.tokens import counted_words
from modelci.evaluate.onnx_model import META_TEXT, described

CHARACTERS, TOKENS, WORDS = "characters", "tokens", "token"  # NOTE: data.text.profile's names
# NOTE: the words of one text that the window takes: the window holds the latest 10,000, and a text long enough
# to fill it alone would only stand for itself
WINDOW_WORDS = 256


def text_input(name: str, meta: dict[str, str]) -> bool:
    """Whether the model's input `name` is a text model's texts (the exported model's metadata says so)."""
    return described(meta, META_TEXT).get("input") == name


def statistics(name: str) -> dict[str, bool]:
    """The statistics' columns, each with whether the window takes it as text (the words) or as numbers."""
    return {f"{name}.{CHARACTERS}": False, f"{name}.{TOKENS}": False, f"{name}.{WORDS}": True}


def word_columns(name: str) -> set[str]:
    """The columns whose value in a row is a list of values (each text's words), flattened into the window."""
    return {f"{name}.{WORDS}"}


def text_columns(name: str, texts: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """Each text's length in characters and words, and its first WINDOW_WORDS words, a column each."""
    counted = [counted_words(str(text), WINDOW_WORDS) for text in texts]
    found = np.empty(len(counted), dtype=object)
    for row, (_, first) in enumerate(counted):
        found[row] = first  # NOTE: one by one: lists of one length would make numpy a 2-D array
    return {f"{name}.{CHARACTERS}": np.array([len(str(t)) for t in texts], dtype=np.float64),
            f"{name}.{TOKENS}": np.array([count for count, _ in counted], dtype=np.float64), f"{name}.{WORDS}": found}
