"""The server's online drift: the same scores as the data check on the same rows, the rules the
check used, and a window that keeps the latest rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import generate
from modelci.data.drift import measure
from modelci.data.scan import scan
from modelci.data.schema import DriftRule
from modelci.features import as_strings
from modelci.serve.drift import DEFAULT_RULE, MIN_ROWS, OnlineDrift

INPUTS = ["tenure_months", "monthly_charges", "total_charges", "contract", "payment_method", "internet_service",
          "support_tickets", "senior", "num_products"]
TEXT = {name: name in ("contract", "payment_method", "internet_service") for name in INPUTS}  # as the model takes them


def profile_of(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    frame.to_parquet(path, index=False)
    found = scan(path, None)
    found.close()
    return found.profile.to_json()


def as_served(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A batch's columns as the server holds them: numbers as float32, text as strings ("" when empty)."""
    return {name: frame[name].to_numpy(dtype=np.float32) if pd.api.types.is_numeric_dtype(frame[name])
            else as_strings(frame[name]) for name in INPUTS}


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return profile_of(generate(5000, 1), tmp_path_factory.mktemp("drift") / "train.parquet")


def test_the_scores_are_the_data_checks_on_the_same_rows(train: dict[str, Any], tmp_path: Path) -> None:
    served = generate(3000, 2)
    served["monthly_charges"] *= 1.3
    online = OnlineDrift.of_profile({"datasets": {"train": train}}, TEXT)
    assert online is not None
    for start in range(0, len(served), 64):
        online.add(as_served(served.iloc[start:start + 64]))
    measured = online.measure()
    offline = {d.column: d for d in measure(train, profile_of(served, tmp_path / "served.parquet"), DEFAULT_RULE,
                                            None)}
    assert measured.rows == 3000
    assert [c.column for c in measured.columns] == INPUTS
    for column in measured.columns:
        assert column.score == pytest.approx(offline[column.column].score, rel=1e-9, abs=1e-12), column.column
        assert column.verdict == offline[column.column].verdict
    assert {c.column for c in measured.columns if c.verdict == "drifted"} == {"monthly_charges"}


def test_the_rules_kept_with_the_profile_are_used(train: dict[str, Any]) -> None:
    kept = {"tenure_months": {"method": "ks", "threshold": 0.01}, "contract": {"method": "linf", "threshold": 0.3}}
    online = OnlineDrift.of_profile({"datasets": {"train": train}, "drift": kept}, TEXT)
    assert online is not None
    assert online.rules == {"tenure_months": DriftRule("ks", 0.01), "contract": DriftRule("linf", 0.3)}
    online.add(as_served(generate(MIN_ROWS, 3)))
    assert [(c.column, c.method, c.p_value is not None) for c in online.measure().columns] == \
        [("tenure_months", "ks", True), ("contract", "linf", False)]
    # a profile without rules (written before they were kept): the check's default for every input
    older = OnlineDrift.of_profile({"datasets": {"train": train}}, TEXT)
    assert older is not None
    assert older.rules == dict.fromkeys(INPUTS, DEFAULT_RULE)
    assert OnlineDrift.of_profile({"datasets": {"train": train}}, {"not_a_column": False}) is None
    # an input the model takes as text that the profile holds as numbers (or the other way) is not compared
    crossed = OnlineDrift.of_profile({"datasets": {"train": train}}, {"tenure_months": True, "contract": False})
    assert crossed is None


def test_the_window_keeps_the_latest_rows_and_says_nothing_below_its_minimum(train: dict[str, Any]) -> None:
    online = OnlineDrift.of_profile({"datasets": {"train": train}}, TEXT, window=1000)
    assert online is not None
    online.add(as_served(generate(MIN_ROWS - 1, 4)))
    assert online.measure().rows == MIN_ROWS - 1
    assert online.measure().columns == []
    shifted = generate(1000, 5)
    shifted["contract"] = "two-year"
    for start in range(0, 1000, 300):  # batches that wrap round the window's end
        online.add(as_served(shifted.iloc[start:start + 300]))
    measured = online.measure()
    assert measured.rows == 1000
    drifted = {c.column for c in measured.columns if c.verdict == "drifted"}
    assert "contract" in drifted
    # only the shifted rows are left: every one of them is a two-year contract
    assert set(online._windows["contract"].latest()) == {"two-year"}
    big = generate(2500, 6)
    online.add(as_served(big))  # more rows than the window: the last 1,000 are kept
    kept = online._windows["tenure_months"].latest()
    assert sorted(kept) == sorted(big["tenure_months"].iloc[-1000:].astype(float))


def test_empty_text_is_empty_as_in_the_data_not_a_new_category(tmp_path: Path) -> None:
    """The model takes an empty text value as "": that is the data's empty value, not a category of its own."""
    data = generate(4000, 7)
    data.loc[data.index % 25 == 0, "contract"] = None  # 4% empty, in training and when served alike
    half = len(data) // 2
    train = profile_of(data.iloc[:half], tmp_path / "train.parquet")
    online = OnlineDrift.of_profile({"datasets": {"train": train}}, {"contract": True})
    assert online is not None
    online.add({"contract": as_strings(data["contract"].iloc[half:])})
    (contract,) = online.measure().columns
    offline = measure(train, profile_of(data.iloc[half:], tmp_path / "served.parquet"), DEFAULT_RULE, None)
    assert contract.verdict == "stable"
    assert contract.score == pytest.approx(next(d.score for d in offline if d.column == "contract"), rel=1e-9)


def test_a_model_trained_on_the_same_data_takes_over_the_window(train: dict[str, Any]) -> None:
    """A release of a model trained on the same data does not start the drift over; one trained on
    other data (another fingerprint) does."""
    profile = {"datasets": {"train": {**train, "fingerprint": "sha256:aaa"}}}
    serving = OnlineDrift.of_profile(profile, TEXT)
    assert serving is not None
    shifted = generate(MIN_ROWS, 8)
    shifted["contract"] = "two-year"
    serving.add(as_served(shifted))
    before = serving.measure()

    released = OnlineDrift.of_profile(profile, TEXT)
    assert released is not None
    released.continue_from(serving)
    assert released.measure() == before
    serving.add(as_served(generate(10, 9)))  # the old model's window goes on alone
    assert released.measure().rows == MIN_ROWS

    retrained = OnlineDrift.of_profile({"datasets": {"train": {**train, "fingerprint": "sha256:bbb"}}}, TEXT)
    assert retrained is not None
    retrained.continue_from(serving)
    assert retrained.measure().rows == 0
