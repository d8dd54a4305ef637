"""Dynamic INT8 quantization of the exported model, and what it changes on the evaluation rows.

ONNX Runtime's dynamic quantization stores the weights of MatMul and Gemm as int8 and quantizes
activations on the fly: a model about a quarter of the size (the weights' share of it) that is
often faster on CPUs. It changes the outputs a little; that change is measured on the evaluation
rows and recorded in parity.json, and the gate then judges the quantized model, which is the one
deployed.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelci.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel


@dataclass(frozen=True)
class MetricChange:
    name: str
    fp32: float
    int8: float
    change: float  # int8 - fp32


@dataclass(frozen=True)
class Quantization:
    method: str
    fp32_bytes: int
    int8_bytes: int
    rows: int
    max_abs_output_change: float
    metric: MetricChange


def quantize(model: bytes) -> bytes:
    """The model with int8 weights (ONNX Runtime's dynamic quantization)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(model)
    # NOTE: the exporter's shape hints can disagree with the quantizer's own shape inference;
    # they are only hints, so the quantizer starts from the graph alone. Except the types of an ONNX Runtime
    # operator's outputs (a text model's Tokenizer): ONNX's shape inference, which knows no such operator,
    # crashes the process without them
    contrib = {name for node in proto.graph.node if node.domain == "com.microsoft" for name in node.output}
    kept = [info for info in proto.graph.value_info if info.name in contrib]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(proto, source)
        quantizer_log = logging.getLogger()
        level = quantizer_log.level
        quantizer_log.setLevel(logging.ERROR)  # NOTE: it advises an optional pre-processing step on every call
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:
            raise UsageError(f"ONNX Runtime cannot quantize this model: {type(exc).__name__}: {exc}",
                             hint="set export.quantize: none") from None
        finally:
            quantizer_log.setLevel(level)
        return target.read_bytes()


def measure(fp32: OnnxModel, int8: OnnxModel, frame: pd.DataFrame, labels: np.ndarray, metric: str,
            sizes: tuple[int, int]) -> Quantization:
    """What quantization changed on `frame`: the outputs, and the headline metric."""
    from modelci.evaluate.metrics import FUNCTIONS

    before, after = fp32.predict(frame), int8.predict(frame)
    fp32_value, int8_value = FUNCTIONS[metric](labels, before), FUNCTIONS[metric](labels, after)
    change = MetricChange(metric, fp32_value, int8_value, int8_value - fp32_value)
    return Quantization("int8 dynamic (weights of MatMul and Gemm)", sizes[0], sizes[1], len(frame),
                        float(np.max(np.abs(after - before))) if len(frame) else 0.0, change)
