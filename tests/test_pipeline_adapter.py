"""The scikit-learn pipeline adapter: a Pipeline whose ColumnTransformer takes the churn example's raw columns
is trained, exported with its own preprocessing converted (and none of modelci's in front), checked for
parity, evaluated, compared and served by ONNX Runtime; a pipeline naming a column the data lacks is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import yaml

from adapters import assert_compared_as_fitted
from conftest import git
from modelci.evaluate.onnx_model import OnnxModel
from modelci.outputs import TRAIN_LOG

OUT = Path(".modelci/out")
NUMBERS = ["tenure_months", "monthly_charges", "total_charges", "support_tickets"]
TEXT = ["contract", "payment_method", "internet_service"]

PIPELINE = f"""
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build(input_dim, output_dim, C=1.0, numbers={NUMBERS!r}):
    columns = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ("cat", OneHotEncoder(handle_unknown="ignore"), {TEXT!r}),
    ])
    return Pipeline([("columns", columns), ("model", LogisticRegression(C=C, max_iter=500))])
"""


def _configure(repo: Path, **params: object) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"] = {"factory": "model.py:build", "params": params}
    config["evaluate"] = {"metrics": ["roc_auc", "log_loss"]}
    config["gate"] = [{"metric": "roc_auc", "min": 0.7}]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    (repo / "model.py").write_text(PIPELINE)


def test_a_pipeline_on_the_raw_columns_trains_exports_evaluates_and_compares(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    _configure(repo, C=1.0)
    git(repo, "commit", "-qam", "pipeline")
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    log = json.loads((OUT / TRAIN_LOG).read_text())
    assert log["framework"] == "scikit-learn-pipeline"
    assert log["input_columns"] == NUMBERS + TEXT
    assert log["input_dim"] == len(NUMBERS) + 3 + 4 + 3  # the columns' one-hot codes: the pipeline's features
    # modelci's category handling is not what the pipeline uses, so it is neither reported nor recorded
    assert log["categories"] == {}
    assert "categories kept" not in first.out + first.err
    assert (OUT / "model.pipeline.skops").is_file()
    assert not (OUT / "model.skops").exists()
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"], parity["problems"]
    assert parity["rows"] == 500
    assert parity["outputs"][0]["max_abs_error"] < 1e-5
    assert parity["exporter"] == "skl2onnx"

    model = onnx.load(OUT / "model.onnx")
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert inputs == {**{n: onnx.TensorProto.FLOAT for n in NUMBERS}, **{t: onnx.TensorProto.STRING for t in TEXT}}
    assert not [n.name for n in model.graph.node if any(o.startswith("pre.") for o in n.output)]
    assert "features" not in {v for n in model.graph.node for v in n.input}

    _configure(repo, C=0.01)
    git(repo, "commit", "-qam", "stronger regularization")
    second = cli("run")
    assert second.code == 0, second.err
    assert_compared_as_fitted(OUT)


def test_an_unseen_category_and_an_empty_value_are_served(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _configure(repo)
    assert cli("train").code == 0
    assert cli("export").code == 0
    served = OnnxModel(OUT / "model.onnx")
    rows = pd.read_parquet(repo / "data" / "eval.parquet").iloc[:3].copy()
    rows["contract"] = ["ten-year", None, "month-to-month"]
    rows.loc[rows.index[0], "total_charges"] = np.nan
    scores = served.predict(rows)
    assert scores.shape == (3, 2)
    assert np.isfinite(scores).all()
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_a_pipeline_naming_a_column_the_data_lacks_is_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _configure(repo, numbers=["tenure_months", "lifetime_value"])
    result = cli("train")
    assert result.code == 2, result.err
    assert "names lifetime_value, which the data lacks" in result.err
    assert not (repo / OUT / "model.pipeline.skops").exists()
