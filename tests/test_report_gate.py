"""The gate's verdicts in the pull-request comment: each label's cell and the sentence that explains it, as
GitHub renders the markdown (cmark-gfm); the multiplicity line; slice tables and gaps."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from modelci.compare.comparison import COMPARISON_FILE, Comparison
from modelci.compare.rows import GapComparison, MetricComparison, Multiplicity
from modelci.report.markdown import build_report


def row(verdict: str, passed: bool = True, **fields: object) -> MetricComparison:
    values: dict[str, object] = {"baseline": 0.8, "difference": -0.01, "ci_low": -0.02, "ci_high": 0.0,
                                 "confidence": 0.95, "rule": "max_drop 0.02", **fields}
    return MetricComparison(f"m_{verdict}", True, 0.79, verdict=verdict, passed=passed,
                            reason=None if passed else "why", **values)  # type: ignore[arg-type]


def comment(tmp_path: Path, comparison: Comparison) -> tuple[str, str]:
    """The report's markdown, and its text as GitHub shows it (tags dropped)."""
    (tmp_path / COMPARISON_FILE).write_text(json.dumps(comparison.to_json()))
    markdown, _ = build_report(tmp_path)
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    return markdown, unescape(re.sub(r"<[^>]+>", "", html))


def compared(*metrics: MetricComparison, **fields: object) -> Comparison:
    rows = [*metrics, *fields.get("slices", []), *fields.get("gaps", [])]  # type: ignore[misc]
    passed = all(r.passed for r in rows)
    return Comparison(passed, "compared", "oci:reg:main", "sha256:ab", 1000, 0.95, 1000, list(metrics),
                      **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("verdict", "passed", "cell", "meaning"), [
    ("improved", True, "🟢 improved", "the whole interval is on the better side of 0: the candidate is better than the "
     "baseline."),
    ("unchanged", True, "⚪ unchanged", "the interval covers 0: no difference from the baseline is shown."),
    ("worse-within-tolerance", True, "🟡 worse within tolerance", "the whole interval is on the worse side of 0, but "
     "no further than the rule's max_drop: worse than the baseline, by no more than the rule allows."),
    ("regressed", False, "❌ regressed", "the whole interval is worse than the baseline by more than the rule's "
     "max_drop (by more than 0 without a rule)."),
    ("regressed", True, "🟠 regressed", "the whole interval is worse than the baseline by more than the rule's"),
    ("inconclusive", False, "❌ inconclusive", "the interval is too wide to say what the rule requires: it reaches "
     "both sides of the rule's margin. More evaluation rows narrow it."),
    ("inconclusive", True, "❔ inconclusive", "the interval is too wide to say what the rule requires"),
    ("failed-floor", False, "❌ failed floor", "the candidate's own value is outside the rule's min or max, whatever "
     "the baseline."),
    ("undefined", False, "❌ undefined", "the metric is not a finite number here (NaN scores, or no rows of a class)."),
    ("too-small", True, "⚪ too small to judge", "the slice has fewer evaluation rows than compare.min_slice_rows: "
     "reported, not judged."),
], ids=["improved", "unchanged", "worse-within-tolerance", "regressed-failing", "regressed-no-rule",
        "inconclusive-failing", "inconclusive-passing", "failed-floor", "undefined", "too-small"])
def test_each_label_is_shown_with_what_it_means(tmp_path: Path, verdict: str, passed: bool, cell: str,
                                                meaning: str) -> None:
    markdown, text = comment(tmp_path, compared(row(verdict, passed)))
    assert f"| {cell} |" in markdown
    label = cell.split(" ", 1)[1]
    assert f"{label}: {meaning}" in text


def test_only_the_labels_shown_are_explained(tmp_path: Path) -> None:
    _, text = comment(tmp_path, compared(row("improved"), row("unchanged")))
    assert "improved: the whole interval" in text
    assert "worse within tolerance:" not in text


def test_a_failed_row_says_why_and_the_verdict_names_it(tmp_path: Path) -> None:
    _, text = comment(tmp_path, compared(row("inconclusive", False)))
    assert "❌ Failed: the gate rejected m_inconclusive." in text
    assert "m_inconclusive: why" in text


@pytest.mark.parametrize(("comparisons", "adjusted", "line"), [
    (3, 3, "3 gated comparisons; intervals adjusted for multiplicity (Holm)."),
    (3, 2, "3 gated comparisons; the 2 that fail only when shown worse have intervals adjusted for multiplicity "
     "(Holm); non-inferior and superior rules must each be shown on its own interval."),
    (2, 0, "2 gated comparisons; no adjustment for multiplicity needed"),
])
def test_the_report_says_how_the_intervals_were_adjusted(tmp_path: Path, comparisons: int, adjusted: int,
                                                          line: str) -> None:
    wide = row("unchanged", confidence=1 - 2 * 0.025 / 3)
    _, text = comment(tmp_path, compared(wide, multiplicity=Multiplicity("holm", comparisons, adjusted, 0.025)))
    assert line in text
    assert "[-0.0200, +0.0000] (98.33%)" in text  # the level of a widened interval is shown beside it


def test_one_gated_comparison_gets_no_multiplicity_line(tmp_path: Path) -> None:
    _, text = comment(tmp_path, compared(row("unchanged"), multiplicity=Multiplicity("holm", 1, 1, 0.025)))
    assert "gated comparisons" not in text
    assert "[-0.0200, +0.0000] |" not in text  # NOTE: the cell holds no level: it is the comparison's own
    assert "[-0.0200, +0.0000]" in text


