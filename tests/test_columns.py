"""Columns a real table has: identifiers, free text, numbers stored as text and dates, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modelci.data.roles import guess_role
from modelci.evaluate.onnx_model import OnnxModel
from modelci.features import FeatureSpec, as_floats, category_report

OUT = Path(".modelci/out")
WORDS = ("the customer called about a late bill and asked to cancel "  # noqa: SIM905 - a sentence reads better
         "unless the price drops soon").split()


def notes(rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=12)) for _ in range(rows)]


def with_real_columns(frame: pd.DataFrame, seed: int, prefix: str) -> pd.DataFrame:
    """The churn data plus what a real table has beside it: an ID, free text, numbers as text, a date."""
    rows = len(frame)
    frame = frame.copy()
    frame.insert(0, "customer_id", [f"{prefix}-{i:06d}" for i in range(rows)])
    frame["note"] = notes(rows, seed)
    # NOTE: to the dime, so that its values are not ~90% distinct, which would make it an ID by the rule
    frame["charges_text"] = [f"{v:.1f}" for v in frame["monthly_charges"]]
    frame.loc[frame.index[::50], "charges_text"] = ""  # an empty value stays empty, not "not a number"
    frame["signed_up"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(rows), unit="h")
    return frame


@pytest.fixture
def real_table(repo: Path) -> Path:
    """The churn example whose train and eval files carry an ID, text, numbers as text and a timestamp."""
    for name, seed, prefix in (("train", 1, "T"), ("eval", 2, "E")):
        path = repo / "data" / f"{name}.parquet"
        with_real_columns(pd.read_parquet(path), seed, prefix).to_parquet(path, index=False)
    # NOTE: without the schema, roles are decided from the training data alone.
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    del config["data"]["schema"]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    return repo


def test_run_leaves_ids_text_and_dates_out_and_serves_unseen_ids(cli, real_table: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run")
    assert result.code == 0, result.err
    printed = result.out + result.err
    assert "Traceback" not in printed
    left = [line for line in printed.splitlines() if "left out of the features" in line]
    assert len(left) == 1, printed
    for name in ("customer_id", "note", "signed_up"):
        assert name in left[0]
    assert "taken as numbers (text whose every value is a number): charges_text" in printed
    log = json.loads((OUT / "train-log.json").read_text())
    assert set(log["left_out"]) == {"customer_id", "note", "signed_up"}
    assert "charges_text" in log["input_columns"]
    assert "customer_id" not in log["input_columns"]
    contract = log["categories"]["contract"]
    assert contract["kept"] == ["month-to-month", "one-year", "two-year"]
    assert contract["folded"] == 0
    assert contract["unseen_eval_rows"] == 0
    assert "contract: 3 categories kept" in printed

    model = OnnxModel(OUT / "model.onnx")
    kinds = {i.name: i.kind for i in model.inputs}
    assert kinds["charges_text"] == "float"
    assert not {"customer_id", "note", "signed_up"} & set(kinds)
    rows = pd.read_parquet(real_table / "data" / "eval.parquet").head(20)
    rows["customer_id"] = [f"NEW-{i}" for i in range(20)]  # IDs the model never saw
    predicted = model.predict(rows)
    assert predicted.shape == (20, 2)
    assert np.isfinite(predicted).all()


def test_a_schema_role_brings_an_id_like_column_back(cli, real_table: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "infer-schema", "data/train.parquet", "data/eval.parquet", "-o", "schema.yaml").code == 0
    schema = yaml.safe_load(Path("schema.yaml").read_text())
    roles = {name: rule.get("role") for name, rule in schema["columns"].items()}
    assert roles["customer_id"] == "id"
    assert schema["columns"]["note"] == {"type": "text"}  # free text is its own type, which a table model leaves out
    assert roles["contract"] is None
    schema["columns"]["note"] = {"type": "string", "role": "feature"}  # a person decides it is a category after all
    Path("schema.yaml").write_text(yaml.safe_dump(schema))
    config = yaml.safe_load(Path("modelci.yaml").read_text())
    config["data"]["schema"] = "schema.yaml"
    Path("modelci.yaml").write_text(yaml.safe_dump(config))
    result = cli("train")
    assert result.code == 0, result.err
    log = json.loads((OUT / "train-log.json").read_text())
    assert "note" in log["input_columns"]
    assert "charges_text" in log["input_columns"]
    assert log["left_out"]["customer_id"] == "role: id in the schema"
    assert log["left_out"]["signed_up"].startswith("datetime")


@pytest.mark.parametrize(("values", "role"), [
    ([f"C{i}" for i in range(100)], "id"),
    (notes(100, 0), "text"),
    (["a", "b", "c"] * 40, None),
    ([f"C{i}" for i in range(10)], None),  # too few values to call distinct
    ([f"C{i % 60}" for i in range(100)], None),  # repeats: a category, if a wide one
], ids=["id", "text", "category", "few", "repeating"])
def test_guess_role(values: list[str], role: str | None) -> None:
    assert guess_role(values) == role


def test_numbers_as_text_refuses_a_value_that_is_not_one() -> None:
    from modelci.errors import DataError

    assert as_floats(pd.Series(["1.5", "", None, " 2 "]), "x").tolist()[::3] == [1.5, 2.0]
    with pytest.raises(DataError, match="'x' holds values that are not numbers: 'n/a'"):
        as_floats(pd.Series(["1.5", "n/a"]), "x")


def test_category_report_counts_kept_folded_and_unseen() -> None:
    train = pd.DataFrame({"c": ["a"] * 6 + ["b"] * 5 + ["rare1", "rare2", ""]})
    evaluation = pd.DataFrame({"c": ["a", "rare1", "new", "new", ""]})
    spec = FeatureSpec.fit(train, ["c"])
    report = category_report(spec, train, evaluation)
    assert report == {"c": {"kept": ["a", "b"], "folded": 2, "folded_rows": 2, "unseen_eval_rows": 2}}


def test_a_role_the_schema_does_not_know_is_a_config_error(tmp_path: Path) -> None:
    from modelci.data.schema import load_schema
    from modelci.errors import ConfigError

    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  a: {type: string, role: identifier}\n  b: {type: string, role: text}\n")
    with pytest.raises(ConfigError) as raised:
        load_schema(path)
    assert "columns.a.role: expected one of feature, label, id, text, ignore, got 'identifier'" in str(raised.value)
    path.write_text("columns:\n  b: {type: string, role: text}\n")
    assert load_schema(path).columns[0].role == "text"
