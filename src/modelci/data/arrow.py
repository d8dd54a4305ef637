"""Arrow arrays to numpy and back, read from and written to their buffers.

NOTE: pyarrow imports pandas, when it is installed, the first time it converts an array to numpy
(`to_numpy`, `np.asarray`) or a Python object to Arrow (`pa.array`, `pa.scalar`, a Python value
passed to a compute function). That import costs a `modelci data check` a few tenths of a second
and the check needs nothing from it, so the data check converts through these functions instead
(tests/test_data_imports.py holds it to that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


def numbers(array: pa.Array, fill: int = 0) -> np.ndarray:
    """The values of an array of integers or floats, `fill` where one is null (booleans are bits: see `flags`).

    Read-only, a view of Arrow's buffer, when no value is null, as pyarrow's `to_numpy` gives it.
    """
    dtype = np.dtype(array.type.to_pandas_dtype())
    buffer = array.buffers()[1]
    if buffer is None:  # NOTE: an empty array may come without one
        return np.full(len(array), fill, dtype=dtype)
    values: np.ndarray = np.frombuffer(buffer, dtype=dtype)[array.offset:array.offset + len(array)]
    if array.null_count:
        values = values.copy()
        values[nulls(array)] = fill
    return values


def nulls(array: pa.Array) -> np.ndarray:
    """True where the array's value is null."""
    validity = array.buffers()[0]
    if validity is None or not array.null_count:
        return np.zeros(len(array), dtype=bool)
    return ~_bits(validity, array.offset, len(array))


def flags(array: pa.Array) -> np.ndarray:
    """A boolean array's values, False where one is null."""
    values = _bits(array.buffers()[1], array.offset, len(array))
    return values & ~nulls(array) if array.null_count else values


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """`length` bits of an Arrow bitmap (least significant bit first), from bit `offset`, as booleans."""
    packed = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little", count=offset + length)[offset:].view(bool)


def strings(values: list[str]) -> pa.Array:
    """A string array of the given values."""
    import pyarrow as pa

    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.array([len(b) for b in encoded], dtype=np.int32), out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


def positions(rows: np.ndarray) -> pa.Array:
    """An int64 array of row numbers, for `take`."""
    import pyarrow as pa

    indices = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(indices), [None, pa.py_buffer(indices)])
