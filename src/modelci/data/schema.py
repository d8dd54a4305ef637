"""The data schema file: what each column must hold. Written by `infer-schema`, edited by a person."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelci.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

TYPES = ("int", "float", "string", "bool")
SCHEMA_VERSION = 1
# NOTE: a string column with at most this many distinct values is treated as a category and its
# values are listed in the inferred schema; above it, listing them would be noise.
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class ColumnRule:
    name: str
    type: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnRule, ...]

    def column(self, name: str) -> ColumnRule | None:
        return next((c for c in self.columns if c.name == name), None)


def _column(name: str, raw: Any, problems: list[str]) -> ColumnRule | None:
    key = f"columns.{name}"
    if not isinstance(raw, dict):
        problems.append(f"{key}: expected a mapping such as {{type: float}}, got {raw!r}")
        return None
    unknown = set(raw) - {"type", "nullable", "min", "max", "allowed"}
    if unknown:
        problems.append(f"{key}: unknown keys {sorted(unknown)}; allowed: type, nullable, min, max, allowed")
    kind = raw.get("type")
    if kind not in TYPES:
        problems.append(f"{key}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
        return None
    for bound in ("min", "max"):
        value = raw.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"{key}.{bound}: expected a number, got {value!r}")
    allowed = raw.get("allowed")
    if allowed is not None and not isinstance(allowed, list):
        problems.append(f"{key}.allowed: expected a list of values, got {allowed!r}")
        allowed = None
    return ColumnRule(
        name=name, type=kind, nullable=bool(raw.get("nullable", False)),
        min=raw.get("min"), max=raw.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
    )


def load_schema(path: Path) -> Schema:
    if not path.is_file():
        raise ConfigError(str(path), ["the schema file does not exist"],
                          hint=f"write one with: modelci data infer-schema DATA -o {path.name}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict) or not raw["columns"]:
        raise ConfigError(str(path), ["expected a top-level 'columns' mapping of column name to rules"])
    problems: list[str] = []
    columns = [_column(str(name), rules, problems) for name, rules in raw["columns"].items()]
    if problems:
        raise ConfigError(str(path), problems)
    return Schema(columns=tuple(c for c in columns if c is not None))


def arrow_kind(data_type: pa.DataType) -> str | None:
    """The schema type an Arrow type satisfies, or None for a type modelci does not handle."""
    import pyarrow.types as pat

    if pat.is_boolean(data_type):
        return "bool"
    if pat.is_integer(data_type):
        return "int"
    if pat.is_floating(data_type):
        return "float"
    if pat.is_string(data_type) or pat.is_large_string(data_type) or pat.is_dictionary(data_type):
        return "string"
    return None


def _infer_column(column: pa.ChunkedArray) -> dict[str, Any]:
    import pyarrow.compute as pc

    kind = arrow_kind(column.type) or "string"
    rule: dict[str, Any] = {"type": kind}
    if column.null_count:
        rule["nullable"] = True
    if kind in ("int", "float"):
        bounds = pc.min_max(column).as_py()
        rule["min"], rule["max"] = bounds["min"], bounds["max"]
        distinct = pc.unique(column.drop_null())
        if kind == "int" and len(distinct) <= 2:
            rule["allowed"] = sorted(distinct.to_pylist())
    elif kind == "string":
        distinct = pc.unique(column.drop_null())
        if len(distinct) <= MAX_CATEGORIES:
            rule["allowed"] = sorted(distinct.to_pylist())
    return rule


def infer_schema(table: pa.Table) -> dict[str, Any]:
    """A starting schema from data: types, nullability, observed ranges and small category sets."""
    return {
        "version": SCHEMA_VERSION,
        "columns": {name: _infer_column(table.column(name)) for name in table.column_names},
    }


def dump_schema(document: dict[str, Any]) -> str:
    header = (
        "# Written by `modelci data infer-schema` from the data as it was; edit it to say what the\n"
        "# data must hold (ranges, allowed values, which columns may be empty).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
