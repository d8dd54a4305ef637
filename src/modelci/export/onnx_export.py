"""The trained model and its preprocessing as one ONNX graph over the raw columns.

The model's own part comes from its framework's adapter (`modelci.frameworks`), the one train-log.json
names; modelci's preprocessing is put in front of it here, the same for every framework.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from modelci import atomic
from modelci.config import Config
from modelci.errors import UsageError
from modelci.evaluate.onnx_model import META_CLASSES, META_LABEL, META_TASK, META_THRESHOLD
from modelci.features import FeatureSpec, Target, onnx_preprocessing
from modelci.frameworks import FEATURES, ML_DOMAIN_OPSET, Framework, Trained, adapters, by_name, raw_columns
from modelci.outputs import MODEL_FILE, PARITY_FILE, PICKLE_CHECKPOINT, PREDICTIONS_FILE, logged_framework

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from onnx import ModelProto

    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import ParityReport, ThresholdChoice
    from modelci.export.quantize import Quantization

# NOTE: train-log.json's framework for a model the team wrote as ONNX itself, and the setting it came from
WRITTEN_AS_ONNX = {"command": "train.command", "onnx": "model.onnx"}

__all__ = ["FEATURES", "MODEL_FILE", "PARITY_FILE", "build_onnx", "export_model", "load_trained", "output_name"]


def output_name(task: str) -> str:
    return "prediction" if task == "regression" else "probabilities"


def _prepend_preprocessing(model: ModelProto, spec: FeatureSpec) -> None:
    """Replace the graph's `features` input by nodes that compute it from the raw columns."""
    from onnx import helper

    inputs, nodes, initializers = onnx_preprocessing(spec, FEATURES)
    graph = model.graph
    del graph.input[:]
    graph.input.extend(inputs)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.initializer.extend(initializers)
    for used in model.opset_import:
        if used.domain == "ai.onnx.ml":
            used.version = max(used.version, ML_DOMAIN_OPSET)
            return
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_DOMAIN_OPSET))


def own_inputs(adapter: Framework, trained: Trained) -> bool:
    """Whether the model takes its inputs as they come, with nothing of modelci's put in front: a model over the
    raw columns (its adapter says so), or one with no table preprocessing at all (an image model, whose graph
    normalizes the uint8 pixels itself)."""
    return raw_columns(adapter) or not trained.spec.columns


def build_onnx(adapter: Framework, trained: Trained, opset: int, threshold: float | None = None) -> tuple[bytes, str]:
    """The serialized ONNX model over raw columns, and which exporter made it; `threshold`: a binary model's,
    when it is known before the model is (a number, not a criterion)."""
    import onnx

    target = trained.target
    model, exporter = adapter.to_onnx(trained, opset, output_name(target.task))
    if not own_inputs(adapter, trained):  # NOTE: a model over the raw columns does its own preprocessing
        _prepend_preprocessing(model, trained.spec)
    known = [(META_THRESHOLD, repr(threshold))] if threshold is not None and target.task == "binary" else []
    for key, value in ((META_TASK, target.task), (META_CLASSES, json.dumps(list(target.classes))),
                       (META_LABEL, trained.label), *known):
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "modelci"
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UsageError(f"the exported ONNX model is not valid: {exc}") from None
    return model.SerializeToString(), exporter


def export_model(config: Config, eval_frame: pd.DataFrame, out: Path,
                 validation: pd.DataFrame | None = None) -> ParityReport:
    """`modelci export`: write model.onnx, parity.json and samples.json to `out`. `validation`: the validation rows,
    on which a binary model's threshold is chosen when evaluate.threshold names a criterion (read from the data
    when not given)."""
    rows = _choosing_rows(config, validation)  # NOTE: before anything is written: a data error leaves no model
    origin = WRITTEN_AS_ONNX.get(logged_framework(out) or "")
    if origin is not None:
        return _check_own(config, eval_frame, out, origin, rows)
    adapter, trained = load_trained(config, out)
    setting = config.evaluate.threshold
    data, exporter = build_onnx(adapter, trained, config.export.opset, setting if isinstance(setting, float) else None)
    atomic.write_bytes(out / MODEL_FILE, data)
    try:
        report = _check_built(config, adapter, trained, exporter, data, eval_frame, rows, out)
    except BaseException:
        # NOTE: export is all or nothing: no model whose outputs are not numbers, nor one without its threshold
        (out / MODEL_FILE).unlink(missing_ok=True)
        raise
    return report


