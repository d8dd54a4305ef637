"""One pass over a dataset: schema checks, row keys (duplicates, leakage, fingerprint) and the profile.

Each record batch is converted once per column (`ColumnBatch`) and then handed to the column's
checker, the profile and the row hasher; nothing but counts, samples, sketches and 16-byte row
keys outlives the batch, so memory does not grow with the number of rows. A `type: text` column's
checker (data/text) also profiles it, as lengths and words, and keeps its normalized texts' keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelci.data import source
from modelci.data.columns import MISSING_BITS, ColumnBatch, column_batch
from modelci.data.profile import DatasetProfile
from modelci.data.rowhash import KeyStore, RowHasher
from modelci.data.rules import ColumnChecker, Violation
from modelci.data.schema import ColumnRule, Schema, arrow_kind
from modelci.data.text.check import TextChecker, TextFound
from modelci.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

FINGERPRINT_VERSION = "rows-v1"


@dataclass
class Scan:
    """What one pass found in one dataset. `keys` holds the row keys until `close()`."""

    path: Path
    files: list[Path]
    rows: int
    columns: list[str]
    fingerprint: str
    violations: list[Violation]
    profile: DatasetProfile  # every column's, or only the label's when profiling is off
    keys: KeyStore
    # the names of the rows with these numbers, where a row number alone does not say (an image folder's files)
    names: Callable[[list[int]], list[str]] | None = None
    images: bool = False  # an image dataset (data/images): its keys are the images' content hashes, not rows'
    texts: dict[str, TextFound] = field(default_factory=dict)  # per text column: its texts' keys, its vocabulary

    def close(self) -> None:
        self.keys.close()
        for found in self.texts.values():
            found.keys.close()

    def vocabularies(self) -> dict[str, frozenset[str]]:
        """Each text column's most frequent words, which another dataset's words are looked up in."""
        return {name: found.vocabulary() for name, found in self.texts.items()}


class Pass:
    """The state of one pass; `feed` takes one batch."""

    def __init__(self, schema: Schema | None, profile: bool, label: str | None,
                 vocabularies: dict[str, frozenset[str]] | None = None) -> None:
        self.schema = schema
        self.profile_all, self.label = profile, label
        self.checkers = {r.name: self._checker(r, schema, vocabularies or {}) for r in schema.columns} if schema else {}
        self.profile = DatasetProfile()
        self.kinds: dict[str, str] = {r.name: r.type for r in schema.columns} if schema else {}
        self.columns: list[str] = []
        self.keys = KeyStore()
        self.digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
        self.rows = 0
        self.files: list[Path] = []
        self.missing: dict[str, Violation] = {}
        self.unreadable: dict[str, Violation] = {}

    @staticmethod
    def _checker(rule: ColumnRule, schema: Schema, vocabularies: dict[str, frozenset[str]]) -> ColumnChecker:
        if rule.type == "text":
            return TextChecker(rule, schema.dataset, vocabularies.get(rule.name))
        return ColumnChecker(rule)

    def start_file(self, file: Path, batch: pa.RecordBatch) -> None:
        self.files.append(file)
        if not self.columns:
            self._fix_columns(batch)
        for name in self.checkers:
            if name not in batch.schema.names:
                self.missing.setdefault(name, Violation(column=name, rule="present", rows=0,
                                                        message=f"the column is missing from {file.name}"))

    def _fix_columns(self, batch: pa.RecordBatch) -> None:
        """The columns that make up a row (and its key): the schema's, then any others, in a fixed order."""
        declared = list(self.kinds)
        self.columns = declared + [n for n in batch.schema.names if n not in self.kinds]
        for field_ in batch.schema:
            if field_.name not in self.kinds:
                self.kinds[field_.name] = arrow_kind(field_.type) or "string"
        self.digest.update(repr([(n, self.kinds[n]) for n in self.columns]).encode())

    def feed(self, batch: pa.RecordBatch) -> None:
        hasher = RowHasher(batch.num_rows)
        names = batch.schema.names
        for name in self.columns:
            if name not in names:
                if name in self.missing:
                    self.missing[name].rows += batch.num_rows
                hasher.add(np.full(batch.num_rows, MISSING_BITS, dtype=np.uint64))
                continue
            column = column_batch(batch.column(names.index(name)), self.kinds[name])
            self._check(name, column)
            hasher.add(column.bits())
        keys = hasher.keys()
        self.digest.update(keys.tobytes())
        self.keys.add(keys, np.arange(self.rows, self.rows + batch.num_rows))
        self.profile.rows += batch.num_rows
        self.rows += batch.num_rows

    def _check(self, name: str, column: ColumnBatch) -> None:
        checker = self.checkers.get(name)
        if isinstance(checker, TextChecker):
            # NOTE: a text column is profiled as its lengths and words: the profile never holds its texts
            checker.feed(column, self.rows, self.profile if self.profile_all else None)
            return
        if checker is not None:
            checker.check(column, self.rows)
        if self.profile_all or name == self.label:
            self.profile.add(name, column)

    def close(self) -> None:
        self.keys.close()
        for checker in self.checkers.values():
            checker.close()

    def texts(self) -> dict[str, TextFound]:
        """What each text column's checker keeps after the pass (its keys stay open until the scan closes)."""
        return {name: c.found_text() for name, c in self.checkers.items() if isinstance(c, TextChecker)}

    def violations(self) -> list[Violation]:
        found = [v for v in self.missing.values() if v.rows]
        if self.schema is not None:
            found += [Violation(column=name, rule="unexpected", rows=0, severity="warning",
                                message="the column is not in the schema; add it there to check it")
                      for name in self.columns if name not in self.checkers]
        for checker in self.checkers.values():
            found += checker.finish()
        return found


def scan(path: Path, schema: Schema | None, *, profile: bool = True, label: str | None = None,
         vocabularies: dict[str, frozenset[str]] | None = None) -> Scan:
    """Check, hash and profile every batch of the data at `path`; raises `DataError` if it cannot be read.

    With `profile` off, only the `label` column is profiled (class balance needs its counts).
    `vocabularies` (the training data's words, per text column) are what the evaluation data's words are
    looked up in.
    """
    state = Pass(schema, profile, label, vocabularies)
    # NOTE: columns the schema says hold numbers or booleans are read from CSV as text and parsed
    # by modelci, so bad values are counted as violations with their rows instead of stopping the read.
    text = [r.name for r in schema.columns if r.type != "string"] if schema else []
    current: Path | None = None
    try:
        for file, batch in source.batches(path, text_columns=text):
            if file != current:
                current = file
                state.start_file(file, batch)
            state.feed(batch)
    except BaseException:
        state.close()
        raise
    if state.rows == 0:
        state.close()
        raise DataError(f"{path}: the data has no rows", hint="check that the file holds data, not just a header")
    return Scan(path=path, files=state.files, rows=state.rows, columns=state.columns,
                fingerprint=f"sha256:{state.digest.hexdigest()}", violations=state.violations(),
                profile=state.profile, keys=state.keys, texts=state.texts())
