"""128-bit row keys, and exact duplicate and overlap counts over them in bounded memory.

Each value is turned into 64 bits that depend only on its content (`ColumnBatch.bits`), mixed,
and folded into two independent 64-bit lanes. Two different rows share a key with probability
about 2**-128, so the counts are exact for any table that fits on a disk. Keys are kept in memory
up to a limit, then spilled to disk in runs sorted into 256 partitions by their top byte; each
partition is then small enough to count on its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    from modelci.data.columns import ColumnBatch

# NOTE: odd constants from splitmix64 and the golden ratio; any odd 64-bit constants would do,
# but changing them changes every fingerprint, so they are part of the fingerprint's version.
_PREMIX = np.uint64(0x9E3779B97F4A7C15)
_LANE1 = np.uint64(0xBF58476D1CE4E5B9)
_LANE2 = np.uint64(0x94D049BB133111EB)
_SHIFT32 = np.uint64(32)
_SHIFT29 = np.uint64(29)
PARTITIONS = 256
SPILL_ROWS = 1 << 21  # keys held in memory before they go to disk: 2M keys, 48 MB with row numbers
SAMPLES = 5
OPEN_RUNS = 200  # spilled runs read with their files kept open (two each); beyond, opened per partition


def _premix(bits: np.ndarray) -> np.ndarray:
    # NOTE: folds the high bits into the low ones, so values that differ only in their top bits
    # (floats of different magnitude) still differ in every bit after the multiply.
    mixed = np.right_shift(bits, _SHIFT32)
    np.bitwise_xor(mixed, bits, out=mixed)
    np.multiply(mixed, _PREMIX, out=mixed)
    return np.asarray(mixed)


def _finish(lane: np.ndarray) -> np.ndarray:
    lane ^= lane >> _SHIFT29
    lane *= _LANE1
    lane ^= lane >> _SHIFT32
    return lane


class RowHasher:
    """Folds columns into two 64-bit lanes per row, column by column."""

    def __init__(self, rows: int) -> None:
        self.lane1 = np.zeros(rows, dtype=np.uint64)
        self.lane2 = np.zeros(rows, dtype=np.uint64)

    def add(self, bits: np.ndarray) -> None:
        mixed = _premix(bits)
        np.multiply(self.lane1, _LANE1, out=self.lane1)
        np.add(self.lane1, mixed, out=self.lane1)
        np.multiply(self.lane2, _LANE2, out=self.lane2)
        np.add(self.lane2, mixed, out=self.lane2)

    def keys(self) -> np.ndarray:
        """The row keys: an (n, 2) uint64 array."""
        return np.stack([_finish(self.lane1), _finish(self.lane2)], axis=1)


def row_keys(columns: list[ColumnBatch], rows: int) -> np.ndarray:
    """The (n, 2) key of each row of the given columns."""
    hasher = RowHasher(rows)
    for column in columns:
        hasher.add(column.bits())
    return hasher.keys()


def _repeated(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    """A mask of `values` that occur in the sorted array `among`."""
    if len(among) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(among, values), len(among) - 1)
    return np.asarray(among[at] == values)


def _distinct_sorted(lane: np.ndarray) -> np.ndarray:
    keep = np.ones(len(lane), dtype=bool)
    keep[1:] = lane[1:] != lane[:-1]
    return lane[keep]


def _group_starts(lane: np.ndarray) -> np.ndarray:
    """For a sorted lane, the index of the first entry of each entry's run of equal values."""
    start = np.ones(len(lane), dtype=bool)
    start[1:] = lane[1:] != lane[:-1]
    return np.asarray(np.maximum.accumulate(np.where(start, np.arange(len(lane)), 0)))


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """A mask of the rows whose key has not appeared in an earlier row."""
    # NOTE: sorting the first lane alone is fast (numpy sorts 64-bit integers with SIMD); only the
    # rows whose first lane repeats are grouped, in order of appearance, and compared on both lanes.
    lane = np.sort(keys[:, 0])
    twice = _distinct_sorted(lane[1:][lane[1:] == lane[:-1]])
    first = np.ones(len(keys), dtype=bool)
    # NOTE: when many rows repeat, looking each one up costs more than grouping them all.
    many = len(twice) * 16 > len(keys)
    candidates = np.arange(len(keys)) if many else np.flatnonzero(_repeated(keys[:, 0], twice))
    order = candidates[np.argsort(keys[candidates, 0], kind="stable")]
    starts = _group_starts(keys[order, 0])
    agrees = keys[order, 1] == keys[order[starts], 1]
    first[order[(starts != np.arange(len(order))) & agrees]] = False
    for start in np.unique(starts[~agrees]):
        # NOTE: two different keys share the first lane (a 1-in-2**64 event): settle that run on both lanes.
        run = order[start:][keys[order[start:], 0] == keys[order[start], 0]]
        seen: set[tuple[int, int]] = set()
        for row in run:
            key = (int(keys[row, 0]), int(keys[row, 1]))
            first[row] = key not in seen
            seen.add(key)
    return first