def _check_built(config: Config, adapter: Framework, trained: Trained, exporter: str, data: bytes,
                 eval_frame: pd.DataFrame, rows: pd.DataFrame | None, out: Path) -> ParityReport:
    """Parity of the model just written, its int8 version if asked for, and its threshold."""
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import SAMPLES_FILE, check_parity, check_raw, golden_samples

    onnx_model = OnnxModel(out / MODEL_FILE)
    target = trained.target

    def reference(features: np.ndarray | pd.DataFrame) -> np.ndarray:
        return adapter.predict(trained, features)

    opset, atol, rtol = config.export.opset, config.export.atol, config.export.rtol
    if own_inputs(adapter, trained):
        report = check_raw(reference, target, onnx_model, eval_frame, exporter=exporter, opset=opset,
                           atol=atol, rtol=rtol)
    else:
        report = check_parity(reference, trained.spec, target, onnx_model, eval_frame, exporter=exporter,
                              opset=opset, atol=atol, rtol=rtol)
    if config.export.quantize == "int8" and report.passed:
        onnx_model, quantization = _quantized(onnx_model, data, eval_frame, target, out)
        report = dataclasses.replace(report, quantization=quantization)
    # NOTE: chosen last, from the outputs of the model that is served (the int8 one, when quantized)
    onnx_model, threshold = _record_threshold(config, onnx_model, rows)
    report = dataclasses.replace(report, threshold=threshold)
    atomic.write_json(out / PARITY_FILE, report.to_json())
    atomic.write_json(out / SAMPLES_FILE, golden_samples(onnx_model, eval_frame))
    return report


def load_trained(config: Config, out: Path) -> tuple[Framework, Trained]:
    """The model `train` left in `out`, and the adapter of its framework (which predicts with it, for parity)."""
    found = _check_one_model(out)
    named = logged_framework(out)
    adapter = by_name(named) if named is not None else found
    if adapter is None or not (out / adapter.checkpoint).is_file():
        # NOTE: a log without its model (a run stopped, a file removed) says nothing the model could
        raise UsageError(f"{out}: no trained model ({', '.join(a.checkpoint for a in adapters())})",
                         hint="run `modelci train` first")
    if found is not None and found is not adapter:
        raise UsageError(f"{out} holds {found.checkpoint}, but train-log.json says {adapter.name} trained the model",
                         hint="run `modelci train` again: it writes both anew")
    return adapter, adapter.load(out / adapter.checkpoint, config)


def _check_one_model(out: Path) -> Framework | None:
    """The adapter whose checkpoint `out` holds; refuse a model that is a pickle, or two models (train leaves one)."""
    every = adapters()
    found = [adapter for adapter in every if (out / adapter.checkpoint).exists()]
    if len(found) > 1:
        raise UsageError(f"{out} holds two trained models, {' and '.join(a.checkpoint for a in found)}; "
                         "`modelci train` leaves one",
                         hint="run `modelci train` again: it removes both before it writes its model")
    if not found and (out / PICKLE_CHECKPOINT).exists():
        # NOTE: never unpickled: a pickle can run any code, and this one may not be this run's at all.
        raise UsageError(f"{out / PICKLE_CHECKPOINT} is a pickle, which modelci does not load",
                         hint="run `modelci train` again: it saves a scikit-learn model as model.skops, "
                              "a format that cannot run code")
    return found[0] if found else None


def _quantized(fp32: OnnxModel, data: bytes, frame: pd.DataFrame, target: Target,
               out: Path) -> tuple[OnnxModel, Quantization]:
    """Replace model.onnx by its int8 version (the artifact) and measure what that changed."""
    from modelci.evaluate.evaluator import labels_of
    from modelci.evaluate.metrics import DEFAULT_METRICS
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import evaluation_rows
    from modelci.export.quantize import measure, quantize

    quantized = quantize(data)
    atomic.write_bytes(out / MODEL_FILE, quantized)
    int8 = OnnxModel(out / MODEL_FILE)
    rows = evaluation_rows(frame)
    found = measure(fp32, int8, rows, labels_of(fp32, rows), DEFAULT_METRICS[target.task][0],
                    (len(data), len(quantized)))
    return int8, found


