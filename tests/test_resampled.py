"""Metrics over bootstrap counts equal the metrics on the rows each resample drew."""

from __future__ import annotations

import numpy as np
import pytest

from modelci.compare.resampled import count_blocks, prepare
from modelci.evaluate.metrics import FUNCTIONS, METRICS_BY_TASK

rng = np.random.default_rng(11)
N = 400
Y_BINARY = (rng.random(N) < 0.3).astype(np.float64)
P1 = np.round(np.clip(Y_BINARY * 0.3 + rng.random(N) * 0.7, 0, 1), 2)  # NOTE: rounded: many ties
Y_MULTI = rng.integers(0, 3, N).astype(np.float64)
P_MULTI = rng.dirichlet([1, 1, 1], N)
Y_REG = rng.normal(50, 5, N)
CASES = {"binary": (Y_BINARY, np.column_stack([1 - P1, P1])), "multiclass": (Y_MULTI, P_MULTI),
         "regression": (Y_REG, Y_REG + rng.normal(0, 2, N))}


@pytest.mark.parametrize(("task", "name"), [(t, n) for t, names in METRICS_BY_TASK.items() for n in names])
def test_each_resample_gives_the_metric_of_its_drawn_rows(task: str, name: str) -> None:
    y, scores = CASES[task]
    block = next(count_blocks(y, task != "regression", resamples=20, seed=1))
    found = prepare([name], y, scores)[name](block)
    for i, drawn in enumerate(block.drawn):
        assert found[i] == pytest.approx(FUNCTIONS[name](y[drawn], scores[drawn]), rel=1e-9, abs=1e-12)


def test_stratified_counts_keep_each_class_and_the_seed_repeats() -> None:
    blocks = list(count_blocks(Y_BINARY, True, resamples=30, seed=5))
    counts = np.vstack([block.counts for block in blocks])
    assert counts.shape == (30, N)
    positives = int(Y_BINARY.sum())
    assert (counts[:, Y_BINARY == 1].sum(axis=1) == positives).all()
    assert (counts.sum(axis=1) == N).all()
    for block in blocks:  # the counts are the draws'
        assert (block.counts == np.vstack([np.bincount(rows, minlength=N) for rows in block.drawn])).all()
    again = np.vstack([block.counts for block in count_blocks(Y_BINARY, True, resamples=30, seed=5)])
    assert (again == counts).all()


@pytest.mark.parametrize("name", ["roc_auc", "pr_auc"])
def test_rank_metrics_without_a_positive_row_are_undefined(name: str) -> None:
    y = np.zeros(50)
    scores = np.column_stack([np.ones(50) / 2, np.ones(50) / 2])
    block = next(count_blocks(y, True, resamples=4, seed=0))
    assert np.isnan(prepare([name], y, scores)[name](block)).all()
    assert np.isnan(FUNCTIONS[name](y, scores))


@pytest.mark.parametrize("name", ["roc_auc", "pr_auc"])
def test_rank_metrics_with_a_nan_score_are_undefined(name: str) -> None:
    scores = CASES["binary"][1].copy()
    scores[3] = np.nan
    block = next(count_blocks(Y_BINARY, True, resamples=4, seed=0))
    assert np.isnan(prepare([name], Y_BINARY, scores)[name](block)).all()
    assert np.isnan(FUNCTIONS[name](Y_BINARY, scores))
