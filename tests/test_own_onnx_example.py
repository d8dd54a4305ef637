"""examples/own-onnx as a model repository: `modelci run --publish` runs the team's own training script
(`train.command`), checks the ONNX model it wrote against the script's own predictions and pushes it to the
embedded registry; the script run with another hyperparameter is then compared with the published model and
gets a verdict."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import example_repository, git
from modelci.outputs import TRAIN_LOG
from modelci.registry.artifact import read_file
from modelci.registry.layout import OciLayout
from modelci.registry.reference import parse_reference

OUT, REGISTRY = Path(".modelci/out"), Path(".modelci/registry")
COMMAND = "command: python train.py --C 1.0"


def _interpreter_of_the_tests(folder: Path) -> None:
    # NOTE: the interpreter running the tests, which has the script's libraries, whatever `python` is on PATH
    config = folder / "modelci.yaml"
    config.write_text(config.read_text().replace(COMMAND, COMMAND.replace("python", shlex.quote(sys.executable))))


@pytest.mark.slow  # NOTE: two whole runs, each starting the script (scikit-learn, skl2onnx), over 5 s
def test_the_own_onnx_example_is_published_then_a_changed_model_gets_a_verdict(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = example_repository("own-onnx", tmp_path / "own-onnx", small_data, _interpreter_of_the_tests)
    monkeypatch.chdir(example)
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    assert "trained LogisticRegression(C=1.0)" in first.err  # the script's own output, relayed
    assert json.loads((OUT / TRAIN_LOG).read_text())["framework"] == "command"
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"], parity["problems"]
    # checked against the predictions the script wrote, one row per evaluation row
    assert (parity["exporter"], parity["rows"]) == ("train.command", len(pd.read_parquet("data/eval.parquet")))
    assert [o["name"] for o in parity["outputs"]] == ["probabilities"]
    assert parity["outputs"][0]["max_abs_error"] < 1e-5

    published = OciLayout.open(REGISTRY, create=False).tags()["main"].digest
    pushed = read_file(parse_reference(f"oci:{REGISTRY}@{published}", base=example), "model.onnx")
    assert pushed == (OUT / "model.onnx").read_bytes()

    config = example / "modelci.yaml"
    config.write_text(config.read_text().replace("--C 1.0", "--C 0.01"))
    git(example, "commit", "-qam", "stronger regularization")
    second = cli("run")
    assert second.code == 0, second.err
    assert "trained LogisticRegression(C=0.01)" in second.err
    comparison = json.loads((OUT / "comparison.json").read_text())
    assert (comparison["baseline_status"], comparison["baseline_digest"]) == ("compared", published)
    roc = next(m for m in comparison["metrics"] if m["name"] == "roc_auc")
    assert roc["baseline"] != roc["candidate"]
    for metric in comparison["metrics"]:  # each judged on the paired interval against the published model
        assert metric["verdict"] not in (None, "no-baseline"), metric
        assert metric["ci_low"] <= metric["difference"] <= metric["ci_high"], metric