def _choosing_rows(config: Config, validation: pd.DataFrame | None) -> pd.DataFrame | None:
    """The validation rows when evaluate.threshold has a binary model's threshold chosen on them, else None."""
    if config.task != "binary" or not isinstance(config.evaluate.threshold, str):
        return None
    if validation is not None:
        return validation
    from modelci.data.tables import load_datasets

    return load_datasets(config).validation


def _record_threshold(config: Config, model: OnnxModel,
                      rows: pd.DataFrame | None) -> tuple[OnnxModel, ThresholdChoice | None]:
    """A binary model's threshold, evaluate.threshold's number or chosen by its criterion from the model's own
    probabilities on the validation `rows`, written into the model (`modelci.threshold`) for serving to use."""
    import numpy as np

    from modelci.evaluate.evaluator import labels_of, scores_of
    from modelci.evaluate.metrics import choose_threshold
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import ThresholdChoice

    if model.task != "binary":
        return model, None
    setting = config.evaluate.threshold
    if isinstance(setting, str):
        assert rows is not None  # NOTE: _choosing_rows gives them for every binary task that chooses
        y = labels_of(model, rows)
        if len(np.unique(y)) < 2:
            raise UsageError(f"evaluate.threshold: the {len(rows):,} validation rows hold one class only, so no "
                             f"threshold can be chosen by {setting} on them",
                             hint="give data.validation rows of both classes, or set evaluate.threshold to a number")
        found = ThresholdChoice(choose_threshold(setting, y, scores_of(model, rows)), setting, len(rows))
    else:
        found = ThresholdChoice(setting, None)
    if model.session.get_modelmeta().custom_metadata_map.get(META_THRESHOLD) != repr(found.value):
        _write_threshold(model.path, found.value)
        model = OnnxModel(model.path)
    return model, found


def _write_threshold(path: Path, threshold: float) -> None:
    """Replace the threshold in the model's metadata; the file is replaced whole (atomic.write_bytes)."""
    import onnx

    model = onnx.load(path)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != META_THRESHOLD]
    del model.metadata_props[:]
    for key, value in [*kept, (META_THRESHOLD, repr(threshold))]:
        model.metadata_props.add(key=key, value=value)
    atomic.write_bytes(path, model.SerializeToString())


def _check_own(config: Config, eval_frame: pd.DataFrame, out: Path, origin: str,
               rows: pd.DataFrame | None) -> ParityReport:
    """A model written as ONNX in the first place: checked against its own predictions when train kept them.

    Without them there is no trained model to compare it with, and parity is not applicable.
    """
    import numpy as np
    import onnx
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import SAMPLES_FILE, check_native, golden_samples, not_applicable

    onnx_model = OnnxModel(out / MODEL_FILE)
    atol, rtol = config.export.atol, config.export.rtol
    if (out / PREDICTIONS_FILE).is_file():
        native = pd.read_parquet(out / PREDICTIONS_FILE).to_numpy(np.float64)
        opset = next((o.version for o in onnx.load(out / MODEL_FILE).opset_import if o.domain in ("", "ai.onnx")), 0)
        report = check_native(native, onnx_model, eval_frame, exporter=origin, opset=opset, atol=atol, rtol=rtol)
    else:
        report = not_applicable(origin, atol, rtol)
    try:
        onnx_model, threshold = _record_threshold(config, onnx_model, rows)
    except BaseException:
        (out / MODEL_FILE).unlink(missing_ok=True)  # NOTE: as for a model exported here: none without its threshold
        raise
    report = dataclasses.replace(report, threshold=threshold)
    atomic.write_json(out / PARITY_FILE, report.to_json())
    atomic.write_json(out / SAMPLES_FILE, golden_samples(onnx_model, eval_frame))
    return report
