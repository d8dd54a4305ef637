"""A bounded Bloom filter of the rows a model was trained on, kept in its artifact.

A later comparison asks it which of its evaluation rows the baseline was trained on (`compare/overlap.py`).
The rows are the training and validation frames as the model saw them: after `data.clean` and after
the evaluation split, so a split's evaluation rows are not in it; the validation rows are, as they
chose the model (early stopping, the kept epoch). A row's key is the data check's 128-bit row key
(`rowhash.RowHasher` over `ColumnBatch.bits`) with two choices that make it the same for the same
row in another run: the columns are taken in order of their names (not the file's order), and every
number or boolean is hashed as a float64 (an int column with a missing value becomes float in a
frame; 1, 1.0 and true are one value). Every column of the frame is covered, label included, and
the names are recorded, so a later run hashes exactly those columns even if it has more.

An image column (an image model's, whose values are the images' paths, absolute and different on every
runner, or their encoded bytes) is hashed by each image's content instead: the BLAKE2b-128 hash of its
file's bytes, the hash the data check uses for duplicates and leakage (`data/images/measure.py`). The
header names those columns (`images`), so a later run hashes its evaluation images the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.data.columns import column_batch
from modelci.data.rowhash import RowHasher
from modelci.data.schema import arrow_kind

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SKETCH_FILE = "train-rows.bloom"
SKETCH_VERSION = 1
SCHEME = "rowkey-v1: columns by name, numbers as float64; bit i of k: (key[0] + i * (key[1] | 1)) mod bits"
TARGET_RATE = 0.001  # the false-positive rate the filter is sized for while it is under the cap
MAX_BYTES = 8 << 20  # NOTE: the cap on the filter's size; past ~4.6M training rows its false-positive rate grows
MAX_HASHES = 16
CHUNK = 1 << 16  # rows whose bit positions are held at once: k * 8 bytes each
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _arrow(series: pd.Series) -> pa.Array:
    import pyarrow as pa

    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is None or arrow_kind(array.type) is None:
        # NOTE: mixed Python objects, dates, lists...: hashed as their text, which both runs see alike
        array = pa.array(series.astype(str), from_pandas=True)
    return array


def content_hash(value: object) -> str:
    """An image's content hash in hex: BLAKE2b-128 of its encoded bytes (`value` is the bytes or the file's path),
    as the data check hashes images; a file that cannot be read keeps its path, marked so."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        try:
            data = Path(str(value)).read_bytes()
        except OSError:
            # NOTE: the data check names such a file; here it just matches no other image
            return f"unreadable:{value}"
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def frame_keys(frame: pd.DataFrame, columns: list[str], images: Collection[str] = ()) -> np.ndarray:
    """The (n, 2) uint64 row key of each row of `frame` over `columns` (hashed in sorted order); the columns in
    `images` by their images' content hashes."""
    hasher = RowHasher(len(frame))
    named = {str(c): c for c in frame.columns}
    for name in sorted(columns):
        series = frame[named[name]]
        array = _arrow(series.map(content_hash) if name in images else series)
        kind = "float" if arrow_kind(array.type) in ("int", "float", "bool") else "string"
        hasher.add(column_batch(array, kind).bits())
    return hasher.keys()


