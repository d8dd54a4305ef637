"""Record batches from the data files a path names (Parquet or CSV), read ahead on a second thread.

Every failure to read becomes a `DataError` that names the file, says what is wrong and how to fix
it. Only a few batches are held at a time, so memory does not grow with the number of rows.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci.data.tables import SUFFIXES, resolve_files
from modelci.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 1 << 17
CSV_BLOCK_BYTES = 16 << 20
READ_AHEAD = 2
RAGGED_SHOWN = 3


@dataclass
class Ragged:
    """CSV lines with the wrong number of fields, skipped while reading and reported once at the end."""

    lines: int = 0
    shown: list[str] = field(default_factory=list)

    def handle(self, row: Any) -> str:
        self.lines += 1
        if len(self.shown) < RAGGED_SHOWN:
            where = f"line {row.number}" if row.number is not None and row.number >= 0 else "a line"
            text = row.text if len(row.text) <= 60 else row.text[:57] + "..."
            self.shown.append(f"{where}: {row.actual_columns} fields where the header has {row.expected_columns}: "
                              f"{text!r}")
        return "skip"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type '{path.suffix}'", hint="use .parquet or .csv files")
    return kind


def _parquet(path: Path) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    handle = pq.ParquetFile(path)
    # NOTE: text columns are read as dictionaries: Parquet stores them that way, and checks and
    # profiles then work on each distinct value once instead of once per row.
    text = [f.name for f in handle.schema_arrow if pat.is_string(f.type) or pat.is_large_string(f.type)]
    handle = pq.ParquetFile(path, read_dictionary=text)
    # NOTE: one row group per reader: a reader over the whole file keeps every row group it has
    # decoded until it ends (pyarrow 26), so memory would grow with the file.
    for group in range(handle.num_row_groups):
        yield from handle.iter_batches(batch_size=BATCH_ROWS, row_groups=[group])


def _csv(path: Path, text_columns: list[str], ragged: Ragged) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    # NOTE: without threads, Arrow knows the line number of a bad line.
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse = pa_csv.ParseOptions(invalid_row_handler=ragged.handle)
    # NOTE: columns the schema says hold numbers are read as text and parsed by modelci, so a bad
    # value is reported with its row instead of stopping the read.
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(text_columns, pa.string()),
                                    strings_can_be_null=True, auto_dict_encode=True,
                                    auto_dict_max_cardinality=1000)
    yield from pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)


def _explain(path: Path, kind: str, exc: BaseException) -> DataError:
    reason = _first_line(exc)
    column = re.search(r"In CSV column #(\d+)", reason)
    if "invalid UTF8" in reason or isinstance(exc, UnicodeDecodeError):
        # NOTE: a column read as text by the schema's type (data/scan.py) fails here, not in _require_text
        name = _header_name(path, int(column.group(1))) if column else None
        return DataError(f"{path}: the file is not UTF-8 text ({f'column {name!r}: ' if name else ''}{reason})",
                         hint="save the file with UTF-8 encoding (most tools offer it on export)")
    mixed = re.search(r"CSV conversion error to (\w+): invalid value '(.*)'", reason)
    if mixed:
        where = f"column #{int(column.group(1)) + 1}" if column else "a column"
        return DataError(f"{path}: {where} holds '{mixed.group(2)}' after rows of {mixed.group(1)} values",
                         hint="declare the column's type in the schema (type: string, or the number type, "
                              "so bad values are reported as violations), or fix the value")
    return DataError(f"{path}: cannot be read as {kind.upper()}: {reason}",
                     hint=f"check that the file is a complete, valid {kind.upper()} file")


def _header_name(path: Path, index: int) -> str | None:
    """The name of a CSV file's column `index` (from 0), read from its header, or None."""
    import csv

    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            header = next(csv.reader(handle), [])
    except OSError:
        return None
    return header[index] if index < len(header) else None


def _require_text(path: Path, batch: pa.RecordBatch) -> None:
    import pyarrow.types as pat

    for field_ in batch.schema:
        value_type = field_.type.value_type if pat.is_dictionary(field_.type) else field_.type
        if pat.is_binary(value_type) or pat.is_large_binary(value_type):
            # NOTE: Arrow's CSV reader turns a column that is not valid UTF-8 into bytes.
            raise DataError(f"{path}: the file is not UTF-8 text (column '{field_.name}')",
                            hint="save the file with UTF-8 encoding (most tools offer it on export)")


def file_batches(path: Path, text_columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of one file; a file that cannot be read raises `DataError`."""
    import pyarrow as pa

    kind = _kind(path)
    ragged = Ragged()
    batches = _parquet(path) if kind == "parquet" else _csv(path, text_columns or [], ragged)
    try:
        for batch in batches:
            _require_text(path, batch)
            yield batch
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _explain(path, kind, exc) from None
    if ragged.lines:
        raise DataError(f"{path}: {ragged.lines} lines have the wrong number of fields ({'; '.join(ragged.shown)})",
                        hint="quote fields that contain the delimiter, and give every line one field per column")


def file_columns(path: Path) -> list[str]:
    """The column names of one file, from its footer (Parquet) or header (CSV); unreadable raises `DataError`."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    kind = _kind(path)
    try:
        if kind == "parquet":
            return list(pq.read_schema(path).names)
        # NOTE: lines with the wrong number of fields are skipped here: reading the data reports them all.
        parse = pa_csv.ParseOptions(invalid_row_handler=lambda _: "skip")
        with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(use_threads=False), parse_options=parse) as reader:
            return list(reader.schema.names)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _explain(path, kind, exc) from None


def column_names(path: Path) -> list[str]:
    """Every column any file the path names has, in the order first seen; reads no rows but the first block of a CSV."""
    names: dict[str, None] = {}
    for file in resolve_files(path):
        names.update(dict.fromkeys(file_columns(file)))
    return list(names)


def batches(path: Path, text_columns: list[str] | None = None) -> Iterator[tuple[Path, pa.RecordBatch]]:
    """(file, batch) for every batch of every file the path names, read one step ahead of the caller."""
    files = resolve_files(path)
    return read_ahead((file, batch) for file in files for batch in file_batches(file, text_columns))


def read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """Iterate on a second thread, `READ_AHEAD` items ahead; errors reach the caller in order."""
    ahead: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ahead.put(("item", item))
            ahead.put(("end", None))
        except BaseException as exc:
            ahead.put(("error", exc))

    worker = threading.Thread(target=produce, daemon=True, name="modelci-read-ahead")
    worker.start()
    try:
        while True:
            kind, value = ahead.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            try:
                ahead.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
