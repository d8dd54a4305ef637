"""evaluate.threshold: a binary model's classification threshold, set or chosen on the validation rows, carried
by the exported model, and used by every figure of decided classes, by the comparison and by serving."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from conftest import ROOT, generate
from modelci.cli import main
from modelci.compare.gate import Thresholds, judge
from modelci.compare.resampled import DECIDED, count_blocks, paired_draws, prepare
from modelci.config import load_config, parse_config
from modelci.errors import ConfigError, UsageError
from modelci.evaluate import metrics
from modelci.evaluate.onnx_model import OnnxModel

rng = np.random.default_rng(3)
N = 300
Y = (rng.random(N) < 0.35).astype(np.float64)
P1 = np.round(np.clip(Y * 0.25 + rng.random(N) * 0.75, 0, 1), 2)  # NOTE: rounded: many tied scores
P = np.column_stack([1 - P1, P1])
OTHER1 = np.round(np.clip(Y * 0.15 + rng.random(N) * 0.85, 0, 1), 2)
OTHER = np.column_stack([1 - OTHER1, OTHER1])
LABELLED = ("accuracy", "precision", "recall", "f1")


def by_hand(y: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, Any]:
    """The label metrics counted row by row, as a reader would check them."""
    tp = fp = fn = tn = 0
    for truth, score in zip(y.tolist(), positive.tolist(), strict=True):
        called = score >= threshold
        tp += called and truth == 1
        fp += called and truth == 0
        fn += not called and truth == 1
        tn += not called and truth == 0
    return {"accuracy": (tp + tn) / len(y), "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0, "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
            "confusion": [[tn, fp], [fn, tp]]}


def best_by_brute_force(criterion: str, y: np.ndarray, positive: np.ndarray) -> float:
    """The criterion's largest value over every threshold that decides differently: each distinct score, and a
    fine grid besides."""
    best = -np.inf
    for threshold in np.unique(np.r_[positive, np.linspace(0.0005, 0.9995, 2000)]):
        best = max(best, criterion_at(criterion, y, positive, float(threshold)))
    return float(best)


def criterion_at(criterion: str, y: np.ndarray, positive: np.ndarray, threshold: float) -> float:
    called = positive >= threshold
    tp, fp = int(np.sum(called & (y == 1))), int(np.sum(called & (y == 0)))
    positives, negatives = int(np.sum(y == 1)), int(np.sum(y == 0))
    if criterion == "f1":
        return 2 * tp / (tp + fp + positives)
    return tp / positives - fp / negatives


# --- the metrics, at a threshold ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.72])
def test_a_fixed_threshold_changes_the_label_metrics_as_counted_by_hand(threshold: float) -> None:
    found = metrics.compute(("roc_auc", "log_loss", "brier", *LABELLED), Y, P, threshold)
    expected = by_hand(Y, P1, threshold)
    for name in LABELLED:
        assert found[name] == pytest.approx(expected[name], abs=1e-12), name
    at_default = metrics.compute(("roc_auc", "log_loss", "brier"), Y, P)
    assert {k: found[k] for k in at_default} == at_default  # NOTE: the scores' metrics take no threshold
    if threshold != 0.5:
        assert found["f1"] != metrics.f1(Y, P)  # the data is such that the threshold matters


def test_the_resampled_label_metrics_take_the_threshold_too() -> None:
    block = next(count_blocks(Y, True, resamples=20, seed=1))
    assert DECIDED.keys() == metrics.THRESHOLDED.keys()
    for name in LABELLED:
        found = prepare([name], Y, P, 0.3)[name](block)
        for i, drawn in enumerate(block.drawn):
            assert found[i] == pytest.approx(metrics.value(name, Y[drawn], P[drawn], 0.3), rel=1e-9, abs=1e-12)
    own, usual = paired_draws(["f1"], Y, [P, P], True, 50, 0, [0.3, 0.5])
    assert (own["f1"] != usual["f1"]).any()


# --- choosing it --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("criterion", metrics.THRESHOLD_CRITERIA)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_chosen_threshold_maximizes_its_criterion_as_a_brute_force_search_finds(criterion: str,
                                                                                   seed: int) -> None:
    local = np.random.default_rng(seed)
    y = (local.random(400) < 0.2 + 0.1 * seed).astype(np.float64)
    positive = np.round(np.clip(y * 0.3 + local.random(400) * 0.7, 0, 1), 2 + seed % 2)
    chosen = metrics.choose_threshold(criterion, y, np.column_stack([1 - positive, positive]))
    assert 0 < chosen < 1
    assert criterion_at(criterion, y, positive, chosen) == pytest.approx(
        best_by_brute_force(criterion, y, positive), abs=1e-12)


def test_between_equally_good_thresholds_the_one_nearest_one_half_wins() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0])
    positive = np.array([0.9, 0.6, 0.2, 0.1])
    p = np.column_stack([1 - positive, positive])
    # Youden's J is 1/2 halfway between 0.9 and 0.6 and halfway between 0.2 and 0.1: 0.75 is nearer 0.5
    assert metrics.choose_threshold("youden", y, p) == 0.75
    assert metrics.choose_threshold("f1", y, p) == pytest.approx(0.15)  # F1 0.8 there, alone


# --- bad settings -------------------------------------------------------------------------------------------

BINARY: dict[str, Any] = {"task": "binary", "data": {"train": "data/train.parquet", "label": "churned"},
                          "model": {"factory": "model.py:build"}}


@pytest.mark.parametrize(("task", "setting", "expected"), [
    pytest.param("binary", 0, "evaluate.threshold: expected a number between 0 and 1", id="zero"),
    pytest.param("binary", 1, "evaluate.threshold: expected a number between 0 and 1", id="one"),
    pytest.param("binary", -1, "evaluate.threshold: expected a number between 0 and 1", id="negative"),
    pytest.param("binary", "x", "evaluate.threshold: expected a number between 0 and 1", id="text"),
    pytest.param("binary", True, "evaluate.threshold: expected a number between 0 and 1", id="boolean"),
    pytest.param("binary", float("nan"), "evaluate.threshold: expected a number between 0 and 1", id="nan"),
    pytest.param("binary", {"choose": "auc"}, "evaluate.threshold.choose: expected one of f1, youden", id="criterion"),
    pytest.param("binary", {"pick": "f1"}, "evaluate.threshold.pick: unknown key", id="key"),
    pytest.param("regression", 0.3, "evaluate.threshold: a classification threshold is for binary tasks; this task "
                 "is regression", id="regression"),
    pytest.param("multiclass", {"choose": "f1"}, "evaluate.threshold: a classification threshold is for binary "
                 "tasks; this task is multiclass", id="multiclass"),
])
def test_a_threshold_that_cannot_be_is_exit_2_naming_the_key(task: str, setting: Any, expected: str,
                                                            tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BINARY, "task": task, "evaluate": {"threshold": setting}}, tmp_path / "modelci.yaml")
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("setting", "expected"), [(None, 0.5), (0.3, 0.3), ({"choose": "youden"}, "youden")])
def test_a_threshold_that_can_be_is_kept(setting: Any, expected: float | str, tmp_path: Path) -> None:
    raw = {**BINARY, "evaluate": {} if setting is None else {"threshold": setting}}
    assert parse_config(raw, tmp_path / "modelci.yaml").evaluate.threshold == expected


def test_the_command_line_stops_at_a_bad_threshold_with_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("evaluate:\n", "evaluate:\n  threshold: 1\n"))
    result = cli("export")
    assert result.code == 2
    assert "evaluate.threshold: expected a number between 0 and 1" in result.err


def tiny_binary_model(path: Path, threshold: str | None) -> Path:
    """An ONNX model with modelci's metadata, as an export before thresholds (None) or with `threshold` wrote it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probabilities"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = {"modelci.task": "binary", "modelci.classes": "[0, 1]", "modelci.label": "churned",
            **({"modelci.threshold": threshold} if threshold is not None else {})}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def test_a_model_exported_before_thresholds_is_taken_at_one_half_and_a_broken_one_is_exit_2(tmp_path: Path) -> None:
    assert OnnxModel(tiny_binary_model(tmp_path / "old.onnx", None)).threshold == 0.5
    assert OnnxModel(tiny_binary_model(tmp_path / "set.onnx", "0.25")).threshold == 0.25
    for broken in ("x", "1.5", "0"):
        with pytest.raises(UsageError, match=r"its 'modelci\.threshold' metadata is") as caught:
            OnnxModel(tiny_binary_model(tmp_path / "broken.onnx", broken))
        assert caught.value.exit_code == 2


