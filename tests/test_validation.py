"""Validation rows choose, evaluation rows judge: early stopping, the kept epoch, the per-epoch figures and the
tuning objective come from `data.validation` or `data.validation_split`, never from the evaluation rows."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelci.config import Config, parse_config
from modelci.data.tables import carve_validation, load_datasets
from modelci.errors import DataError
from test_train import configure, log

OUT = Path(".modelci/out")
SRC = Path(__file__).resolve().parents[1] / "src" / "modelci"
SKLEARN_MODEL = '''
from sklearn.linear_model import LogisticRegression


def build(input_dim, output_dim):
    return LogisticRegression(max_iter=500)
'''
XGBOOST_MODEL = '''
from xgboost import XGBClassifier


def build(input_dim, output_dim):
    return XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1)
'''
# NOTE: fields of an epoch's record that measure the machine, not the model
TIMINGS = ("seconds", "samples_per_s")


def config_of(data: dict[str, Any], task: str = "binary", root: Path = Path("/nowhere")) -> Config:
    raw = {"task": task, "data": {"train": "train.parquet", "label": "y", **data}, "model": {"factory": "m.py:f"}}
    return parse_config(raw, root / "modelci.yaml")


def epochs() -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMINGS} for e in log()["epochs"]]


def flipped_eval(repo: Path) -> None:
    """An evaluation file whose labels are the opposite of the real ones: its loss rises as the model learns,
    so an epoch chosen on it would be another than one chosen on the real evaluation rows."""
    frame = pd.read_parquet(repo / "data" / "eval.parquet")
    frame["churned"] = 1 - frame["churned"]
    frame.to_parquet(repo / "data" / "flipped.parquet", index=False)


def trained_with_each_eval(cli, repo: Path, checkpoint: str) -> list[tuple[bytes, list[dict[str, Any]]]]:  # type: ignore[no-untyped-def]
    flipped_eval(repo)
    found = []
    for evaluation in ("data/eval.parquet", "data/flipped.parquet"):
        configure(repo, data__eval=evaluation)
        result = cli("train")
        assert result.code == 0, result.err
        found.append(((OUT / checkpoint).read_bytes(), epochs()))
    return found


@pytest.mark.slow
def test_pytorch_with_early_stopping_trains_the_same_bytes_whatever_the_evaluation_file(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    configure(repo, train__epochs=5, train__lr=0.02, train__patience=1, train__deterministic=True)
    (first, first_epochs), (second, second_epochs) = trained_with_each_eval(cli, repo, "model.pt")
    assert first == second
    assert first_epochs == second_epochs
    assert log()["validation_rows"] == len(load_datasets(parse_config(
        yaml.safe_load((repo / "modelci.yaml").read_text()), repo / "modelci.yaml")).validation)


def test_xgboost_trains_and_logs_the_same_whatever_the_evaluation_file(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    (repo / "model.py").write_text(XGBOOST_MODEL)
    configure(repo, model={"factory": "model.py:build"})
    (first, first_epochs), (second, second_epochs) = trained_with_each_eval(cli, repo, "model.xgboost.json")
    assert first_epochs == second_epochs  # the logged loss and metrics are the validation rows'
    assert first == second


@pytest.mark.slow
def test_the_tuning_objective_is_the_same_whatever_the_evaluation_file(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    flipped_eval(repo)
    space = {"train.lr": {"type": "float", "low": 1e-4, "high": 0.05, "log": True}}
    values = []
    for evaluation in ("data/eval.parquet", "data/flipped.parquet"):
        configure(repo, data__eval=evaluation, train__epochs=2, tune={"trials": 2, "sampler": "random", "seed": 1,
                                                                       "space": space})
        assert cli("tune").code == 0
        report = json.loads((OUT / "tune-report.json").read_text())
        values.append([(t["params"], t["value"]) for t in report["trials"]])
        (repo / "tuned.yaml").unlink()
    assert values[0] == values[1]


def test_a_validation_file_is_the_rows_that_choose(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(SKLEARN_MODEL)
    validation = pd.read_parquet(repo / "data" / "eval.parquet").iloc[:300]
    validation.to_parquet(repo / "data" / "validation.parquet", index=False)
    configure(repo, data__validation="data/validation.parquet", model={"factory": "model.py:build"})
    assert cli("train").code == 0
    train_rows = len(pd.read_parquet(repo / "data" / "train.parquet"))
    assert (log()["rows"], log()["validation_rows"]) == (train_rows, 300)  # no rows carved from training
    with_file = epochs()
    validation.iloc[:150].to_parquet(repo / "data" / "validation.parquet", index=False)
    assert cli("train").code == 0
    assert log()["validation_rows"] == 150
    assert epochs()[0]["val_loss"] != with_file[0]["val_loss"]


def test_the_default_is_a_tenth_of_the_training_rows_stratified() -> None:
    frame = pd.DataFrame({"x": np.arange(1000.0), "y": np.r_[np.zeros(900, int), np.ones(100, int)]})
    train, validation = carve_validation(frame, config_of({}))
    assert (len(train), len(validation)) == (900, 100)
    assert validation["y"].sum() == 10
    assert not set(train["x"]) & set(validation["x"])
    again = carve_validation(frame, config_of({}))[1]
    assert again.equals(validation)  # seeded


def test_a_grouped_split_keeps_every_group_on_one_side() -> None:
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 60, 2000)
    frame = pd.DataFrame({"customer": [f"c{g}" for g in groups], "x": rng.random(2000), "y": rng.integers(0, 2, 2000)})
    train, validation = carve_validation(frame, config_of({"validation_split": {"group": "customer",
                                                                                 "fraction": 0.2}}))
    assert not set(train["customer"]) & set(validation["customer"])
    assert len(train) + len(validation) == 2000
    assert 0.15 < len(validation) / 2000 < 0.25


@pytest.mark.parametrize("as_text", [False, True], ids=["timestamps", "iso-text"])
def test_a_time_split_takes_the_latest_rows(as_text: bool) -> None:
    rng = np.random.default_rng(4)
    times = pd.date_range("2025-01-01", periods=500, freq="h").to_series().sample(frac=1, random_state=1)
    frame = pd.DataFrame({"when": times.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy() if as_text else times.to_numpy(),
                          "x": rng.random(500), "y": rng.integers(0, 2, 500)})
    train, validation = carve_validation(frame, config_of({"validation_split": {"time": "when", "fraction": 0.1}}))
    assert len(validation) == 50
    assert pd.to_datetime(validation["when"]).min() > pd.to_datetime(train["when"]).max()


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(40.0), "when": np.arange(40), "y": [0] * 36 + [1] * 4})


@pytest.mark.parametrize(("data", "frame", "key"), [
    pytest.param({"validation_split": {"time": "when"}}, _frame(), "data.validation_split.time: the validation rows "
                 "have no row of class 0", id="time-split-leaves-a-class-out-of-validation"),
    pytest.param({"validation_split": {"stratify": False, "fraction": 0.05, "seed": 1}},
                 _frame().assign(y=[0] * 39 + [1]), "data.validation_split.fraction: the", id="class-on-one-side"),
    pytest.param({"validation_split": {"group": "customer"}}, _frame(),
                 "data.validation_split.group: the training data has no column 'customer'", id="no-group-column"),
    pytest.param({"validation_split": {"time": "day"}}, _frame(),
                 "data.validation_split.time: the training data has no column 'day'", id="no-time-column"),
    pytest.param({"validation_split": {"time": "x"}}, _frame().assign(x=["soon"] * 40),
                 "data.validation_split.time: the column 'x' holds values that are neither", id="time-not-times"),
    pytest.param({"validation_split": {"fraction": 0.01, "stratify": False}}, _frame(),
                 "data.validation_split.fraction: of 40 training rows, the validation split takes 0", id="too-few"),
    pytest.param({"validation_split": {"group": "one"}}, _frame().assign(one="a"),
                 "data.validation_split.group: of 40 training rows, the validation split takes 40",
                 id="one-group"),
])
def test_a_split_that_cannot_be_made_is_exit_2_naming_the_key(data: dict[str, Any], frame: pd.DataFrame,
                                                              key: str) -> None:
    with pytest.raises(DataError) as raised:
        carve_validation(frame, config_of(data))
    assert raised.value.exit_code == 2
    assert key in raised.value.message


@pytest.mark.parametrize(("data", "key"), [
    ({"validation_split": {"fraction": 1.5}}, "data.validation_split.fraction: expected a fraction between 0 and 1"),
    ({"validation_split": {"fraction": 0}}, "data.validation_split.fraction: expected a number greater than 0"),
    ({"validation_split": {"group": "a", "time": "b"}}, "data.validation_split: give either 'group' or 'time'"),
    ({"validation_split": {"grop": "a"}}, "data.validation_split.grop: unknown key; did you mean 'group'?"),
    ({"validation_split": {"fraction": 0.1}, "validation": "v.parquet"}, "data: give either 'validation'"),
    ({"validation_split": "10%"}, "data.validation_split: expected a mapping"),
], ids=["fraction-above-1", "fraction-0", "group-and-time", "unknown-key", "file-and-split", "not-a-mapping"])
def test_a_bad_validation_setting_is_exit_2_naming_the_key(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                           data: dict[str, Any], key: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modelci.yaml").write_text(yaml.safe_dump(
        {"task": "binary", "data": {"train": "train.parquet", "label": "y", **data}, "model": {"factory": "m.py:f"}}))
    result = cli("train")
    assert result.code == 2
    assert key in result.err


def test_a_validation_file_without_a_class_is_exit_2_naming_the_key(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "eval.parquet")
    frame[frame["churned"] == 0].to_parquet(repo / "data" / "validation.parquet", index=False)
    configure(repo, data__validation="data/validation.parquet")
    result = cli("train")
    assert result.code == 2
    assert "data.validation: the validation rows have no row of class 1" in result.err


# NOTE: the reads of the evaluation rows left in training, each for what it reports, none for what it chooses:
# the category report (evaluation rows with a category unseen in training), and a training script's contract
# (its model's own predictions for the evaluation rows, which export checks parity on).
ALLOWED = {("train/trainer.py", "train"), ("train/command.py", "run"), ("train/command.py", "copy_model")}


def _reads_of_the_evaluation_rows(path: Path) -> set[tuple[str, str]]:
    """(file, function) of every `datasets.eval` / `x.datasets.eval` in the file."""
    found = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and node.attr == "eval" and (
                    (isinstance(node.value, ast.Name) and node.value.id == "datasets")
                    or (isinstance(node.value, ast.Attribute) and node.value.attr == "datasets")):
                found.add((path.relative_to(SRC).as_posix(), function.name))
    return found


def test_training_adapters_and_tuning_never_read_the_evaluation_rows() -> None:
    found = set().union(*(_reads_of_the_evaluation_rows(path) for folder in ("train", "frameworks", "tune")
                          for path in sorted((SRC / folder).rglob("*.py"))))
    assert found == ALLOWED
