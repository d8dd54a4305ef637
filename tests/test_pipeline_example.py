"""examples/pipeline as a model repository: `modelci run --publish` trains its scikit-learn Pipeline on the raw
columns, exports it with its own preprocessing, checks parity on the raw rows and pushes it to the embedded
registry; a changed model is then compared with the published one and gets a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from adapters import assert_compared_as_fitted
from conftest import example_repository, git
from modelci.outputs import TRAIN_LOG
from modelci.registry.artifact import read_file
from modelci.registry.layout import OciLayout
from modelci.registry.reference import parse_reference

OUT, REGISTRY = Path(".modelci/out"), Path(".modelci/registry")
# the churn data's columns but the label, as the example's ColumnTransformer names them
RAW_COLUMNS = ["tenure_months", "monthly_charges", "total_charges", "support_tickets", "senior", "num_products",
               "contract", "payment_method", "internet_service"]


@pytest.mark.slow  # NOTE: two whole runs (train, export, evaluate, compare, report), over 5 s
def test_the_pipeline_example_is_published_then_a_changed_model_gets_a_verdict(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = example_repository("pipeline", tmp_path / "pipeline", small_data)
    monkeypatch.chdir(example)
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    log = json.loads((OUT / TRAIN_LOG).read_text())
    assert (log["framework"], log["input_columns"]) == ("scikit-learn-pipeline", RAW_COLUMNS)
    assert log["categories"] == {}  # its OneHotEncoder handles them: modelci's category report is not its own
    assert "categories kept" not in first.out
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"], parity["problems"]
    assert (parity["exporter"], parity["rows"]) == ("skl2onnx", 500)

    published = OciLayout.open(REGISTRY, create=False).tags()["main"].digest
    pushed = read_file(parse_reference(f"oci:{REGISTRY}@{published}", base=example), "model.onnx")
    assert pushed == (OUT / "model.onnx").read_bytes()
    assert [i.name for i in onnx.load_from_string(pushed).graph.input] == RAW_COLUMNS  # one input per raw column

    config = example / "modelci.yaml"
    config.write_text(config.read_text().replace("params: {C: 1.0}", "params: {C: 0.01}"))
    git(example, "commit", "-qam", "stronger regularization")
    second = cli("run")
    assert second.code == 0, second.err
    assert_compared_as_fitted(OUT)
    comparison = json.loads((OUT / "comparison.json").read_text())
    assert comparison["baseline_digest"] == published
    for metric in comparison["metrics"]:  # each judged on the paired interval against the published model
        assert metric["verdict"] not in (None, "no-baseline"), metric
        assert metric["ci_low"] <= metric["difference"] <= metric["ci_high"], metric
    assert comparison["passed"]
