"""Curves, calibration and slices of metrics.json against scikit-learn and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import calibration as sk_calibration
from sklearn import metrics as sk

from modelci.errors import UsageError
from modelci.evaluate.evaluator import CURVE_POINTS, calibration, curves, slices

rng = np.random.default_rng(3)
Y = rng.integers(0, 2, 3000).astype(np.float64)
P1 = np.clip(Y * 0.35 + rng.random(3000) * 0.65, 0, 1)
P = np.column_stack([1 - P1, P1])


def test_curves_are_scikit_learns_when_there_are_few_thresholds() -> None:
    tied = np.round(P1, 1)  # 11 distinct scores: every point is kept
    found = curves(Y, np.column_stack([1 - tied, tied]))
    assert found is not None
    fpr, tpr, _ = sk.roc_curve(Y, tied, drop_intermediate=False)  # NOTE: stored to 6 decimals
    assert found["roc"]["fpr"] == pytest.approx(fpr.tolist(), abs=1e-6)
    assert found["roc"]["tpr"] == pytest.approx(tpr.tolist(), abs=1e-6)
    precision, recall, _ = sk.precision_recall_curve(Y, tied)
    # NOTE: scikit-learn lists them from the lowest threshold up and adds the (recall 0, precision 1) end
    assert found["pr"]["recall"] == pytest.approx(recall[::-1][1:].tolist(), abs=1e-6)
    assert found["pr"]["precision"] == pytest.approx(precision[::-1][1:].tolist(), abs=1e-6)


def test_long_curves_are_thinned_to_points_on_the_curve() -> None:
    found = curves(Y, P)
    assert found is not None
    fpr, tpr, _ = sk.roc_curve(Y, P1, drop_intermediate=False)
    assert len(found["roc"]["fpr"]) == CURVE_POINTS
    assert (found["roc"]["fpr"][0], found["roc"]["tpr"][0], found["roc"]["fpr"][-1], found["roc"]["tpr"][-1]) == (
        0.0, 0.0, 1.0, 1.0)
    on_curve = {(round(a, 6), round(b, 6)) for a, b in zip(fpr, tpr, strict=True)}
    assert all((a, b) in on_curve for a, b in zip(found["roc"]["fpr"], found["roc"]["tpr"], strict=True))
    assert np.all(np.diff(found["roc"]["fpr"]) >= 0)


def test_calibration_matches_scikit_learn() -> None:
    found = calibration(Y, P)
    observed, predicted = sk_calibration.calibration_curve(Y, P1, n_bins=10, strategy="uniform")
    assert [b["observed"] for b in found["bins"]] == pytest.approx(observed.tolist())
    assert [b["mean_predicted"] for b in found["bins"]] == pytest.approx(predicted.tolist())
    assert sum(b["rows"] for b in found["bins"]) == len(Y)
    gaps = [b["rows"] * abs(b["observed"] - b["mean_predicted"]) for b in found["bins"]]
    assert found["expected_calibration_error"] == pytest.approx(sum(gaps) / len(Y))


def test_slices_by_value_and_by_quartile() -> None:
    frame = pd.DataFrame({"plan": rng.choice(["a", "b", None], 3000), "age": rng.integers(18, 90, 3000)})
    found = slices(frame, ("plan", "age"), ("roc_auc", "accuracy"), Y, P)
    assert [s["value"] for s in found["plan"]] == ["a", "b", "null"]
    assert len(found["age"]) == 4  # more than 20 ages: quartiles
    for column in ("plan", "age"):
        assert sum(s["rows"] for s in found[column]) == len(frame)
    first = found["plan"][0]
    mask = (frame["plan"] == "a").to_numpy()
    assert first["metrics"]["roc_auc"] == pytest.approx(sk.roc_auc_score(Y[mask], P1[mask]))


def test_a_slice_column_that_is_not_there_is_named() -> None:
    with pytest.raises(UsageError, match=r"evaluate\.slices: region not in the evaluation data"):
        slices(pd.DataFrame({"plan": ["a"] * 3}), ("region",), ("accuracy",), Y[:3], P[:3])


def _config(tmp_path, task: str = "binary", **evaluate: object):  # type: ignore[no-untyped-def]
    from modelci.config import parse_config

    raw = {"task": task, "data": {"train": "t.parquet", "label": "y"}, "model": {"factory": "m.py:build"},
           "evaluate": evaluate}
    return parse_config(raw, tmp_path / "modelci.yaml")


def test_folds_are_stratified_and_keep_groups_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modelci.evaluate.kfold import fold_rows

    frame = pd.DataFrame({"y": (rng.random(1000) < 0.2).astype(int), "household": rng.integers(0, 150, 1000)})
    folds = fold_rows(frame, _config(tmp_path, kfold=5), 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(1000))  # every row held out exactly once
    for held_out in folds:
        assert frame["y"].iloc[held_out].mean() == pytest.approx(frame["y"].mean(), abs=0.02)
    grouped = fold_rows(frame, _config(tmp_path, kfold=5, group="household"), 5)
    homes = [set(frame["household"].iloc[held_out]) for held_out in grouped]
    assert all(not (a & b) for i, a in enumerate(homes) for b in homes[i + 1:])


def test_more_folds_than_rows_of_a_class_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modelci.evaluate.kfold import fold_rows

    frame = pd.DataFrame({"y": [0] * 8 + [1] * 2})
    with pytest.raises(UsageError, match=r"evaluate\.kfold: class '1' has 2 rows, fewer than the 5 folds"):
        fold_rows(frame, _config(tmp_path, kfold=5), 5)
    with pytest.raises(UsageError, match=r"evaluate\.kfold: cannot make 12 folds of this training data"):
        fold_rows(frame, _config(tmp_path, "regression", kfold=12), 12)
    with pytest.raises(UsageError, match=r"evaluate\.group: the training data has no column 'household'"):
        fold_rows(frame, _config(tmp_path, kfold=2, group="household"), 2)


@pytest.mark.slow
def test_kfold_trains_exports_and_scores_each_fold(cli, repo) -> None:  # type: ignore[no-untyped-def]
    import json

    for command in (["train"], ["export"], ["evaluate", "--kfold", "2"]):
        result = cli(*command)
        assert result.code == 0, result.err
    found = json.loads((repo / ".modelci/out/metrics.json").read_text())["kfold"]
    assert found["folds"] == 2
    first = found["fold_rows"][0]
    assert sum(f["rows"] for f in found["fold_rows"]) == first["train_rows"] + first["rows"]  # each row held out once
    auc = found["metrics"]["roc_auc"]
    assert auc["mean"] == pytest.approx(np.mean(auc["folds"]))
    assert 0.6 < auc["mean"] < 1
    assert not (repo / ".modelci/out/kfold").exists()
    assert cli("report").code == 0
    assert "2-fold cross-validation on the training data (stratified)" in (repo / ".modelci/out/report.md").read_text()


def test_a_mostly_constant_column_gets_the_slices_it_has_and_empty_input_is_undefined() -> None:
    from modelci.evaluate.metrics import pr_auc

    frame = pd.DataFrame({"visits": np.r_[np.zeros(2000), np.arange(1000) + 1.0]})
    found = slices(frame, ("visits",), ("pr_auc", "accuracy"), Y, P)["visits"]
    assert sum(s["rows"] for s in found) == len(frame)
    assert all(s["rows"] > 0 for s in found)
    assert np.isnan(pr_auc(np.zeros(0), np.zeros((0, 2))))


def _square_root_model(path) -> None:  # type: ignore[no-untyped-def]
    """A binary model over monthly_charges whose outputs are NaN below 60: sigmoid(sqrt(charges - 60))."""
    import onnx
    from onnx import TensorProto, helper

    from modelci.evaluate.onnx_model import META_CLASSES, META_LABEL, META_TASK

    nodes = [helper.make_node("Sub", ["monthly_charges", "sixty"], ["above"]),
             helper.make_node("Sqrt", ["above"], ["root"]),
             helper.make_node("Sigmoid", ["root"], ["positive"]),
             helper.make_node("Sub", ["one", "positive"], ["negative"]),
             helper.make_node("Concat", ["negative", "positive"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "nan_below_60",
        [helper.make_tensor_value_info("monthly_charges", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("sixty", TensorProto.FLOAT, [], [60.0]), helper.make_tensor("one", TensorProto.FLOAT, [],
                                                                                          [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in ((META_TASK, "binary"), (META_CLASSES, "[0, 1]"), (META_LABEL, "churned")):
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def test_nan_outputs_at_evaluation_are_exit_2_naming_the_rows_and_the_output(cli, repo) -> None:  # type: ignore[no-untyped-def]
    model = repo / ".modelci/out/model.onnx"
    _square_root_model(model)
    charges = pd.read_parquet(repo / "data/eval.parquet")["monthly_charges"].to_numpy()
    rows = np.flatnonzero(charges < 60)
    assert 0 < len(rows) < len(charges)
    result = cli("evaluate")
    assert result.code == 2, result.err
    shown = ", ".join(map(str, rows[:5]))
    assert (f"{model.relative_to(repo)}: output 'probabilities' (columns 0, 1 of 2) is NaN or infinite for "
            f"{len(rows)} of {len(charges)} rows: rows {shown}, …, counted from 0") in result.err
    assert "Traceback" not in result.err
    assert not (repo / ".modelci/out/metrics.json").exists()


def test_a_fold_that_diverges_is_named_with_its_epoch(cli, repo) -> None:  # type: ignore[no-untyped-def]
    from test_train import configure

    configure(repo, train__epochs=1, train__lr=1.0e12)
    result = cli("evaluate", "--kfold", "2")
    assert result.code == 2, result.err
    assert "fold 1/2: the training loss became nan in epoch 1: training diverged" in result.err
    assert "lower train.lr (it is 1e+12)" in result.err
