"""A scikit-learn estimator (or pipeline) from the model factory: fitted on the preprocessed features,
saved with its preprocessing, and converted to ONNX with skl2onnx.

The factory is the same as for PyTorch: `build(input_dim, output_dim, **params)`, returning an
unfitted estimator. It is fitted on the same preprocessed matrix a network would get, with the
classes as 0..k-1 (so `predict_proba`'s columns are modelci's classes) or the label's values.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.errors import ModelFactoryError, UsageError
from modelci.evaluate.metrics import DEFAULT_METRICS, compute, log_loss, shown

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.features import FeatureSpec, Target
    from modelci.train.trainer import TrainLog

CHECKPOINT = "model.pkl"
CHECKPOINT_VERSION = 1


def is_estimator(model: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(model, BaseEstimator)


def predict(estimator: Any, features: np.ndarray, task: str) -> np.ndarray:
    """Probabilities (n, classes), or predictions (n,) in label units."""
    if task == "regression":
        return np.asarray(estimator.predict(features), dtype=np.float64).reshape(-1)
    return np.asarray(estimator.predict_proba(features), dtype=np.float64)


def _loss(target: Target, y: np.ndarray, out: np.ndarray) -> float:
    """The loss a network would report: log loss, or the mean squared error of the standardized target."""
    if target.task == "regression":
        return float(np.mean(((out - y) / target.std) ** 2))
    return log_loss(y.astype(np.float64), out)


def fit(estimator: Any, config: Config, datasets: Datasets, spec: FeatureSpec, target: Target, out: Path,
        log: TrainLog) -> TrainLog:
    """Fit on the training rows, score the evaluation rows, and save the estimator with its preprocessing."""
    from modelci.train.trainer import TRAIN_LOG, EpochRecord

    if target.task != "regression" and not hasattr(estimator, "predict_proba"):
        raise ModelFactoryError(f"model.factory returned {type(estimator).__name__}, which has no predict_proba",
                                hint="a classification task needs probabilities: use a classifier that has them")
    x, y = spec.transform(datasets.train), target.encode(datasets.train[config.data.label])
    x_eval = spec.transform(datasets.eval)
    y_eval = target.encode(datasets.eval[config.data.label])
    began = time.perf_counter()
    try:
        estimator.fit(x, y)
    except Exception as exc:
        raise ModelFactoryError(f"fitting {type(estimator).__name__} failed: {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - began
    train_out, eval_out = predict(estimator, x, target.task), predict(estimator, x_eval, target.task)
    names = config.evaluate.metrics or DEFAULT_METRICS[config.task]
    metrics = {k: (v if np.isfinite(v) else None) for k, v in compute(names, y_eval.astype(np.float64),
                                                                          eval_out).items()}
    log.epochs.append(EpochRecord(1, _loss(target, y, train_out), _loss(target, y_eval, eval_out), metrics, 0.0,
                                  round(seconds, 4), round(len(x) / seconds, 1)))
    log.seconds, log.status = round(seconds, 3), "completed"
    github.log(f"    fitted {type(estimator).__name__} in {seconds:.2f} s: "
               + "  ".join(f"{k} {shown(v)}" for k, v in metrics.items()))
    with atomic.atomic_open(out / CHECKPOINT) as handle:
        pickle.dump({"version": CHECKPOINT_VERSION, "estimator": estimator, "features": spec.to_json(),
                     "target": target.to_json(), "label": config.data.label}, handle)
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    return log


def load(path: Path) -> tuple[Any, FeatureSpec, Target, str]:
    """The fitted estimator saved by `fit` in this output folder (modelci's own file, never a user's)."""
    from modelci.features import FeatureSpec, Target

    with path.open("rb") as handle:
        # NOTE: a pickle, but only ever modelci's own: written by `fit` above in the run's output folder.
        data = pickle.load(handle)
    if data.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{path} was written by another version of modelci", hint="run `modelci train` again")
    return data["estimator"], FeatureSpec.from_json(data["features"]), Target.from_json(data["target"]), data["label"]


def to_onnx(estimator: Any, width: int, opset: int, features: str, output: str, ml_opset: int) -> ModelProto:
    """The estimator as ONNX over the preprocessed `features`, with one output named `output`."""
    from onnx import ValueInfoProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    try:
        model = convert_sklearn(estimator, initial_types=[(features, FloatTensorType([None, width]))],
                                target_opset={"": opset, "ai.onnx.ml": ml_opset},
                                options={"zipmap": False} if is_classifier(estimator) else None)
    except Exception as exc:
        raise UsageError(f"skl2onnx cannot convert {type(estimator).__name__}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300]}",
                         hint="use an estimator skl2onnx supports (see its list of supported models)") from None
    produced = model.graph.output[-1].name  # NOTE: classifiers output (label, probabilities); regressors one value
    if produced != output:
        model.graph.node.append(helper.make_node("Identity", [produced], [output], name=f"modelci_{output}"))
    kept = ValueInfoProto()
    kept.CopyFrom(model.graph.output[-1])
    kept.name = output
    del model.graph.output[:]
    model.graph.output.append(kept)
    proto: ModelProto = model
    return proto
