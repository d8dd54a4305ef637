"""Comparable or not: the evaluation rows the baseline was trained on, and different evaluation data, named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import EXAMPLE, generate
from modelci import atomic
from modelci.compare.comparison import Comparison
from modelci.compare.overlap import apply, assess
from modelci.config import Config, parse_config
from modelci.data.check import check_data
from modelci.data.rowsketch import MAX_BYTES, SKETCH_FILE, TARGET_RATE, RowSketch, frame_keys, write_training_sketch
from modelci.data.schema import load_schema
from modelci.data.tables import load_datasets, read_table
from modelci.registry.artifact import read_file
from modelci.registry.reference import parse_reference

TRAIN, EVAL = generate(4000, 31), generate(2000, 32)


def make_config(folder: Path, compare: dict[str, Any] | None = None, train: str = "train.parquet",
                evaluation: str = "eval.parquet") -> Config:
    raw = {"task": "binary", "data": {"train": train, "eval": evaluation, "label": "churned"},
           "model": {"factory": "model.py:build"}, "compare": compare or {}}
    return parse_config(raw, folder / "modelci.yaml")


def as_read(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """`frame` written to `path` (Parquet or CSV) and read back as modelci reads data, with the example's schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return read_table(path, load_schema(EXAMPLE / "schema.yaml")).to_pandas()


def baseline_trained_on(frame: pd.DataFrame, tmp_path: Path) -> Path:
    """A pulled baseline's folder holding the sketch of `frame`, read from Parquet as training reads it."""
    folder = tmp_path / "baseline"
    write_training_sketch(folder, as_read(frame, tmp_path / "baseline-data" / "train.parquet"))
    return folder


