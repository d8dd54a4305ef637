"""The trained PyTorch model and its preprocessing as one ONNX graph over the raw columns."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.config import Config
from modelci.errors import UsageError
from modelci.evaluate.onnx_model import META_CLASSES, META_LABEL, META_TASK
from modelci.features import FeatureSpec, Target, onnx_preprocessing

if TYPE_CHECKING:
    import pandas as pd
    from onnx import ModelProto

    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import ParityReport
    from modelci.export.quantize import Quantization
    from modelci.train.model import Scorer

MODEL_FILE = "model.onnx"
PARITY_FILE = "parity.json"
FEATURES = "features"
ML_DOMAIN_OPSET = 3  # LabelEncoder with string keys and int64 values


def output_name(task: str) -> str:
    return "prediction" if task == "regression" else "probabilities"


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    # NOTE: the exporters print progress to stdout and log warnings about optional operators
    # (torchvision's, for example) that do not concern a user's model; a real failure still raises.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _torch_to_onnx(scorer: Scorer, width: int, opset: int, output: str) -> tuple[ModelProto, str]:
    """Export with the current (dynamo) exporter; fall back to the TorchScript one, saying so."""
    import onnx
    import torch  # NOTE: here, not at the top: torch is an extra, and a scikit-learn model exports without it

    example = (torch.zeros(2, width),)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                scorer, example, dynamo=True, opset_version=opset, input_names=[FEATURES],
                output_names=[output], dynamic_shapes={FEATURES: {0: torch.export.Dim("batch")}},
            )
        assert program is not None
        return program.model_proto, "dynamo"
    except Exception as exc:
        github.warning(f"the dynamo ONNX exporter failed ({type(exc).__name__}: {str(exc)[:300]}); "
                       "falling back to the TorchScript exporter")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            with _quiet_exporter():
                torch.onnx.export(scorer, example, path, dynamo=False, opset_version=opset, input_names=[FEATURES],
                                  output_names=[output], dynamic_axes={FEATURES: {0: "batch"}, output: {0: "batch"}})
        except Exception as exc:
            raise UsageError(f"the model cannot be exported to ONNX: {type(exc).__name__}: {exc}",
                             hint="use operators ONNX supports, or raise export.opset") from None
        return onnx.load(path), "torchscript"


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


def _to_onnx(trained: Scorer | Any, width: int, opset: int, output: str) -> tuple[ModelProto, str]:
    from modelci.train import sklearn_model

    if sklearn_model.is_estimator(trained):
        return sklearn_model.to_onnx(trained, width, opset, FEATURES, output, ML_DOMAIN_OPSET), "skl2onnx"
    return _torch_to_onnx(trained, width, opset, output)


def build_onnx(trained: Scorer | Any, spec: FeatureSpec, target: Target, label: str,
               opset: int) -> tuple[bytes, str]:
    """The serialized ONNX model over raw columns, and which exporter made it."""
    import onnx

    model, exporter = _to_onnx(trained, spec.width, opset, output_name(target.task))
    _prepend_preprocessing(model, spec)
    for key, value in ((META_TASK, target.task), (META_CLASSES, json.dumps(list(target.classes))),
                       (META_LABEL, label)):
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "modelci"
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UsageError(f"the exported ONNX model is not valid: {exc}") from None
    return model.SerializeToString(), exporter


def export_model(config: Config, eval_frame: pd.DataFrame, out: Path) -> ParityReport:
    """`modelci export`: write model.onnx, parity.json and samples.json to `out`."""
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.parity import SAMPLES_FILE, check_parity, golden_samples, not_applicable

    if _built_by_command(out):
        # NOTE: the user's script wrote model.onnx itself; there is no trained model to compare it with.
        onnx_model = OnnxModel(out / MODEL_FILE)
        report = not_applicable("train.command", config.export.atol, config.export.rtol)
        atomic.write_json(out / PARITY_FILE, report.to_json())
        atomic.write_json(out / SAMPLES_FILE, golden_samples(onnx_model, eval_frame))
        return report
    trained, spec, target, label, reference = load_trained(config, out)
    data, exporter = build_onnx(trained, spec, target, label, config.export.opset)
    atomic.write_bytes(out / MODEL_FILE, data)
    onnx_model = OnnxModel(out / MODEL_FILE)
    try:
        report = check_parity(reference, spec, target, onnx_model, eval_frame, exporter=exporter,
                              opset=config.export.opset, atol=config.export.atol, rtol=config.export.rtol)
    except UsageError:
        (out / MODEL_FILE).unlink()  # NOTE: a model whose outputs are not numbers is no artifact
        raise
    if config.export.quantize == "int8" and report.passed:
        onnx_model, quantization = _quantized(onnx_model, data, eval_frame, target, out)
        report = dataclasses.replace(report, quantization=quantization)
    atomic.write_json(out / PARITY_FILE, report.to_json())
    atomic.write_json(out / SAMPLES_FILE, golden_samples(onnx_model, eval_frame))
    return report


def load_trained(config: Config, out: Path) -> tuple[Scorer | Any, FeatureSpec, Target, str,
                                                      Callable[[np.ndarray], np.ndarray]]:
    """The model `train` left in `out`, and its predictions on preprocessed features (for parity)."""
    from modelci.train import sklearn_model
    from modelci.train.model import load_checkpoint, load_factory
    from modelci.train.trainer import CHECKPOINT

    _check_one_model(out)
    if (out / sklearn_model.CHECKPOINT).exists():
        factory = load_factory(config)  # NOTE: the estimator's classes may be defined in the factory's file
        estimator, spec, target, label = sklearn_model.load(out / sklearn_model.CHECKPOINT, factory.__module__)
        return estimator, spec, target, label, lambda x: sklearn_model.predict(estimator, x, target.task)
    scorer, spec, target, label = load_checkpoint(out / CHECKPOINT, config)

    def reference(x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            scores: np.ndarray = scorer(torch.as_tensor(x)).numpy().astype(np.float64)
        return scores[:, 0] if target.task == "regression" else scores

    return scorer, spec, target, label, reference


def _check_one_model(out: Path) -> None:
    """Refuse an output folder whose model is a pickle, or that holds two models (train leaves one)."""
    from modelci.train import sklearn_model
    from modelci.train.trainer import CHECKPOINT

    found = [name for name in (CHECKPOINT, sklearn_model.CHECKPOINT) if (out / name).exists()]
    if len(found) > 1:
        raise UsageError(f"{out} holds two trained models, {' and '.join(found)}; `modelci train` leaves one",
                         hint="run `modelci train` again: it removes both before it writes its model")
    if not found and (out / sklearn_model.PICKLE_CHECKPOINT).exists():
        # NOTE: never unpickled: a pickle can run any code, and this one may not be this run's at all.
        raise UsageError(f"{out / sklearn_model.PICKLE_CHECKPOINT} is a pickle, which modelci does not load",
                         hint="run `modelci train` again: it saves a scikit-learn model as "
                              f"{sklearn_model.CHECKPOINT}, a format that cannot run code")


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


def _built_by_command(out: Path) -> bool:
    from modelci.train.trainer import TRAIN_LOG

    log = out / TRAIN_LOG
    return log.is_file() and json.loads(log.read_text(encoding="utf-8")).get("framework") == "command"
