"""The schema's column rules, checked batch by batch: counts, sample values and row numbers per rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelci.data.arrow import flags, strings
from modelci.data.columns import ColumnBatch
from modelci.data.rowhash import KeyStore, Matches, row_keys
from modelci.data.schema import ColumnRule

SAMPLES = 5
SAMPLE_CHARACTERS = 80  # a sample text longer than this is shown cut, ending in "..."


@dataclass
class Violation:
    column: str | None  # None for a rule about whole rows (duplicates, leakage, row count)
    rule: str
    message: str
    rows: int
    severity: str = "error"  # error | warning | cleaned
    sample_values: list[Any] = field(default_factory=list)
    sample_rows: list[int] = field(default_factory=list)

    def add(self, mask: np.ndarray, batch: ColumnBatch, first_row: int, *, cut: bool = False) -> None:
        """Count the rows `mask` marks in a batch that starts at row `first_row`, keeping the first few.

        With `cut`, sample texts are shown cut to SAMPLE_CHARACTERS (a text column's values can be pages long).
        """
        count = int(np.count_nonzero(mask))
        if count == 0:
            return
        self.rows += count
        wanted = SAMPLES - len(self.sample_rows)
        if wanted > 0:
            at = np.flatnonzero(mask)[:wanted]
            self.sample_rows += (at + first_row).tolist()
            self.sample_values += [shortened(v) for v in batch.samples(at)] if cut else batch.samples(at)


def shortened(value: Any) -> Any:
    """A text cut to SAMPLE_CHARACTERS, ending in "..."; any other value as it is."""
    if isinstance(value, str) and len(value) > SAMPLE_CHARACTERS:
        return value[:SAMPLE_CHARACTERS - 3] + "..."
    return value


def rows_violation(rule: str, message: str, matches: Matches, severity: str) -> Violation:
    return Violation(column=None, rule=rule, message=message, rows=matches.rows, severity=severity,
                     sample_rows=list(matches.sample_rows))


def rule_masks(batch: ColumnBatch, rule: ColumnRule) -> Iterator[tuple[str, str, np.ndarray]]:
    """(rule, message, rows that break it) for each rule of one column that a batch breaks."""
    if batch.unparsed is not None:
        yield "type", f"values that are not {rule.type}", batch.unparsed
    missing = batch.missing if batch.unparsed is None or batch.missing is None else batch.missing & ~batch.unparsed
    if not rule.nullable and missing is not None:
        yield "not_null", "empty values in a column the schema says is never empty", missing
    if batch.values is not None and batch.kind in ("int", "float"):
        yield from _number_masks(batch, rule)
    if rule.allowed is not None:
        yield _allowed_mask(batch, rule.allowed)
    if rule.pattern is not None and batch.dictionary is not None:
        yield _pattern_mask(batch, rule.pattern)


def _number_masks(batch: ColumnBatch, rule: ColumnRule) -> Iterator[tuple[str, str, np.ndarray]]:
    values = batch.values
    assert values is not None
    if batch.bounds is None:
        return
    low, high = batch.bounds
    # NOTE: the common case, every value finite and in range, costs two reductions and no masks.
    infinite = batch.kind == "float" and not (np.isfinite(low) and np.isfinite(high))
    below = rule.min is not None and low < rule.min
    above = rule.max is not None and high > rule.max
    if not (infinite or below or above):
        return
    valid = np.ones(len(values), dtype=bool) if batch.missing is None else ~batch.missing
    if batch.kind == "float":
        finite = np.isfinite(values)
        yield "finite", "infinite values", valid & ~finite
        valid &= finite  # NOTE: an infinity is reported once, as not finite, not again as out of range
    if below:
        yield "min", f"values below the minimum {rule.min}", valid & (values < rule.min)
    if above:
        yield "max", f"values above the maximum {rule.max}", valid & (values > rule.max)


def _allowed_mask(batch: ColumnBatch, allowed: tuple[Any, ...]) -> tuple[str, str, np.ndarray]:
    import pyarrow.compute as pc

    if batch.dictionary is not None:
        assert batch.codes is not None
        known = flags(pc.is_in(batch.dictionary, value_set=strings([str(v) for v in allowed])))
        outside = ~np.append(known, True)[batch.codes]  # NOTE: code -1 (missing) picks the True at the end
    else:
        assert batch.values is not None
        outside = ~np.isin(batch.values, np.asarray(allowed, dtype=batch.values.dtype))
        if batch.missing is not None:
            outside &= ~batch.missing
    shown = ", ".join(map(str, allowed[:10])) + (", ..." if len(allowed) > 10 else "")
    return "allowed", f"values outside the allowed set ({shown})", outside


def _pattern_mask(batch: ColumnBatch, pattern: str) -> tuple[str, str, np.ndarray]:
    import pyarrow.compute as pc

    assert batch.dictionary is not None
    assert batch.codes is not None
    matches = flags(pc.match_substring_regex(batch.dictionary, pattern))
    return "pattern", f"values that do not match the pattern {pattern!r}", ~np.append(matches, True)[batch.codes]


class ColumnChecker:
    """Every rule of one column, over all of its batches."""

    def __init__(self, rule: ColumnRule) -> None:
        self.rule = rule
        self.found: dict[str, Violation] = {}
        self.values = KeyStore() if rule.unique else None

    def _tally(self, rule: str, message: str, severity: str = "error") -> Violation:
        if rule not in self.found:
            self.found[rule] = Violation(column=self.rule.name, rule=rule, message=message, rows=0,
                                         severity=severity)
        return self.found[rule]

    def check(self, batch: ColumnBatch, first_row: int) -> None:
        for rule, message, mask in rule_masks(batch, self.rule):
            self._tally(rule, message).add(mask, batch, first_row, cut=self.rule.type == "text")
        if self.values is not None:
            present = np.ones(len(batch), dtype=bool) if batch.missing is None else ~batch.missing
            keys = row_keys([batch], len(batch))
            self.values.add(keys[present], np.flatnonzero(present) + first_row)

    def finish(self) -> list[Violation]:
        """Every violation found, the uniqueness rule last; closes the value store."""
        found = [v for v in self.found.values() if v.rows]
        if self.values is not None:
            with self.values:
                repeated = self.values.duplicates()
            if repeated.rows:
                found.append(Violation(column=self.rule.name, rule="unique", rows=repeated.rows,
                                       message="values that repeat an earlier row's value",
                                       sample_rows=list(repeated.sample_rows)))
        return found

    def close(self) -> None:
        """Remove what the checker spilled to disk (after `finish`, or when the pass stops early)."""
        if self.values is not None:
            self.values.close()
