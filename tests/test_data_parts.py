"""The data stage's parts against independent references: pandas, numpy and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from modelci.data.columns import column_batch
from modelci.data.drift import js_distance, measure, psi
from modelci.data.infer import infer_schema, widened
from modelci.data.profile import DatasetProfile
from modelci.data.rowhash import KeyStore, first_occurrences, row_keys, shared_keys
from modelci.data.schema import DriftRule
from modelci.data.sketch import Sketch, bucket_edges, bucket_of


def _keys(frame: pd.DataFrame) -> np.ndarray:
    columns = [column_batch(pa.array(frame[c], from_pandas=True)) for c in frame.columns]
    return row_keys(columns, len(frame))


def test_row_keys_find_exactly_the_rows_pandas_calls_duplicated() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.integers(0, 3, 3000), "b": rng.choice(["x", "y", None], 3000),
                          "c": rng.choice([0.5, -0.0, 0.0, np.nan], 3000)})
    expected = frame.assign(c=frame["c"].replace(-0.0, 0.0)).duplicated().to_numpy()
    assert (~first_occurrences(_keys(frame)) == expected).all()


def test_first_lane_collisions_are_settled_on_both_lanes() -> None:
    keys = np.random.default_rng(1).integers(0, 6, (4000, 2)).astype(np.uint64)  # many equal first lanes
    assert (~first_occurrences(keys) == pd.DataFrame(keys).duplicated().to_numpy()).all()
    other = np.random.default_rng(2).integers(0, 6, (300, 2)).astype(np.uint64)
    theirs = {tuple(k) for k in other.tolist()}
    assert shared_keys(keys, other).tolist() == [tuple(k) in theirs for k in keys.tolist()]


@pytest.mark.parametrize(("limit", "open_runs"), [(10**9, 200), (64, 200), (64, 2)],
                         ids=["in-memory", "spilled-to-disk", "spilled-runs-opened-per-partition"])
def test_key_store_counts_duplicates_and_shared_rows(limit: int, open_runs: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from modelci.data import rowhash

    monkeypatch.setattr(rowhash, "OPEN_RUNS", open_runs)
    rng = np.random.default_rng(3)
    train = rng.integers(0, 2**63, (5000, 2)).astype(np.uint64)
    train[4000:4010] = train[:10]
    evaluation = rng.integers(0, 2**63, (1000, 2)).astype(np.uint64)
    evaluation[[5, 500, 999]] = train[[7, 2000, 4500]]
    with KeyStore(limit) as train_store, KeyStore(limit) as eval_store:
        for start in range(0, 5000, 700):
            train_store.add(train[start:start + 700], np.arange(start, min(start + 700, 5000)))
        eval_store.add(evaluation, np.arange(1000))
        assert train_store.spilled == (limit == 64)
        duplicates = train_store.duplicates()
        shared = eval_store.shared_with(train_store)
    assert (duplicates.rows, duplicates.sample_rows) == (10, [4000, 4001, 4002, 4003, 4004])
    assert (shared.rows, shared.sample_rows) == (3, [5, 500, 999])


def test_sketch_quantiles_and_histogram() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.lognormal(3, 1, 50_000), -rng.exponential(2, 5000), [0.0, -0.0, 1e-300, 7e9]])
    sketch, bounded = Sketch(), Sketch()
    for part in np.array_split(values, 7):
        sketch.add(part)
        bounded.add(part, bounds=(part.min(), part.max()))  # as the profile does: the span from the bounds
    assert bounded.buckets()[1].tolist() == sketch.buckets()[1].tolist()
    low, high = values.min(), values.max()
    for q, found in zip([0.05, 0.5, 0.95], sketch.quantiles([0.05, 0.5, 0.95], low, high), strict=True):
        assert found == pytest.approx(np.quantile(values, q), rel=0.01)
    edges, counts = sketch.histogram(low, high, 20)
    assert counts == np.histogram(values, bins=edges)[0].tolist()  # counts are exact at the stored edges
    assert len(counts) > 10  # the far outlier does not squash every value into one bin
    positive_zero = values + 0.0  # NOTE: -0.0 shares a bucket with the tiniest negative numbers, below 0.0
    lower, upper = bucket_edges(bucket_of(positive_zero))
    assert ((lower <= positive_zero) & (positive_zero < upper)).all()
    assert (np.diff(bucket_of(np.sort(positive_zero))) >= 0).all()
    assert Sketch.from_json(sketch.to_json()).buckets()[1].tolist() == sketch.buckets()[1].tolist()


def test_profile_matches_pandas() -> None:
    rng = np.random.default_rng(5)
    # NOTE: "w" spans little in the first batch (held as counts) and a lot after (moved to the sketch)
    frame = pd.DataFrame({"x": rng.normal(10, 3, 10_000), "n": rng.integers(0, 5, 10_000),
                          "w": np.concatenate([rng.integers(-5, 5, 3000), rng.integers(0, 10**6, 7000)]),
                          "s": rng.choice(["a", "b", "c"], 10_000)})
    frame.loc[::50, "x"] = np.nan
    profile = DatasetProfile()
    for start in range(0, len(frame), 3000):
        part = frame.iloc[start:start + 3000]
        for name in frame.columns:
            profile.add(name, column_batch(pa.array(part[name], from_pandas=True)))
    x, n, w, s = (profile.columns[c].to_json() for c in ("x", "n", "w", "s"))
    assert (x["count"], x["nulls"]) == (frame["x"].count(), frame["x"].isna().sum())
    assert x["mean"] == pytest.approx(frame["x"].mean(), rel=1e-12)
    assert x["std"] == pytest.approx(frame["x"].std(), rel=1e-12)
    assert (x["min"], x["max"]) == (frame["x"].min(), frame["x"].max())
    assert sum(x["histogram"]["counts"]) == frame["x"].count()
    assert n["frequencies"] == [[int(k), int(v)] for k, v in sorted(frame["n"].value_counts().items())]
    for column, found in (("n", n), ("w", w)):
        assert found["mean"] == pytest.approx(frame[column].mean(), rel=1e-12)
        assert found["std"] == pytest.approx(frame[column].std(), rel=1e-12)
        assert sum(found["histogram"]["counts"]) == len(frame)
        assert found["quantiles"]["p50"] == pytest.approx(frame[column].median(), rel=0.008)
    assert "frequencies" not in w
    assert dict(map(tuple, s["frequencies"])) == frame["s"].value_counts().to_dict()


def _profile(frame: pd.DataFrame) -> dict:
    profile = DatasetProfile(rows=len(frame))
    for name in frame.columns:
        profile.add(name, column_batch(pa.array(frame[name], from_pandas=True)))
    return profile.to_json()


def test_drift_measures() -> None:
    rng = np.random.default_rng(6)
    before = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b"], 20_000, p=[0.7, 0.3])})
    same = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b"], 20_000, p=[0.7, 0.3])})
    moved = pd.DataFrame({"x": rng.normal(0.5, 1, 20_000), "c": rng.choice(["a", "b"], 20_000, p=[0.4, 0.6])})
    for method in ("psi", "js"):
        rule = DriftRule(method, {"psi": 0.2, "js": 0.1}[method])
        assert {d.column: d.verdict for d in measure(_profile(before), _profile(same), rule, None)} == \
            {"x": "stable", "c": "stable"}
        assert {d.column: d.verdict for d in measure(_profile(before), _profile(moved), rule, None)} == \
            {"x": "drifted", "c": "drifted"}
    linf = {d.column: d for d in measure(_profile(before), _profile(moved), DriftRule("linf", 0.1), None)}
    assert linf["c"].score == pytest.approx(abs((moved["c"] == "a").mean() - (before["c"] == "a").mean()))
    ks = {d.column: d for d in measure(_profile(before), _profile(moved), DriftRule("ks", 0.05), None)}
    reference = stats.ks_2samp(before["x"], moved["x"])
    assert ks["x"].score == pytest.approx(reference.statistic, abs=0.01)  # buckets are 1.6% wide
    assert ks["x"].verdict == "drifted"
    assert ks["c"].verdict == "not-compared"


def test_psi_and_js_by_hand() -> None:
    expected, actual = np.array([50.0, 50.0]), np.array([25.0, 75.0])
    assert psi(expected, actual) == pytest.approx(0.25 * np.log(0.5) * -1 + 0.25 * np.log(1.5))
    assert js_distance(expected, expected) == 0
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_a_boolean_column_with_empty_values_is_read_and_profiled() -> None:
    batch = column_batch(pa.array([True, None, False, True]))
    assert batch.kind == "bool"
    assert batch.missing is not None
    assert batch.missing.tolist() == [False, True, False, False]
    profile = DatasetProfile()
    profile.add("flag", batch)
    counted = profile.to_json()["columns"]["flag"]
    assert (counted["nulls"], counted["frequencies"]) == (1, [[True, 2], [False, 1]])


@pytest.mark.parametrize(("low", "high", "integer", "expected"), [
    pytest.param(0, 72, True, (0, 80), id="count-stays-non-negative"),
    pytest.param(22.72, 157.15, False, (0, 180), id="amount-stays-non-negative"),
    pytest.param(-5, 5, True, (-6, 6), id="both-signs"),
    pytest.param(-10.0, -2.0, False, (-10.8, -1.2), id="negative-stays-non-positive"),
    pytest.param(3, 3, True, (2, 4), id="one-value"),
    pytest.param(0, 0, True, (0, 0), id="only-zero"),
    pytest.param(1000, 1001, True, (999, 1002), id="small-int-range-at-least-one"),
])
def test_inferred_bounds_are_widened_by_a_tenth_of_the_range_and_rounded_outward(
        low: float, high: float, integer: bool, expected: tuple[float, float]) -> None:
    assert widened(low, high, integer) == pytest.approx(expected)


def test_widened_float_bounds_are_at_least_the_margin_and_at_most_twice_it() -> None:
    rng = np.random.default_rng(0)
    for low, span in zip(rng.normal(0, 100, 200), rng.lognormal(0, 3, 200), strict=True):
        lower, upper = widened(low, low + span, integer=False)
        assert lower <= low - 0.1 * span + 1e-9 or (low >= 0 and lower == 0)
        assert upper >= low + span + 0.1 * span - 1e-9 or (low + span <= 0 and upper == 0)
        assert low - lower <= 0.2 * span * 1.0001 + 1e-12
        assert upper - (low + span) <= 0.2 * span * 1.0001 + 1e-12


def test_schemas_of_several_profiles_hold_for_each() -> None:
    first, second, third = DatasetProfile(), DatasetProfile(), DatasetProfile()
    for profile, frame in ((first, pd.DataFrame({"n": [1, 2, 3], "city": ["a", "b", None], "flag": [0, 1, 1]})),
                           (second, pd.DataFrame({"n": [2.5, 40.0], "city": ["c", "a"], "flag": [1, 0],
                                                  "extra": ["x", "y"], "empty": [None, None]})),
                           (third, pd.DataFrame({"n": [None], "city": ["a"], "flag": [0], "extra": ["x"],
                                                            "empty": [None]}))):
        for name in frame.columns:
            profile.add(name, column_batch(pa.array(frame[name], from_pandas=True)))
    columns = infer_schema([first.to_json(), second.to_json(), third.to_json()])["columns"]
    assert columns == {
        "n": {"type": "float", "nullable": True, "min": 0, "max": 44},  # empty in the third: no type there
        "city": {"type": "string", "nullable": True, "allowed": ["a", "b", "c"]},
        "flag": {"type": "int", "allowed": [0, 1]},
        "extra": {"type": "string", "allowed": ["x", "y"]},
        "empty": {"type": "string", "nullable": True},
    }
