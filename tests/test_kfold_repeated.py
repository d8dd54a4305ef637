"""Repeated K-fold and the Nadeau–Bengio corrected resampled t interval of fold-wise differences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelci.compare.folds import corrected_interval, fold_differences
from modelci.config import Config, parse_config
from modelci.errors import ConfigError
from modelci.evaluate.kfold import fold_rows

rng = np.random.default_rng(11)
FRAME = pd.DataFrame({"y": (rng.random(600) < 0.3).astype(int), "household": rng.integers(0, 90, 600),
                      "amount": rng.random(600)})


def _config(task: str = "binary", **evaluate: object) -> Config:
    raw = {"task": task, "data": {"train": "t.parquet", "label": "y" if task != "regression" else "amount"},
           "model": {"factory": "m.py:build"}, "evaluate": evaluate}
    return parse_config(raw, Path("/tmp/modelci.yaml"))


def test_the_corrected_interval_matches_a_hand_computed_value() -> None:
    # differences 0.01 … 0.05 of J = 5 folds, each trained on 4 times the rows it is tested on:
    # mean 0.03; sample variance 0.00025; corrected variance of the mean (1/5 + 1/4) · 0.00025 = 0.0001125;
    # t(0.975, 4 degrees of freedom) = 2.776445105; half-width 2.776445105 · √0.0001125 = 0.029448646
    low, high = corrected_interval(np.array([0.01, 0.02, 0.03, 0.04, 0.05]), 0.25, 0.95)
    assert (low, high) == pytest.approx((0.03 - 0.029448646, 0.03 + 0.029448646), abs=1e-8)
    assert all(np.isnan(corrected_interval(np.array([0.01]), 0.25, 0.95)))  # one fold: no interval


@pytest.mark.parametrize(("task", "group"), [("binary", None), ("binary", "household"), ("regression", None),
                                             ("regression", "household")],
                         ids=["stratified", "stratified-grouped", "plain", "grouped"])
def test_each_repeat_is_another_partition_of_every_row(task: str, group: str | None) -> None:
    config = _config(task, kfold=3, repeats=3, group=group)
    repeats = [fold_rows(FRAME, config, 3, repeat) for repeat in range(3)]
    # the first repeat makes the folds that one repeat made before repeats existed
    assert all(np.array_equal(a, b) for a, b in zip(repeats[0], fold_rows(FRAME, config, 3), strict=True))
    partitions = []
    for folds in repeats:
        assert len(folds) == 3
        assert sorted(np.concatenate(folds).tolist()) == list(range(len(FRAME)))  # every row held out once
        if group is not None:
            homes = [set(FRAME[group].iloc[held_out]) for held_out in folds]
            assert all(not (a & b) for i, a in enumerate(homes) for b in homes[i + 1:])  # groups stay whole
        partitions.append(frozenset(frozenset(held_out.tolist()) for held_out in folds))
    assert len(set(partitions)) == 3  # three distinct splits


@pytest.mark.parametrize(("raw", "message"), [
    pytest.param({"kfold": 3, "repeats": 0}, "evaluate.repeats: expected an integer greater than 0, got 0", id="zero"),
    pytest.param({"kfold": 3, "repeats": 1.5}, "evaluate.repeats: expected an integer, got 1.5", id="fraction"),
])
def test_repeats_below_one_are_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(**raw)
    assert message in str(caught.value)


def _kfold(values: list[float], repeats: int, version: int | None = 2) -> dict[str, Any]:
    k = len(values) // repeats
    rows = [{"repeat": r, "fold": i, "train_rows": 400, "rows": 200} for r in range(1, repeats + 1)
            for i in range(1, k + 1)]
    found: dict[str, Any] = {"version": version, "folds": k, "repeats": repeats, "stratified": True, "group": None,
                             "seed": 0, "fold_rows": rows,
                             "metrics": {"roc_auc": {"mean": float(np.mean(values)), "std": None, "folds": values}}}
    if version is None:  # as modelci wrote it before repeats
        found = {key: value for key, value in found.items() if key not in ("version", "repeats")}
        found["fold_rows"] = [{k: v for k, v in row.items() if k != "repeat"} for row in rows]
    return found


def _write(folder: Path, kfold: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"kfold": kfold}))
    (folder / "data-report.json").write_text(json.dumps({"datasets": [{"name": "train", "fingerprint": "f0"}]}))
    return folder


def test_fold_differences_of_repeated_kfold_use_the_corrected_interval(tmp_path: Path) -> None:
    baseline = [0.80, 0.82, 0.81, 0.79, 0.83, 0.80]
    candidate = [0.81, 0.84, 0.80, 0.82, 0.85, 0.81]
    out = _write(tmp_path / "out", _kfold(candidate, 2))
    found = fold_differences(out, _write(tmp_path / "baseline", _kfold(baseline, 2)), 0.95)
    assert found is not None
    assert found["reason"] is None
    assert (found["folds"], found["repeats"], found["method"]) == (3, 2, "nadeau-bengio")
    roc = found["metrics"]["roc_auc"]
    differences = np.subtract(candidate, baseline)
    assert roc["differences"] == pytest.approx(differences.tolist(), abs=1e-6)
    assert (roc["ci_low"], roc["ci_high"]) == pytest.approx(corrected_interval(differences, 0.5, 0.95))


def test_a_baseline_written_before_repeats_pairs_only_with_one_repeat(tmp_path: Path) -> None:
    values = [0.80, 0.82, 0.81]
    old = _write(tmp_path / "baseline", _kfold(values, 1, version=None))
    assert fold_differences(_write(tmp_path / "one", _kfold(values, 1)), old, 0.95)["reason"] is None  # type: ignore[index]
    twice = fold_differences(_write(tmp_path / "two", _kfold(values * 2, 2)), old, 0.95)
    assert twice is not None
    assert twice["reason"] == "the folds differ from the baseline's (repeats, fold_rows)"
    newer = _write(tmp_path / "newer", _kfold(values, 1, version=3))
    found = fold_differences(tmp_path / "one", newer, 0.95)
    assert found is not None
    assert "newer format (version 3)" in found["reason"]


def test_repeats_on_the_command_line_are_checked(cli, repo) -> None:  # type: ignore[no-untyped-def]
    zero = cli("evaluate", "--kfold", "2", "--repeats", "0")
    assert zero.code == 2
    assert "--repeats" in zero.err
    alone = cli("evaluate", "--repeats", "2")
    assert alone.code == 2
    assert "--repeats 2 repeats K-fold cross-validation, and none is asked for" in alone.err


@pytest.mark.slow
def test_repeated_kfold_trains_k_times_r_models(cli, repo) -> None:  # type: ignore[no-untyped-def]
    for command in (["train"], ["export"], ["evaluate", "--kfold", "2", "--repeats", "2"]):
        result = cli(*command)
        assert result.code == 0, result.err
    found = json.loads((repo / ".modelci/out/metrics.json").read_text())["kfold"]
    assert (found["version"], found["folds"], found["repeats"]) == (2, 2, 2)
    assert [(r["repeat"], r["fold"]) for r in found["fold_rows"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert len(found["metrics"]["roc_auc"]["folds"]) == 4
    assert found["fold_rows"][0]["rows"] + found["fold_rows"][1]["rows"] == \
        found["fold_rows"][2]["rows"] + found["fold_rows"][3]["rows"]  # each repeat holds every row out once
    assert cli("report").code == 0
    report = (repo / ".modelci/out/report.md").read_text()
    assert "2-fold cross-validation on the training data (stratified), repeated 2 times" in report
    assert "| 1.1 | 1.2 | 2.1 | 2.2 |" in report