def evaluation_from_csv(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """The evaluation rows from a CSV file with its columns in another order than the training file's."""
    return as_read(frame[list(reversed(frame.columns))], tmp_path / "eval.csv")


def test_a_baseline_trained_on_half_the_evaluation_rows_is_flagged(tmp_path: Path) -> None:
    half = len(EVAL) // 2
    baseline = baseline_trained_on(pd.concat([TRAIN, EVAL.iloc[:half]], ignore_index=True), tmp_path)
    found = assess(make_config(tmp_path), evaluation_from_csv(EVAL, tmp_path), tmp_path / "out", baseline)
    assert found.overlap_checked
    assert found.false_positive_rate is not None
    assert 0 < found.false_positive_rate < 2 * TARGET_RATE
    assert found.overlap_rows is not None
    assert found.overlap_fraction == pytest.approx(0.5, abs=0.01)  # within the filter's error
    assert abs(found.overlap_rows - half) <= 10
    assert found.unfair
    assert any(note.startswith(f"unfair comparison: {found.overlap_rows:,} of the 2,000 evaluation rows (")
               for note in found.notes)


def test_a_disjoint_baseline_shows_no_overlap(tmp_path: Path) -> None:
    baseline = baseline_trained_on(TRAIN, tmp_path)
    found = assess(make_config(tmp_path), evaluation_from_csv(EVAL, tmp_path), tmp_path / "out", baseline)
    assert found.overlap_checked
    assert found.overlap_rows is not None
    assert found.overlap_rows <= 5
    assert found.matched_rows is not None
    assert found.matched_rows >= found.overlap_rows  # the raw count keeps the false positives
    assert not found.unfair
    assert found.notes == []


def test_a_baseline_of_the_same_split_did_not_train_on_its_evaluation_rows(tmp_path: Path) -> None:
    TRAIN.to_parquet(tmp_path / "train.parquet", index=False)
    config = parse_config({"task": "binary", "data": {"train": "train.parquet", "label": "churned"},
                           "model": {"factory": "model.py:build"}}, tmp_path / "modelci.yaml")
    datasets = load_datasets(config)
    sketch = write_training_sketch(tmp_path / "baseline", datasets.train, datasets.validation)
    assert sketch.header.rows == len(TRAIN) - len(datasets.eval)
    found = assess(config, load_datasets(config).eval, tmp_path / "out", tmp_path / "baseline")
    assert found.overlap_rows is not None
    assert found.overlap_rows <= 3


def test_the_row_key_ignores_column_order_and_number_types() -> None:
    frame = EVAL.iloc[:50]
    shuffled = frame[list(reversed(frame.columns))].astype({"tenure_months": "float64", "churned": "bool"})
    columns = [str(c) for c in frame.columns]
    assert np.array_equal(frame_keys(frame, columns), frame_keys(shuffled, columns))
    other = frame.assign(monthly_charges=frame["monthly_charges"] + 0.01)
    assert not np.any(np.all(frame_keys(frame, columns) == frame_keys(other, columns), axis=1))


@pytest.mark.parametrize(("require_baseline", "passed"), [(False, True), (True, False)], ids=["warns", "fails"])
def test_an_unfair_comparison_fails_the_gate_only_under_require_baseline(tmp_path: Path, require_baseline: bool,
                                                                         passed: bool) -> None:
    baseline = baseline_trained_on(pd.concat([TRAIN, EVAL], ignore_index=True), tmp_path)
    config = make_config(tmp_path, {"require_baseline": require_baseline})
    result = Comparison(passed=True, baseline_status="compared", baseline_reference="oci:r:main",
                        baseline_digest="sha256:0", rows=len(EVAL), confidence=0.95, bootstrap=10,
                        baseline_required=require_baseline)  # NOTE: as compare() decides it from the config
    apply(result, config, evaluation_from_csv(EVAL, tmp_path), tmp_path / "out", baseline)
    assert result.comparability is not None
    assert result.comparability.unfair
    assert result.passed is passed
    assert ("compare.require_baseline is true, so this fails the gate" in (result.reason or "")) is not passed
    assert result.to_json()["comparability"]["overlap_fraction"] == pytest.approx(1.0, abs=0.01)


def test_the_overlap_threshold_is_the_config_s(tmp_path: Path) -> None:
    quarter = len(EVAL) // 4
    baseline = baseline_trained_on(pd.concat([TRAIN, EVAL.iloc[:quarter]], ignore_index=True), tmp_path)
    evaluation = evaluation_from_csv(EVAL, tmp_path)
    assert assess(make_config(tmp_path), evaluation, tmp_path / "out", baseline).unfair
    lenient = assess(make_config(tmp_path, {"max_overlap": 0.3}), evaluation, tmp_path / "out", baseline)
    assert lenient.overlap_fraction == pytest.approx(0.25, abs=0.01)
    assert not lenient.unfair


def test_the_sketch_stays_within_its_cap_for_many_rows() -> None:
    rows = 6_000_000  # past the ~4.6M rows that fit the cap at the target rate
    keys = np.random.default_rng(3).integers(0, 2**63, size=(rows, 2), dtype=np.uint64)
    sketch = RowSketch.build(keys, ["a"])
    header = sketch.header
    assert header.capped
    assert header.bits == MAX_BYTES * 8
    assert len(sketch.to_bytes()) < MAX_BYTES + 1024
    # the rate at the cap is recorded, and it is what lookups of keys never added find
    expected = (1 - math.exp(-header.hashes * rows / header.bits)) ** header.hashes
    assert TARGET_RATE < header.false_positive_rate == pytest.approx(expected, rel=0.05)
    absent = np.random.default_rng(4).integers(0, 2**63, size=(200_000, 2), dtype=np.uint64)
    assert sketch.contains(absent).mean() == pytest.approx(header.false_positive_rate, rel=0.2)
    assert sketch.contains(keys[:1000]).all()
    small = RowSketch.build(keys[:1000], ["a"]).header
    assert not small.capped
    assert small.false_positive_rate < 2 * TARGET_RATE


def test_a_baseline_without_a_sketch_is_named(tmp_path: Path) -> None:
    (tmp_path / "baseline").mkdir()
    found = assess(make_config(tmp_path), EVAL, tmp_path / "out", tmp_path / "baseline")
    assert not found.overlap_checked
    assert found.overlap_fraction is None
    assert found.notes == ["overlap not checked: the baseline records no training-row sketch"]


def test_a_sketch_over_columns_the_evaluation_data_lacks_is_named(tmp_path: Path) -> None:
    baseline = baseline_trained_on(TRAIN, tmp_path)
    found = assess(make_config(tmp_path), EVAL.drop(columns=["contract"]), tmp_path / "out", baseline)
    assert not found.overlap_checked
    assert found.notes == ["overlap not checked: the evaluation data lacks columns the baseline's training rows "
                           "had: contract"]


def data_report(folder: Path, evaluation: pd.DataFrame) -> str:
    """Run the data check over TRAIN and `evaluation` in `folder`; returns the evaluation data's fingerprint."""
    TRAIN.to_parquet(folder / "train.parquet", index=False)
    evaluation.to_parquet(folder / "eval.parquet", index=False)
    report, _ = check_data(make_config(folder))
    atomic.write_json(folder / "data-report.json", report.to_json())
    return next(d.fingerprint for d in report.datasets if d.name == "eval")


def test_different_evaluation_data_is_named(tmp_path: Path) -> None:
    out, baseline = tmp_path / "out", tmp_path / "out" / "baseline"
    baseline.mkdir(parents=True)
    before = data_report(baseline, EVAL.iloc[:1000])
    now = data_report(out, EVAL.iloc[1000:])
    found = assess(make_config(out), EVAL.iloc[1000:], out, baseline)
    assert (found.evaluation_data, found.baseline_evaluation_data, found.same_evaluation_data) == (now, before, False)
    assert (f"evaluated on different data than the baseline's run: fingerprint {now[:19]} vs {before[:19]}"
            in found.notes)
    data_report(baseline, EVAL.iloc[1000:])
    same = assess(make_config(out), EVAL.iloc[1000:], out, baseline)
    assert same.same_evaluation_data is True
    assert not any("different data" in note for note in same.notes)


@pytest.mark.parametrize("value", [-0.1, 1.5, "lots"], ids=["negative", "above-one", "text"])
def test_max_overlap_outside_zero_to_one_is_a_usage_error(cli, repo: Path, value: Any) -> None:  # type: ignore[no-untyped-def]
    config = repo / "modelci.yaml"
    config.write_text(config.read_text() + f"compare: {{max_overlap: {json.dumps(value)}}}\n")
    result = cli("compare")
    assert result.code == 2
    assert "compare.max_overlap: expected" in result.err


@pytest.mark.slow
def test_run_publishes_the_sketch_and_the_next_run_names_overlap_and_data(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "--publish").code == 0
    out, registry = repo / ".modelci" / "out", parse_reference("oci:.modelci/registry:main", base=repo)
    pushed = read_file(registry, SKETCH_FILE)
    assert pushed is not None
    assert pushed == (out / SKETCH_FILE).read_bytes()
    # the training and the validation rows: every row that made the model
    assert RowSketch.from_bytes(pushed).header.rows == len(pd.read_parquet(repo / "data" / "train.parquet"))
    # the next pull request trains on new rows and evaluates on half the baseline's training rows
    trained = pd.read_parquet(repo / "data" / "train.parquet")
    evaluated = pd.concat([trained.iloc[:250], pd.read_parquet(repo / "data" / "eval.parquet").iloc[:250]])
    generate(2000, 41).to_parquet(repo / "data" / "train2.parquet", index=False)
    evaluated.to_parquet(repo / "data" / "eval2.parquet", index=False)
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("data/train.parquet", "data/train2.parquet")
                      .replace("data/eval.parquet", "data/eval2.parquet"))
    second = cli("run")
    assert second.code == 0, second.err  # flagged, not failed: compare.require_baseline is false
    found = json.loads((out / "comparison.json").read_text())["comparability"]
    assert found["overlap_fraction"] == pytest.approx(0.5, abs=0.01)
    assert found["unfair"]
    assert found["same_evaluation_data"] is False
    report = (out / "report.md").read_text()
    assert "⚠️ unfair comparison: " in report
    assert "⚠️ evaluated on different data than the baseline's run: fingerprint sha256:" in report
    assert "unfair comparison" in second.err  # the warning
