"""The Keras 3 adapter on Keras's PyTorch backend: a Sequential network fitted on real (the churn example's) data,
saved, read back, exported to ONNX, and ONNX Runtime's outputs checked against Keras's with export's tolerances;
`modelci run` end to end; another backend refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from adapters import TASKS, assert_exported_as_predicted, fit_of
from conftest import generate, git
from modelci.config import Config, load_config
from modelci.errors import UsageError
from modelci.frameworks import Fit, recognise
from modelci.frameworks.keras import ADAPTER
from modelci.outputs import TRAIN_LOG

FACTORY = ("import keras\n"
           "def build(input_dim, output_dim, hidden=16):\n"
           "    return keras.Sequential([keras.Input((input_dim,)), keras.layers.Dense(hidden, activation='relu'),\n"
           "                             keras.layers.Dense(output_dim)])\n")
OUT = Path(".modelci/out")


@pytest.fixture(autouse=True)
def _torch_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # NOTE: Keras reads its backend once, at its first import (a factory's file imports it)
    monkeypatch.setenv("KERAS_BACKEND", "torch")


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(1500, 11), generate(400, 12)


def _fit(folder: Path, task: str, frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Fit, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(FACTORY)
    (folder / "modelci.yaml").write_text(
        f"task: {task}\ndata: {{train: train.parquet, eval: eval.parquet, label: {TASKS[task]}}}\n"
        "model: {factory: model.py:build}\ntrain: {epochs: 4, batch_size: 64, lr: 0.01}\n")
    config: Config = load_config(folder / "modelci.yaml")
    ADAPTER.seed(0, False)
    fit, made = fit_of(config, folder, task, TASKS[task], frames, {})
    fit.log.framework = "keras"
    return fit, made


@pytest.mark.slow
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_adapter_round_trip_and_onnx_parity(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame],
                                            task: str) -> None:

    fit, made = _fit(tmp_path, task, churn)
    assert recognise(made, "model.py:build") is ADAPTER  # before PyTorch's, which takes any torch module
    log = ADAPTER.fit(made, fit)
    assert (log.status, len(log.epochs)) == ("completed", 4)
    written = json.loads((tmp_path / TRAIN_LOG).read_text())
    assert written["settings"]["compiled_by"] == "modelci"
    assert written["epochs"][-1]["loss"] < written["epochs"][0]["loss"]
    if task == "binary":
        assert written["epochs"][-1]["metrics"]["roc_auc"] > 0.7  # it learnt something real

    trained = ADAPTER.load(tmp_path / ADAPTER.checkpoint, fit.config)
    assert (trained.spec, trained.target, trained.label) == (fit.spec, fit.target, TASKS[task])
    features = fit.spec.transform(churn[1])
    native = ADAPTER.predict(trained, features)
    classes = len(fit.target.classes)
    assert native.shape == ((len(features),) if task == "regression" else (len(features), classes))
    if task != "regression":
        np.testing.assert_allclose(native.sum(axis=1), 1.0, atol=1e-5)

    assert_exported_as_predicted(ADAPTER, trained, features, native, task, opset=18)


@pytest.mark.parametrize("planted", [b"\x80\x04K\x01.", b'{"version": 1}',
                                     b'{"version": 1, "framework": "keras", "features": {}, "model": "eA=="}'],
                         ids=["pickle", "json", "not-a-keras-zip"])
def test_a_planted_model_file_is_refused(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame],
                                         planted: bytes) -> None:
    fit, _ = _fit(tmp_path, "binary", churn)
    (tmp_path / ADAPTER.checkpoint).write_bytes(planted)
    with pytest.raises(UsageError, match="not a model that `modelci train` wrote"):
        ADAPTER.load(tmp_path / ADAPTER.checkpoint, fit.config)


def test_another_backend_is_refused_with_exit_2(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    fit, made = _fit(tmp_path, "binary", churn)
    # NOTE: Keras picks its backend once per process, and no other backend is installed here (its numpy
    # backend needs jax): keras itself is made to report another one
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(UsageError, match="KERAS_BACKEND=torch") as raised:
        ADAPTER.fit(made, fit)
    assert raised.value.exit_code == 2
    assert not (tmp_path / ADAPTER.checkpoint).exists()


@pytest.mark.slow
def test_modelci_run_trains_exports_evaluates_and_compares_a_keras_model(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"] = {"factory": "model.py:build", "params": {"hidden": 8}}
    config["train"] = {**config.get("train", {}), "epochs": 3, "lr": 0.01, "batch_size": 64}
    config["evaluate"] = {"metrics": ["roc_auc", "log_loss"]}
    config["gate"] = [{"metric": "roc_auc", "min": 0.6}]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    (repo / "model.py").write_text(FACTORY)
    git(repo, "commit", "-qam", "keras model")
    result = cli("run")
    assert result.code == 0, result.err
    log = json.loads((OUT / TRAIN_LOG).read_text())
    assert (log["framework"], len(log["epochs"])) == ("keras", 3)
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    # what ONNX Runtime measures from the validation rows' raw columns is what Keras measured from their features
    from modelci.data.tables import load_datasets
    from modelci.evaluate.evaluator import evaluate_frame

    measured = evaluate_frame(load_config("modelci.yaml"), load_datasets(load_config("modelci.yaml")).validation,
                              OUT / "model.onnx")
    assert log["epochs"][-1]["metrics"]["roc_auc"] == pytest.approx(measured["roc_auc"], abs=1e-4)
