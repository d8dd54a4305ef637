"""Config validation: every problem is reported with its key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelci.config import load_config, parse_config
from modelci.errors import ConfigError

VALID: dict[str, Any] = {
    "task": "binary",
    "data": {"train": "data/train.parquet", "label": "churned"},
    "model": {"factory": "model.py:build"},
}


def with_changes(**sections: Any) -> dict[str, Any]:
    return {**VALID, **sections}


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = parse_config(VALID, tmp_path / "modelci.yaml")
    assert config.train.epochs == 20
    assert config.registry == "oci:.modelci/registry"
    assert config.data.train == tmp_path / "data/train.parquet"
    assert config.data.eval is None
    assert config.data.split.fraction == 0.2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(with_changes(task="ranking"),
                     "task: expected one of binary, multiclass, regression; got 'ranking'",
                     id="bad-task"),
        pytest.param({k: v for k, v in VALID.items() if k != "task"}, "task: expected one of", id="missing-task"),
        pytest.param(with_changes(trian={}), "trian: unknown key; did you mean 'train'?", id="typo-section"),
        pytest.param(with_changes(train={"epochs": "ten"}), "train.epochs: expected an integer, got 'ten'",
                     id="epochs-not-int"),
        pytest.param(with_changes(train={"epochs": 0}), "train.epochs: expected an integer greater than 0, got 0",
                     id="epochs-zero"),
        pytest.param(with_changes(train={"lr": True}), "train.lr: expected a number, got True", id="bool-not-number"),
        pytest.param(with_changes(train={"device": "tpu"}), "train.device: expected one of auto, cpu, cuda; got 'tpu'",
                     id="bad-device"),
        pytest.param(with_changes(train={"schedule": "linear"}),
                     "train.schedule: expected one of constant, cosine, onecycle; got 'linear'", id="bad-schedule"),
        pytest.param(with_changes(train={"patience": -2}), "train.patience: expected 0 or more, got -2",
                     id="negative-patience"),
        pytest.param(with_changes(train={"grad_clip": 0}), "train.grad_clip: expected a number greater than 0",
                     id="zero-clip"),
        pytest.param(with_changes(train={"precision": "fp16"}),
                     "train.precision: expected one of auto, fp32, bf16; got 'fp16'", id="fp16"),
        pytest.param(with_changes(train={"deterministic": "yes"}), "train.deterministic: expected true or false",
                     id="deterministic-not-bool"),
        pytest.param(with_changes(task="regression", train={"class_weights": "balanced"}),
                     "train.class_weights: class weights need classes", id="weights-for-regression"),
        pytest.param(with_changes(evaluate={"kfold": 1}), "evaluate.kfold: expected 0 (no cross-validation) or 2",
                     id="one-fold"),
        pytest.param(with_changes(evaluate={"slices": "contract"}), "evaluate.slices: expected a list of column names",
                     id="slices-not-a-list"),
        pytest.param(with_changes(tune={"space": {"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}}),
                     "tune.space.train.lr: expected numbers low < high, got low 0.1 and high 0.01",
                     id="low-above-high"),
        pytest.param(with_changes(tune={"space": {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}),
                     "tune.space.train.lr: a log scale needs low > 0", id="log-from-zero"),
        pytest.param(with_changes(tune={"space": {"train.device": {"type": "categorical", "choices": ["cpu"]}}}),
                     "tune.space.train.device: expected model.params.NAME or train.NAME", id="untunable-key"),
        pytest.param(with_changes(tune={"space": {"model.params.act": {"type": "categorical", "choices": []}}}),
                     "needs a non-empty list of choices", id="no-choices"),
        pytest.param(with_changes(tune={"sampler": "grid",
                                        "space": {"train.lr": {"type": "float", "low": 0.001, "high": 0.01}}}),
                     "the grid sampler needs a step for a float parameter", id="grid-float-without-step"),
        pytest.param(with_changes(tune={"space": {"model.params.hidden": {"type": "int", "low": 8, "high": 64,
                                                                            "step": 0.5}}}),
                     "an int parameter needs whole numbers for low, high and step", id="fractional-int-step"),
        pytest.param(with_changes(tune={"sampler": "bayes"}), "tune.sampler: expected one of tpe, random, grid",
                     id="bad-sampler"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "max_drop": "two%"}]),
                     "gate[0].max_drop: expected a number or a percentage such as '2%'", id="bad-percentage"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "max_drop": 0.1, "direction": "up"}]),
                     "gate[0].direction: expected higher or lower", id="bad-direction"),
        pytest.param(with_changes(export={"quantize": "fp16"}), "export.quantize: expected one of none, int8",
                     id="bad-quantize"),
        pytest.param(with_changes(model={"factory": "model.py"}), "model.factory: expected 'FILE.py:FUNCTION'",
                     id="factory-without-function"),
        pytest.param(with_changes(data={"train": "t.csv"}), "data.label: expected the name of the label column",
                     id="missing-label"),
        pytest.param(with_changes(data={"train": "t.csv", "label": "y", "eval": "e.csv", "split": {}}),
                     "data: give either 'eval'", id="eval-and-split"),
        pytest.param(with_changes(data={"train": "t.csv", "label": "y", "split": {"fraction": 1.5}}),
                     "data.split.fraction: expected a fraction between 0 and 1, got 1.5", id="bad-fraction"),
        pytest.param(with_changes(evaluate={"metrics": ["rmse"]}), "'rmse' is not a binary metric", id="wrong-metric"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc"}]), "gate[0]: a rule needs at least one of",
                     id="empty-rule"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "max_drop": -1}]), "gate[0].max_drop: expected 0 or more",
                     id="negative-drop"),
        pytest.param(with_changes(export={"opset": 9}), "export.opset: expected an ONNX opset from 17 to 23, got 9",
                     id="old-opset"),
        pytest.param(with_changes(compare={"confidence": 95}), "compare.confidence: expected a level between 0 and 1",
                     id="percent-confidence"),
        pytest.param(with_changes(gate=[{"min": 0.5}]), "gate[0]: expected a mapping with a 'metric' name",
                     id="rule-without-metric"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "min": 0.5}, {"metric": "roc_auc", "max_drop": 0.1}]),
                     "gate[1].metric: a second rule on roc_auc; put all of its bounds in one rule", id="two-rules"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "max_drop": "nan%"}]),
                     "gate[0].max_drop: expected a number or a percentage such as '2%', got 'nan%'", id="nan-percent"),
        pytest.param(with_changes(gate=[{"metric": "roc_auc", "min": float("nan")}]),
                     "gate[0].min: expected a number, got nan", id="nan-bound"),
        pytest.param(with_changes(gate=[{"metric": "latency_p99_ms", "max_drop": 0.1}]),
                     "gate[0].max_drop: unknown key", id="drop-on-latency"),
        pytest.param(with_changes(gate=[{"metric": "parity_max_error", "max_increase": "10%"}]),
                     "gate[0].max_increase: unknown key", id="increase-on-parity"),
        pytest.param(with_changes(gate=[{"metric": "model_size_mb"}]),
                     "gate[0]: a rule on model_size_mb needs max or max_increase", id="empty-operational-rule"),
        pytest.param(with_changes(gate=[{"metric": "model_size_mb", "max_increase": -0.1}]),
                     "gate[0].max_increase: expected 0 or more", id="negative-increase"),
        pytest.param(with_changes(gate=[{"metric": "latency_p50", "max": 3}]),
                     "or an operational figure (latency_p50_ms, latency_p99_ms", id="unknown-figure"),
    ],
)
def test_invalid_config_names_key_value_and_allowed(raw: dict[str, Any], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path / "modelci.yaml")
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    assert caught.value.exit_code == 2


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    raw = with_changes(task="binary", train={"epochs": -1, "lr": "fast", "device": "tpu"})
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path / "modelci.yaml")
    assert [p.split(":")[0] for p in caught.value.problems] == ["train.epochs", "train.lr", "train.device"]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "modelci.yaml"
    broken.write_text("task: binary\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    broken.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(broken)


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "churn" / "modelci.yaml"
    config = load_config(example)
    assert yaml.safe_load(example.read_text())["task"] == config.task == "binary"
    assert [rule.metric for rule in config.gate] == ["roc_auc", "log_loss"]


def test_operational_rules_take_a_ceiling_and_a_relative_increase(tmp_path: Path) -> None:
    config = parse_config(with_changes(gate=[{"metric": "latency_p99_ms", "max_increase": "20%", "max": 50},
                                             {"metric": "drifted_columns", "max": 0}]), tmp_path / "modelci.yaml")
    latency, drift = config.gate
    assert (latency.max_increase, latency.max) == (pytest.approx(0.2), 50)
    assert (drift.metric, drift.max, drift.max_increase) == ("drifted_columns", 0, None)
