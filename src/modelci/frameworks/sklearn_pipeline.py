"""The scikit-learn pipeline adapter: a `Pipeline` whose first step is a `ColumnTransformer` takes the raw
columns and does its own preprocessing, which is kept and converted to ONNX with the model (skl2onnx).

The factory is called as for any model, `build(input_dim, output_dim, **params)`, and returns the unfitted
pipeline. Its columns are those its `ColumnTransformer` names; each is given to it as the exported model
will get it (numbers as float32 with empty values NaN, text as strings with empty values ""), so that
the pipeline fitted here and the ONNX model served later see the same values. modelci's preprocessing is
not added: the ONNX model takes one input per column itself.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic
from modelci.errors import DataError, ModelFactoryError, UsageError, first_line
from modelci.frameworks import ML_DOMAIN_OPSET, Fit, Trained
from modelci.frameworks import sklearn as estimator
from modelci.frameworks.factory import load_factory
from modelci.outputs import TRAIN_LOG

if TYPE_CHECKING:
    import pandas as pd
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.features import FeatureSpec
    from modelci.outputs import TrainLog

CHECKPOINT = "model.pipeline.skops"


def takes_raw_columns(made: object) -> bool:
    """A scikit-learn Pipeline whose first step is a ColumnTransformer: the sign that it takes the raw columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    return isinstance(made, Pipeline) and bool(made.steps) and isinstance(made.steps[0][1], ColumnTransformer)


def named_columns(pipeline: Any) -> list[str]:
    """The columns the pipeline's ColumnTransformer names, in their first order; exit 2 for another selector."""
    transformer = pipeline.steps[0][1]
    if transformer.remainder != "drop":
        raise ModelFactoryError("the pipeline's ColumnTransformer has remainder="
                                f"{transformer.remainder!r}: its columns would be whatever the data holds",
                                hint="name every column the pipeline uses and leave remainder='drop'")
    found: list[str] = []
    for name, _, columns in transformer.transformers:
        listed = [columns] if isinstance(columns, str) else columns
        if not isinstance(listed, list | tuple) or not all(isinstance(c, str) for c in listed):
            raise ModelFactoryError(f"the pipeline's ColumnTransformer selects the columns of {name!r} by "
                                    f"{type(columns).__name__}, not by name",
                                    hint="list the columns by their names: the exported model takes one input "
                                         "named after each")
        found += [c for c in listed if c not in found]
    return found


def input_spec(fit: Fit, columns: list[str]) -> FeatureSpec:
    """Which of the pipeline's columns are numbers and which text; exit 2 naming those the data lacks."""
    from modelci.features import FeatureSpec

    label = fit.config.data.label
    missing = [c for c in columns if c not in fit.datasets.train.columns or c not in fit.datasets.validation.columns]
    if missing or label in columns:
        named = f"{', '.join(missing)}, which the data lacks" if missing else f"the label {label}"
        raise ModelFactoryError(f"the pipeline's ColumnTransformer names {named}",
                                hint=f"name only columns of the data other than the label; it holds: "
                                     f"{', '.join(c for c in fit.datasets.train.columns if c != label)}")
    return FeatureSpec.fit(fit.datasets.train, columns, tuple(fit.log.as_numbers))


