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
    from onnx import GraphProto, ModelProto, NodeProto

    from modelci.features import FeatureSpec, Target
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

CHECKPOINT_VERSION = 1


def defined_in(made: object, library: str) -> bool:
    """Whether `made`'s class, or a class it derives from, is defined in `library`, without importing it."""
    return any(c.__module__ == library or c.__module__.startswith(f"{library}.") for c in type(made).__mro__)


def fit(made: Any, fit: Fit, framework: str, dump: Callable[[Any], str], checkpoint: str) -> TrainLog:
    """Fit `made` on the training rows, score the validation rows into one epoch record, save the
    model (`dump` gives the library's own text) and write the training log.

    NOTE: the evaluation rows are never read here: they are the rows the comparison judges the model on.
    The library's own early stopping is not used yet (no eval set is passed), so the number of trees is
    the factory's.
    """
    from importlib.metadata import version

    from modelci.frameworks.sklearn import finite_scores, one_process, record_fit
    from modelci.frameworks.sklearn import predict as scores
    from modelci.outputs import TRAIN_LOG

    config, target, label = fit.config, fit.target, fit.config.data.label
    one_process(made)
    x, y = fit.spec.transform(fit.datasets.train), target.encode(fit.datasets.train[label])
    x_val, y_val = fit.spec.transform(fit.datasets.validation), target.encode(fit.datasets.validation[label])
    if made.get_params().get("random_state") is None:  # NOTE: train.seed, unless the factory chose a seed
        made.set_params(random_state=config.train.seed)
    began = time.perf_counter()
    try:
        made.fit(x, y)
    except Exception as exc:
        raise ModelFactoryError(f"fitting {type(made).__name__} failed: {type(exc).__name__}: {exc}",
                                hint="check model.params against the library's documentation") from None
    seconds = time.perf_counter() - began
    train_out, val_out = scores(made, x, target.task), scores(made, x_val, target.task)
    finite_scores(made, train_out, val_out)
    log = fit.log
    log.framework = framework
    log.environment = {**log.environment, framework: version(framework)}  # NOTE: what a rerun needs
    log.settings = {"estimator": repr(made)[:500], "params": config.model.params}
    record_fit(log, config, target, type(made).__name__, seconds, (y, train_out), (y_val, val_out))
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
    return as_margin(last_output_only(onnx_model, output))


def as_margin(model: ModelProto) -> ModelProto:
    """`model` with a two-class boosted TreeEnsembleClassifier (one score, LOGISTIC) replaced by the same trees as
    a one-target TreeEnsembleRegressor (the margin), then p1 = Sigmoid(margin) and p0 = 1 - p1, the probabilities
    the classifier computes. Any other model is returned as it is.

    NOTE: ONNX Runtime runs a classifier of two classes through its several-scores path (a vector of scores per
    row); the regressor of one target takes its one-score path, 7-12% faster at batch 1,024 (benchmarks/trees).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    _drop_unused(graph)
    found = next((n for n in graph.node if n.op_type == "TreeEnsembleClassifier"), None)
    if found is None or not _binary_margin(found) or found.output[0] in _used(graph):
        return model
    attributes = {a.name: helper.get_attribute_value(a) for a in found.attribute}
    margin, p1, p0, one = (f"modelci_trees_{name}" for name in ("margin", "p1", "p0", "one"))
    regressor = {("target_" + k.removeprefix("class_") if k.startswith("class_") else k): v
                 for k, v in attributes.items() if k not in ("classlabels_int64s", "post_transform")}
    nodes = [helper.make_node("TreeEnsembleRegressor", list(found.input), [margin], name=found.name,
                              domain=found.domain, n_targets=1, aggregate_function="SUM", **regressor),
             helper.make_node("Sigmoid", [margin], [p1], name="modelci_trees_sigmoid"),
             helper.make_node("Sub", [one, p1], [p0], name="modelci_trees_p0"),
             helper.make_node("Concat", [p0, p1], [found.output[1]], name="modelci_trees_probabilities", axis=1)]
    at = list(graph.node).index(found)
    graph.node.remove(found)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    graph.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]))
    return model


def _used(graph: GraphProto) -> set[str]:
    return {name for n in graph.node for name in n.input} | {o.name for o in graph.output}


def _drop_unused(graph: GraphProto) -> None:
    """Remove the nodes none of whose outputs is read (what `last_output_only` left of a dropped output)."""
    while True:
        used = _used(graph)
        unused = [n for n in graph.node if not set(n.output) & used]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


def _binary_margin(node: NodeProto) -> bool:
    """Whether `node` is what a two-class boosted model converts to: every leaf weight for class 0 (some negative,
    so ONNX Runtime reads them as a margin), LOGISTIC, float weights and at most one base value."""
    from onnx import helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    return (node.domain == "ai.onnx.ml" and len(a.get("classlabels_int64s", [])) == 2
            and a.get("post_transform") == b"LOGISTIC" and set(a.get("class_ids", [])) == {0}
            and min(a.get("class_weights", [0.0])) < 0
            and len(a.get("base_values", [])) <= 1 and not any(k.endswith("_as_tensor") for k in a))


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
