"""`modelci data check`: every schema rule over every column of the training and evaluation data.

All violations are collected before anything is reported: the column, the rule, how many rows
break it, and a few sample values with their row numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import github
from modelci.data.schema import ColumnRule, Schema, arrow_kind
from modelci.data.tables import fingerprint, read_table

if TYPE_CHECKING:
    import pyarrow as pa

    from modelci.config import Config

REPORT_VERSION = 1
SAMPLES = 5


@dataclass(frozen=True)
class Violation:
    column: str
    rule: str
    message: str
    rows: int
    severity: str = "error"
    sample_values: list[Any] = field(default_factory=list)
    sample_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetResult:
    name: str
    path: str
    rows: int
    columns: int
    fingerprint: str
    violations: list[Violation]

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]


@dataclass(frozen=True)
class DataReport:
    passed: bool
    datasets: list[DatasetResult]
    schema: str | None
    version: int = REPORT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _json_safe(value: Any) -> Any:
    """JSON has no infinities or NaN: such sample values are reported as their names."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _violation(column: pa.ChunkedArray, mask: pa.ChunkedArray, name: str, rule: str, message: str) -> Violation | None:
    import pyarrow.compute as pc

    mask = pc.fill_null(mask, False)
    count = int(pc.sum(mask).as_py() or 0)
    if count == 0:
        return None
    rows = pc.indices_nonzero(mask).slice(0, SAMPLES)
    values = [_json_safe(v) for v in pc.take(column, rows).to_pylist()]
    return Violation(column=name, rule=rule, message=message, rows=count,
                     sample_values=values, sample_rows=[int(r) for r in rows.to_pylist()])


def _check_values(column: pa.ChunkedArray, rule: ColumnRule, kind: str) -> list[Violation]:
    import pyarrow as pa
    import pyarrow.compute as pc

    found: list[Violation | None] = []
    if not rule.nullable:
        found.append(_violation(column, pc.is_null(column), rule.name, "not_null",
                                "empty values in a column the schema says is never empty"))
    # NOTE: infinities are reported once, by the "finite" rule, not again as out of range.
    in_range_candidates = column
    if kind == "float":
        infinite = pc.and_(pc.is_inf(column), pc.invert(pc.is_null(column)))
        found.append(_violation(column, infinite, rule.name, "finite", "infinite values"))
        in_range_candidates = pc.if_else(infinite, None, column)
    if rule.min is not None and kind in ("int", "float"):
        found.append(_violation(column, pc.less(in_range_candidates, rule.min), rule.name, "min",
                                f"values below the minimum {rule.min}"))
    if rule.max is not None and kind in ("int", "float"):
        found.append(_violation(column, pc.greater(in_range_candidates, rule.max), rule.name, "max",
                                f"values above the maximum {rule.max}"))
    if rule.allowed is not None:
        allowed = pa.array(list(rule.allowed))
        outside = pc.and_(pc.invert(pc.is_in(column, value_set=allowed.cast(column.type, safe=False))),
                          pc.invert(pc.is_null(column)))
        shown = ", ".join(map(str, rule.allowed[:10]))
        found.append(_violation(column, outside, rule.name, "allowed", f"values outside the allowed set ({shown})"))
    return [v for v in found if v is not None]


def _type_matches(expected: str, actual: str | None) -> bool:
    # NOTE: integers are valid floats (CSV readers infer `1.0` columns without decimals as int).
    return actual == expected or (expected == "float" and actual == "int")


def check_table(table: pa.Table, schema: Schema) -> list[Violation]:
    """Check one table against the schema; returns every violation found."""
    violations: list[Violation] = []
    for rule in schema.columns:
        if rule.name not in table.column_names:
            violations.append(Violation(column=rule.name, rule="present", rows=table.num_rows,
                                        message="the column is missing from the data"))
            continue
        column = table.column(rule.name)
        actual = arrow_kind(column.type)
        if not _type_matches(rule.type, actual):
            violations.append(Violation(column=rule.name, rule="type", rows=table.num_rows,
                                        message=f"expected {rule.type}, found {column.type}"))
            continue
        violations.extend(_check_values(column, rule, rule.type))
    for name in table.column_names:
        if schema.column(name) is None:
            violations.append(Violation(column=name, rule="unexpected", rows=0, severity="warning",
                                        message="the column is not in the schema; add it there to check it"))
    return violations


def shown_path(path: Path, root: Path) -> str:
    """A path as the user wrote it: relative to the repository root when it lies inside."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _check_dataset(name: str, path: Path, schema: Schema | None, root: Path) -> DatasetResult:
    table = read_table(path)
    violations = check_table(table, schema) if schema else []
    return DatasetResult(name=name, path=shown_path(path, root), rows=table.num_rows, columns=table.num_columns,
                         fingerprint=fingerprint(path), violations=violations)


def announce(report: DataReport) -> None:
    """Annotations on the data files, one per violation, and a summary line per dataset."""
    for dataset in report.datasets:
        for v in dataset.violations:
            sample = f"; e.g. row {v.sample_rows[0]}: {v.sample_values[0]!r}" if v.sample_rows else ""
            text = f"{v.column}: {v.message} ({v.rows} rows{sample})"
            (github.error if v.severity == "error" else github.warning)(text, file=dataset.path)
        github.log(f"    {dataset.name}: {dataset.rows} rows, {len(dataset.errors)} failed checks")


def check_data(config: Config) -> DataReport:
    """Check the configured training (and evaluation) data against the configured schema."""
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    if schema is None:
        github.warning("no data.schema in modelci.yaml: only reading the data; "
                       "write one with `modelci data infer-schema`")
    datasets = [_check_dataset("train", config.data.train, schema, config.root)]
    if config.data.eval is not None:
        datasets.append(_check_dataset("eval", config.data.eval, schema, config.root))
    passed = not any(d.errors for d in datasets)
    shown_schema = shown_path(config.data.schema, config.root) if config.data.schema else None
    return DataReport(passed=passed, datasets=datasets, schema=shown_schema)