# --- the comparison: each model at its own --------------------------------------------------------------------


def test_the_candidate_and_the_baseline_are_each_judged_at_their_own_threshold(tmp_path: Path) -> None:
    region = np.where(np.arange(N) % 2 == 0, "north", "south")
    config = parse_config({**BINARY, "evaluate": {"metrics": ["accuracy", "f1"]},
                           "gate": [{"metric": "f1", "slice": "region", "max_drop": 0.5}],
                           "compare": {"bootstrap": 200}}, tmp_path / "modelci.yaml")
    frame = pd.DataFrame({"region": region})
    found = judge(config, Y, P, OTHER, "binary", frame, thresholds=Thresholds(candidate=0.3, baseline=0.7))
    rows = {row.name: row for row in found.metrics}
    for name in ("accuracy", "f1"):
        assert rows[name].candidate == pytest.approx(by_hand(Y, P1, 0.3)[name], abs=1e-12)
        assert rows[name].baseline == pytest.approx(by_hand(Y, OTHER1, 0.7)[name], abs=1e-12)
    right_c, right_b = (P1 >= 0.3) == Y, (OTHER1 >= 0.7) == Y
    assert rows["accuracy"].discordant == [int(np.sum(right_c & ~right_b)), int(np.sum(right_b & ~right_c))]
    for row in found.slices:
        mask = region == row.slice_value
        assert row.candidate == pytest.approx(by_hand(Y[mask], P1[mask], 0.3)["f1"], abs=1e-12)
        assert row.baseline == pytest.approx(by_hand(Y[mask], OTHER1[mask], 0.7)["f1"], abs=1e-12)
    usual = {row.name: row for row in judge(config, Y, P, OTHER, "binary", frame).metrics}
    assert usual["f1"].candidate != rows["f1"].candidate
    assert usual["f1"].baseline != rows["f1"].baseline


