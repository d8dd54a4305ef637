"""The scikit-learn adapter: an estimator (or pipeline) from the model factory, fitted on the preprocessed
features, saved with its preprocessing in skops' format, and converted to ONNX with skl2onnx.

The factory is the same as for PyTorch: `build(input_dim, output_dim, **params)`, returning an
unfitted estimator. It is fitted on the same preprocessed matrix a network would get, with the
classes as 0..k-1 (so `predict_proba`'s columns are modelci's classes) or the label's values.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.errors import ModelFactoryError, UsageError, first_line
from modelci.evaluate.metrics import DEFAULT_METRICS, compute, log_loss, shown
from modelci.frameworks import FEATURES, ML_DOMAIN_OPSET, Fit, Trained, distributed
from modelci.frameworks.factory import load_factory
from modelci.frameworks.fitting import Diverged
from modelci.outputs import TRAIN_LOG, EpochRecord

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.features import FeatureSpec, Target
    from modelci.outputs import TrainLog

CHECKPOINT = "model.skops"
CHECKPOINT_VERSION = 1


# NOTE: how scikit-learn's iterative solvers say that they diverged (MLP*, SGD*): a ValueError whose
# message names non-finite weights or a floating-point overflow. Not "contains infinity": that is the data.
DIVERGED = re.compile(r"non-finite parameter|overflow", re.IGNORECASE)


def _diverged(estimator: Any, why: str) -> Exception:
    return Diverged(f"fitting {type(estimator).__name__} diverged: {why}", epoch=1,
                    hint="lower the estimator's learning rate (learning_rate_init, eta0, ...) or strengthen its "
                         "regularization in model.params; modelci already standardizes the numeric columns")


def is_estimator(model: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(model, BaseEstimator)


def predict(estimator: Any, features: np.ndarray, task: str) -> np.ndarray:
    """Probabilities (n, classes), or predictions (n,) in label units."""
    if task == "regression":
        return np.asarray(estimator.predict(features), dtype=np.float64).reshape(-1)
    return np.asarray(estimator.predict_proba(features), dtype=np.float64)


def finite_scores(estimator: Any, train_out: np.ndarray, val_out: np.ndarray) -> None:
    """Refuse a fitted model that scores rows as NaN or infinity: it diverged (exit 2)."""
    for rows, out_rows in (("training", train_out), ("validation", val_out)):
        bad = int((~np.isfinite(out_rows.reshape(len(out_rows), -1))).any(axis=1).sum())
        if bad:
            raise _diverged(estimator, f"it predicts NaN or infinity for {bad} of {len(out_rows)} {rows} rows")


def one_process(estimator: Any) -> None:
    """Refuse torchrun (--nproc): a model fitted in one go would be fitted, and written, once per process."""
    if distributed.from_env() is not None:
        raise UsageError(f"{type(estimator).__name__} trains in one process",
                         hint="run modelci train without torchrun or --nproc")


def record_fit(log: TrainLog, config: Config, target: Target, name: str, seconds: float,
               trained_on: tuple[np.ndarray, np.ndarray], validated_on: tuple[np.ndarray, np.ndarray]) -> None:
    """A model fitted in one go (an estimator, trees) as one epoch of the log: the losses of its scores on the
    training and validation rows, (labels, scores) each, and its metrics on the validation rows."""
    (y, train_out), (y_val, val_out) = trained_on, validated_on
    names = config.evaluate.metrics or DEFAULT_METRICS[config.task]
    metrics = {k: (v if np.isfinite(v) else None)
               for k, v in compute(names, y_val.astype(np.float64), val_out).items()}
    log.epochs.append(EpochRecord(1, _loss(target, y, train_out), _loss(target, y_val, val_out), metrics, 0.0,
                                  round(seconds, 4), round(len(y) / max(seconds, 1e-9), 1)))
    log.seconds, log.status = round(seconds, 3), "completed"
    github.log(f"    fitted {name} in {seconds:.2f} s: " + "  ".join(f"val_{k} {shown(v)}" for k, v in metrics.items()))


def _loss(target: Target, y: np.ndarray, out: np.ndarray) -> float:
    """The loss a network would report: log loss, or the mean squared error of the standardized target."""
    if target.task == "regression":
        return float(np.mean(((out - y) / target.std) ** 2))
    return log_loss(y.astype(np.float64), out)


def _fit(estimator: Any, config: Config, datasets: Datasets, spec: FeatureSpec, target: Target, out: Path,
        log: TrainLog) -> TrainLog:
    """Fit on the training rows, score the validation rows, and save the estimator with its preprocessing."""
    if target.task != "regression" and not hasattr(estimator, "predict_proba"):
        raise ModelFactoryError(f"model.factory returned {type(estimator).__name__}, which has no predict_proba",
                                hint="a classification task needs probabilities: use a classifier that has them")
    x, y = spec.transform(datasets.train), target.encode(datasets.train[config.data.label])
    x_val = spec.transform(datasets.validation)
    y_val = target.encode(datasets.validation[config.data.label])
    began = time.perf_counter()
    try:
        estimator.fit(x, y)
    except Exception as exc:
        if DIVERGED.search(str(exc)):
            raise _diverged(estimator, f"{type(exc).__name__}: {exc}") from None
        raise ModelFactoryError(f"fitting {type(estimator).__name__} failed: {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - began
    train_out, val_out = predict(estimator, x, target.task), predict(estimator, x_val, target.task)
    finite_scores(estimator, train_out, val_out)
    record_fit(log, config, target, type(estimator).__name__, seconds, (y, train_out), (y_val, val_out))
    save(out / CHECKPOINT, estimator, spec, target, config.data.label)
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    return log


def save(path: Path, estimator: Any, spec: FeatureSpec, target: Target, label: str) -> None:
    """The estimator in skops' format, which, unlike a pickle, cannot run code when it is read."""
    import skops.io

    meta = json.dumps({"features": spec.to_json(), "target": target.to_json(), "label": label})
    try:
        data = skops.io.dumps({"version": CHECKPOINT_VERSION, "estimator": estimator, "meta": meta})
        # NOTE: read back at once (trusting all: this process wrote it), because skops writes some
        # things it cannot read, such as a lambda; export would fail on them much later.
        skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    except Exception as exc:
        raise ModelFactoryError(f"the fitted {type(estimator).__name__} cannot be saved in skops' format: "
                                f"{type(exc).__name__}: {first_line(exc)}",
                                hint="functions it holds must be defined at the top level of a module "
                                     "(no lambda, no nested function)") from None
    atomic.write_bytes(path, data)


