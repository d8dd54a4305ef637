"""One column of one record batch, converted once to what every check, the profile and the row key need.

Numbers become a numpy array with a mask of missing values (null or NaN); text becomes a
dictionary of distinct values and a code per row. Text in a column the schema says holds
numbers or booleans (every column of a CSV file, or a mistyped Parquet column) is parsed here,
and the values that do not parse are marked rather than stopping the read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.data.arrow import flags, nulls, numbers, positions
from modelci.data.schema import arrow_kind
from modelci.data.texthash import text_hashes

if TYPE_CHECKING:
    import pyarrow as pa

# NOTE: the text forms of numbers that Arrow's cast accepts, once surrounding blanks are trimmed.
_INTEGER = r"^[-+]?[0-9]+$"
_FLOAT = r"^[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[iI][nN][fF]([iI][nN][iI][tT][yY])?)$"
_BOOLEAN = {"true": 1, "false": 0, "1": 1, "0": 0, "yes": 1, "no": 0}
MISSING_BITS = np.uint64(0x6A09E667F3BCC908)


@dataclass
class ColumnBatch:
    """The values of one column in one batch, as the kind the schema (or the data) says."""

    kind: str  # int | float | bool | string (a `type: text` column's too)
    raw: pa.Array  # as read, for showing sample values
    missing: np.ndarray | None = None  # True where the value is null or NaN; None when none is
    values: np.ndarray | None = None  # numbers: float64 or int64; bool as 0/1 (anything where missing)
    dictionary: pa.Array | None = None  # text: the distinct values
    codes: np.ndarray | None = None  # text: index into `dictionary`, -1 where missing
    unparsed: np.ndarray | None = None  # True where the text is not a valid value of `kind`

    def __len__(self) -> int:
        return len(self.raw)

    # NOTE: the checks and the profile both need these; cached, each is computed once per batch.
    @cached_property
    def present(self) -> np.ndarray:
        """The values that are not missing (numbers only)."""
        assert self.values is not None
        return self.values if self.missing is None else self.values[~self.missing]

    @cached_property
    def bounds(self) -> tuple[Any, Any] | None:
        """The smallest and largest present value (numbers only); None when no value is present."""
        return (self.present.min(), self.present.max()) if len(self.present) else None

    def samples(self, rows: np.ndarray) -> list[Any]:
        return [_json_value(v) for v in self.raw.take(positions(rows)).to_pylist()]

    def bits(self) -> np.ndarray:
        """64 content bits per value, the same for equal values in any batch or file; missing values share one."""
        if self.kind == "string":
            assert self.dictionary is not None
            assert self.codes is not None
            # NOTE: SipHash-2-4 with pandas' fixed key: stable across runs, machines and versions.
            hashed = np.append(text_hashes(self.dictionary), MISSING_BITS)
            return np.asarray(hashed[self.codes], dtype=np.uint64)
        assert self.values is not None
        # NOTE: + 0.0 turns -0.0 into 0.0
        bits = (self.values + 0.0).view(np.uint64) if self.kind == "float" else self.values.astype(np.uint64)
        return bits if self.missing is None else np.where(self.missing, MISSING_BITS, bits)


def _json_value(value: Any) -> Any:
    """JSON has no infinities or NaN: such sample values are reported as their names."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def column_batch(array: pa.Array, kind: str | None = None) -> ColumnBatch:
    """Convert one column to `kind` (default: the kind of its Arrow type; other types are read as text)."""
    found = arrow_kind(array.type)
    kind = kind or found or "string"
    if kind == "text":
        return _free_text(array, found)
    if kind == "string":
        return _text(array)
    if found == "string":
        return _parse(array, kind)
    if found in ("int", "float", "bool"):
        return _number(array, kind, found)
    return _unreadable(array, kind)


def _validity(array: pa.Array) -> np.ndarray | None:
    return None if array.null_count == 0 else nulls(array)


