"""The gate's rules in modelci.yaml: require, its old spelling on_inconclusive, slice and gap rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelci.config import GateRule, parse_config
from modelci.errors import ConfigError


def parsed(rules: list[Any], path: Path = Path("/tmp/modelci.yaml"), **compare: Any) -> Any:
    raw = {"task": "binary", "data": {"train": "t.csv", "label": "y"}, "model": {"factory": "m.py:build"},
           "gate": rules, "compare": compare}
    return parse_config(raw, path)


@pytest.mark.parametrize(("rule", "expected"), [
    ({"metric": "roc_auc", "max_drop": 0.01}, GateRule("roc_auc", max_drop=0.01, require="no-regression")),
    ({"metric": "roc_auc", "min": 0.8}, GateRule("roc_auc", min=0.8)),  # judges no difference, as before
    ({"metric": "roc_auc", "max_drop": "2%", "require": "non-inferior"},
     GateRule("roc_auc", max_drop=0.02, relative=True, require="non-inferior")),
    ({"metric": "roc_auc", "require": "superior"}, GateRule("roc_auc", require="superior")),
    ({"metric": "recall", "slice": "region", "max_drop": 0.02},
     GateRule("recall", max_drop=0.02, require="no-regression", slice="region")),
    ({"metric": "recall", "slice": "gender", "max_gap": 0.05}, GateRule("recall", slice="gender", max_gap=0.05)),
], ids=["default-no-regression", "bounds-only", "non-inferior", "superior", "slice", "gap"])
def test_rules_are_read(rule: dict[str, Any], expected: GateRule) -> None:
    assert parsed([rule]).gate == (expected,)


def test_a_metric_may_have_one_rule_overall_and_one_per_slice_column() -> None:
    rules = parsed([{"metric": "recall", "max_drop": 0.01}, {"metric": "recall", "slice": "region", "max_drop": 0.02},
                    {"metric": "recall", "slice": "gender", "max_gap": 0.1}]).gate
    assert [r.slice for r in rules] == [None, "region", "gender"]


def test_min_slice_rows_is_a_setting() -> None:
    assert parsed([]).compare.min_slice_rows == 30
    assert parsed([], min_slice_rows=100).compare.min_slice_rows == 100


@pytest.mark.parametrize(("rules", "compare", "message"), [
    ([{"metric": "roc_auc", "max_drop": 0.01, "require": "better"}], {},
     "gate[0].require: expected one of no-regression, non-inferior, superior; got 'better'"),
    ([{"metric": "roc_auc", "require": "non-inferior"}], {}, "gate[0].require: non-inferior needs max_drop"),
    ([{"metric": "roc_auc", "max_drop": 0.01, "require": "superior", "on_inconclusive": "fail"}], {},
     "gate[0].on_inconclusive: the old spelling of require; keep require only"),
    ([{"metric": "roc_auc", "on_inconclusive": "maybe"}], {}, "gate[0].on_inconclusive: expected pass or fail"),
    ([{"metric": "recall", "slice": "region"}], {}, "gate[0]: a slice rule needs max_drop, require or max_gap"),
    ([{"metric": "recall", "slice": "", "max_gap": 0.1}], {}, "gate[0].slice: expected a column name"),
    ([{"metric": "recall", "slice": "region", "max_gap": -0.1}], {}, "gate[0].max_gap: expected 0 or more"),
    ([{"metric": "recall", "slice": "region", "min": 0.5}], {}, "gate[0].min: unknown key"),
    ([{"metric": "latency_p99_ms", "slice": "region", "max": 5}], {}, "gate[0].slice: unknown key"),
    ([{"metric": "recall", "slice": "region", "max_gap": 0.1}, {"metric": "recall", "slice": "region",
                                                                 "max_drop": 0.1}], {},
     "gate[1].metric: a second rule on recall by region; put all of its bounds in one rule"),
    ([], {"min_slice_rows": 0}, "compare.min_slice_rows: expected an integer greater than 0"),
], ids=["bad-require", "non-inferior-without-margin", "both-spellings", "bad-old-spelling", "empty-slice-rule",
        "empty-column", "negative-gap", "min-on-slice", "slice-on-latency", "two-slice-rules", "min-rows"])
def test_bad_rules_name_the_key(rules: list[Any], compare: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parsed(rules, **compare)
    assert message in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(("old", "require", "word"), [("fail", "superior", "superior"),
                                                      ("pass", "no-regression", "no-regression")])
def test_on_inconclusive_is_still_read_with_a_one_line_warning_naming_require(
        old: str, require: str, word: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "modelci.yaml"
    (rule,) = parsed([{"metric": "roc_auc", "max_drop": 0.01, "on_inconclusive": old}], path).gate
    assert rule.require == require
    warned = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert warned == [f"warning: {path}: gate[0].on_inconclusive is deprecated; write require: {word} instead"
                      + (" (the default with max_drop)" if old == "pass" else "")]


def test_on_inconclusive_pass_without_max_drop_still_judges_no_difference(tmp_path: Path) -> None:
    (rule,) = parsed([{"metric": "roc_auc", "min": 0.7, "on_inconclusive": "pass"}], tmp_path / "m.yaml").gate
    assert rule.require is None
