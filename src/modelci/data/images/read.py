"""The images of a dataset, one at a time: from a folder per class, or from a table's image column.

Nothing here decodes an image; it lists them (in a fixed order, so an image's number in the report
is the same on every run) and hands each one over with its label.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci.data.tables import SUFFIXES, resolve_files
from modelci.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

# NOTE: the suffixes torchvision's ImageFolder takes (IMG_EXTENSIONS), so both see the same images
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
# NOTE: a batch of a table of encoded images holds this many images' bytes at once
TABLE_BATCH_ROWS = 64


@dataclass(frozen=True)
class Item:
    """One image to read: its number in the dataset, its name in the report, its label, and where it is."""

    index: int
    name: str
    label: Any
    path: Path | None = None  # a file to read, or
    data: bytes | None = None  # the encoded image itself (a table's bytes column)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_folder(path: Path) -> bool:
    """A folder of images: a directory with a subfolder or an image file, and no Parquet or CSV file under it."""
    if not path.is_dir():
        return False
    entries = [e for e in path.iterdir() if not _hidden(e.name)]
    if not any(e.is_dir() or e.suffix.lower() in IMAGE_SUFFIXES for e in entries):
        return False
    return not any(p.suffix.lower() in SUFFIXES for p in path.rglob("*"))


def class_folders(root: Path) -> list[Path]:
    """The class folders of an image folder, sorted by name (hidden folders left out)."""
    folders = sorted(e for e in root.iterdir() if e.is_dir() and not _hidden(e.name))
    if not folders:
        raise DataError(f"{root}: the images are not in class folders",
                        hint="put each class's images in a subfolder named after the class "
                             "(images/train/cat/1.png), as torchvision's ImageFolder reads them")
    return folders


def class_files(folder: Path) -> Iterator[Path]:
    """Every file in a class folder and its subfolders (hidden ones left out), in sorted order."""
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not _hidden(f))
        for name in sorted(files):
            if not _hidden(name):
                yield Path(top) / name


def table_batches(path: Path, image: str, text_columns: list[str]) -> Iterator[tuple[Path, pa.RecordBatch]]:
    """(file, batch) for every batch of the tables a path names; Parquet in batches of TABLE_BATCH_ROWS rows."""
    from modelci.data import source

    for file in resolve_files(path):
        if SUFFIXES.get(file.suffix.lower()) == "parquet":
            yield from ((file, batch) for batch in _parquet(file, image))
        else:
            # NOTE: a CSV holds paths, not bytes: its batches are small whatever their number of rows
            yield from ((file, batch) for batch in source.file_batches(file, text_columns))


def _parquet(file: Path, image: str) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    try:
        handle = pq.ParquetFile(file)
        # NOTE: text columns as dictionaries, as data/source.py reads them, except the images themselves
        text = [f.name for f in handle.schema_arrow
                if (pat.is_string(f.type) or pat.is_large_string(f.type)) and f.name != image]
        handle = pq.ParquetFile(file, read_dictionary=text)
        for group in range(handle.num_row_groups):
            yield from handle.iter_batches(batch_size=TABLE_BATCH_ROWS, row_groups=[group])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{file}: cannot be read as PARQUET: {first_line(exc)}",
                        hint="check that the file is a complete, valid PARQUET file") from None


def table_items(file: Path, column: pa.Array, labels: list[Any], first: int) -> Iterator[Item | tuple[int, str]]:
    """Each row's image: an `Item`, or (row, what is wrong) for a value that names no image."""
    import pyarrow.types as pat

    kind = column.type.value_type if pat.is_dictionary(column.type) else column.type
    text = pat.is_string(kind) or pat.is_large_string(kind)
    if not (text or pat.is_binary(kind) or pat.is_large_binary(kind)):
        for row in range(len(column)):
            yield first + row, f"a {kind} value, neither a path nor the encoded image"
        return
    for row, value in enumerate(column.to_pylist()):
        index = first + row
        if value is None:
            yield index, "empty"
        elif text:
            yield Item(index, value, labels[row], path=file.parent / value)
        else:
            yield Item(index, f"row {index}", labels[row], data=value)
