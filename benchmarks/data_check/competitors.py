"""The same checks as modelci's, run with pandera and with Great Expectations (GX Core 1.x).

Each runner reads the Parquet file the way that library's users do (pandas.read_parquet into one
DataFrame), builds the checks from spec.checks() and validates, collecting every failure.

    /work/benchvenv/bin/python competitors.py pandera|gx FILE

prints one JSON line: {"tool", "seconds" (read + build checks + validate; imports excluded), "failed_checks",
"rows", "counts" (failing rows per check), "read_seconds", "check_seconds"}.
Run it in the benchmark venv (requirements.txt), not in modelci's environment.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
from spec import checks

PANDAS_TYPES = {"float": "float64", "int": "int64", "string": "str"}  # pandas 3 reads Parquet strings as `str`


def _binary_mean_bounds(low: float, high: float) -> tuple[float, float]:
    """For a 0/1 label, both class shares lie in [low, high] exactly when the mean lies in these bounds."""
    return max(low, 1 - high), min(high, 1 - low)


def _shares_in_range(classes: list[Any] | None, low: float, high: float) -> Callable[[pd.Series], bool]:
    """Pandera's class-balance check: every class's share of the rows lies in [low, high] (a missing class is 0)."""

    def check(series: pd.Series) -> bool:
        shares = series.value_counts(normalize=True)
        if classes is not None:
            shares = shares.reindex(classes, fill_value=0.0)
        return bool(shares.between(low, high).all())

    return check


def run_pandera(path: str) -> dict[str, Any]:
    import pandera.pandas as pa

    start = time.perf_counter()
    frame = pd.read_parquet(path)
    read = time.perf_counter()
    spec = checks()
    balance = spec["class_balance"]
    columns: dict[str, pa.Column] = {}
    for name, rule in spec["columns"].items():
        column_checks = []
        if "min" in rule:
            column_checks.append(pa.Check.in_range(rule["min"], rule["max"]))
        if "allowed" in rule:
            column_checks.append(pa.Check.isin(rule["allowed"]))
        if name == balance["column"]:
            shares_in_range = _shares_in_range(rule.get("allowed"), balance["min"], balance["max"])
            column_checks.append(pa.Check(shares_in_range, name="class_balance"))
        columns[name] = pa.Column(PANDAS_TYPES[rule["type"]], checks=column_checks, nullable=rule["nullable"])
    duplicates = list(frame.columns) if spec["duplicates"] != "ignore" else None
    schema = pa.DataFrameSchema(columns, unique=duplicates, report_duplicates="exclude_first")
    counts: dict[str, int] = {}
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        check = cases["check"].astype(str).str.split("(").str[0]  # "isin(['a', ...])" -> "isin"
        names = check.where(cases["schema_context"] == "DataFrameSchema", cases["column"].astype(str) + ":" + check)
        counts = {name: int(n) for name, n in cases.groupby(names)["index"].nunique(dropna=False).items()}
    end = time.perf_counter()
    return {"failed_checks": sorted(counts), "rows": len(frame), "counts": counts,
            "read_seconds": round(read - start, 3), "check_seconds": round(end - read, 3)}


def _gx_suite(spec: dict[str, Any], all_columns: list[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    expectations: list[Any] = []
    for name, rule in spec["columns"].items():
        expectations.append(gxe.ExpectColumnValuesToBeOfType(column=name, type_=PANDAS_TYPES[rule["type"]]))
        if not rule["nullable"]:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        if "min" in rule:
            expectations.append(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=rule["min"],
                                                                 max_value=rule["max"]))
        if "allowed" in rule:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=rule["allowed"]))
    if spec["duplicates"] != "ignore":
        expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=all_columns))
    balance = spec["class_balance"]
    # NOTE: GX has no per-class share expectation; on a 0/1 label (enforced by the in-set expectation
    # above) the share of ones is the mean, so bounding the mean bounds both shares.
    low, high = _binary_mean_bounds(balance["min"], balance["max"])
    expectations.append(gxe.ExpectColumnMeanToBeBetween(column=balance["column"], min_value=low, max_value=high))
    return expectations


def run_great_expectations(path: str) -> dict[str, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    start = time.perf_counter()
    frame = pd.read_parquet(path)
    read = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (context.data_sources.add_pandas("bench").add_dataframe_asset("rows")
                        .add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx.ExpectationSuite(name="data_check",
                                                   expectations=_gx_suite(checks(), list(frame.columns))))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="data_check", data=batch_definition,
                                                                            suite=suite))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = validation.run(batch_parameters={"dataframe": frame})
    counts: dict[str, int] = {}
    for outcome in result.results:
        config = outcome.expectation_config
        if outcome.success or config is None:
            continue
        column = config.kwargs.get("column")
        name = f"{column}:{config.type}" if column else config.type
        counts[name] = int(outcome.result.get("unexpected_count", 1))
    end = time.perf_counter()
    return {"failed_checks": sorted(counts), "rows": len(frame), "counts": counts,
            "read_seconds": round(read - start, 3), "check_seconds": round(end - read, 3)}


RUNNERS = {"pandera": run_pandera, "gx": run_great_expectations}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in RUNNERS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(RUNNERS)}}} FILE")
    tool, path = sys.argv[1:]
    summary = RUNNERS[tool](path)
    seconds = round(summary["read_seconds"] + summary["check_seconds"], 3)
    print(json.dumps({"tool": tool, "seconds": seconds, **summary}))


if __name__ == "__main__":
    main()