# --- end to end: export chooses it, the artifact carries it, evaluate, compare and serve use it ---------------


def _run(repo: Path, *argv: str) -> int:
    here = Path.cwd()
    os.chdir(repo)
    try:
        return main(list(argv))
    finally:
        os.chdir(here)


def pipeline_repository(folder: Path, small_data: Path, threshold: Any) -> Path:
    """The pipeline example (a scikit-learn model: quick to train) with the small data and `threshold`."""
    shutil.copytree(ROOT / "examples" / "pipeline", folder)
    shutil.copytree(small_data, folder / "data")
    raw = yaml.safe_load((folder / "modelci.yaml").read_text())
    raw["evaluate"]["threshold"] = threshold
    raw["compare"] = {"bootstrap": 200, "latency_repeats": 5}
    (folder / "modelci.yaml").write_text(yaml.safe_dump(raw))
    return folder


@pytest.fixture(scope="module")
def chosen(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """The pipeline example trained and exported with evaluate.threshold: {choose: f1}."""
    repo = pipeline_repository(tmp_path_factory.mktemp("threshold") / "pipeline", small_data, {"choose": "f1"})
    assert _run(repo, "train") == 0
    assert _run(repo, "export") == 0
    return repo


def _validation(repo: Path, model: OnnxModel) -> tuple[np.ndarray, np.ndarray]:
    from modelci.data.tables import load_datasets
    from modelci.evaluate.evaluator import labels_of

    rows = load_datasets(load_config(repo / "modelci.yaml")).validation
    return labels_of(model, rows), model.predict(rows)


@pytest.mark.slow
def test_export_chooses_on_the_validation_rows_and_never_reads_the_evaluation_rows(chosen: Path,
                                                                                  tmp_path: Path) -> None:
    model = OnnxModel(chosen / ".modelci/out/model.onnx")
    y, p = _validation(chosen, model)
    assert model.threshold != 0.5
    assert criterion_at("f1", y, p[:, 1], model.threshold) == pytest.approx(
        best_by_brute_force("f1", y, p[:, 1]), abs=1e-12)
    parity = json.loads((chosen / ".modelci/out/parity.json").read_text())
    assert parity["threshold"] == {"value": model.threshold, "chosen_by": "f1", "validation_rows": len(y)}

    other = tmp_path / "other-eval"
    shutil.copytree(chosen, other)
    generate(700, 99).to_parquet(other / "data/eval.parquet", index=False)  # other evaluation rows
    assert _run(other, "export") == 0
    assert OnnxModel(other / ".modelci/out/model.onnx").threshold == model.threshold

    # a threshold that cannot be chosen after the model is written: no model is left without one
    from modelci.data.tables import load_datasets
    from modelci.export.onnx_export import export_model

    config = load_config(other / "modelci.yaml")
    datasets = load_datasets(config)
    one_class = datasets.validation[datasets.validation["churned"] == 0]
    with pytest.raises(UsageError, match=r"evaluate\.threshold: the .* validation rows hold one class only") as caught:
        export_model(config, datasets.eval, other / ".modelci/out", one_class)
    assert caught.value.exit_code == 2
    assert not (other / ".modelci/out/model.onnx").exists()


@pytest.mark.slow
def test_evaluate_compare_the_artifact_and_serving_use_each_models_own_threshold(chosen: Path,
                                                                                 tmp_path: Path) -> None:
    from modelci.evaluate.evaluator import labels_of
    from modelci.report.markdown import build_report
    from test_serve import start

    out = chosen / ".modelci/out"
    model = OnnxModel(out / "model.onnx")
    threshold = model.threshold
    # evaluate: the label metrics and the confusion matrix at the model's threshold
    assert _run(chosen, "evaluate") == 0
    report = json.loads((out / "metrics.json").read_text())
    evaluation = pd.read_parquet(chosen / "data/eval.parquet")
    y_eval = labels_of(model, evaluation)
    expected = by_hand(y_eval, model.predict(evaluation)[:, 1], threshold)
    assert report["threshold"] == threshold
    assert report["metrics"]["f1"] == pytest.approx(expected["f1"], abs=1e-12)
    assert report["metrics"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert report["confusion_matrix"] == expected["confusion"]

    # the baseline: the same trained model exported with a fixed threshold, pushed and pulled back
    baseline = tmp_path / "baseline"
    shutil.copytree(chosen, baseline)
    raw = yaml.safe_load((baseline / "modelci.yaml").read_text())
    raw["evaluate"]["threshold"] = 0.7
    (baseline / "modelci.yaml").write_text(yaml.safe_dump(raw))
    assert _run(baseline, "export") == 0
    registry = f"oci:{tmp_path / 'registry'}"
    assert main(["push", str(baseline / ".modelci/out"), "--to", f"{registry}:main"]) == 0
    assert main(["push", str(out), "--to", f"{registry}:candidate"]) == 0
    assert main(["pull", f"{registry}:main", "-o", str(tmp_path / "pulled-main")]) == 0
    assert main(["pull", f"{registry}:candidate", "-o", str(tmp_path / "pulled-candidate")]) == 0
    assert OnnxModel(tmp_path / "pulled-main/model.onnx").threshold == 0.7
    assert OnnxModel(tmp_path / "pulled-candidate/model.onnx").threshold == threshold

    # compare: the same probabilities, each model's own threshold
    assert _run(chosen, "compare", "--baseline", f"{registry}:main") in (0, 1)
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["thresholds"] == {"candidate": threshold, "baseline": 0.7}
    rows = {row["name"]: row for row in comparison["metrics"]}
    at_baseline = by_hand(y_eval, model.predict(evaluation)[:, 1], 0.7)
    assert rows["f1"]["candidate"] == pytest.approx(expected["f1"], abs=1e-12)
    assert rows["f1"]["baseline"] == pytest.approx(at_baseline["f1"], abs=1e-12)
    assert f"candidate {threshold:g}, baseline 0.7" in build_report(out)[0]

    # serving: the model metadata says at which probability a row is called positive
    running = start(out / "model.onnx", name="churn")
    try:
        found = requests.get(f"{running.url}/v2/models/churn", timeout=10).json()
        assert found["parameters"] == {"modelci.threshold": threshold}
    finally:
        running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
        running.process.wait(timeout=30)