def test_slices_and_gaps_are_tabled_small_slices_named_and_the_gap_change_said(tmp_path: Path) -> None:
    south = row("regressed", False, slice="region", slice_value="south", rows=1990, rule="by region, max_drop 0.01")
    north = row("unchanged", slice="region", slice_value="north", rows=2000, rule="by region, max_drop 0.01")
    islands = MetricComparison("m_regressed", True, 0.5, 0.6, -0.1, verdict="too-small", slice="region",
                               slice_value="islands", rows=10, rule="by region, max_drop 0.01",
                               reason="10 rows, fewer than compare.min_slice_rows (30): too small to judge")
    gap = GapComparison("recall", "gender", 0.05, 0.12, 0.08, 0.16, 0.95, ["f", "m"], 0.02, 0.06, 0.14, "grew",
                        "exceeded", False, "the recall gap is too wide")
    markdown, text = comment(tmp_path, compared(row("improved"), slices=[south, north, islands], gaps=[gap]))
    assert "m_regressed by region (by region, max_drop 0.01):" in text
    assert "| south | 1,990 | 0.8000 | 0.7900 | -0.0100 | [-0.0200, +0.0000] | ❌ regressed |" in markdown
    assert "| islands | 10 | 0.6000 | 0.5000 | -0.1000 | – | ⚪ too small to judge |" in markdown
    assert "Too small to judge (fewer rows than compare.min_slice_rows), so not gated: islands (10 rows)." in text
    assert ("Gap in recall between gender slices (max_gap 0.05): ❌ above max_gap (the whole interval): 0.1200, "
            "from f to m, 95% interval [0.0800, 0.1600]; the baseline's gap was 0.0200: the gap grew (95% interval of "
            "the change [+0.0600, +0.1400]).") in text
    assert "❌ Failed: the gate rejected m_regressed [region = south], recall gap by gender." in text
    assert "recall gap by gender: the recall gap is too wide" in text


@pytest.mark.parametrize(("verdict", "passed", "words"), [
    ("within", True, "🟢 within max_gap (the whole interval): 0.1200"),
    ("inconclusive", True, "❔ inconclusive (the interval reaches both sides of max_gap): 0.1200"),
])
def test_each_gap_label_is_said_in_words(tmp_path: Path, verdict: str, passed: bool, words: str) -> None:
    gap = GapComparison("recall", "gender", 0.15, 0.12, 0.08, 0.16, 0.95, ["f", "m"], verdict=verdict, passed=passed)
    _, text = comment(tmp_path, compared(row("improved"), gaps=[gap]))
    assert f"Gap in recall between gender slices (max_gap 0.15): {words}, from f to m" in text
    assert "the baseline's gap" not in text  # no baseline measured: nothing said of a change


def test_a_gap_too_small_to_judge_says_why(tmp_path: Path) -> None:
    gap = GapComparison("recall", "gender", 0.15, None, reason="fewer than two slices with rows enough")
    _, text = comment(tmp_path, compared(row("improved"), gaps=[gap]))
    assert ("Gap in recall between gender slices (max_gap 0.15): ⚪ too small to judge: fewer than two slices with "
            "rows enough.") in text


def test_the_seeds_table_shows_the_published_model_and_what_the_intervals_count(tmp_path: Path) -> None:
    import numpy as np

    from modelci.compare.gate import judge
    from modelci.config import parse_config

    draw = np.random.default_rng(0)
    y = (draw.random(500) < 0.4).astype(np.float64)
    models = [np.column_stack([1 - p, p]) for p in (np.clip(y * 0.5 + draw.random(500) * (0.5 + s / 10), 0, 1)
                                                     for s in range(4))]
    raw = {"task": "binary", "data": {"train": "t.csv", "label": "y"}, "model": {"factory": "m.py:build"},
           "evaluate": {"metrics": ["accuracy"]}, "gate": [{"metric": "accuracy", "min": 0.5}],
           "compare": {"bootstrap": 100}}
    found = judge(parse_config(raw, Path("/tmp/modelci.yaml")), y, models[0], models[3], "binary", None, models[1:3])
    assert found.seeds is not None
    comparison = compared(*found.metrics, seeds=found.seeds.to_json())
    markdown, text = comment(tmp_path, comparison)
    assert "| metric | seed 1 (published) | seed 2 | seed 3 | spread (sd) | baseline's spread (sd) | df |" in markdown
    published = found.metrics[0].published
    assert published is not None
    assert f"| accuracy | {published:.4f} |" in markdown
    assert "(assumed) | 2 |" in markdown  # the baseline recorded no seeds: the candidate's spread, N - 1 df
    assert "the published model is the first seed's, on which the rules' min and max are judged" in text
    assert "Slice and gap rules judge the published model on the rows' sampling alone" in text
    assert "the baseline recorded no seeds" in text
    # without a baseline, nothing is said of its noise
    alone = judge(parse_config(raw, Path("/tmp/modelci.yaml")), y, models[0], None, "binary", None, models[1:3])
    assert alone.seeds is not None
    markdown, text = comment(tmp_path, Comparison(True, "no-baseline", "oci:reg:main", None, 500, 0.95, 100,
                                                  alone.metrics, seeds=alone.seeds.to_json()))
    assert "baseline recorded no seeds" not in text
    assert "| – | – |" in markdown


def test_a_latency_interval_widened_by_holm_shows_its_level(tmp_path: Path) -> None:
    latency = MetricComparison("latency_p50_ms", False, 1.2, 1.0, 0.2, 0.05, 0.3, "inconclusive",
                               confidence=1 - 2 * 0.025 / 3)
    _, text = comment(tmp_path, compared(row("unchanged"), operational=[latency]))
    assert "+20.0% [+5.0%, +30.0%] (98.33%)" in text
