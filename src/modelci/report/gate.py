"""The gate's verdicts in words a reviewer reads without the statistics: each label with its icon and
a sentence saying what it means, the multiplicity line, and the slice and gap rules' tables."""

from __future__ import annotations

from typing import Any

from modelci.report.cells import cell as _cell
from modelci.report.cells import num as _num

# label: (icon when it passes, its name in the table, what it means)
LABELS: dict[str, tuple[str, str, str]] = {
    "improved": ("🟢", "improved", "the whole interval is on the better side of 0: the candidate is better than the "
                 "baseline."),
    "unchanged": ("⚪", "unchanged", "the interval covers 0: no difference from the baseline is shown."),
    "worse-within-tolerance": ("🟡", "worse within tolerance", "the whole interval is on the worse side of 0, but no "
                               "further than the rule's max_drop: worse than the baseline, by no more than the rule "
                               "allows."),
    "regressed": ("🟠", "regressed", "the whole interval is worse than the baseline by more than the rule's max_drop "
                  "(by more than 0 without a rule)."),
    "inconclusive": ("❔", "inconclusive", "the interval is too wide to say what the rule requires: it reaches both "
                     "sides of the rule's margin. More evaluation rows narrow it."),
    "failed-floor": ("", "failed floor", "the candidate's own value is outside the rule's min or max, whatever the "
                     "baseline."),
    "undefined": ("", "undefined", "the metric is not a finite number here (NaN scores, or no rows of a class)."),
    "no-baseline": ("", "–", "no baseline to compare with."),
    "measured": ("", "measured", "a figure of the candidate alone, with nothing to compare it with."),
    "not-measured": ("", "not measured", "the figure could not be measured in this run."),
    "too-small": ("⚪", "too small to judge", "the slice has fewer evaluation rows than compare.min_slice_rows: "
                  "reported, not judged."),
}
GAP_LABELS = {"within": "🟢 within max_gap (the whole interval)", "exceeded": "❌ above max_gap (the whole interval)",
              "inconclusive": "❔ inconclusive (the interval reaches both sides of max_gap)",
              "too-small": "⚪ too small to judge"}


def verdict_cell(verdict: str, passed: bool) -> str:
    """The label as the tables show it; ❌ in front of a label that failed the gate."""
    icon, name, _ = LABELS.get(verdict, ("", verdict, ""))
    if not passed:
        return f"❌ {name}"
    return f"{icon} {name}".strip()


def legend(rows: list[dict[str, Any]]) -> list[str]:
    """One line per comparison label the tables show: what it means."""
    shown = dict.fromkeys(r["verdict"] for r in rows if r["verdict"] in LABELS and LABELS[r["verdict"]][2]
                          and r["verdict"] not in ("no-baseline", "measured"))
    return ["", *[f"- **{LABELS[v][1]}**: {LABELS[v][2]}" for v in shown]] if shown else []


def multiplicity(comparison: dict[str, Any]) -> list[str]:
    """One line saying how the comparisons that rules decide share the error rate."""
    found = comparison.get("multiplicity")
    if not found or found["comparisons"] < 2:
        return []
    n, adjusted = found["comparisons"], found["adjusted"]
    if adjusted == n:
        return ["", f"{n} gated comparisons; intervals adjusted for multiplicity (Holm)."]
    if adjusted < 2:
        return ["", f"{n} gated comparisons; no adjustment for multiplicity needed: non-inferior and superior rules "
                "must each be shown on its own interval."]
    return ["", f"{n} gated comparisons; the {adjusted} that fail only when shown worse have intervals adjusted for "
            "multiplicity (Holm); non-inferior and superior rules must each be shown on its own interval."]


def interval_cell(row: dict[str, Any], confidence: float) -> str:
    """[low, high], with its level when Holm's step-down made it wider than the comparison's."""
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return "–"
    shown = f"[{_num(row['ci_low'], True)}, {_num(row['ci_high'], True)}]"
    level = row.get("confidence")
    return f"{shown} ({level * 100:.4g}%)" if level is not None and abs(level - confidence) > 1e-9 else shown


def slices_section(comparison: dict[str, Any]) -> list[str]:
    """A table per slice rule (each slice's paired interval) and the gaps between slices."""
    rows = comparison.get("slices") or []
    lines: list[str] = []
    level = round(comparison["confidence"] * 100)
    for column in dict.fromkeys((r["name"], r["slice"]) for r in rows):
        found = [r for r in rows if (r["name"], r["slice"]) == column]
        lines += ["", f"{found[0]['name']} by `{column[1]}` ({found[0]['rule'] or 'no rule'}):", "",
                  f"| {column[1]} | rows | baseline | candidate | difference | {level}% interval | verdict |",
                  "|---|---:|---:|---:|---:|---|---|"]
        lines += [f"| {_cell(str(r['slice_value']))} | {r['rows']:,} | {_num(r['baseline'])} | "
                  f"{_num(r['candidate'])} | {_num(r['difference'], True)} | "
                  f"{interval_cell(r, comparison['confidence'])} | {verdict_cell(r['verdict'], r['passed'])} |"
                  for r in found]
        small = [r for r in found if r["verdict"] == "too-small"]
        if small:
            lines += ["", "Too small to judge (fewer rows than compare.min_slice_rows), so not gated: "
                      + ", ".join(f"`{_cell(str(r['slice_value']))}` ({r['rows']:,} rows)" for r in small) + "."]
    for gap in comparison.get("gaps") or []:
        lines += ["", _gap_line(gap, comparison["confidence"])]
    return lines


def _gap_line(gap: dict[str, Any], confidence: float) -> str:
    head = f"Gap in {gap['metric']} between `{gap['slice']}` slices (max_gap {gap['max_gap']}): "
    if gap["candidate"] is None:
        return head + f"{GAP_LABELS['too-small']}: {gap['reason']}."
    low, high = gap["between"] or ["", ""]
    level = gap["confidence"] * 100
    text = head + (f"{GAP_LABELS.get(gap['verdict'], gap['verdict'])}: {gap['candidate']:.4f}, from `{_cell(low)}` to "
            f"`{_cell(high)}`, {level:.4g}% interval [{_num(gap['ci_low'])}, {_num(gap['ci_high'])}]")
    if gap["grew"] is not None:
        change = (f"[{_num(gap['change_low'], True)}, {_num(gap['change_high'], True)}]"
                  if gap["change_low"] is not None else "undefined")
        said = {"grew": "the gap grew", "shrank": "the gap shrank", "unchanged": "no change of the gap shown"}
        text += (f"; the baseline's gap was {gap['baseline']:.4f}: {said[gap['grew']]} ({round(confidence * 100)}% "
                 f"interval of the change {change})")
    return text + "."
