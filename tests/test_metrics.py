"""modelci's numpy metrics give scikit-learn's answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from modelci.evaluate import metrics

rng = np.random.default_rng(0)
Y_BINARY = rng.integers(0, 2, 500).astype(np.float64)
P1 = np.clip(Y_BINARY * 0.3 + rng.random(500) * 0.7, 0, 1)
# Rounded scores make many ties, which the rank-based ROC AUC must handle like scikit-learn.
P1_TIED = np.round(P1, 1)
P_BINARY = np.column_stack([1 - P1, P1])
P_TIED = np.column_stack([1 - P1_TIED, P1_TIED])
Y_MULTI = rng.integers(0, 3, 500).astype(np.float64)
P_MULTI = rng.dirichlet([1, 1, 1], 500)
P_MULTI[np.arange(500), Y_MULTI.astype(int)] += 0.5
P_MULTI /= P_MULTI.sum(axis=1, keepdims=True)
Y_SIX = rng.integers(0, 6, 500).astype(np.float64)
P_SIX = rng.dirichlet(np.ones(6), 500)
P_SIX[np.arange(500), Y_SIX.astype(int)] += 0.2
P_SIX /= P_SIX.sum(axis=1, keepdims=True)
Y_REG = rng.normal(10, 3, 500)
PRED_REG = Y_REG + rng.normal(0, 1, 500)


@pytest.mark.parametrize(
    ("name", "y", "scores", "expected"),
    [
        pytest.param("roc_auc", Y_BINARY, P_BINARY, sk.roc_auc_score(Y_BINARY, P1), id="roc_auc"),
        pytest.param("roc_auc", Y_BINARY, P_TIED, sk.roc_auc_score(Y_BINARY, P1_TIED), id="roc_auc-ties"),
        pytest.param("accuracy", Y_BINARY, P_BINARY, sk.accuracy_score(Y_BINARY, P1 >= 0.5), id="accuracy"),
        pytest.param("precision", Y_BINARY, P_BINARY, sk.precision_score(Y_BINARY, P1 >= 0.5), id="precision"),
        pytest.param("recall", Y_BINARY, P_BINARY, sk.recall_score(Y_BINARY, P1 >= 0.5), id="recall"),
        pytest.param("f1", Y_BINARY, P_BINARY, sk.f1_score(Y_BINARY, P1 >= 0.5), id="f1"),
        pytest.param("log_loss", Y_BINARY, P_BINARY, sk.log_loss(Y_BINARY, P_BINARY), id="log_loss"),
        pytest.param("brier", Y_BINARY, P_BINARY, sk.brier_score_loss(Y_BINARY, P1), id="brier"),
        pytest.param("accuracy", Y_MULTI, P_MULTI, sk.accuracy_score(Y_MULTI, P_MULTI.argmax(1)), id="multi-accuracy"),
        pytest.param("f1_macro", Y_MULTI, P_MULTI, sk.f1_score(Y_MULTI, P_MULTI.argmax(1), average="macro"),
                     id="f1_macro"),
        pytest.param("log_loss", Y_MULTI, P_MULTI, sk.log_loss(Y_MULTI, P_MULTI), id="multi-log_loss"),
        pytest.param("rmse", Y_REG, PRED_REG, np.sqrt(sk.mean_squared_error(Y_REG, PRED_REG)), id="rmse"),
        pytest.param("mae", Y_REG, PRED_REG, sk.mean_absolute_error(Y_REG, PRED_REG), id="mae"),
        pytest.param("r2", Y_REG, PRED_REG, sk.r2_score(Y_REG, PRED_REG), id="r2"),
        pytest.param("mape", Y_REG, PRED_REG, sk.mean_absolute_percentage_error(Y_REG, PRED_REG), id="mape"),
        pytest.param("pr_auc", Y_BINARY, P_BINARY, sk.average_precision_score(Y_BINARY, P1), id="pr_auc"),
        pytest.param("pr_auc", Y_BINARY, P_TIED, sk.average_precision_score(Y_BINARY, P1_TIED), id="pr_auc-ties"),
        pytest.param("f1_weighted", Y_MULTI, P_MULTI, sk.f1_score(Y_MULTI, P_MULTI.argmax(1), average="weighted"),
                     id="f1_weighted"),
        *[pytest.param(f"top_{k}_accuracy", Y_SIX, P_SIX, sk.top_k_accuracy_score(Y_SIX, P_SIX, k=k, labels=range(6)),
                       id=f"top_{k}_accuracy") for k in (2, 3, 5)],
        pytest.param("top_3_accuracy", Y_MULTI, P_MULTI, 1.0, id="top_3-of-3-classes"),
    ],
)
def test_metric_matches_scikit_learn(name: str, y: np.ndarray, scores: np.ndarray, expected: float) -> None:
    assert metrics.FUNCTIONS[name](y, scores) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_roc_auc_with_one_class_is_undefined() -> None:
    assert np.isnan(metrics.roc_auc(np.ones(10), P_BINARY[:10]))


def test_every_task_metric_has_a_function() -> None:
    for names in metrics.METRICS_BY_TASK.values():
        assert set(names) <= set(metrics.FUNCTIONS)
