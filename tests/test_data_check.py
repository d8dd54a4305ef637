"""`modelci data ...` on the example repository: every rule, bad input, cleaning, drift and fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import Result

OUT = Path(".modelci") / "out"


def report(repo: Path) -> dict:
    return json.loads((repo / OUT / "data-report.json").read_text())


def findings(repo: Path, dataset: int = 0) -> dict[tuple[str | None, str], dict]:
    return {(v["column"], v["rule"]): v for v in report(repo)["datasets"][dataset]["violations"]}


def set_config(repo: Path, old: str, new: str) -> None:
    path = repo / "modelci.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def add_to_schema(repo: Path, text: str) -> None:
    """Add columns (or, replacing the example's, a `dataset:` section) to the example's schema."""
    path = repo / "schema.yaml"
    schema = path.read_text()
    if "\ndataset:" in text:
        start = schema.index("dataset:\n")
        schema = schema[:start] + schema[schema.index("columns:\n"):]
    path.write_text(schema + text)


def test_dataset_rules_duplicates_class_balance_leakage_unique_and_pattern(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    train = pd.read_parquet(repo / "data" / "train.parquet")
    evaluation = pd.read_parquet(repo / "data" / "eval.parquet")
    train = pd.concat([train, train.iloc[[5, 6, 7]], evaluation.iloc[[0, 1]]], ignore_index=True)
    train["customer"] = [f"C{i:05d}" for i in range(len(train))]
    train.loc[100, "customer"] = "C00001"  # repeats row 1's value
    train.loc[[2000, 2001, 2002], "customer"] = train.loc[[5, 6, 7], "customer"].to_numpy()  # whole-row copies
    train.loc[200, "customer"] = "c-200"  # breaks the pattern
    evaluation["customer"] = [f"C{i:05d}" for i in range(2 * len(train), 2 * len(train) + len(evaluation))]
    evaluation.loc[[0, 1], "customer"] = train.loc[[len(train) - 2, len(train) - 1], "customer"].to_numpy()
    train.to_parquet(repo / "data" / "train.parquet", index=False)
    evaluation.to_parquet(repo / "data" / "eval.parquet", index=False)
    add_to_schema(repo, "  customer: {type: string, unique: true, pattern: '^C[0-9]{5}$'}\n"
                        "dataset:\n  duplicates: error\n  class_balance: {min: 0.3}\n  rows: {max: 2002}\n")
    result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings(repo)
    assert found[None, "duplicates"]["rows"] == 3
    assert found[None, "duplicates"]["sample_rows"] == [2000, 2001, 2002]
    assert found["customer", "unique"]["sample_rows"] == [100, 2000, 2001, 2002]
    assert found["customer", "pattern"]["sample_values"] == ["c-200"]
    assert found["churned", "class_balance"]["sample_values"] == [1]  # about a quarter churn; the schema wants 30%
    assert found[None, "rows"]["rows"] == 2005
    leakage = findings(repo, 1)[None, "leakage"]
    assert (leakage["rows"], leakage["sample_rows"]) == (2, [0, 1])
    assert "rows that repeat an earlier row exactly (3 rows; e.g. row 2000)" in result.err


def test_csv_folder_with_bad_values_collects_everything_with_rows(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    folder = repo / "data" / "csv"
    folder.mkdir()
    frame.iloc[:1000].to_csv(folder / "part-1.csv", index=False)
    second = frame.iloc[1000:].astype({"support_tickets": object})
    second.loc[1500, "support_tickets"] = "lots"  # text in an int column, in the second file
    second.loc[1600, "monthly_charges"] = float("inf")
    second.to_csv(folder / "part-2.csv", index=False)
    set_config(repo, "train: data/train.parquet", "train: data/csv")
    result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings(repo)
    assert found["support_tickets", "type"]["sample_rows"] == [1500]
    assert found["support_tickets", "type"]["sample_values"] == ["lots"]
    assert found["monthly_charges", "finite"]["sample_rows"] == [1600]
    assert report(repo)["datasets"][0]["files"] == ["data/csv/part-1.csv", "data/csv/part-2.csv"]


def test_fingerprint_follows_content_not_file_format(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "check").code == 0
    parquet = report(repo)["datasets"][0]["fingerprint"]
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame.to_csv(repo / "data" / "train.csv", index=False)
    set_config(repo, "train: data/train.parquet", "train: data/train.csv")
    assert cli("data", "check").code == 0
    assert report(repo)["datasets"][0]["fingerprint"] == parquet
    frame.loc[7, "monthly_charges"] += 0.01
    frame.to_csv(repo / "data" / "train.csv", index=False)
    assert cli("data", "check").code == 0
    assert report(repo)["datasets"][0]["fingerprint"] != parquet


def write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _ragged(repo: Path) -> None:
    lines = (repo / "data" / "train.csv").read_text().splitlines()
    lines[10] += ",extra"
    (repo / "data" / "train.csv").write_text("\n".join(lines) + "\n")


def _latin1(repo: Path) -> None:
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame.loc[3, "contract"] = "año"
    frame.to_csv(repo / "data" / "train.csv", index=False, encoding="latin-1")


BAD_INPUT = [
    ("empty-file", lambda repo: write_bytes(repo / "data" / "train.csv", b""),
     ["train.csv", "cannot be read as CSV"]),
    ("header-only", lambda repo: write_bytes(repo / "data" / "train.csv", b"a,b\n"),
     ["train.csv: the data has no rows"]),
    ("ragged-rows", _ragged, ["1 lines have the wrong number of fields", "line 11: 11 fields where the header has 10"]),
    ("not-utf8", _latin1, ["train.csv: the file is not UTF-8 text", "save the file with UTF-8 encoding"]),
    ("glob-matches-nothing", None, ["the pattern matches no file"]),
]


@pytest.mark.parametrize(("name", "damage", "fragments"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_unreadable_data_is_exit_2_with_a_clear_message(cli, repo: Path, name: str, damage,  # type: ignore[no-untyped-def]
                                                        fragments: list[str]) -> None:
    pd.read_parquet(repo / "data" / "train.parquet").to_csv(repo / "data" / "train.csv", index=False)
    set_config(repo, "train: data/train.parquet", "train: data/nothing-*.csv" if damage is None else
               "train: data/train.csv")
    if damage is not None:
        damage(repo)
    result: Result = cli("data", "check")
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err


def test_column_of_mixed_types_not_in_the_schema_is_exit_2(cli, repo: Path,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from modelci.data import source

    monkeypatch.setattr(source, "CSV_BLOCK_BYTES", 8192)  # the reader guesses types from the first block
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame["note"] = pd.Series([str(i) for i in range(len(frame))], dtype=object)
    frame.loc[len(frame) - 1, "note"] = "n/a?"
    frame.to_csv(repo / "data" / "train.csv", index=False)
    set_config(repo, "train: data/train.parquet", "train: data/train.csv")
    result = cli("data", "check")
    assert result.code == 2, result.err
    assert "column #11 holds 'n/a?' after rows of int64 values" in result.err
    assert "declare the column's type in the schema" in result.err
    add_to_schema(repo, "  note: {type: int}\n")
    assert cli("data", "check").code == 1  # declared, the bad value is a violation with its row
    assert findings(repo)["note", "type"]["sample_rows"] == [len(frame) - 1]


def test_missing_label_and_schema_column_are_reported_as_failed_checks(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "train.parquet").drop(columns=["churned"])
    frame.to_parquet(repo / "data" / "train.parquet", index=False)
    result = cli("data", "check")
    assert result.code == 1
    found = findings(repo)
    assert "the label column (data.label in modelci.yaml) is missing" in found["churned", "present"]["message"]
    assert found["churned", "present"]["rows"] == 2000


def test_a_bool_column_holding_other_numbers_is_a_type_violation(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame["senior"] = frame["senior"].astype("int64")
    frame.loc[:2, "senior"] = 2
    frame.to_parquet(repo / "data" / "train.parquet", index=False)
    schema = repo / "schema.yaml"
    schema.write_text(schema.read_text().replace("senior: {type: int, allowed: [0, 1]}", "senior: {type: bool}"))
    result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings(repo)
    assert found["senior", "type"]["rows"] == 3
    assert ("senior", "not_null") not in found  # reported once, as the wrong type


def test_bad_schema_file_lists_every_problem(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    add_to_schema(repo, "  name: {type: string, pattern: '([a-z'}\n  code: {type: int, allowed: [a, 1]}\n"
                        "dataset: {duplicates: maybe, rowz: 3}\n")
    result = cli("data", "check")
    assert result.code == 2
    for fragment in ("columns.name.pattern: not a valid RE2 regular expression", "dataset.duplicates: expected one of",
                     "dataset: unknown keys ['rowz']", "columns.code.allowed: ['a'] are not int values"):
        assert fragment in result.err


def _dirty(repo: Path) -> pd.DataFrame:
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame = pd.concat([frame, frame.iloc[:4]], ignore_index=True)  # 4 duplicates
    frame["churned"] = frame["churned"].astype("float")
    frame.loc[[10, 11], "churned"] = None  # 2 rows without a label
    frame.loc[20, "contract"] = "lifetime"  # 1 invalid row
    frame.loc[[30, 31, 32], "tenure_months"] = 500  # 3 values above the maximum of 120
    frame.to_parquet(repo / "data" / "train.parquet", index=False)
    return frame


@pytest.mark.parametrize(("invalid_rows", "invalid", "clipped"), [("drop", 4, 0), ("clip", 1, 3)])
def test_cleaning_drops_and_clips_and_reports_counts(cli, repo: Path, invalid_rows: str, invalid: int,  # type: ignore[no-untyped-def]
                                                     clipped: int) -> None:
    frame = _dirty(repo)
    set_config(repo, "  schema: schema.yaml\n",
               "  schema: schema.yaml\n  clean: {drop_duplicates: true, drop_null_label: true, "
               f"invalid_rows: {invalid_rows}}}\n")
    result = cli("run")  # the example's schema says duplicates are errors
    assert result.code == 0, result.err
    data = report(repo)
    assert {v["severity"] for v in data["datasets"][0]["violations"]} == {"cleaned"}
    assert data["cleaning"]["train"] == {"rows_before": len(frame), "rows_after": len(frame) - 6 - invalid,
                                         "null_label": 2, "invalid": invalid, "duplicates": 4, "clipped": clipped}
    log = json.loads((repo / OUT / "train-log.json").read_text())
    assert log["rows"] + log["validation_rows"] == len(frame) - 6 - invalid
    assert "Cleaning before training" in (repo / OUT / "report.md").read_text()
    assert pd.read_parquet(repo / "data" / "train.parquet").equals(frame)  # the user's file is untouched


def test_without_cleaning_the_same_data_fails(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _dirty(repo)
    result = cli("run")
    assert result.code == 1
    assert {("churned", "not_null"), ("contract", "allowed"), ("tenure_months", "max")} <= set(findings(repo))


def test_run_measures_drift_against_the_published_profile(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "--publish").code == 0
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame["monthly_charges"] *= 1.5
    frame.to_parquet(repo / "data" / "train.parquet", index=False)
    result = cli("data", "check")
    assert result.code == 0  # drift warns by default
    drift = {d["column"]: d for d in report(repo)["datasets"][0]["drift"]}
    assert drift["monthly_charges"]["verdict"] == "drifted"
    assert drift["contract"]["verdict"] == "stable"
    assert "monthly_charges: drifted from the baseline (psi" in result.err
    set_config(repo, "  schema: schema.yaml\n", "  schema: schema.yaml\n  drift: {method: js, severity: error}\n")
    result = cli("data", "check")
    assert result.code == 1
    assert "1 drifted columns" in result.err
    assert cli("run").code == 1
    assert "Drift against the baseline's data: 1 of 20 columns drifted" in (repo / OUT / "report.md").read_text()


def test_profile_command_and_profile_in_the_artifact(cli, repo: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # NOTE: profiled outside the repository: an untracked folder in it would make --publish refuse
    result = cli("data", "profile", "data/train.parquet", "--out", str(tmp_path / "profiled"))
    assert result.code == 0, result.err
    profile = json.loads((tmp_path / "profiled" / "data-profile.json").read_text())["datasets"]["data"]
    assert profile["rows"] == 2000
    charges = profile["columns"]["monthly_charges"]
    assert set(charges) >= {"count", "nulls", "min", "max", "mean", "std", "quantiles", "histogram", "sketch"}
    assert sum(charges["histogram"]["counts"]) == charges["count"]
    assert cli("run", "--publish").code == 0
    assert cli("pull", "oci:.modelci/registry:main", "-o", "pulled").code == 0
    assert (repo / "pulled" / "data-profile.json").is_file()


WRONG_COLUMNS = [
    ("label: churned", "label: churn"),
    ("  schema: schema.yaml\n", "  schema: schema.yaml\n  features: [tenure_months, contrakt]\n"),
    ("slices: [contract, tenure_months]", "slices: [contract, tenure]\n  group: customer"),
]


@pytest.mark.parametrize("command", [("data", "check"), ("train",), ("evaluate",), ("run",)],
                         ids=["data-check", "train", "evaluate", "run"])
def test_config_naming_columns_the_data_lacks_is_exit_2_with_every_key_and_the_columns(  # type: ignore[no-untyped-def]
        cli, repo: Path, command: tuple[str, ...]) -> None:
    for old, new in WRONG_COLUMNS:
        set_config(repo, old, new)
    result = cli(*command)
    assert result.code == 2, result.err
    assert "modelci.yaml is not valid" in result.err
    for fragment in ("data.label: 'churn' is not a column of the data; did you mean 'churned'?",
                     "data.features: 'contrakt' is not a column of the data; did you mean 'contract'?",
                     "evaluate.slices: 'tenure' is not a column of the data; did you mean 'tenure_months'?",
                     "evaluate.group: 'customer' is not a column of the data"):
        assert fragment in result.err
    assert ("the data's columns: tenure_months, monthly_charges, total_charges, contract, payment_method, "
            "internet_service, support_tickets, senior, num_products, churned") in result.err
    assert "Traceback" not in result.err
    assert not (repo / OUT / "model.pt").exists()


def test_a_wrong_label_in_a_csv_dataset_without_eval_data_is_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    pd.read_parquet(repo / "data" / "train.parquet").to_csv(repo / "data" / "train.csv", index=False)
    set_config(repo, "  train: data/train.parquet\n  eval: data/eval.parquet\n", "  train: data/train.csv\n")
    set_config(repo, "label: churned", "label: Churned")
    result = cli("data", "check")
    assert result.code == 2, result.err
    assert "data.label: 'Churned' is not a column of the data; did you mean 'churned'?" in result.err


def test_row_numbers_count_data_rows_from_0(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame.loc[0, "tenure_months"] = 500  # the first row under the header
    frame.to_csv(repo / "data" / "train.csv", index=False)
    set_config(repo, "train: data/train.parquet", "train: data/train.csv")
    result = cli("data", "check")
    assert result.code == 1
    assert findings(repo)["tenure_months", "max"]["sample_rows"] == [0]
    assert "tenure_months: values above the maximum 120 (1 rows; e.g. row 0: '500')" in result.err  # as in the file