def _number(array: pa.Array, kind: str, found: str) -> ColumnBatch:
    import pyarrow as pa

    missing = _validity(array)
    values = numbers(array.cast(pa.uint8()) if found == "bool" else array)
    unparsed = None
    if kind == "float":
        values = values.astype(np.float64, copy=False)
        nan = np.isnan(values)
        if nan.any():
            missing = nan if missing is None else missing | nan
    elif found == "float":  # NOTE: a float column where the schema says int or bool: whole numbers pass
        nan = np.isnan(values)
        if nan.any():
            missing = nan if missing is None else missing | nan
        whole = np.isfinite(values) & (values == np.round(values))
        unparsed = _marked(~whole & ~(missing if missing is not None else False))
        values = np.where(whole, values, 0).astype(np.int64)
    else:
        values = values.astype(np.int64, copy=False)
    if kind == "bool":
        unparsed = _marked((values != 0) & (values != 1) & ~(missing if missing is not None else False))
    if unparsed is not None:
        # NOTE: a value that is not of the column's kind has no value of that kind: counted as missing
        # by the profile and the row key, and reported once, by the type rule.
        missing = unparsed if missing is None else missing | unparsed
    return ColumnBatch(kind=kind, raw=array, missing=missing, values=values, unparsed=unparsed)


def _marked(mask: np.ndarray) -> np.ndarray | None:
    return mask if mask.any() else None


def _text(array: pa.Array) -> ColumnBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    if arrow_kind(array.type) != "string" or pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    dictionary = encoded.dictionary
    if not pa.types.is_string(dictionary.type):
        dictionary = dictionary.cast(pa.string())
    codes = numbers(encoded.indices, fill=-1).astype(np.int64, copy=False)
    missing = codes < 0
    return ColumnBatch(kind="string", raw=array, missing=missing if missing.any() else None,
                       dictionary=dictionary, codes=codes)


def _free_text(array: pa.Array, found: str | None) -> ColumnBatch:
    """A `type: text` column: read as text; values of another type (a Parquet int column) marked as not text."""
    column = _text(array)
    if found != "string":
        # NOTE: as for numbers, such a value counts as missing, and is reported once, by the type rule
        column.unparsed = _marked(np.ones(len(column), dtype=bool) if column.missing is None else ~column.missing)
        column.missing = column.unparsed if column.missing is None or column.unparsed is None \
            else column.missing | column.unparsed
    return column


def _parse(array: pa.Array, kind: str) -> ColumnBatch:
    """Text where the schema says numbers or booleans: parse it, marking what does not parse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _text(array)
    assert text.dictionary is not None
    assert text.codes is not None
    words = pc.utf8_trim_whitespace(text.dictionary)
    if kind == "bool":
        lookup = {w: _BOOLEAN.get(str(w).lower(), -1) for w in words.to_pylist()}
        parsed = np.array([lookup[w] for w in words.to_pylist()], dtype=np.int64)
        good = parsed >= 0
    else:
        matched = pc.match_substring_regex(words, _INTEGER if kind == "int" else _FLOAT)
        good = flags(matched)
        parsed = np.zeros(len(words), dtype=np.int64 if kind == "int" else np.float64)
        parsed[good] = numbers(words.filter(matched).cast(pa.int64() if kind == "int" else pa.float64()))
    if len(parsed) == 0:
        parsed = np.zeros(0, dtype=np.float64 if kind == "float" else np.int64)
    codes = text.codes
    at = np.maximum(codes, 0)
    values = np.where(good[at], parsed[at], 0).astype(np.float64 if kind == "float" else np.int64)
    missing = codes < 0
    unparsed = ~missing & ~good[at]
    return ColumnBatch(kind=kind, raw=array, missing=_marked(missing | unparsed), values=values,
                       unparsed=_marked(unparsed))


def _unreadable(array: pa.Array, kind: str) -> ColumnBatch:
    """A type modelci does not read (dates, lists, ...): every value is marked as not of `kind`."""
    every = np.ones(len(array), dtype=bool)
    zeros = np.zeros(len(array), dtype=np.float64 if kind == "float" else np.int64)
    return ColumnBatch(kind=kind, raw=array, missing=every, values=zeros, unparsed=every)
