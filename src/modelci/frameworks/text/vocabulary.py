"""A text model's vocabulary: the training texts' most frequent words, and texts as word ids.

Ids: 0 pads, 1 is any word outside the vocabulary, 2 and up the vocabulary's words by falling frequency
(ties in alphabetical order), so the same training texts give the same ids on any machine.

NOTE: imports no torch: evaluation and parity read texts too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from modelci.config import TextConfig
from modelci.data.text.tokens import words

PAD, UNKNOWN = 0, 1
FIRST_WORD = 2


@dataclass(frozen=True)
class Vocabulary:
    """The words kept, in id order from FIRST_WORD, and how many of a text's words are read."""

    words: tuple[str, ...]
    max_tokens: int

    @classmethod
    def learn(cls, texts: Iterable[Any], settings: TextConfig) -> Vocabulary:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(as_text(text)))
        kept = sorted((w for w, n in counts.items() if n >= settings.min_count), key=lambda w: (-counts[w], w))
        return cls(tuple(kept[:settings.vocabulary]), settings.max_tokens)

    @property
    def size(self) -> int:
        """Ids there are, padding and unknown included: an embedding's number of rows."""
        return len(self.words) + FIRST_WORD

    def ids(self, text: Any) -> list[int]:
        """One text's word ids, cut at `max_tokens`."""
        index = self._index
        return [index.get(word, UNKNOWN) for word in words(as_text(text))[:self.max_tokens]]

    def batch(self, texts: Iterable[Any]) -> np.ndarray:
        """Texts as int64 [N, longest], each padded with PAD; at least one id wide (all PAD when no text has a word),
        as the exported graph makes them."""
        return padded([self.ids(text) for text in texts], PAD)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {word: at for at, word in enumerate(self.words, start=FIRST_WORD)}

    def to_json(self) -> dict[str, Any]:
        return {"words": list(self.words), "max_tokens": self.max_tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(tuple(str(w) for w in data["words"]), int(data["max_tokens"]))


def padded(found: list[list[int]], pad: int) -> np.ndarray:
    """Texts' token ids as int64 [N, longest], each padded with `pad`; at least one id wide."""
    ids = np.full((len(found), max([1, *map(len, found)])), pad, dtype=np.int64)
    for row, row_ids in enumerate(found):
        ids[row, :len(row_ids)] = row_ids
    return ids


def as_text(value: Any) -> str:
    """A cell of the text column as text: an empty value is "" (as the exported model's feeds make it)."""
    return "" if value is None or value != value else str(value)