def load(path: Path, factory_module: str) -> tuple[Any, FeatureSpec, Target, str]:
    """The fitted estimator in `path`, built only from types `trusted` allows.

    NOTE: whatever is in the output folder may have been put there by someone else (a pull request's
    job, an artifact downloaded from one), so the file decides nothing: `trusted` does. The model
    factory's module `factory_module` must already be imported, so that the estimator classes it
    defines are found.
    """
    import skops.io

    from modelci.features import FeatureSpec, Target

    try:
        listed = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise _corrupt(path, exc) from None
    refused = [name for name in listed if not trusted(name)]
    if refused:
        raise UsageError(f"{path} holds types that are not scikit-learn estimators, which modelci never builds "
                         f"from a model file: {', '.join(refused[:10])}; modelci does not load it",
                         hint="modelci train writes this file: run it again rather than using a file from elsewhere")
    try:
        data = skops.io.load(path, trusted=listed)
        version, estimator, meta = data["version"], data["estimator"], json.loads(data["meta"])
        spec, target = FeatureSpec.from_json(meta["features"]), Target.from_json(meta["target"])
    except Exception as exc:  # NOTE: whatever the reason, the file is not one `save` wrote whole
        raise _corrupt(path, exc) from None
    if version != CHECKPOINT_VERSION:
        raise UsageError(f"{path} was written by another version of modelci", hint="run `modelci train` again")
    if not is_estimator(estimator):
        raise _corrupt(path, TypeError(f"it holds a {type(estimator).__name__}, not a scikit-learn estimator"))
    return estimator, spec, target, str(meta["label"])


def _corrupt(path: Path, exc: Exception) -> UsageError:
    return UsageError(f"{path} is corrupt or truncated ({type(exc).__name__}: {first_line(exc)})",
                      hint="run `modelci train` again to write it anew")


