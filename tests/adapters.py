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


def fit_of(config: Config, folder: Path, task: str, label: str, frames: tuple[pd.DataFrame, pd.DataFrame],
           params: dict[str, Any]) -> tuple[Fit, Any]:
    """The Fit `train` would hand an adapter for `config`, and what the factory in folder/model.py builds."""
    train, evaluation = frames
    columns = [c for c in train.columns if c != label]
    spec, target = FeatureSpec.fit(train, columns), Target.fit(train[label], task)
    log = TrainLog(task=task, framework="", device="cpu", processes=1, precision="fp32", rows=len(train),
                   eval_rows=len(evaluation), input_columns=columns, input_dim=spec.width, parameters=0, seed=0,
                   settings={}, environment={})
    fit = Fit(config=config, datasets=Datasets(train, evaluation), spec=spec, target=target, out=folder, log=log)
    module_spec = importlib.util.spec_from_file_location(f"factory_{folder.name}_{task}", folder / "model.py")
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return fit, module.build(spec.width, target.output_dim, **params)


def onnx_outputs(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"features": features})
    return np.asarray(out, dtype=np.float64)


def assert_compared_as_fitted(out: Path) -> None:
    """A second `modelci run` compared its model with the published one, and ONNX Runtime measured on the raw
    columns what the framework measured when it fitted the model."""
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["baseline_status"] == "compared"
    roc = next(m for m in comparison["metrics"] if m["name"] == "roc_auc")
    assert roc["candidate"] > 0.7
    assert roc["baseline"] != roc["candidate"]
    fitted = json.loads((out / TRAIN_LOG).read_text())["epochs"][0]["metrics"]["roc_auc"]
    assert fitted == pytest.approx(roc["candidate"], abs=1e-4)
