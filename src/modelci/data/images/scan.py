"""One pass over an image dataset, with a table's `Scan` as its result: what `check_data` reads of any dataset.

Images are read, hashed and measured one at a time (on a few threads: Pillow decodes without
holding the GIL); only their 16-byte content hashes and a few numbers each outlive them, handed on
every FLUSH images: the hashes to `KeyStore`s (duplicates, leakage, the fingerprint) and the numbers
to the profile, as columns named `<image column>.<statistic>`. The label, and a table's other
columns, go through the same `Pass` as a table's, so their rules, class balance and profile are a
table's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelci.data.columns import column_batch
from modelci.data.images.measure import FLOAT_STATS, INT_STATS, Measured, measure, pillow
from modelci.data.images.read import (
    IMAGE_SUFFIXES,
    Item,
    class_files,
    class_folders,
    is_image_folder,
    table_batches,
    table_items,
)
from modelci.data.rowhash import KeyStore
from modelci.data.rules import Violation
from modelci.data.scan import Pass, Scan
from modelci.data.schema import ColumnRule, Schema
from modelci.errors import DataError

FINGERPRINT_VERSION = "images-v1"
DEFAULT_COLUMN = "image"  # the image column of a folder per class whose schema names none
NAMED = 20  # images named per rule in data-report.json
FLUSH = 1024  # images whose hashes, labels and numbers are handed on together
# NOTE: a thread per core (Pillow decodes without the GIL): on 2 shared cores, 256-px images went up to 1.8x
# faster with 2; 32-px ones, where Python's own work per image dominates, ran at the same speed either way
WORKERS = min(4, os.cpu_count() or 1)
MESSAGES = {
    "exists": "image paths that name no file",
    "empty_file": "image files of 0 bytes",
    "truncated": "image files that are cut short",
    "decode": "files that do not decode as images",
    "mode": "images not stored as 8-bit RGB or grey (CMYK, or 16 bits per channel): convert them",
    "not_null": "rows without an image",
    "type": "values that are neither an image's path nor its encoded bytes",
    "present": "the image column is missing",
    "not_image": "files in class folders that are not images (by their suffix); they are left out",
    "outside_class": "files outside the class folders; they are left out",
    "empty_class": "class folders with no images",
    "absent_class": "classes of the schema's allowed labels with no class folder",
}
WARNINGS = ("not_image", "outside_class", "absent_class")


class ImagePass:
    """The state of one pass over images; `add` takes one image and what measuring it gave."""

    def __init__(self, schema: Schema | None, image: str, label: str, profile: bool) -> None:
        self.module = pillow()
        self.rule = (schema.images if schema else None) or ColumnRule(name=image, type="image")
        self.label_rule = schema.column(label) if schema else None
        others = Schema(tuple(c for c in schema.columns if c.type != "image"), schema.dataset) if schema else None
        self.rows = Pass(others, profile, label)  # the label and a table's other columns
        self.image, self.label, self.profile_all = image, label, profile
        self.found: dict[str, Violation] = {}
        self.keys, self.pairs = KeyStore(), KeyStore()
        self.digests, self.pair_digests, self.indexes = bytearray(), bytearray(), list[int]()
        self.sizes: list[tuple[int, int, int]] = []
        self.stats: list[np.ndarray] = []
        self.images = self.decoded = 0

    def name(self, rule: str, index: int | None, what: str, *, column: str | None = None,
             message: str | None = None) -> None:
        """Count one image (or folder: no `index`) that breaks `rule`, naming the first NAMED with what is wrong."""
        if rule not in self.found:
            self.found[rule] = Violation(column=column or self.image, rule=rule, message=message or MESSAGES[rule],
                                         rows=0, severity="warning" if rule in WARNINGS else "error")
        found = self.found[rule]
        found.rows += index is not None
        if len(found.sample_values) < NAMED:
            found.sample_values.append(what)
            if index is not None:
                found.sample_rows.append(index)

    def add(self, item: Item, measured: Measured) -> None:
        self.images += 1
        for rule, what in measured.problems:
            self.name(rule, item.index, f"{item.name}: {what}")
        if measured.digest is not None:
            self.digests += measured.digest
            label = json.dumps(item.label, default=str).encode()
            self.pair_digests += hashlib.blake2b(measured.digest + label, digest_size=16).digest()
            self.indexes.append(item.index)
        if measured.sizes is not None:
            self.decoded += 1
            # NOTE: a CMYK or 16-bit image's channels are those of its mode, already named
            self._check_sizes(item, measured.sizes, channels=not measured.problems)
            self.sizes.append(measured.sizes)
        if measured.stats is not None:
            self.stats.append(measured.stats)
        if len(self.indexes) >= FLUSH:
            self.flush()

    def _check_sizes(self, item: Item, sizes: tuple[int, int, int], channels: bool) -> None:
        width, height, count = sizes
        for side, value, bounds in (("width", width, self.rule.width), ("height", height, self.rule.height)):
            if bounds.breaks(value):
                self.name(side, item.index, f"{item.name}: {width}x{height}",
                          message=f"images whose {side} is not {bounds.describe()} pixels")
        allowed = self.rule.channels
        if channels and allowed is not None and count not in allowed:
            self.name("channels", item.index, f"{item.name}: {count} channels",
                      message=f"images with a channel count other than {' or '.join(map(str, allowed))}")

    def flush(self) -> None:
        """Hand the held hashes to the key stores and the held numbers to the profile."""
        if self.indexes:
            rows = np.asarray(self.indexes, dtype=np.int64)
            self.keys.add(np.frombuffer(bytes(self.digests), dtype="<u8").reshape(-1, 2).copy(), rows)
            self.pairs.add(np.frombuffer(bytes(self.pair_digests), dtype="<u8").reshape(-1, 2).copy(), rows)
        if self.profile_all:
            self._profile(INT_STATS, np.asarray(self.sizes, dtype=np.int64).reshape(-1, len(INT_STATS)))
            self._profile(FLOAT_STATS, np.asarray(self.stats, dtype=np.float64).reshape(-1, len(FLOAT_STATS)))
        self.digests, self.pair_digests, self.indexes, self.sizes, self.stats = bytearray(), bytearray(), [], [], []

    def _profile(self, names: tuple[str, ...], values: np.ndarray) -> None:
        import pyarrow as pa

        if len(values):
            for name, column in zip(names, values.T, strict=True):
                self.rows.profile.add(f"{self.image}.{name}", column_batch(pa.array(column)))

    def fingerprint(self) -> str:
        """A hash of the sorted (content hash, label) pairs: the same for the same images under any names or order."""
        digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
        for _, keys, _ in self.pairs.partitions(split=True):
            order = np.lexsort((keys[:, 1], keys[:, 0]))
            digest.update(np.ascontiguousarray(keys[order]).tobytes())
        return f"sha256:{digest.hexdigest()}"

    def close(self) -> None:
        self.keys.close()
        self.pairs.close()
        self.rows.close()


def measured(items: Iterator[Item], module: ModuleType, workers: int = WORKERS) -> Iterator[tuple[Item, Measured]]:
    """Each item with what measuring it gave, in order; at most 2 × `workers` images in flight."""
    if workers <= 1:
        yield from ((item, measure(item, module)) for item in items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="modelci-images") as pool:
        window: deque[tuple[Item, Future[Measured]]] = deque()
        for item in items:
            window.append((item, pool.submit(measure, item, module)))
            if len(window) >= 2 * workers:
                first, future = window.popleft()
                yield first, future.result()
        while window:
            first, future = window.popleft()
            yield first, future.result()


def folder_files(root: Path) -> Iterator[tuple[Path, Path | None]]:
    """(class folder, None) as each class folder starts, then (class folder, file) for each of its files."""
    for folder in class_folders(root):
        yield folder, None
        for file in class_files(folder):
            yield folder, file


def _folder_items(root: Path, state: ImagePass) -> Iterator[Item]:
    """The images of a folder per class; empty classes, other files and stray files noted on `state`."""
    import pyarrow as pa

    for entry in sorted(root.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            state.name("outside_class", None, entry.name)
    labels: list[str] = []
    counted: dict[str, int] = {}
    index = 0
    for folder, file in folder_files(root):
        counted.setdefault(folder.name, 0)
        if file is None:
            continue
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            state.name("not_image", None, str(file.relative_to(root)))
            continue
        yield Item(index, str(file.relative_to(root)), folder.name, path=file)
        index += 1
        counted[folder.name] += 1
        labels.append(folder.name)
        if len(labels) >= FLUSH:
            state.rows.feed(pa.RecordBatch.from_arrays([pa.array(labels, pa.string())], names=[state.label]))
            labels = []
    if labels:
        state.rows.feed(pa.RecordBatch.from_arrays([pa.array(labels, pa.string())], names=[state.label]))
    for name in (n for n, count in counted.items() if count == 0):
        state.name("empty_class", None, name, column=state.label)
    for value in (state.label_rule.allowed or ()) if state.label_rule else ():
        if str(value) not in counted:
            state.name("absent_class", None, str(value), column=state.label)


def _table_items(path: Path, schema: Schema | None, state: ImagePass) -> Iterator[Item]:
    """The images a table's image column names (paths relative to the table's folder) or holds."""
    text = [r.name for r in schema.columns if r.type not in ("string", "image")] if schema else []
    current: Path | None = None
    for file, batch in table_batches(path, state.image, text):
        first, names = state.rows.rows, batch.schema.names
        rest = batch.drop_columns([state.image]) if state.image in names else batch
        if file != current:
            current = file
            state.rows.start_file(file, rest)
        state.rows.feed(rest)
        if state.image not in names:
            for row in range(batch.num_rows):
                state.name("present", first + row, f"{file.name}: row {first + row}")
            continue
        labels = batch.column(state.label).to_pylist() if state.label in names else [None] * batch.num_rows
        for entry in table_items(file, batch.column(state.image), labels, first):
            if isinstance(entry, Item):
                yield entry
            elif entry[1] != "empty" or not state.rule.nullable:
                state.name("not_null" if entry[1] == "empty" else "type", entry[0], f"row {entry[0]}: {entry[1]}")


def folder_names(root: Path) -> Callable[[list[int]], list[str]]:
    """Names of a folder's images by their number in the pass, found by listing the folder again."""
    def names(rows: list[int]) -> list[str]:
        wanted, found, index = set(rows), {}, 0
        for _, file in folder_files(root):
            if file is None or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if index in wanted:
                found[index] = str(file.relative_to(root))
                if len(found) == len(wanted):
                    break
            index += 1
        return [found.get(row, f"image {row}") for row in rows]

    return names


