"""What the gradient-boosted tree adapters (XGBoost, LightGBM) share: fitting through the scikit-learn API,
the checkpoint that holds the library's own model text beside modelci's preprocessing, and the ONNX
conversion with onnxmltools' converters registered with skl2onnx.

The factory returns an unfitted estimator of the library's scikit-learn API (`build(input_dim,
output_dim, **params)`, as for any model). It is fitted on modelci's preprocessed matrix with the
classes as 0..k-1 (so its probability columns are modelci's classes) or the label's values. The
checkpoint is one JSON file: modelci's spec, target and label, and the model in the library's own
format as text, which holds numbers only: reading it runs no code (never a pickle).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import atomic
from modelci.errors import ModelFactoryError, UsageError, first_line

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.features import FeatureSpec, Target
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

CHECKPOINT_VERSION = 1


def defined_in(made: object, library: str) -> bool:
    """Whether `made`'s class, or a class it derives from, is defined in `library`, without importing it."""
    return any(c.__module__ == library or c.__module__.startswith(f"{library}.") for c in type(made).__mro__)


def fit(made: Any, fit: Fit, framework: str, dump: Callable[[Any], str], checkpoint: str) -> TrainLog:
    """Fit `made` on the training rows, score the evaluation rows into one epoch record, save the
    model (`dump` gives the library's own text) and write the training log.

    NOTE: no early stopping on the evaluation rows: they are the rows the comparison judges the model on,
    so choosing the number of trees on them would flatter it (a validation split is for that).
    """
    from importlib.metadata import version

    from modelci.frameworks.sklearn import finite_scores, one_process, record_fit
    from modelci.frameworks.sklearn import predict as scores
    from modelci.outputs import TRAIN_LOG

    config, target, label = fit.config, fit.target, fit.config.data.label
    one_process(made)
    x, y = fit.spec.transform(fit.datasets.train), target.encode(fit.datasets.train[label])
    x_eval, y_eval = fit.spec.transform(fit.datasets.eval), target.encode(fit.datasets.eval[label])
    if made.get_params().get("random_state") is None:  # NOTE: train.seed, unless the factory chose a seed
        made.set_params(random_state=config.train.seed)
    began = time.perf_counter()
    try:
        made.fit(x, y)
    except Exception as exc:
        raise ModelFactoryError(f"fitting {type(made).__name__} failed: {type(exc).__name__}: {exc}",
                                hint="check model.params against the library's documentation") from None
    seconds = time.perf_counter() - began
    train_out, eval_out = scores(made, x, target.task), scores(made, x_eval, target.task)
    finite_scores(made, train_out, eval_out)
    log = fit.log
    log.framework = framework
    log.environment = {**log.environment, framework: version(framework)}  # NOTE: what a rerun needs
    log.settings = {"estimator": repr(made)[:500], "params": config.model.params}
    record_fit(log, config, target, type(made).__name__, seconds, (y, train_out), (y_eval, eval_out))
    save(fit.out / checkpoint, framework, dump(made), fit.spec, target, label)
    atomic.write_json(fit.out / TRAIN_LOG, asdict(log))
    return log


def save(path: Path, framework: str, model: str, spec: FeatureSpec, target: Target, label: str) -> None:
    """One JSON file: the library's model text beside modelci's preprocessing, target and label."""
    atomic.write_json(path, {"version": CHECKPOINT_VERSION, "framework": framework, "features": spec.to_json(),
                             "target": target.to_json(), "label": label, "model": model})


def read(path: Path, framework: str) -> tuple[str, FeatureSpec, Target, str]:
    """The model text, spec, target and label `save` wrote; exit 2 for any other file."""
    from modelci.features import FeatureSpec, Target

    try:
        data = json.loads(path.read_bytes())
        version, named, model = data["version"], data["framework"], data["model"]
        spec, target = FeatureSpec.from_json(data["features"]), Target.from_json(data["target"])
        label = str(data["label"])
    except Exception as exc:  # NOTE: whatever the reason, the file is not one `save` wrote whole
        raise corrupt(path, exc) from None
    if version != CHECKPOINT_VERSION:
        raise UsageError(f"{path} was written by another version of modelci", hint="run `modelci train` again")
    if named != framework or not isinstance(model, str):
        raise corrupt(path, ValueError(f"it holds a {named!r} model, not a {framework} one"))
    return model, spec, target, label


def corrupt(path: Path, exc: BaseException) -> UsageError:
    message = first_line(exc)
    return UsageError(f"{path} is not a model that `modelci train` wrote, or it is corrupt or truncated "
                      f"({type(exc).__name__}: {message})", hint="run `modelci train` again to write it anew")


def convert(model: Any, trained: Trained, opset: int, output: str, library: str) -> ModelProto:
    """`model` (`trained`'s, or what stands for it; its converter registered in skl2onnx) as ONNX over
    FEATURES, with one output `output`: probabilities [batch, classes], or a prediction [batch, 1]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from modelci.frameworks import FEATURES, ML_DOMAIN_OPSET
    from modelci.frameworks.sklearn import last_output_only

    classifier, width = trained.target.task != "regression", trained.spec.width
    try:
        onnx_model = convert_sklearn(model, initial_types=[(FEATURES, FloatTensorType([None, width]))],
                                     target_opset={"": opset, "ai.onnx.ml": ML_DOMAIN_OPSET},
                                     options={id(model): {"zipmap": False}} if classifier else None)
    except Exception as exc:
        raise UsageError(f"onnxmltools cannot convert {type(model).__name__}: {type(exc).__name__}: "
                         f"{first_line(exc, 300)}",
                         hint=f"use a {library} objective and options onnxmltools supports "
                              "(see its list of supported models), or raise export.opset") from None
    return last_output_only(onnx_model, output)


def registered(register: Callable[[], Any], extra: str) -> Any:
    """`register()`; exit 2 naming the extra when the converters (onnxmltools) are not installed."""
    try:
        import onnxmltools  # noqa: F401 - NOTE: the top-level package first, so that its absence is what is named
    except ModuleNotFoundError as exc:
        if exc.name != "onnxmltools":
            raise
        raise UsageError("exporting a tree model to ONNX needs onnxmltools, which is not installed",
                         hint=f"install modelci's {extra} extra: pip install 'modelci[{extra}]'") from None
    return register()


def trained(model: Any, spec: FeatureSpec, target: Target, label: str) -> Trained:
    from modelci.frameworks import Trained

    return Trained(model=model, spec=spec, target=target, label=label)
