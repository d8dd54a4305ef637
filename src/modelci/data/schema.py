"""The data schema file: what each column must hold. Written by `infer-schema`, edited by a person."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelci.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

TYPES = ("int", "float", "string", "bool", "image", "text")
SCHEMA_VERSION = 1
SEVERITIES = ("error", "warning", "ignore")
ALLOWED_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "string": str, "bool": bool}
# Drift measures and the score above which a column has drifted (for ks: the p-value below which).
DRIFT_THRESHOLDS = {"psi": 0.2, "js": 0.1, "linf": 0.1, "ks": 0.05}
COLUMN_KEYS = ("type", "role", "nullable", "min", "max", "allowed", "unique", "pattern", "drift")
# A `type: image` column (a path or the encoded bytes; see data/images) takes these and nullable, role, drift.
IMAGE_KEYS = ("min_width", "max_width", "min_height", "max_height", "channels")
IMAGE_CHANNELS = (1, 2, 3, 4)  # grey, grey with alpha, RGB, RGBA
# A `type: text` column (free text; see data/text) takes these (characters; words as data.text.tokens counts
# them) and nullable, role, drift.
TEXT_KEYS = ("min_length", "max_length", "min_tokens", "max_tokens")
# What the model makes of a column (see data/roles.py): a feature (the default), the label, or left out.
ROLES = ("feature", "label", "id", "text", "ignore")
DATASET_KEYS = ("rows", "duplicates", "leakage", "class_balance")


@dataclass(frozen=True)
class DriftRule:
    method: str
    threshold: float


@dataclass(frozen=True)
class Bounds:
    min: float | None = None
    max: float | None = None

    def breaks(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)

    def describe(self) -> str:
        return " and ".join(p for p in (f"at least {self.min}" if self.min is not None else "",
                                        f"at most {self.max}" if self.max is not None else "") if p)


@dataclass(frozen=True)
class ColumnRule:
    name: str
    type: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    unique: bool = False
    pattern: str | None = None
    drift: DriftRule | bool | None = True  # True: the config's default measure; False: not measured
    role: str | None = None  # None: not given, decided from the data (data/roles.py)
    # `type: image` only: the pixel sizes and channel counts each image must have
    width: Bounds = Bounds()
    height: Bounds = Bounds()
    channels: tuple[int, ...] | None = None
    # `type: text` only: the characters and the words each text must have
    length: Bounds = Bounds()
    tokens: Bounds = Bounds()


@dataclass(frozen=True)
class DatasetRules:
    rows: Bounds = Bounds()
    duplicates: str = "warning"
    leakage: str = "error"
    class_balance: Bounds = Bounds()


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnRule, ...]
    dataset: DatasetRules = DatasetRules()

    def column(self, name: str) -> ColumnRule | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def images(self) -> ColumnRule | None:
        """The column of `type: image`, if the schema has one."""
        return next((c for c in self.columns if c.type == "image"), None)

    @property
    def text(self) -> ColumnRule | None:
        """The first column of `type: text`, if the schema has one."""
        return next((c for c in self.columns if c.type == "text"), None)

    def owner(self, column: str) -> ColumnRule | None:
        """The rule a profile column falls under: its own, or, for a statistic of an image or text column
        (`image.brightness.red`, `review.characters`), that column's."""
        rule = self.column(column)
        if rule is not None:
            return rule
        return next((c for c in self.columns if c.type in ("image", "text") and column.startswith(f"{c.name}.")),
                    None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def drift_rule(raw: Any, key: str, problems: list[str]) -> DriftRule | None:
    """`{method: psi, threshold: 0.2}` (threshold optional), validated."""
    if not isinstance(raw, dict) or raw.get("method", "psi") not in DRIFT_THRESHOLDS:
        problems.append(f"{key}: expected {{method: {' | '.join(DRIFT_THRESHOLDS)}, threshold: NUMBER}} or false, "
                        f"got {raw!r}")
        return None
    unknown = set(raw) - {"method", "threshold", "severity"}
    if unknown:
        problems.append(f"{key}: unknown keys {sorted(unknown)}; allowed: method, threshold")
    method = raw.get("method", "psi")
    threshold = raw.get("threshold", DRIFT_THRESHOLDS[method])
    if not _is_number(threshold) or threshold <= 0:
        problems.append(f"{key}.threshold: expected a number greater than 0, got {threshold!r}")
        threshold = DRIFT_THRESHOLDS[method]
    return DriftRule(method=method, threshold=float(threshold))


def _bounds(raw: Any, key: str, problems: list[str]) -> Bounds:
    if raw is None:
        return Bounds()
    if not isinstance(raw, dict) or set(raw) - {"min", "max"} or not all(_is_number(v) for v in raw.values()):
        problems.append(f"{key}: expected {{min: NUMBER, max: NUMBER}} (either may be left out), got {raw!r}")
        return Bounds()
    return Bounds(min=raw.get("min"), max=raw.get("max"))


def _severity(raw: dict[str, Any], key: str, default: str, problems: list[str]) -> str:
    value = raw.get(key, default)
    if value not in SEVERITIES:
        problems.append(f"dataset.{key}: expected one of {', '.join(SEVERITIES)}, got {value!r}")
        return default
    return str(value)


def _dataset(raw: Any, problems: list[str]) -> DatasetRules:
    if raw is None:
        return DatasetRules()
    if not isinstance(raw, dict):
        problems.append(f"dataset: expected a mapping with any of {', '.join(DATASET_KEYS)}, got {raw!r}")
        return DatasetRules()
    unknown = set(raw) - set(DATASET_KEYS)
    if unknown:
        problems.append(f"dataset: unknown keys {sorted(unknown)}; allowed: {', '.join(DATASET_KEYS)}")
    balance = _bounds(raw.get("class_balance"), "dataset.class_balance", problems)
    if any(v is not None and not 0 <= v <= 1 for v in (balance.min, balance.max)):
        problems.append("dataset.class_balance: min and max are shares of the rows, from 0 to 1")
    return DatasetRules(rows=_bounds(raw.get("rows"), "dataset.rows", problems),
                        duplicates=_severity(raw, "duplicates", "warning", problems),
                        leakage=_severity(raw, "leakage", "error", problems), class_balance=balance)


def _pattern(value: Any, key: str, problems: list[str]) -> str | None:
    import re

    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{key}.pattern: expected a regular expression, got {value!r}")
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelci.data.arrow import strings

    try:
        re.compile(value)
        # NOTE: patterns run in Arrow, whose RE2 syntax has no lookarounds or backreferences.
        pc.match_substring_regex(strings([""]), value)
    except (re.error, pa.ArrowInvalid) as exc:
        problems.append(f"{key}.pattern: not a valid RE2 regular expression ({str(exc).splitlines()[0]})")
        return None
    return value


def _column(name: str, raw: Any, problems: list[str]) -> ColumnRule | None:
    key = f"columns.{name}"
    if not isinstance(raw, dict):
        problems.append(f"{key}: expected a mapping such as {{type: float}}, got {raw!r}")
        return None
    kind = raw.get("type")
    if kind == "image":
        return _image_column(name, raw, problems)
    if kind == "text":
        return _text_column(name, raw, problems)
    unknown = set(raw) - set(COLUMN_KEYS)
    if unknown:
        problems.append(f"{key}: unknown keys {sorted(unknown)}; allowed: {', '.join(COLUMN_KEYS)}")
    if kind not in TYPES:
        problems.append(f"{key}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
        return None
    for bound in ("min", "max"):
        value = raw.get(bound)
        if value is not None and not _is_number(value):
            problems.append(f"{key}.{bound}: expected a number, got {value!r}")
    allowed = raw.get("allowed")
    if allowed is not None and not isinstance(allowed, list):
        problems.append(f"{key}.allowed: expected a list of values, got {allowed!r}")
        allowed = None
    wrong = [v for v in allowed or [] if not isinstance(v, ALLOWED_TYPES[kind]) or (kind != "bool" and v is True)]
    if wrong:
        problems.append(f"{key}.allowed: {wrong!r} are not {kind} values")
        allowed = None
    role = _role(raw, key, problems)
    if raw.get("pattern") is not None and kind != "string":
        problems.append(f"{key}.pattern: only string columns can have a pattern")
    drift = raw.get("drift", True)
    return ColumnRule(
        name=name, type=kind, nullable=bool(raw.get("nullable", False)),
        min=raw.get("min"), max=raw.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        unique=bool(raw.get("unique", False)), pattern=_pattern(raw.get("pattern"), key, problems),
        drift=drift if isinstance(drift, bool) else drift_rule(drift, f"{key}.drift", problems),
        role=role,
    )


def _whole_bounds(raw: dict[str, Any], side: str, key: str, problems: list[str], *, least: int,
                  unit: str) -> Bounds:
    """`min_<side>` and `max_<side>`: whole numbers of `unit`, at least `least`, the minimum not above the maximum."""
    low, high = raw.get(f"min_{side}"), raw.get(f"max_{side}")
    for bound, value in ((f"min_{side}", low), (f"max_{side}", high)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            problems.append(f"{key}.{bound}: expected a whole number of {unit}, at least {least}, got {value!r}")
            return Bounds()
    if low is not None and high is not None and low > high:
        problems.append(f"{key}: min_{side} {low} is above max_{side} {high}")
        return Bounds()
    return Bounds(min=low, max=high)


def _pixels(raw: dict[str, Any], side: str, key: str, problems: list[str]) -> Bounds:
    """`min_width`/`max_width` (or height): whole numbers of pixels, at least 1."""
    return _whole_bounds(raw, side, key, problems, least=1, unit="pixels")


def _channels(raw: Any, key: str, problems: list[str]) -> tuple[int, ...] | None:
    """`channels: 3` or `channels: [1, 3]`: the channel counts an image may have."""
    if raw is None:
        return None
    counts = raw if isinstance(raw, list) else [raw]
    if not counts or any(not isinstance(c, int) or isinstance(c, bool) or c not in IMAGE_CHANNELS for c in counts):
        problems.append(f"{key}.channels: expected a channel count or a list of them, each one of "
                        f"{', '.join(map(str, IMAGE_CHANNELS))} (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA), got {raw!r}")
        return None
    return tuple(sorted(set(counts)))


def _role(raw: dict[str, Any], key: str, problems: list[str]) -> str | None:
    role = raw.get("role")
    if role is not None and role not in ROLES:
        problems.append(f"{key}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        return None
    return role if isinstance(role, str) else None


def _special_column(name: str, raw: dict[str, Any], kind: str, keys: tuple[str, ...],
                    problems: list[str]) -> ColumnRule:
    """The keys every image or text column shares (type, role, nullable, drift), and no others than `keys`."""
    key = f"columns.{name}"
    allowed = ("type", "role", "nullable", "drift", *keys)
    unknown = set(raw) - set(allowed)
    if unknown:
        problems.append(f"{key}: unknown keys {sorted(unknown)} for {'an' if kind == 'image' else 'a'} {kind} "
                        f"column; allowed: {', '.join(allowed)}")
    drift = raw.get("drift", True)
    return ColumnRule(
        name=name, type=kind, nullable=bool(raw.get("nullable", False)),
        drift=drift if isinstance(drift, bool) else drift_rule(drift, f"{key}.drift", problems),
        role=_role(raw, key, problems))


def _image_column(name: str, raw: dict[str, Any], problems: list[str]) -> ColumnRule:
    """A `type: image` column: the image's path (relative to the table's folder) or its encoded bytes."""
    key = f"columns.{name}"
    return replace(_special_column(name, raw, "image", IMAGE_KEYS, problems),
                   width=_pixels(raw, "width", key, problems), height=_pixels(raw, "height", key, problems),
                   channels=_channels(raw.get("channels"), key, problems))


def _text_column(name: str, raw: dict[str, Any], problems: list[str]) -> ColumnRule:
    """A `type: text` column: free text, checked and profiled as text (data/text), never a table model's feature."""
    key = f"columns.{name}"
    return replace(_special_column(name, raw, "text", TEXT_KEYS, problems),
                   length=_whole_bounds(raw, "length", key, problems, least=0, unit="characters"),
                   tokens=_whole_bounds(raw, "tokens", key, problems, least=0, unit="words"))


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
    unknown = set(raw) - {"version", "columns", "dataset"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}; allowed: version, dataset, columns")
    columns = [_column(str(name), rules, problems) for name, rules in raw["columns"].items()]
    dataset = _dataset(raw.get("dataset"), problems)
    if problems:
        raise ConfigError(str(path), problems)
    return Schema(columns=tuple(c for c in columns if c is not None), dataset=dataset)


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
