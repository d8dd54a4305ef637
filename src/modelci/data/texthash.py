"""64 bits per text value, equal to `pandas.util.hash_array(values, categorize=False)`, without importing pandas.

The row keys, and so every dataset fingerprint, hash text with pandas' SipHash-2-4 (its fixed
key) and its final mix. Importing pandas costs a `modelci data check` a few tenths of a second,
more than hashing the distinct values of a batch takes when they are few (categories). So the
hash is computed here with numpy, on the UTF-8 bytes Arrow already holds, and pandas is imported
only for a dictionary large enough that its C loop pays for its import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from modelci.data.arrow import strings

if TYPE_CHECKING:
    import pyarrow as pa

# NOTE: a dictionary of more bytes than this is hashed by pandas, whose C loop is several times
# faster per byte than the numpy rounds below; this many bytes take numpy a few milliseconds.
NUMPY_BYTES = 1 << 20
_KEY = b"0123456789123456"  # pandas' default hash_key
_K0, _K1 = (int.from_bytes(_KEY[i:i + 8], "little") for i in (0, 8))
_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
_NULL = "None"  # pandas hashes a missing value as the text of `str(None)`


def text_hashes(words: pa.Array) -> np.ndarray:
    """One uint64 per value of a string array (a null as pandas hashes it), as pandas hashes them."""
    import pyarrow.compute as pc

    if words.null_count:
        words = pc.fill_null(words, strings([_NULL])[0])
    offsets = _offsets(words)
    if offsets[-1] - offsets[0] > NUMPY_BYTES:
        import pandas as pd

        objects = words.to_numpy(zero_copy_only=False)
        return np.asarray(pd.util.hash_array(objects, categorize=False), dtype=np.uint64)
    return _mix(_siphash(_utf8(words, offsets), offsets[:-1], np.diff(offsets)))


def _offsets(words: pa.Array) -> np.ndarray:
    """Where each value starts in the data buffer, and where the last one ends."""
    import pyarrow as pa

    buffer = words.buffers()[1]
    if buffer is None:  # NOTE: an empty array may come without one
        return np.zeros(1, dtype=np.int64)
    width = np.int64 if pa.types.is_large_string(words.type) else np.int32
    every = np.frombuffer(buffer, dtype=width)
    return every[words.offset:words.offset + len(words) + 1].astype(np.int64)


def _utf8(words: pa.Array, offsets: np.ndarray) -> np.ndarray:
    """The bytes the values hold, followed by 8 zero bytes (each value's last word is read whole)."""
    data = words.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return np.concatenate([raw[:offsets[-1]], np.zeros(8, dtype=np.uint8)])


def _words_at(padded: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The little-endian 64-bit word at each byte position."""
    return padded[starts[:, None] + np.arange(8)].view("<u8").ravel().astype(np.uint64)


def _rotl(x: np.ndarray, bits: int) -> np.ndarray:
    return np.asarray((x << np.uint64(bits)) | (x >> np.uint64(64 - bits)))


def _rounds(v: list[np.ndarray], count: int) -> None:
    """SipHash's SipRound, `count` times, on the four state words (in place)."""
    for _ in range(count):
        v[0] += v[1]
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] += v[3]
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] += v[3]
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] += v[1]
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)


def _compress(v: list[np.ndarray], m: np.ndarray, rows: slice) -> None:
    """Absorb one message word for the given rows."""
    part = [x[rows] for x in v]
    part[3] ^= m
    _rounds(part, 2)
    part[0] ^= m
    for x, y in zip(v, part, strict=True):
        x[rows] = y


def _siphash(padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """SipHash-2-4 of each value: its full 8-byte words, then its tail with the length in the top byte."""
    n = len(lengths)
    order = np.argsort(-(lengths // 8), kind="stable")  # NOTE: longest first, so each word's rows are a prefix
    starts, lengths = starts[order], lengths[order]
    blocks = lengths // 8
    v = [np.full(n, (k ^ init) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
         for k, init in zip((_K0, _K1, _K0, _K1), _INIT, strict=True)]
    with np.errstate(over="ignore"):
        for j in range(int(blocks.max()) if n else 0):
            rows = slice(0, int(np.count_nonzero(blocks > j)))
            _compress(v, _words_at(padded, starts[rows] + 8 * j), rows)
        tail_bits = ((lengths % 8) * 8).astype(np.uint64)
        tail = _words_at(padded, starts + 8 * blocks) & ((np.uint64(1) << tail_bits) - np.uint64(1))
        _compress(v, tail | ((lengths.astype(np.uint64) & np.uint64(0xFF)) << np.uint64(56)), slice(0, n))
        v[2] ^= np.uint64(0xFF)
        _rounds(v, 4)
    hashed = np.empty(n, dtype=np.uint64)
    hashed[order] = v[0] ^ v[1] ^ v[2] ^ v[3]
    return hashed


def _mix(values: np.ndarray) -> np.ndarray:
    """pandas' final mix of each hash over the 64-bit space (`_hash_ndarray`)."""
    with np.errstate(over="ignore"):
        values ^= values >> np.uint64(30)
        values *= np.uint64(0xBF58476D1CE4E5B9)
        values ^= values >> np.uint64(27)
        values *= np.uint64(0x94D049BB133111EB)
        values ^= values >> np.uint64(31)
    return values
