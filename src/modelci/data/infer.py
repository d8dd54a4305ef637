"""`modelci data infer-schema`: a starting schema from the profiles of every file given, for a person to edit.

What every file showed is merged (types, empty values, ranges, categories), so a schema inferred
from the training and the evaluation data holds for both. Ranges are then widened by a margin:
the largest value of one sample is rarely the largest the source produces, and a bound at exactly
the training range fails the next file for a value just past it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelci.data.roles import SAMPLE, all_numbers, guess_role
from modelci.data.schema import SCHEMA_VERSION

# NOTE: a string column with at most this many distinct values is treated as a category and its
# values are listed in the inferred schema; above it, listing them would be noise.
MAX_CATEGORIES = 50
# The share of a column's observed range its bounds are widened by, on each side.
MARGIN = 0.1


@dataclass
class Observed:
    """What the given files showed of one column, merged."""

    types: set[str]
    nulls: int = 0
    low: float | None = None
    high: float | None = None
    values: set[Any] | None = field(default_factory=set)  # the distinct values, while every file listed them

    @classmethod
    def of(cls, profile: dict[str, Any]) -> Observed:
        frequencies = profile.get("frequencies")
        numeric = profile["kind"] == "numeric" and profile["count"]
        # NOTE: a column with no value in a file (all empty) says nothing of its type there.
        return cls(types={profile["type"]} if profile["count"] else set(), nulls=profile["nulls"],
                   low=profile["min"] if numeric else None, high=profile["max"] if numeric else None,
                   values=None if frequencies is None else {value for value, _ in frequencies})

    def merge(self, other: Observed) -> None:
        self.types |= other.types
        self.nulls += other.nulls
        self.low, self.high = _extreme(min, self.low, other.low), _extreme(max, self.high, other.high)
        self.values = None if self.values is None or other.values is None else self.values | other.values

    @property
    def type(self) -> str:
        """One type that holds every file's values: int and float make float; other mixes, string."""
        if len(self.types) == 1:
            return next(iter(self.types))
        return "float" if self.types == {"int", "float"} else "string"


def _extreme(pick: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else pick(a, b)


def widened(low: float, high: float, integer: bool) -> tuple[float, float]:
    """`low` and `high` moved apart by MARGIN of their range, rounded outward, never across 0."""
    margin = MARGIN * ((high - low) or abs(high) or 1.0)
    step = 10.0 ** math.floor(math.log10(margin))
    if integer:
        step = max(step, 1.0)
    digits = max(0, -math.floor(math.log10(step)))
    lower = round(_whole(low - margin, step, math.floor) * step, digits)
    upper = round(_whole(high + margin, step, math.ceil) * step, digits)
    # NOTE: a column with no negative values (counts, amounts, durations) stays non-negative.
    lower, upper = (max(lower, 0.0) if low >= 0 else lower), (min(upper, 0.0) if high <= 0 else upper)
    return _plain(lower), _plain(upper)


def _whole(value: float, step: float, outward: Callable[[float], int]) -> int:
    """`value` in steps, rounded outward; a quotient a rounding error away from a whole number is that number."""
    steps = value / step
    # NOTE: -1.2 / 0.1 is -11.999999999999998: rounded up it would be -11, inside the margin.
    return round(steps) if abs(steps - round(steps)) < 1e-6 else outward(steps)


def _plain(value: float) -> float:
    """A whole number as an int, so the schema reads `max: 180`, not `max: 180.0`."""
    return int(value) if value == int(value) else value


def _rule(seen: Observed, sample: list[str]) -> dict[str, Any]:
    kind = seen.type
    role = guess_role(sample) if kind == "string" else None
    if role == "text":
        # NOTE: free text is its own type (data/text checks it as text), with no role: a table model leaves it out
        return {"type": "text"} | ({"nullable": True} if seen.nulls else {})
    if kind == "string" and role is None and numbers_as_text(sample):
        kind, seen.values = "float", None  # numbers stored as text: the data check and training parse them
    rule: dict[str, Any] = {"type": kind} | ({"role": role} if role else {})
    if seen.nulls:
        rule["nullable"] = True
    if kind == "int" and seen.values is not None and len(seen.values) <= 2:
        rule["allowed"] = sorted(seen.values)  # a flag or a binary label: its values say more than a range
    elif kind in ("int", "float") and seen.low is not None and seen.high is not None:
        rule["min"], rule["max"] = widened(seen.low, seen.high, integer=kind == "int")
    elif seen.types == {"string"} and seen.values and len(seen.values) <= MAX_CATEGORIES:
        # NOTE: only text: numbers read as text where the files' types differ have no categories to list
        rule["allowed"] = sorted(seen.values)
    return rule


def observe(profiles: list[dict[str, Any]]) -> dict[str, Observed]:
    """Every column of any profile, in the order first seen, with what all the profiles showed of it."""
    columns: dict[str, Observed] = {}
    for profile in profiles:
        for name, column in profile["columns"].items():
            found = Observed.of(column)
            if name in columns:
                columns[name].merge(found)
            else:
                columns[name] = found
    return columns


def numbers_as_text(sample: list[str]) -> bool:
    """Text whose sampled values (one at least) are all numbers."""
    import pandas as pd

    return bool(sample) and all_numbers(pd.Series(sample, dtype=object))


def infer_schema(profiles: list[dict[str, Any]], samples: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A starting schema from datasets' profiles: types, nullability, widened ranges and small category sets.

    `samples` (the first values of each text column, see `text_samples`) give identifiers their `role`
    (data/roles.py), free text the type text, and numbers stored as text the type float.
    """
    samples = samples or {}
    return {
        "version": SCHEMA_VERSION,
        "dataset": {"duplicates": "warning", "leakage": "error"},
        "columns": {name: _rule(seen, samples.get(name, [])) for name, seen in observe(profiles).items()},
    }


def text_samples(paths: list[Path]) -> dict[str, list[str]]:
    """The first SAMPLE non-empty values of every text column, over the files of `paths` in order."""
    import pyarrow as pa

    from modelci.data.schema import arrow_kind
    from modelci.data.source import batches

    samples: dict[str, list[str]] = {}
    for path in paths:
        for _, batch in batches(path):
            for name, array in zip(batch.schema.names, batch.columns, strict=True):
                taken = samples.setdefault(name, []) if arrow_kind(array.type) == "string" else None
                if taken is not None and len(taken) < SAMPLE:
                    values = array.slice(0, 2 * SAMPLE).cast(pa.string()).to_pylist()
                    taken += [v for v in values if v is not None and v.strip()][:SAMPLE - len(taken)]
            if all(len(v) >= SAMPLE for v in samples.values()):
                break
    return samples


def dump_schema(document: dict[str, Any], sources: list[str]) -> str:
    header = (
        f"# Written by `modelci data infer-schema` from {', '.join(sources)}, as the data was;\n"
        "# edit it to say what the data must hold (ranges, allowed values, which columns may be empty).\n"
        "# min and max are the smallest and largest values in any of those files,\n"
        f"# widened by {MARGIN:.0%} of that range on each side and rounded outward (never below 0 for\n"
        "# a column without negative values, nor above 0 for one without positive values), so more data\n"
        "# from the same source is not refused for a value just past the ones seen.\n"
        "# Set them to what the data can hold.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
