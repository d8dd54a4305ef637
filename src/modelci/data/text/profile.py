"""A text column's profile without its texts: lengths as numbers, words as frequencies.

Per text column `review`, the data profile holds `review.characters` and `review.tokens` (each text's
length in characters and in words; numeric columns with histograms and sketches, so drift against a
baseline's profile is measured as for any number), and `review.token`, a categorical column whose values
are the texts' words, each counted once per occurrence, with the MAX_FREQUENCIES most frequent words'
frequencies (drift: PSI or Jensen-Shannon on them). Words are counted by a bounded counter, so memory
does not grow with the vocabulary; the training data's TOP_WORDS most frequent words are the
vocabulary the evaluation data's words are looked up in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelci.data.columns import ColumnBatch

TOP_WORDS = 20_000
# NOTE: the frequencies kept in the profile, as many as a string column's profile keeps (profile.MAX_FREQUENCIES)
SHOWN_WORDS = 1000
STATISTICS = ("characters", "tokens")
WORDS = "token"


class TopCounter:
    """The counts of the most frequent words, in bounded memory.

    At most 2 × `keep` words are counted; past that, only the `keep` most frequent stay (the counts of a word
    dropped and seen again start over, so a count may be short by what it had when dropped: the pruned
    words are the rare ones, and the frequent ones stay exact in practice).
    """

    def __init__(self, keep: int = TOP_WORDS) -> None:
        self.keep = keep
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.pruned = False

    def add(self, counted: Counter[str]) -> None:
        self.total += counted.total()
        self.counts.update(counted)
        if len(self.counts) > 2 * self.keep:
            self.counts = Counter(dict(self.counts.most_common(self.keep)))
            self.pruned = True

    def top(self, count: int) -> list[tuple[str, int]]:
        """The `count` most frequent words with their counts, most frequent first (ties by the word)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


@dataclass
class WordsProfile:
    """The `<column>.token` profile column: written as a categorical column's, from a counter the check fills."""

    counter: TopCounter
    nulls: int = 0  # rows without a text
    kind: str = field(default="string", init=False)

    @property
    def count(self) -> int:
        return self.counter.total

    def frequencies(self) -> list[list[Any]]:
        return [[word, count] for word, count in self.counter.top(SHOWN_WORDS)]

    def to_json(self) -> dict[str, Any]:
        distinct = len(self.counter.counts)
        return {"kind": "categorical", "type": self.kind, "count": self.count, "nulls": self.nulls,
                "distinct": f"more than {distinct}" if self.counter.pruned else distinct,
                "frequencies": self.frequencies()}


def lengths(values: np.ndarray, present: np.ndarray) -> ColumnBatch:
    """Per-row lengths as an int column of the profile; rows without a text are its empty values."""
    from modelci.data.arrow import positions

    missing = None if present.all() else ~present
    return ColumnBatch(kind="int", raw=positions(values), missing=missing, values=values)


def profile_names(column: str) -> tuple[str, ...]:
    """The profile columns of the text column `column`."""
    return (*(f"{column}.{s}" for s in STATISTICS), f"{column}.{WORDS}")
