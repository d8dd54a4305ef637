"""The benchmark's declared data checks, shared by the data generator, modelci and the competitor runners.

Only the planted problems break them: a few f2 values above the range, a few unknown c2 values and
the copied (whole-row duplicate) rows. Everything else the generator draws lies well inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FLOATS = 12
INTS = {"i0": 1000, "i1": 1000, "i2": 1000, "i3": 100}  # column -> values drawn from [0, n)
CATEGORIES = {
    "c0": ["a", "b", "c", "d"],
    "c1": [f"s{k}" for k in range(8)],
    "c2": [f"t{k:02d}" for k in range(20)],
}
NULLABLE = ("f0", "f1")
LABEL_SHARE = 0.25  # share of ones in the label


def float_params(k: int) -> tuple[float, float]:
    """Mean and standard deviation of column f{k}."""
    return float(k), 1.0 + k / 4


def float_bounds(k: int) -> tuple[float, float]:
    """Declared range of f{k}: ten standard deviations either side, never reached by normal draws."""
    mean, sd = float_params(k)
    return mean - 10 * sd, mean + 10 * sd


def checks() -> dict[str, Any]:
    """The declared checks as a plain dict."""
    columns: dict[str, dict[str, Any]] = {}
    for k in range(FLOATS):
        low, high = float_bounds(k)
        columns[f"f{k}"] = {"type": "float", "nullable": f"f{k}" in NULLABLE, "min": low, "max": high}
    for name, n in INTS.items():
        columns[name] = {"type": "int", "nullable": False, "min": 0, "max": n - 1}
    for name, values in CATEGORIES.items():
        columns[name] = {"type": "string", "nullable": False, "allowed": list(values)}
    columns["label"] = {"type": "int", "nullable": False, "allowed": [0, 1]}
    return {
        "columns": columns,
        "duplicates": "error",
        "class_balance": {"column": "label", "min": 0.05, "max": 0.95},
    }


def write_modelci_schema(path: str | Path) -> None:
    """Write checks() as a modelci schema file (non-nullable is that format's default)."""
    spec = checks()
    balance = spec["class_balance"]
    columns = {}
    for name, rule in spec["columns"].items():
        written = {"type": rule["type"]}
        if rule["nullable"]:
            written["nullable"] = True
        written.update({key: rule[key] for key in ("min", "max", "allowed") if key in rule})
        columns[name] = written
    document = {
        "version": 1,
        "dataset": {"duplicates": spec["duplicates"], "class_balance": {"min": balance["min"], "max": balance["max"]}},
    }
    lines = [f"  {name}: {yaml.safe_dump(rule, sort_keys=False, default_flow_style=True, width=1000).strip()}"
             for name, rule in columns.items()]
    header = "# The data_check benchmark's checks (benchmarks/data_check/spec.py); the label column is `label`.\n"
    text = header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None) + "columns:\n"
    text += "".join(line + "\n" for line in lines)
    Path(path).write_text(text, encoding="utf-8")