def _size(rows: int) -> tuple[int, int, bool]:
    """(bits, hashes, capped) for `rows` keys at TARGET_RATE: the bits a multiple of 64, at most MAX_BYTES * 8."""
    wanted = max(64, -(-math.ceil(-max(rows, 1) * math.log(TARGET_RATE) / math.log(2) ** 2) // 64) * 64)
    bits = min(wanted, MAX_BYTES * 8)
    # NOTE: the number of hashes that minimises the false-positive rate for these bits and rows
    hashes = max(1, min(MAX_HASHES, round(bits / max(rows, 1) * math.log(2))))
    return bits, hashes, wanted > bits


@dataclass(frozen=True)
class SketchHeader:
    """What a reader needs to look keys up, and how often a key that was never added is found."""

    rows: int  # keys added (duplicates included)
    bits: int
    hashes: int
    columns: list[str]  # sorted: the columns a row key covers
    false_positive_rate: float  # of this filter, from its share of set bits
    target_false_positive_rate: float = TARGET_RATE
    capped: bool = False  # the size cap, not the target rate, set the size
    images: list[str] = field(default_factory=list)  # columns hashed by their images' content (`content_hash`)
    scheme: str = SCHEME
    version: int = SKETCH_VERSION


class RowSketch:
    """A Bloom filter over row keys, its bits packed 8 to a byte (bit i is bit i % 8 of byte i // 8)."""

    def __init__(self, header: SketchHeader, packed: np.ndarray) -> None:
        self.header = header
        self.packed = packed

    @classmethod
    def build(cls, keys: np.ndarray, columns: list[str], images: Collection[str] = ()) -> RowSketch:
        bits, hashes, capped = _size(len(keys))
        # NOTE: one byte per bit while building (at most 64 MiB at the cap): setting bytes is several times
        # faster than or-ing bits into packed bytes (np.bitwise_or.at)
        flags = np.zeros(bits, dtype=bool)
        for start in range(0, len(keys), CHUNK):
            flags[_positions(keys[start:start + CHUNK], bits, hashes).ravel()] = True
        packed = np.packbits(flags, bitorder="little")
        rate = (int(_POPCOUNT[packed].sum()) / bits) ** hashes
        header = SketchHeader(rows=len(keys), bits=bits, hashes=hashes, columns=sorted(columns),
                              false_positive_rate=rate, capped=capped, images=sorted(images))
        return cls(header, packed)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """True for each key that is (probably) in the filter; False only for keys certainly not in it."""
        found = np.zeros(len(keys), dtype=bool)
        for start in range(0, len(keys), CHUNK):
            at = _positions(keys[start:start + CHUNK], self.header.bits, self.header.hashes)
            set_bits = (self.packed[at >> np.uint64(3)] >> (at & np.uint64(7)).astype(np.uint8)) & 1
            found[start:start + CHUNK] = set_bits.all(axis=1)
        return found

    def to_bytes(self) -> bytes:
        """One line of JSON (the header), then the packed bits."""
        fields = asdict(self.header)
        if not fields["images"]:
            del fields["images"]  # NOTE: a table's sketch stays as modelci wrote it before images, for older readers
        return json.dumps(fields).encode() + b"\n" + self.packed.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> RowSketch:
        """Raises ValueError when the data is no sketch of this version."""
        line, _, body = data.partition(b"\n")
        fields: dict[str, Any] = json.loads(line)
        if not isinstance(fields, dict) or fields.get("version") != SKETCH_VERSION:
            found = fields.get("version") if isinstance(fields, dict) else None
            raise ValueError(f"version {found}, and this modelci reads version {SKETCH_VERSION}")
        header = SketchHeader(**fields)
        if len(body) * 8 != header.bits:
            raise ValueError(f"{len(body) * 8} bits where its header says {header.bits}")
        return cls(header, np.frombuffer(body, dtype=np.uint8))


def _positions(keys: np.ndarray, bits: int, hashes: int) -> np.ndarray:
    """(n, k) bit positions by double hashing (Kirsch and Mitzenmacher): the two lanes of the row key."""
    first, step = keys[:, :1], keys[:, 1:] | np.uint64(1)
    # NOTE: uint64 arithmetic wraps, as the scheme says; the multiply is by small integers
    return np.asarray((first + step * np.arange(hashes, dtype=np.uint64)) % np.uint64(bits))


def write_training_sketch(out: Path, train: pd.DataFrame, *others: pd.DataFrame,
                          images: Collection[str] = ()) -> RowSketch:
    """Write the sketch of the training rows (and of `others`: the validation rows) to OUT/train-rows.bloom.

    The training frame's columns are the ones covered; another frame that lacks one of them is left out.
    `images`: the image columns (`Datasets.images`), hashed by content.
    """
    from modelci import atomic

    columns = [str(c) for c in train.columns]
    images = [c for c in columns if c in images]
    frames = [train, *(f for f in others if set(columns) <= {str(c) for c in f.columns})]
    sketch = RowSketch.build(np.concatenate([frame_keys(f, columns, images) for f in frames]), columns, images)
    atomic.write_bytes(out / SKETCH_FILE, sketch.to_bytes())
    return sketch
