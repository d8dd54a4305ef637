"""Which columns the model takes: each column's role (feature, label, id, text, ignore).

The schema's `role` decides where it gives one; `data.features` names the features outright.
Otherwise the training data decides, by one rule that `infer-schema` also writes into the schema:

- free text (`text`): a string column whose values are long (median of at least TEXT_LENGTH
  characters), mostly hold a blank (words), and are varied (at least TEXT_SHARE of them distinct);
  `infer-schema` writes such a column as `type: text` (checked and profiled as text, data/text),
  which a table model always leaves out (`role: text` on a string column is still read the same way);
- an identifier (`id`): a string column whose values are nearly all distinct (at least ID_SHARE of
  the non-empty values, and MIN_VALUES of them at least);
- a date or time (a Parquet timestamp, date, time or duration column): ONNX has no type for it and
  the served model takes the raw columns, so it is left out; derive numbers from it (days since an
  event, the hour) in the data if the model should see them.

Columns left out are named in one line of the log and in train-log.json (`left_out`). A string
column without a schema type whose every non-empty value is a number is taken as numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config
    from modelci.data.schema import Schema

LEFT_OUT_ROLES = ("label", "id", "text", "ignore")
SAMPLE = 10_000  # values a role is decided on: the first non-empty ones
MIN_VALUES = 20
ID_SHARE = 0.9
TEXT_LENGTH = 30
TEXT_SHARE = 0.5


def guess_role(values: Sequence[str]) -> str | None:
    """'text' or 'id' for a sample of a string column's non-empty values; None for a feature."""
    if len(values) < MIN_VALUES:
        return None
    distinct = len(set(values)) / len(values)
    lengths = sorted(len(v) for v in values)
    worded = sum(" " in v.strip() for v in values) / len(values)
    if lengths[len(lengths) // 2] >= TEXT_LENGTH and worded >= 0.5 and distinct >= TEXT_SHARE:
        return "text"
    return "id" if distinct >= ID_SHARE else None


def describe(role: str, values: Sequence[str]) -> str:
    """Why a column was given `role`, for the log line."""
    if role == "text":
        return f"text: free text, median {sorted(map(len, values))[len(values) // 2]} characters"
    return f"id: {len(set(values)):,} distinct of the first {len(values):,} values"


def is_temporal(series: pd.Series) -> bool:
    """A date, time, timestamp or duration column (pandas' types, or Arrow dates and times read as objects)."""
    import datetime

    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        return True
    if series.dtype != object:
        return False
    first = series.dropna().head(1).tolist()
    return bool(first) and isinstance(first[0], (datetime.date, datetime.time, datetime.timedelta))


def is_text(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_string_dtype(series) or series.dtype == object)


def present_strings(series: pd.Series, limit: int = SAMPLE) -> list[str]:
    """The first `limit` non-empty values of a text column, as strings."""
    return [str(v) for v in series.dropna().head(limit * 2).tolist() if str(v).strip()][:limit]


def all_numbers(series: pd.Series) -> bool:
    """A text column whose non-empty values (one at least) are all numbers."""
    import pandas as pd

    text = series.dropna().astype(str).str.strip()
    text = text[text != ""]
    return bool(len(text)) and bool(pd.to_numeric(text, errors="coerce").notna().all())


@dataclass
class Chosen:
    """The columns the model takes, and what was decided about the others."""

    features: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # column: why
    as_numbers: list[str] = field(default_factory=list)  # text columns taken as numbers


def choose_features(frame: pd.DataFrame, config: Config) -> Chosen:
    """The feature columns of the training data, by `data.features`, the schema's roles, or the data."""
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    named = config.data.features
    chosen = Chosen()
    for name in named if named is not None else [c for c in frame.columns if c != config.data.label]:
        why = _left_out(frame[name], schema, named is not None)
        if why is not None:
            chosen.left_out[name] = why
            continue
        chosen.features.append(name)
        rule = schema.column(name) if schema else None
        if rule is None and is_text(frame[name]) and all_numbers(frame[name]):
            chosen.as_numbers.append(name)
    return chosen


def _left_out(series: pd.Series, schema: Schema | None, named: bool) -> str | None:
    """Why a candidate column is not a feature, or None when it is one."""
    if is_temporal(series):
        return "datetime: the exported model has no date input; derive numbers from it in the data"
    if named:
        return None
    rule = schema.column(str(series.name)) if schema else None
    if rule is not None and rule.type == "text":
        return "type: text in the schema: free text, which a text model reads"
    if rule is not None and rule.role is not None:
        return f"role: {rule.role} in the schema" if rule.role in LEFT_OUT_ROLES else None
    if not is_text(series) or (rule is not None and rule.type != "string"):
        return None
    values = present_strings(series)
    role = guess_role(values)
    return None if role is None else describe(role, values)


def log_choice(chosen: Chosen) -> None:
    """One line naming the columns left out, and a note for text taken as numbers."""
    from modelci import github

    if chosen.left_out:
        what = "; ".join(f"{name} ({why})" for name, why in chosen.left_out.items())
        github.log(f"    left out of the features: {what}. To use one, list it in data.features "
                   "or give it role: feature in the schema")
    if chosen.as_numbers:
        github.log(f"    taken as numbers (text whose every value is a number): {', '.join(chosen.as_numbers)}")
