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
_SIGN = np.int64(-(2**63))
_SIGN_SHIFT = np.int64(63)


def bucket_of(values: np.ndarray) -> np.ndarray:
    """The bucket number of each finite float64 value; bucket numbers increase with the values."""
    # NOTE: flipping every bit of a negative float and the sign bit of a positive one gives
    # unsigned integers in the order of the values; the top bits of those are the bucket.
    bits = values.view(np.int64)
    flipped = bits >> _SIGN_SHIFT
    flipped |= _SIGN
    flipped ^= bits
    return np.asarray((flipped.view(np.uint64) >> _SHIFT).view(np.int64))


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
    """Counts per bucket: a dense array over the buckets seen so far."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, values: np.ndarray, weights: np.ndarray | None = None,
            bounds: tuple[float, float] | None = None) -> None:
        """Count float64 values (each `weights` times); `bounds`, their min and max if known, saves a pass."""
        if len(values) == 0:
            return
        buckets = bucket_of(values)
        if bounds is None:
            low, high = int(buckets.min()), int(buckets.max())
        else:
            low, high = (int(b) for b in bucket_of(np.asarray(bounds, dtype=np.float64)))
        self._cover(low, high)
        counted = np.bincount(buckets - low, weights=weights, minlength=high - low + 1).astype(np.int64)
        self.counts[low - self.offset: high - self.offset + 1] += counted

    def _cover(self, low: int, high: int) -> None:
        if len(self.counts) == 0:
            self.offset, self.counts = low, np.zeros(high - low + 1, dtype=np.int64)
            return
        start, end = min(low, self.offset), max(high, self.offset + len(self.counts) - 1)
        if start == self.offset and end == self.offset + len(self.counts) - 1:
            return
        grown = np.zeros(end - start + 1, dtype=np.int64)
        grown[self.offset - start: self.offset - start + len(self.counts)] = self.counts
        self.offset, self.counts = start, grown

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """The buckets that hold values, and their counts."""
        held = np.flatnonzero(self.counts)
        return held + self.offset, self.counts[held]

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
        buckets = np.asarray(data["buckets"], dtype=np.int64)
        if len(buckets):
            sketch._cover(int(buckets.min()), int(buckets.max()))
            sketch.counts[buckets - sketch.offset] = np.asarray(data["counts"], dtype=np.int64)
        return sketch
