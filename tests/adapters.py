"""What the framework adapters' tests share: a `Fit` on the churn data, as `train` builds it, and the
factory's model; ONNX Runtime on preprocessed features; a second run compared with the first."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from modelci.config import Config
from modelci.data.tables import Datasets
from modelci.features import FeatureSpec, Target
from modelci.frameworks import Fit
from modelci.outputs import TRAIN_LOG, TrainLog

ATOL, RTOL = 1e-4, 1e-3  # export's default tolerances
# the churn example's columns as three tasks: its own binary label, a three-class one, a number
TASKS = {"binary": "churned", "multiclass": "contract", "regression": "monthly_charges"}


def fit_of(config: Config, folder: Path, task: str, label: str, frames: tuple[pd.DataFrame, pd.DataFrame],
           params: dict[str, Any]) -> tuple[Fit, Any]:
    """The Fit `train` would hand an adapter for `config` (frames: the training and validation rows), and what
    the factory in folder/model.py builds. Its evaluation rows are none: fitting must not read them."""
    train, validation = frames
    columns = [c for c in train.columns if c != label]
    spec, target = FeatureSpec.fit(train, columns), Target.fit(train[label], task)
    log = TrainLog(task=task, framework="", device="cpu", processes=1, precision="fp32", rows=len(train),
                   validation_rows=len(validation), input_columns=columns, input_dim=spec.width, parameters=0,
                   seed=0, settings={}, environment={})
    datasets = Datasets(train=train, eval=validation.iloc[:0], validation=validation)
    fit = Fit(config=config, datasets=datasets, spec=spec, target=target, out=folder, log=log)
    module_spec = importlib.util.spec_from_file_location(f"factory_{folder.name}_{task}", folder / "model.py")
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return fit, module.build(spec.width, target.output_dim, **params)


def onnx_outputs(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"features": features.astype(np.float32)})
    return np.asarray(out, dtype=np.float64)


def assert_exported_as_predicted(adapter: Any, trained: Any, features: np.ndarray, native: np.ndarray, task: str,
                                 opset: int = 17) -> str:
    """The adapter's ONNX of `trained` is valid, takes `features` and gives `native` (the library's own
    prediction) within export's tolerances, under the output name of the task; returns its exporter."""
    output = "prediction" if task == "regression" else "probabilities"
    model, exporter = adapter.to_onnx(trained, opset, output)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == [output]
    got = onnx_outputs(model, features)
    expected = native.reshape(len(features), -1)
    assert got.shape == expected.shape
    print(f"{adapter.name} {task}: largest |ONNX Runtime - {adapter.name}| = {np.abs(got - expected).max():.3g}")
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    return str(exporter)


def assert_compared_as_fitted(out: Path) -> None:
    """A second `modelci run` (in the repository, the working directory) compared its model with the published
    one, and ONNX Runtime measured on the raw columns of the validation rows what the framework measured on them
    when it fitted the model."""
    from modelci.config import load_config
    from modelci.data.tables import load_datasets
    from modelci.evaluate.evaluator import evaluate_frame

    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["baseline_status"] == "compared"
    roc = next(m for m in comparison["metrics"] if m["name"] == "roc_auc")
    assert roc["candidate"] > 0.7
    assert roc["baseline"] != roc["candidate"]
    config = load_config("modelci.yaml")
    measured = evaluate_frame(config, load_datasets(config).validation, out / "model.onnx")["roc_auc"]
    fitted = json.loads((out / TRAIN_LOG).read_text())["epochs"][0]["metrics"]["roc_auc"]
    assert fitted == pytest.approx(measured, abs=1e-4)
