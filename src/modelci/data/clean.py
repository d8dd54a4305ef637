"""`data.clean`: the rows removed (or values clipped) before training, each counted for the report.

Cleaning works on the table in memory that training reads; the user's files are never changed.
Rows are judged by the same rules as `modelci data check` (`rule_masks`), so what the check
reports as cleaned is what is removed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from modelci.data.columns import column_batch
from modelci.data.rowhash import first_occurrences, row_keys
from modelci.data.rules import rule_masks

if TYPE_CHECKING:
    import pyarrow as pa

    from modelci.config import CleanConfig
    from modelci.data.schema import ColumnRule, Schema


@dataclass(frozen=True)
class Cleaning:
    rows_before: int
    rows_after: int
    null_label: int = 0  # rows dropped for having no label
    invalid: int = 0  # rows dropped for breaking the schema
    duplicates: int = 0  # rows dropped for repeating an earlier row
    clipped: int = 0  # values moved to the schema's min or max


def _clip(table: pa.Table, rule: ColumnRule, masks: dict[str, np.ndarray]) -> tuple[pa.Table, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(rule.name)
    clipped = 0
    for name, bound in (("min", rule.min), ("max", rule.max)):
        if name in masks:
            column = pc.if_else(pa.array(masks[name]), pa.scalar(bound).cast(column.type), column)
            clipped += int(masks[name].sum())
    return table.set_column(table.column_names.index(rule.name), rule.name, column), clipped


def _invalid_rows(table: pa.Table, schema: Schema, clip: bool) -> tuple[pa.Table, np.ndarray, int]:
    """Rows that break a column rule (out-of-range numbers are clipped instead, if asked), and the values clipped."""
    invalid = np.zeros(table.num_rows, dtype=bool)
    clipped = 0
    for rule in schema.columns:
        if rule.name not in table.column_names:
            continue
        batch = column_batch(table.column(rule.name).combine_chunks(), rule.type)
        masks = {name: mask for name, _, mask in rule_masks(batch, rule)}
        if clip:
            bounds: dict[str, np.ndarray] = {k: masks.pop(k) for k in ("min", "max") if k in masks}
            table, count = _clip(table, rule, bounds)
            clipped += count
        for mask in masks.values():
            invalid |= mask
    return table, invalid, clipped


def _label_missing(table: pa.Table, label: str) -> np.ndarray:
    if label not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    batch = column_batch(table.column(label).combine_chunks())
    return batch.missing if batch.missing is not None else np.zeros(table.num_rows, dtype=bool)


def clean_table(table: pa.Table, schema: Schema | None, clean: CleanConfig, label: str) -> tuple[pa.Table, Cleaning]:
    """The table without the rows `clean` drops, and how many went for each reason."""
    import pyarrow as pa

    drop = _label_missing(table, label) if clean.drop_null_label else np.zeros(table.num_rows, dtype=bool)
    null_label = int(drop.sum())
    invalid = clipped = 0
    if clean.invalid_rows != "keep" and schema is not None:
        table, broken, clipped = _invalid_rows(table, schema, clip=clean.invalid_rows == "clip")
        invalid = int((broken & ~drop).sum())
        drop |= broken
    duplicates = 0
    if clean.drop_duplicates:
        kept = np.flatnonzero(~drop)
        columns = [column_batch(table.column(n).combine_chunks().take(pa.array(kept))) for n in table.column_names]
        repeats = kept[~first_occurrences(row_keys(columns, len(kept)))]
        duplicates = len(repeats)
        drop[repeats] = True
    cleaned = table.filter(pa.array(~drop))
    return cleaned, Cleaning(rows_before=table.num_rows, rows_after=cleaned.num_rows, null_label=null_label,
                             invalid=invalid, duplicates=duplicates, clipped=clipped)
