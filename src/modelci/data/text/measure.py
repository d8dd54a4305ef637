"""What the checks and the profile need of each text of one batch, computed once per distinct text.

A batch's texts arrive as a dictionary of distinct values and a code per row (`ColumnBatch`); each
distinct text that a row uses is measured once in Python (its words as `tokens.words` counts them, so
the check counts what the light text model reads) and the results are spread to the rows by code.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from modelci.data.columns import ColumnBatch
from modelci.data.text.tokens import normalized, words

# NOTE: U+FFFD is what a decoder puts for bytes it cannot read; control characters (Unicode's Cc: C0,
# DEL and C1) other than tab, newline and carriage return are what bytes read in the wrong encoding
# become (Windows-1252 quotes read as Latin-1 are C1 controls). Either means the text is damaged.
GARBLED = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class TextFacts:
    """Per row of one batch (rows without a text hold 0 and False); `present` marks the rows with one."""

    present: np.ndarray
    characters: np.ndarray  # int64
    tokens: np.ndarray  # int64: words
    blank: np.ndarray  # empty or whitespace only
    garbled: np.ndarray  # holds U+FFFD or a control character other than tab, newline, carriage return
    keys: np.ndarray  # (n, 2) uint64: BLAKE2b-128 of the normalized text
    words: Counter[str]  # every word of the batch's texts, each counted once per occurrence
    unknown: np.ndarray  # the words of each row's text outside the vocabulary given (0 without one)
    unknown_words: Counter[str]


def _hash(text: str) -> bytes:
    return hashlib.blake2b(normalized(text).encode(), digest_size=16).digest()


def _distinct(column: ColumnBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows with a text, the dictionary entries they use, and the position of each row's entry among those."""
    assert column.codes is not None
    present = column.codes >= 0 if column.missing is None else ~column.missing
    used = np.unique(column.codes[present])
    # NOTE: a Parquet batch's dictionary may be its row group's, holding values no row of this batch has
    spread = np.zeros(int(column.codes.max(initial=-1)) + 1, dtype=np.int64)
    spread[used] = np.arange(len(used))
    return present, used, np.where(present, spread[np.maximum(column.codes, 0)], 0)


def measure_texts(column: ColumnBatch, vocabulary: frozenset[str] | None = None) -> TextFacts:
    """Measure each distinct text of a text column's batch once; words outside `vocabulary` are counted too."""
    from modelci.data.arrow import positions

    assert column.dictionary is not None
    present, used, at = _distinct(column)
    texts: list[str] = column.dictionary.take(positions(used)).to_pylist()
    times = np.bincount(at[present], minlength=len(used))
    split = [words(text) for text in texts]
    counted: Counter[str] = Counter()
    unknown_words: Counter[str] = Counter()
    for found, repeat in zip(split, times.tolist(), strict=True):
        _count(counted, found, repeat)
        if vocabulary is not None:
            _count(unknown_words, [w for w in found if w not in vocabulary], repeat)
    unknown = [sum(w not in vocabulary for w in found) for found in split] if vocabulary is not None \
        else [0] * len(texts)
    keys = np.frombuffer(b"".join(map(_hash, texts)), dtype="<u8").reshape(-1, 2)

    def rows(values: list[int] | list[bool], dtype: type) -> np.ndarray:
        return np.where(present, np.asarray(values, dtype=dtype)[at], 0).astype(dtype) if len(values) \
            else np.zeros(len(at), dtype=dtype)

    return TextFacts(
        present=present, characters=rows([len(t) for t in texts], np.int64),
        tokens=rows([len(w) for w in split], np.int64), blank=rows([not t.strip() for t in texts], bool),
        garbled=rows([GARBLED.search(t) is not None for t in texts], bool),
        keys=keys[at] if len(texts) else np.zeros((len(at), 2), dtype=np.uint64),
        words=counted, unknown=rows(unknown, np.int64), unknown_words=unknown_words)


def _count(counter: Counter[str], found: list[str], repeat: int) -> None:
    if repeat == 1:
        counter.update(found)
    elif repeat > 1:
        for word in found:
            counter[word] += repeat