# NOTE: skops builds each object with the loader its file names (`__loader__`), and some loaders call the
# type with arguments from the file (ConstructorFromReduceNode and ReduceNode: `cls(*args)`), so trusting a
# type trusts calling it with anything: numpy.memmap(path, mode="w+") overwrites a file, and a function is
# just called. Beyond skops' defaults, which it trusts per loader, modelci trusts only classes that are
# scikit-learn estimators (their __init__ only stores its arguments), and the one type a fitted tree needs.
# The estimator may be defined in the factory's file: the caller imports it first, so it is in sys.modules.
# NOTE: skops does not trust a Tree by default because a crafted one can crash predict (out-of-bounds node
# indices); it runs no code and touches no file, and no decision tree or forest can be loaded without it.
TREE = "sklearn.tree._tree.Tree"
# NOTE: the same holds for the trees of a HistGradientBoosting model: built by skops' ObjectNode (the class's
# __new__ and its attributes set from the file, no call with the file's arguments), arrays only.
HISTOGRAM_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
# NOTE: a SimpleImputer keeps the dtype it was fitted on; skops stores a dtype as an empty array's (its DTypeNode
# reads the array, trusted by default, and takes its dtype), and a dtype built from any arguments runs no code.
DTYPE = "numpy.dtype"


def trusted(name: str) -> bool:
    """Whether a type skops does not trust by default may be built from a model file (see the NOTE above)."""
    from sklearn.base import BaseEstimator

    if name in (TREE, HISTOGRAM_TREE, DTYPE):
        return True
    module_name, _, attribute = name.rpartition(".")
    # NOTE: only what is already imported, read from the module's namespace: never import_module or
    # getattr, which would import (or run a module's __getattr__) for a name the file chose.
    found = vars(sys.modules[module_name]).get(attribute) if module_name in sys.modules else None
    return isinstance(found, type) and issubclass(found, BaseEstimator)


def to_onnx(estimator: Any, width: int, opset: int, features: str, output: str, ml_opset: int) -> ModelProto:
    """The estimator as ONNX over the preprocessed `features`, with one output named `output`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    try:
        model = convert_sklearn(estimator, initial_types=[(features, FloatTensorType([None, width]))],
                                target_opset={"": opset, "ai.onnx.ml": ml_opset},
                                options={"zipmap": False} if is_classifier(estimator) else None)
    except Exception as exc:
        raise UsageError(f"skl2onnx cannot convert {type(estimator).__name__}: {type(exc).__name__}: "
                         f"{first_line(exc, 300)}",
                         hint="use an estimator skl2onnx supports (see its list of supported models)") from None
    return last_output_only(model, output)


def last_output_only(model: ModelProto, output: str) -> ModelProto:
    """`model` with its last output alone, named `output`: a converted classifier outputs (label, probabilities),
    a regressor its prediction."""
    from onnx import ValueInfoProto, helper

    produced = model.graph.output[-1].name
    if produced != output:
        model.graph.node.append(helper.make_node("Identity", [produced], [output], name=f"modelci_{output}"))
    kept = ValueInfoProto()
    kept.CopyFrom(model.graph.output[-1])
    kept.name = output
    del model.graph.output[:]
    model.graph.output.append(kept)
    return model


# NOTE: libraries with adapters of their own: inside a scikit-learn pipeline or meta-estimator, skops would save
# them but not read them back, and skl2onnx has no converter for them, so they are refused at training
TREE_LIBRARIES = ("xgboost", "lightgbm", "catboost")


def _no_nested_trees(estimator: Any) -> None:
    from modelci.frameworks.trees import defined_in

    inner = [v for v in estimator.get_params(deep=True).values()
             if any(defined_in(v, library) for library in TREE_LIBRARIES)]
    if inner:
        raise ModelFactoryError(f"model.factory returned {type(estimator).__name__} holding "
                                f"{type(inner[0]).__name__}, which modelci cannot export inside a scikit-learn "
                                "estimator", hint=f"return the {type(inner[0]).__name__} itself: modelci "
                                                  "preprocesses the columns in front of it")


class ScikitLearn:
    name = "scikit-learn"
    extra: str | None = None  # NOTE: scikit-learn is in modelci's core: evaluation and serving use it
    checkpoint = CHECKPOINT

    def recognises(self, made: object) -> bool:
        return is_estimator(made)

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        one_process(made)
        _no_nested_trees(made)
        fit.log.settings = {"estimator": repr(made)[:500], "params": fit.config.model.params}
        return _fit(made, fit.config, fit.datasets, fit.spec, fit.target, fit.out, fit.log)

    def load(self, path: Path, config: Config) -> Trained:
        factory = load_factory(config)  # NOTE: the estimator's classes may be defined in the factory's file
        estimator, spec, target, label = load(path, factory.__module__)
        return Trained(estimator, spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        return predict(trained.model, features, trained.target.task)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        return to_onnx(trained.model, trained.spec.width, opset, FEATURES, output, ML_DOMAIN_OPSET), "skl2onnx"


ADAPTER = ScikitLearn()
