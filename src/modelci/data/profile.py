"""The data profile: per-column statistics, computed batch by batch in bounded memory.

Numbers get count, empty values, min, max, mean, standard deviation, quantiles, a histogram with
its bin edges, and the bucket sketch that drift is measured on; text and booleans get value
frequencies. The profile is kept in the model artifact, so the next pull request can measure how
its data moved without the baseline's raw data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelci.data.columns import ColumnBatch
from modelci.data.sketch import Sketch

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


@dataclass
class NumericProfile:
    kind: str
    count: int = 0
    nulls: int = 0
    infinite: int = 0
    min: float = np.inf
    max: float = -np.inf
    mean: float = 0.0
    m2: float = 0.0  # sum of squared differences from the mean (Chan et al.'s parallel update)
    sketch: Sketch = field(default_factory=Sketch)
    int_offset: int = 0
    int_counts: np.ndarray | None = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, column: ColumnBatch) -> None:
        values = column.present()
        assert values is not None
        self.nulls += len(column) - len(values)
        if self.kind == "float":
            finite = np.isfinite(values)
            if not finite.all():
                self.infinite += int(len(values) - finite.sum())
                values = values[finite]
        if len(values) == 0:
            return
        low, high = self._moments(values)
        if self.kind == "int":
            self._count_integers(values)
        if self.int_counts is None or self.kind != "int":
            self.sketch.add(values.astype(np.float64, copy=False), bounds=(low, high))

    def _moments(self, values: np.ndarray) -> tuple[float, float]:
        n = len(values)
        low, high = float(values.min()), float(values.max())
        self.min, self.max = min(self.min, low), max(self.max, high)
        mean = float(values.mean())
        centered = values - mean
        m2 = float(np.einsum("i,i->", centered, centered))
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        return low, high

    def _count_integers(self, values: np.ndarray) -> None:
        if self.int_counts is None:
            return
        low, high = int(self.min), int(self.max)
        if high - low >= INT_SPAN:
            self._flush_integers()
            self.int_counts = None
            return
        if len(self.int_counts) == 0 or low < self.int_offset or high >= self.int_offset + len(self.int_counts):
            grown = np.zeros(high - low + 1, dtype=np.int64)
            start = self.int_offset - low
            grown[start:start + len(self.int_counts)] = self.int_counts
            self.int_offset, self.int_counts = low, grown
        self.int_counts += np.bincount(values - self.int_offset, minlength=len(self.int_counts))

    def _flush_integers(self) -> None:
        """Move the integer counts into the sketch (kept as counts while the values span little)."""
        if self.int_counts is not None and len(self.int_counts):
            held = np.flatnonzero(self.int_counts)
            self.sketch.add((held + self.int_offset).astype(np.float64), weights=self.int_counts[held])

    def frequencies(self) -> list[list[Any]] | None:
        if self.int_counts is None or self.kind != "int":
            return None
        held = np.flatnonzero(self.int_counts)
        return [[int(v + self.int_offset), int(self.int_counts[v])] for v in held]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": "numeric", "type": self.kind, "count": self.count, "nulls": self.nulls,
                                "infinite": self.infinite}
        if self.count == 0:
            return data
        if self.int_counts is not None and self.sketch.total < self.count:
            self._flush_integers()
        std = float(np.sqrt(self.m2 / (self.count - 1))) if self.count > 1 else 0.0
        edges, counts = self.sketch.histogram(self.min, self.max, HISTOGRAM_BINS)
        data |= {
            "min": _number(self.min, self.kind), "max": _number(self.max, self.kind),
            "mean": self.mean, "std": std,
            "quantiles": dict(zip((f"p{round(q * 100)}" for q in QUANTILES),
                                  (_number(v, self.kind) for v in self.sketch.quantiles(list(QUANTILES), self.min,
                                                                                        self.max)), strict=True)),
            "histogram": {"edges": edges, "counts": counts},
            "sketch": self.sketch.to_json(),
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
            values = column.present()
            assert values is not None
            names: list[Any] = [False, True]
            tally = np.bincount(values, minlength=2)
        else:
            assert column.dictionary is not None
            assert column.codes is not None
            names = column.dictionary.to_pylist()
            tally = np.bincount(column.codes[column.codes >= 0], minlength=len(names))
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


def column_profile(kind: str) -> ColumnProfile:
    return NumericProfile(kind) if kind in ("int", "float") else CategoricalProfile(kind)


@dataclass
class DatasetProfile:
    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def add(self, name: str, column: ColumnBatch) -> None:
        if name not in self.columns:
            self.columns[name] = column_profile(column.kind)
        self.columns[name].add(column)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": {name: p.to_json() for name, p in self.columns.items()}}