def raw_rows(spec: FeatureSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's columns of `frame` as ONNX Runtime gets them when the exported model is served."""
    import pandas as pd

    from modelci.features import as_floats, as_strings

    if missing := [c for c in spec.columns if c not in frame.columns]:
        raise DataError(f"the data lacks the model's input columns: {', '.join(missing)}")
    numbers = {f.name: as_floats(frame[f.name], f.name) for f in spec.numeric}
    text = {f.name: as_strings(frame[f.name]) for f in spec.categorical}
    return pd.DataFrame(numbers | text, index=frame.index)[spec.columns]


def _fit(pipeline: Any, fit: Fit, spec: FeatureSpec) -> TrainLog:
    """Fit on the raw training columns, score the validation rows, and save the pipeline."""
    config, target, label = fit.config, fit.target, fit.config.data.label
    if target.task != "regression" and not hasattr(pipeline, "predict_proba"):
        raise ModelFactoryError("model.factory returned a Pipeline without predict_proba",
                                hint="a classification task needs probabilities: end it with a classifier that has "
                                     "them")
    x, y = raw_rows(spec, fit.datasets.train), target.encode(fit.datasets.train[label])
    x_val, y_val = raw_rows(spec, fit.datasets.validation), target.encode(fit.datasets.validation[label])
    began = time.perf_counter()
    try:
        pipeline.fit(x, y)
    except Exception as exc:
        if estimator.DIVERGED.search(str(exc)):
            raise estimator._diverged(pipeline, f"{type(exc).__name__}: {exc}") from None
        raise ModelFactoryError(f"fitting the Pipeline failed: {type(exc).__name__}: {exc}",
                                hint="an empty value reaches it as NaN (numbers) or \"\" (text): put a "
                                     "SimpleImputer in front of estimators that refuse NaN") from None
    seconds = time.perf_counter() - began
    fit.log.input_dim = int(pipeline.steps[0][1].transform(x.iloc[:1]).shape[1])  # the features it made
    train_out, val_out = estimator.predict(pipeline, x, target.task), estimator.predict(pipeline, x_val, target.task)
    estimator.finite_scores(pipeline, train_out, val_out)
    estimator.record_fit(fit.log, config, target, "Pipeline", seconds, (y, train_out), (y_val, val_out))
    estimator.save(fit.out / CHECKPOINT, pipeline, spec, target, label)
    atomic.write_json(fit.out / TRAIN_LOG, asdict(fit.log))
    return fit.log


def to_onnx(pipeline: Any, spec: FeatureSpec, opset: int, output: str) -> ModelProto:
    """The pipeline as ONNX over one input per raw column, named after it, with one output named `output`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier

    inputs = [(f.name, FloatTensorType([None, 1])) for f in spec.numeric]
    inputs += [(f.name, StringTensorType([None, 1])) for f in spec.categorical]
    try:
        model = convert_sklearn(pipeline, initial_types=inputs, target_opset={"": opset, "ai.onnx.ml": ML_DOMAIN_OPSET},
                                options={id(pipeline.steps[-1][1]): {"zipmap": False}} if is_classifier(pipeline)
                                else None)
    except Exception as exc:
        steps = ", ".join(type(step).__name__ for _, step in pipeline.steps)
        raise UsageError(f"skl2onnx cannot convert the Pipeline ({steps}): {type(exc).__name__}: "
                         f"{first_line(exc, 300)}",
                         hint="use transformers and an estimator skl2onnx supports (see its list of supported "
                              "models)") from None
    return estimator.last_output_only(model, output)


class ScikitLearnPipeline:
    name = "scikit-learn-pipeline"
    extra: str | None = None  # NOTE: scikit-learn is in modelci's core: evaluation and serving use it
    checkpoint = CHECKPOINT
    raw_columns = True  # NOTE: fit, predict and to_onnx take the raw columns; export adds no preprocessing

    def recognises(self, made: object) -> bool:
        return takes_raw_columns(made)

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        estimator.one_process(made)
        estimator._no_nested_trees(made)
        spec = input_spec(fit, named_columns(made))
        fit.log.input_columns = spec.columns
        fit.log.settings = {"estimator": repr(made)[:500], "params": fit.config.model.params}
        return _fit(made, fit, spec)

    def load(self, path: Path, config: Config) -> Trained:
        factory = load_factory(config)  # NOTE: the pipeline's classes may be defined in the factory's file
        pipeline, spec, target, label = estimator.load(path, factory.__module__)
        if not takes_raw_columns(pipeline):
            raise UsageError(f"{path} holds a {type(pipeline).__name__}, not a Pipeline over the raw columns",
                             hint="run `modelci train` again to write it anew")
        return Trained(pipeline, spec, target, label)

    def predict(self, trained: Trained, features: Any) -> np.ndarray:
        """The pipeline's scores on the raw evaluation frame (`features` is a DataFrame of the raw columns)."""
        return estimator.predict(trained.model, raw_rows(trained.spec, features), trained.target.task)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        return to_onnx(trained.model, trained.spec, opset, output), "skl2onnx"


ADAPTER = ScikitLearnPipeline()
