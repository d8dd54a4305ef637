"""Export options: int8 quantization of the artifact, measured against the float model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from modelci.evaluate.onnx_model import OnnxModel
from test_train import configure

OUT = Path(".modelci/out")


@pytest.mark.slow
def test_int8_quantization_replaces_the_model_and_records_what_it_changed(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    configure(repo, export__quantize="int8")
    for command in ("train", "export"):
        result = cli(command)
        assert result.code == 0, result.err
    assert "int8 quantization:" in result.err
    quantized = json.loads((OUT / "parity.json").read_text())["quantization"]
    assert quantized["int8_bytes"] < quantized["fp32_bytes"]
    assert abs(quantized["metric"]["change"]) < 0.02
    assert 0 < quantized["max_abs_output_change"] < 0.1
    ops = {node.op_type for node in onnx.load(OUT / "model.onnx").graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops  # the artifact is the int8 model
    samples = json.loads((OUT / "samples.json").read_text())  # golden samples come from the int8 model
    frame = pd.DataFrame(samples["inputs"])
    assert np.allclose(OnnxModel(OUT / "model.onnx").predict(frame), samples["outputs"], atol=1e-6)