def shared_keys(keys: np.ndarray, other: np.ndarray) -> np.ndarray:
    """A mask of the rows of `keys` whose key is also in `other`."""
    shared = np.zeros(len(keys), dtype=bool)
    mine = np.flatnonzero(_repeated(keys[:, 0], np.sort(other[:, 0])))
    theirs = other[_repeated(other[:, 0], np.sort(keys[mine, 0]))]
    theirs = theirs[np.argsort(theirs[:, 0], kind="stable")]
    low = np.searchsorted(theirs[:, 0], keys[mine, 0], side="left")
    high = np.searchsorted(theirs[:, 0], keys[mine, 0], side="right")
    shared[mine] = theirs[low, 1] == keys[mine, 1] if len(mine) else False
    for i in np.flatnonzero(~shared[mine] & (high - low > 1)):
        # NOTE: the first lane matches several of theirs; look at both lanes of each (rare).
        shared[mine[i]] = bool((theirs[low[i]:high[i], 1] == keys[mine[i], 1]).any())
    return shared


@dataclass
class Matches:
    """Rows that repeat a key: how many, and the first few row numbers."""

    rows: int = 0
    sample_rows: list[int] = field(default_factory=list)

    def add(self, rows: np.ndarray) -> None:
        self.rows += len(rows)
        self.sample_rows = sorted([*self.sample_rows, *rows[:SAMPLES].tolist()])[:SAMPLES]


class KeyStore:
    """Row keys with their row numbers, in memory up to `limit` keys and then on disk.

    Each spill writes one run: the held keys sorted by partition into one file, their row numbers
    into another, and where each partition starts kept in memory. Reading a partition back takes
    its slice of every run.
    """

    def __init__(self, limit: int = SPILL_ROWS) -> None:
        self.limit = limit
        self._keys: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._held = 0
        self._spill: Path | None = None
        self._runs: list[np.ndarray] = []  # per run: partition p is [bounds[p], bounds[p + 1])

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self._keys.append(keys)
        self._rows.append(rows.astype(np.int64, copy=False))
        self._held += len(keys)
        if self._held >= self.limit:
            self._write_run()

    def _write_run(self) -> None:
        if not self._keys:
            return
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="modelci-keys-"))
        keys, rows, bounds = self._sorted_held()
        keys.tofile(self._spill / f"{len(self._runs)}.keys")
        rows.tofile(self._spill / f"{len(self._runs)}.rows")
        self._runs.append(bounds)
        self._keys, self._rows, self._held = [], [], 0

    @property
    def spilled(self) -> bool:
        return self._spill is not None

    def _sorted_held(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The held keys and rows ordered by partition (stably), and where each partition starts."""
        keys, rows = np.concatenate(self._keys), np.concatenate(self._rows)
        part = (keys[:, 0] >> np.uint64(56)).astype(np.uint8)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(PARTITIONS + 1))
        # NOTE: np.take is several times faster than fancy indexing here.
        return np.take(keys, order, axis=0), np.take(rows, order), bounds

    def _split_held(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if not self._keys:
            return
        keys, rows, bounds = self._sorted_held()
        for p in range(PARTITIONS):
            if bounds[p + 1] > bounds[p]:
                yield p, keys[bounds[p]:bounds[p + 1]], rows[bounds[p]:bounds[p + 1]]

    def partitions(self, split: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(partition, keys, rows) in increasing partition order, rows in the order added.

        Unless the store spilled or `split` is asked for, everything is one partition, numbered -1.
        """
        if self._spill is None:
            if split:
                yield from self._split_held()
            elif self._keys:
                yield -1, np.concatenate(self._keys), np.concatenate(self._rows)
            return
        self._write_run()
        # NOTE: two files per run stay open for the whole read, unless there are so many runs (a
        # table of billions of rows) that they would pass the open-file limit: then per partition.
        keep_open = len(self._runs) <= OPEN_RUNS
        with ExitStack() as files:
            opened = self._open_runs(files) if keep_open else []
            for p in range(PARTITIONS):
                with ExitStack() as partition_files:
                    runs = opened if keep_open else self._open_runs(partition_files)
                    slices = [_read_run(keys, rows, int(bounds[p]), int(bounds[p + 1]))
                              for keys, rows, bounds in runs if bounds[p + 1] > bounds[p]]
                if slices:
                    yield p, np.concatenate([k for k, _ in slices]), np.concatenate([r for _, r in slices])

    def _open_runs(self, files: ExitStack) -> list[tuple[BinaryIO, BinaryIO, np.ndarray]]:
        assert self._spill is not None
        return [(files.enter_context((self._spill / f"{r}.keys").open("rb")),
                 files.enter_context((self._spill / f"{r}.rows").open("rb")), bounds)
                for r, bounds in enumerate(self._runs)]

    def duplicates(self) -> Matches:
        """The rows whose key appeared in an earlier row."""
        found = Matches()
        for _, keys, rows in self.partitions(split=False):
            found.add(np.sort(rows[~first_occurrences(keys)]))
        return found

    def shared_with(self, other: KeyStore) -> Matches:
        """This store's rows whose key is also in `other` (train/eval leakage)."""
        split = self.spilled or other.spilled
        theirs = other.partitions(split)
        current = next(theirs, None)
        found = Matches()
        for p, keys, rows in self.partitions(split):
            # NOTE: both stores yield partitions in increasing order: a merge join holds one of each.
            while current is not None and current[0] < p:
                current = next(theirs, None)
            if current is not None and current[0] == p:
                found.add(np.sort(rows[shared_keys(keys, current[1])]))
        return found


def _read_run(keys: BinaryIO, rows: BinaryIO, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries `start` to `end` of one spilled run: (n, 2) keys and their row numbers."""
    keys.seek(start * 16)
    rows.seek(start * 8)
    return (np.fromfile(keys, dtype=np.uint64, count=(end - start) * 2).reshape(-1, 2),
            np.fromfile(rows, dtype=np.int64, count=end - start))
