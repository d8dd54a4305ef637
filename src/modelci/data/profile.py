"""The data profile: per-column statistics, computed batch by batch in bounded memory.

Numbers get count, empty values, min, max, mean, standard deviation, quantiles, a histogram with
its bin edges, and the bucket sketch that drift is measured on; text and booleans get value
frequencies. A `type: text` column is profiled without its texts, as its lengths and its words
(data/text/profile.py). The profile is kept in the model artifact, so the next pull request can measure how
its data moved without the baseline's raw data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelci.data.columns import ColumnBatch
from modelci.data.sketch import Sketch
from modelci.data.text.profile import WordsProfile

PROFILE_FILE = "data-profile.json"
PROFILE_VERSION = 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
# NOTE: text columns with more distinct values than this are identifiers, not categories: their
# frequencies are not kept (nor compared for drift).
MAX_FREQUENCIES = 1000
# NOTE: integer columns whose values span fewer than this many numbers (labels, codes, counts)
# also get frequencies, which class balance and drift on categories need.
INT_SPAN = 1024
SHOWN_FREQUENCIES = 50


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared differences from the mean; merged with Chan et al.'s parallel update."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge(self, other: Moments) -> Moments:
        total = self.n + other.n
        if other.n == 0:
            return self
        delta = other.mean - self.mean
        return Moments(total, self.mean + delta * other.n / total,
                       self.m2 + other.m2 + delta * delta * self.n * other.n / total)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else 0.0


@dataclass
class NumericProfile:
    kind: str
    count: int = 0
    nulls: int = 0
    infinite: int = 0
    min: float = np.inf
    max: float = -np.inf
    moments: Moments = Moments()  # of the values not held in `int_counts`
    sketch: Sketch = field(default_factory=Sketch)  # of the values not held in `int_counts`
    # NOTE: an integer column is counted value by value while its values span fewer than INT_SPAN
    # numbers; its moments and sketch then come from the counts, exactly and at no cost per batch.
    int_offset: int = 0
    int_counts: np.ndarray | None = None
    scratch: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def __post_init__(self) -> None:
        if self.kind == "int":
            self.int_counts = np.zeros(0, dtype=np.int64)

    def add(self, column: ColumnBatch) -> None:
        values = column.present
        self.nulls += len(column) - len(values)
        if column.bounds is None:
            return
        low, high = (float(b) for b in column.bounds)
        if self.kind == "float" and not (np.isfinite(low) and np.isfinite(high)):
            finite = np.isfinite(values)
            self.infinite += int(len(values) - finite.sum())
            values = values[finite]
            if len(values) == 0:
                return
            low, high = float(values.min()), float(values.max())
        self.count += len(values)
        self.min, self.max = min(self.min, low), max(self.max, high)
        if self.int_counts is not None:
            self._count_integers(values)
        if self.int_counts is None:
            self.moments = self.moments.merge(self._batch_moments(values))
            self.sketch.add(values.astype(np.float64, copy=False), bounds=(low, high))

    def _batch_moments(self, values: np.ndarray) -> Moments:
        n = len(values)
        mean = float(values.mean())
        if len(self.scratch) < n:
            self.scratch = np.empty(n, dtype=np.float64)
        # NOTE: centred in a buffer kept between batches: a fresh one each batch costs more in page
        # faults than the arithmetic does. einsum, not np.dot: BLAS threads spin after each call,
        # taking the core the reader thread decodes on.
        centered = np.subtract(values, mean, out=self.scratch[:n])
        return Moments(n, mean, float(np.einsum("i,i->", centered, centered)))

    def _count_integers(self, values: np.ndarray) -> None:
        assert self.int_counts is not None
        low, high = int(self.min), int(self.max)
        if high - low >= INT_SPAN:
            self.moments, self.sketch = self.all_moments(), self.all_values()
            self.int_counts = None
            return
        if len(self.int_counts) == 0 or low < self.int_offset or high >= self.int_offset + len(self.int_counts):
            grown = np.zeros(high - low + 1, dtype=np.int64)
            start = self.int_offset - low
            grown[start:start + len(self.int_counts)] = self.int_counts
            self.int_offset, self.int_counts = low, grown
        shifted = values - self.int_offset if self.int_offset else values
        self.int_counts += np.bincount(shifted, minlength=len(self.int_counts))

    def _held_integers(self) -> tuple[np.ndarray, np.ndarray]:
        """The integers counted in `int_counts` (as float64) and how many times each."""
        if self.int_counts is None:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        held = np.flatnonzero(self.int_counts)
        return (held + self.int_offset).astype(np.float64), self.int_counts[held]

    def all_moments(self) -> Moments:
        values, counts = self._held_integers()
        if len(values) == 0:
            return self.moments
        n = int(counts.sum())
        mean = float(np.dot(values, counts) / n)
        return self.moments.merge(Moments(n, mean, float(np.dot((values - mean) ** 2, counts))))

    def all_values(self) -> Sketch:
        """The sketch of every value, those held as integer counts included."""
        values, counts = self._held_integers()
        if len(values) == 0:
            return self.sketch
        sketch = Sketch(self.sketch.offset, self.sketch.counts.copy())
        sketch.add(values, weights=counts)
        return sketch

    def frequencies(self) -> list[list[Any]] | None:
        if self.int_counts is None:
            return None
        values, counts = self._held_integers()
        return [[int(v), int(c)] for v, c in zip(values, counts, strict=True)]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": "numeric", "type": self.kind, "count": self.count, "nulls": self.nulls,
                                "infinite": self.infinite}
        if self.count == 0:
            return data
        moments, sketch = self.all_moments(), self.all_values()
        edges, counts = sketch.histogram(self.min, self.max, HISTOGRAM_BINS)
        quantiles = zip(QUANTILES, sketch.quantiles(list(QUANTILES), self.min, self.max), strict=True)
        data |= {
            "min": _number(self.min, self.kind), "max": _number(self.max, self.kind),
            "mean": moments.mean, "std": moments.std,
            "quantiles": {f"p{round(q * 100)}": _number(v, self.kind) for q, v in quantiles},
            "histogram": {"edges": edges, "counts": counts},
            "sketch": sketch.to_json(),
        }
        frequencies = self.frequencies()
        if frequencies is not None and len(frequencies) <= SHOWN_FREQUENCIES:
            data["frequencies"] = frequencies
        return data


def _number(value: float, kind: str) -> float | int:
    return round(value) if kind == "int" else value


@dataclass
class CategoricalProfile:
    kind: str
    count: int = 0
    nulls: int = 0
    counts: dict[Any, int] | None = field(default_factory=dict)

    def add(self, column: ColumnBatch) -> None:
        present = len(column) - (int(column.missing.sum()) if column.missing is not None else 0)
        self.count += present
        self.nulls += len(column) - present
        if self.counts is None:
            return
        if self.kind == "bool":
            values = column.present
            names: list[Any] = [False, True]
            tally = np.bincount(values, minlength=2)
        else:
            assert column.dictionary is not None
            assert column.codes is not None
            names = column.dictionary.to_pylist()
            codes = column.codes if column.missing is None else column.codes[~column.missing]
            tally = np.bincount(codes, minlength=len(names))
        for at in np.flatnonzero(tally):
            self.counts[names[at]] = self.counts.get(names[at], 0) + int(tally[at])
        if len(self.counts) > MAX_FREQUENCIES:
            self.counts = None

    def frequencies(self) -> list[list[Any]] | None:
        if self.counts is None:
            return None
        return [[value, count] for value, count in sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]

    def to_json(self) -> dict[str, Any]:
        frequencies = self.frequencies()
        return {"kind": "categorical", "type": self.kind, "count": self.count, "nulls": self.nulls,
                "distinct": len(frequencies) if frequencies is not None else f"more than {MAX_FREQUENCIES}",
                "frequencies": frequencies}


ColumnProfile = NumericProfile | CategoricalProfile
AnyProfile = ColumnProfile | WordsProfile  # NOTE: a text column's words, counted by its checker (data/text)


def column_profile(kind: str) -> ColumnProfile:
    return NumericProfile(kind) if kind in ("int", "float") else CategoricalProfile(kind)


@dataclass
class DatasetProfile:
    rows: int = 0
    columns: dict[str, AnyProfile] = field(default_factory=dict)

    def add(self, name: str, column: ColumnBatch) -> None:
        if name not in self.columns:
            self.columns[name] = column_profile(column.kind)
        profile = self.columns[name]
        assert not isinstance(profile, WordsProfile), f"{name}: a text column's words are added by its checker"
        profile.add(column)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": {name: p.to_json() for name, p in self.columns.items()}}