def scan_images(path: Path, schema: Schema | None, *, label: str, profile: bool = True) -> Scan:
    """Check, hash and profile every image of the dataset at `path`; raises `DataError` when none can be read."""
    image = schema.images.name if schema is not None and schema.images is not None else DEFAULT_COLUMN
    state = ImagePass(schema, image, label, profile)
    folder = is_image_folder(path)
    try:
        if folder:
            state.rows.start_file(path, _label_batch(label))
        items = _folder_items(path, state) if folder else _table_items(path, schema, state)
        for item, found in measured(items, state.module):
            state.add(item, found)
        state.flush()
        _require_images(path, state)
        violations = state.rows.violations() + list(state.found.values())
        fingerprint = state.fingerprint()
    except BaseException:
        state.close()
        raise
    state.pairs.close()
    state.rows.close()
    return Scan(path=path, files=[path] if folder else state.rows.files, rows=state.rows.rows,
                columns=[image, *state.rows.columns],
                fingerprint=fingerprint, violations=violations, profile=state.rows.profile, keys=state.keys,
                names=folder_names(path) if folder else None, images=True)


def _label_batch(label: str) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays([pa.array([], pa.string())], names=[label])


def _require_images(path: Path, state: ImagePass) -> None:
    if state.images == 0:
        raise DataError(f"{path}: holds no images", hint="a folder per class of .png or .jpg files, or a table whose "
                                                          "image column names image files or holds their bytes")
    if state.decoded == 0:
        shown = next((v.sample_values[0] for v in state.found.values() if v.sample_rows), "")
        raise DataError(f"{path}: none of its {state.images} images could be read (e.g. {shown})",
                        hint="check that the files are PNG or JPEG images, and their paths in the table")
