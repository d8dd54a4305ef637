"""Parity: the exported ONNX model against the trained model, on the evaluation rows.

The trained model (PyTorch or scikit-learn) gets its inputs from the numpy preprocessing, the ONNX
side from the raw columns, so this checks the exported preprocessing as well as the model. A model
written as ONNX in the first place (model.onnx, train.command) is checked against the predictions
its own code made, when it gives them. Every mismatching row counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from modelci.config import ExportConfig
from modelci.errors import UsageError
from modelci.evaluate.evaluator import labels_of, non_finite
from modelci.evaluate.metrics import DEFAULT_METRICS, FUNCTIONS

if TYPE_CHECKING:
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.quantize import Quantization
    from modelci.features import FeatureSpec, Target

PARITY_VERSION = 2
MAX_ROWS = 10_000
SAMPLES_FILE = "samples.json"  # the golden samples, kept in the artifact for smoke tests
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class OutputParity:
    name: str
    max_abs_error: float
    mismatched: int
    sample_rows: list[int]


@dataclass(frozen=True)
class MetricParity:
    name: str
    trained: float  # the model as trained: PyTorch, or scikit-learn
    onnx: float


@dataclass(frozen=True)
class ThresholdChoice:
    """A binary model's classification threshold, as export wrote it into the model (`modelci.threshold`)."""

    value: float
    chosen_by: str | None  # f1 | youden: chosen on the validation rows; None: evaluate.threshold's number
    validation_rows: int = 0  # the rows it was chosen on


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    exporter: str
    opset: int
    rows: int
    atol: float
    rtol: float
    outputs: list[OutputParity]
    metric: MetricParity | None  # None when there is no trained model to compare with (train.command)
    problems: list[str]
    quantization: Quantization | None = None  # what int8 quantization changed, with export.quantize: int8
    threshold: ThresholdChoice | None = None  # binary: the threshold the model carries, which serving uses
    version: int = PARITY_VERSION

    def to_json(self) -> dict[str, Any]:
        finite: dict[str, Any] = _finite(asdict(self))
        return finite


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (an undefined metric, an unbounded error) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _compare_output(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputParity:
    if expected.shape != actual.shape:
        return OutputParity(name, math.inf, len(expected), [])
    close = np.isclose(actual, expected, atol=atol, rtol=rtol)
    bad_rows = np.flatnonzero(~close.reshape(len(close), -1).all(axis=1))
    error = np.abs(actual - expected)
    max_error = float(np.nanmax(error)) if np.isfinite(error).all() else math.inf
    return OutputParity(name, max_error, len(bad_rows), [int(r) for r in bad_rows[:SAMPLE_ROWS]])


def not_applicable(exporter: str, atol: float, rtol: float) -> ParityReport:
    """The report for a model that was written as ONNX in the first place: nothing to compare it with."""
    return ParityReport(passed=True, exporter=exporter, opset=0, rows=0, atol=atol, rtol=rtol, outputs=[],
                        metric=None, problems=[])


def evaluation_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows parity (and quantization) are measured on: all of them, or a seeded sample of MAX_ROWS.

    A sample rather than the first rows: a file sorted by its label would leave one class only.
    """
    return frame.sample(MAX_ROWS, random_state=0) if len(frame) > MAX_ROWS else frame


def check_parity(reference: Callable[[np.ndarray], np.ndarray], spec: FeatureSpec, target: Target,
                 onnx_model: OnnxModel, frame: pd.DataFrame, *, exporter: str, opset: int, atol: float,
                 rtol: float) -> ParityReport:
    """Run both models on up to MAX_ROWS rows; collect every mismatch before deciding.

    `reference` is the trained model's output for preprocessed features, as ONNX Runtime's would be.
    """
    return check_raw(lambda rows: reference(spec.transform(rows)), target, onnx_model, frame, exporter=exporter,
                     opset=opset, atol=atol, rtol=rtol)


def check_raw(reference: Callable[[pd.DataFrame], np.ndarray], target: Target, onnx_model: OnnxModel,
              frame: pd.DataFrame, *, exporter: str, opset: int, atol: float, rtol: float) -> ParityReport:
    """`check_parity` for a model that takes the raw columns itself (a scikit-learn pipeline): `reference` is
    its output for the evaluation rows' DataFrame, as ONNX Runtime's would be."""
    rows = evaluation_rows(frame)
    return _compared(reference(rows), onnx_model, rows, target.task, exporter=exporter, opset=opset, atol=atol,
                     rtol=rtol)


def check_native(native: np.ndarray, onnx_model: OnnxModel, frame: pd.DataFrame, *, exporter: str, opset: int,
                 atol: float, rtol: float) -> ParityReport:
    """A model written as ONNX against the predictions its own code made for `frame`'s rows, in their order.

    `native` holds one column per class (one for regression); rows that differ are named by their
    number in `frame`, counted from 0.
    """
    rows = evaluation_rows(frame.reset_index(drop=True))
    expected = native[rows.index.to_numpy()]
    expected = expected[:, 0] if onnx_model.task == "regression" else expected
    return _compared(expected, onnx_model, rows, onnx_model.task, exporter=exporter, opset=opset, atol=atol,
                     rtol=rtol)


def _compared(expected: np.ndarray, onnx_model: OnnxModel, rows: pd.DataFrame, task: str, *, exporter: str,
              opset: int, atol: float, rtol: float) -> ParityReport:
    problem = non_finite(onnx_model.output, expected, rows)
    if problem is not None:
        raise UsageError(f"the trained model's {problem}; parity cannot be checked on outputs that are not numbers",
                         hint="train it again with a lower train.lr or train.grad_clip, or look at those rows' "
                              "values (extreme ones?)")
    actual = onnx_model.predict(rows)
    output = _compare_output(onnx_model.output, expected, actual, atol, rtol)
    output = replace(output, sample_rows=[int(rows.index[r]) for r in output.sample_rows])
    name = DEFAULT_METRICS[task][0]
    y = labels_of(onnx_model, rows)
    metric = MetricParity(name, trained=FUNCTIONS[name](y, expected), onnx=FUNCTIONS[name](y, actual))
    problems = []
    exported = non_finite(onnx_model.output, actual, rows)
    if exported is not None:
        problems.append(f"the ONNX model's {exported}, where the trained model's is not")
    if output.mismatched:
        shown = ", ".join(map(str, output.sample_rows)) + (", …" if output.mismatched > SAMPLE_ROWS else "")
        problems.append(f"output '{output.name}': {output.mismatched} of {len(rows)} rows differ by more than "
                        f"atol={atol} + rtol={rtol}·|value| (largest difference {output.max_abs_error:.3g}): "
                        f"rows {shown}, counted from 0")
    undefined = math.isnan(metric.trained) and math.isnan(metric.onnx)  # e.g. ROC AUC of rows of one class
    # NOTE: when every output agrees within the tolerances, a metric can still move: scores closer together than
    # the tolerance may rank (or fall either side of 0.5) in another order, most of all in a model with few distinct
    # inputs. That is no difference between the models, so the metric counts only beside differing outputs.
    if output.mismatched and not (undefined or abs(metric.trained - metric.onnx) <= atol):
        problems.append(f"{name} differs: trained model {metric.trained:.6f}, ONNX {metric.onnx:.6f}")
    return ParityReport(passed=not problems, exporter=exporter, opset=opset, rows=len(rows), atol=atol, rtol=rtol,
                        outputs=[output], metric=metric, problems=problems)


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def reproduces_samples(found: NDArray[Any], samples: dict[str, Any]) -> bool:
    """Whether a model's outputs for the golden samples' inputs are the outputs stored beside them,
    within export's default parity tolerances."""
    expected = np.asarray(samples.get("outputs"), dtype=np.float64)
    default = ExportConfig()
    return found.size == expected.size and bool(
        np.allclose(np.ravel(found), expected.ravel(), atol=default.atol, rtol=default.rtol))


def golden_samples(onnx_model: OnnxModel, frame: pd.DataFrame) -> dict[str, Any]:
    """A few raw input rows and the exported model's outputs for them, for smoke tests later. An image input's
    value is the image's uint8 pixels [height, width, channels], as the model takes them (not the file's path)."""
    rows = frame.iloc[:SAMPLE_ROWS]
    outputs = onnx_model.predict(rows)
    images = [i.name for i in onnx_model.inputs if i.kind == "image"]
    pixels = {name: feed for name, feed in onnx_model.feeds(rows).items() if name in images} if images else {}
    return {
        "version": 1,
        "inputs": [{i.name: pixels[i.name][k].tolist() if i.name in pixels else _json_value(row[i.name])
                    for i in onnx_model.inputs} for k, (_, row) in enumerate(rows.iterrows())],
        "outputs": outputs.tolist(),
        "output": onnx_model.session.get_outputs()[0].name,
    }
