"""A mergeable histogram of a numeric column on a fixed grid of log-spaced buckets.

A value's bucket is its float64 bit pattern cut after 6 bits of mantissa: 64 buckets per power of
two, so every bucket spans less than 1.6% of its values and a quantile read from the buckets is
within 0.8% of the true one. The grid is the same for every column and every dataset, so two
profiles can be compared bucket by bucket (drift) without the raw data, and counts stay exact.
Integers below 128 each get a bucket of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MANTISSA_BITS = 6
_SHIFT = np.uint64(52 - MANTISSA_BITS)
_NEGATIVE = 1 << (11 + MANTISSA_BITS)  # the first bit pattern with the sign bit set
_LAST = 2 * _NEGATIVE - 1


def pattern_of(values: np.ndarray) -> np.ndarray:
    """The top bits of each float64 (sign, exponent, 6 bits of mantissa): its bucket, in bit-pattern order."""
    return np.asarray((values.view(np.uint64) >> _SHIFT).view(np.int64))


def _ordered(patterns: np.ndarray) -> np.ndarray:
    """Bucket numbers in the order of the values: negative values' patterns grow with their magnitude."""
    return np.where(patterns < _NEGATIVE, patterns + _NEGATIVE, _LAST - patterns)


def _patterns(buckets: np.ndarray) -> np.ndarray:
    """The inverse of `_ordered`."""
    return np.where(buckets >= _NEGATIVE, buckets - _NEGATIVE, _LAST - buckets)


def bucket_of(values: np.ndarray) -> np.ndarray:
    """The bucket number of each finite float64 value; bucket numbers increase with the values."""
    return _ordered(pattern_of(values))


def _value_at(buckets: np.ndarray) -> np.ndarray:
    """The smallest value in each bucket (undoing the flip of `bucket_of`)."""
    flipped = buckets.astype(np.uint64) << _SHIFT
    positive = (flipped >> np.uint64(63)) == 1
    bits = np.where(positive, flipped ^ np.uint64(1 << 63), ~flipped)
    return np.asarray(bits.view(np.float64))


def bucket_edges(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower (included) and upper (excluded) edge of each bucket."""
    return _value_at(buckets), _value_at(buckets + 1)


@dataclass
class Sketch:
    """Counts per bucket: a dense array over the bit patterns seen so far."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _held: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, values: np.ndarray, weights: np.ndarray | None = None,
            bounds: tuple[float, float] | None = None) -> None:
        """Count float64 values (each `weights` times); `bounds`, their min and max if known, saves two passes."""
        if len(values) == 0:
            return
        # NOTE: counted by bit pattern, which is one shift per value; ordering the buckets by value
        # is left to the few that hold values, when the sketch is read.
        self._held = None
        patterns = pattern_of(values)
        low, high = _span(*bounds) if bounds is not None else (int(patterns.min()), int(patterns.max()))
        self._cover(low, high)
        patterns -= self.offset
        # NOTE: counted in place: data that crosses zero spans some 10^5 patterns (the tiny magnitudes
        # between), and a bincount would allocate and add that many each batch.
        np.add.at(self.counts, patterns, 1 if weights is None else weights)

    def _cover(self, low: int, high: int) -> None:
        end = self.offset + len(self.counts) - 1
        if len(self.counts) and self.offset <= low and high <= end:
            return
        # NOTE: grown to whole powers of two and one more on each side: each new batch tends to reach
        # a little further out, and copying the counts every time would cost more than counting.
        binade = 1 << MANTISSA_BITS
        start = (min(low, self.offset) if len(self.counts) else low) // binade * binade - binade
        stop = (max(high, end) if len(self.counts) else high) // binade * binade + 2 * binade
        start, stop = max(start, 0), min(stop, _LAST + 1)
        grown = np.zeros(stop - start, dtype=np.int64)
        grown[self.offset - start: self.offset - start + len(self.counts)] = self.counts
        self.offset, self.counts = start, grown

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """The buckets that hold values, in increasing order, and their counts."""
        if self._held is None:
            held = np.flatnonzero(self.counts)
            buckets = _ordered(held + self.offset)
            order = np.argsort(buckets)
            self._held = buckets[order], self.counts[held[order]]
        return self._held

    def quantiles(self, probabilities: list[float], low: float, high: float) -> list[float]:
        """Each quantile as the middle of its bucket, kept inside the observed [low, high]."""
        buckets, counts = self.buckets()
        if len(buckets) == 0:
            return []
        rank = np.cumsum(counts)
        at = np.searchsorted(rank, np.asarray(probabilities) * rank[-1], side="left")
        lower, upper = bucket_edges(buckets[np.minimum(at, len(buckets) - 1)])
        # NOTE: the buckets next to zero reach down to the smallest float: zero is their value.
        middle = np.where((lower == 0) | (upper == 0), 0.0, (lower + upper) / 2)
        return [float(v) for v in np.clip(middle, low, high)]

    def histogram(self, low: float, high: float, bins: int) -> tuple[list[float], list[int]]:
        """`bins` bins from `low` to `high`, equal in width between the 1st and 99th percentiles.

        Every inner edge is moved down to a bucket edge, so the counts are exact; bins that
        would be empty at that resolution are merged into their neighbour.
        """
        buckets, counts = self.buckets()
        if len(buckets) == 0:
            return [], []
        lower, _ = bucket_edges(buckets)
        # NOTE: equal widths from min to max would put everything in one bin when one outlier is far out.
        p01, p99 = self.quantiles([0.01, 0.99], low, high)
        targets = np.linspace(p01, p99, bins - 1) if bins > 2 else np.array([(low + high) / 2])
        cut = np.unique(np.searchsorted(lower, targets, side="right") - 1)
        cut = cut[(cut > 0) & (cut < len(buckets))]
        edges = [low, *(float(v) for v in lower[cut]), high]
        sums = np.add.reduceat(counts, np.concatenate([[0], cut]))
        return edges, [int(c) for c in sums]

    def to_json(self) -> dict[str, Any]:
        buckets, counts = self.buckets()
        return {"mantissa_bits": MANTISSA_BITS, "buckets": buckets.tolist(), "counts": counts.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sketch:
        if data.get("mantissa_bits") != MANTISSA_BITS:
            raise ValueError(f"a sketch with {data.get('mantissa_bits')} mantissa bits; this modelci reads "
                             f"{MANTISSA_BITS}")
        sketch = cls()
        patterns = _patterns(np.asarray(data["buckets"], dtype=np.int64))
        if len(patterns):
            sketch._cover(int(patterns.min()), int(patterns.max()))
            sketch.counts[patterns - sketch.offset] = np.asarray(data["counts"], dtype=np.int64)
        return sketch


def _span(low: float, high: float) -> tuple[int, int]:
    """The lowest and highest bit pattern of any value from `low` to `high` (zero has two: 0.0 and -0.0)."""
    ends = pattern_of(np.array([low, high, *((0.0, -0.0) if low <= 0 <= high else ())], dtype=np.float64))
    return int(ends.min()), int(ends.max())
