"""`modelci report`: one markdown report from the JSON files the stages wrote to the output folder.

Each section is drawn from its stage's file when that file exists, so a run that stopped early
still reports what it found. The verdict comes first; details sit in collapsible sections.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelci.outputs import LOG_VERSION
from modelci.report import gate
from modelci.report.cells import cell as _cell
from modelci.report.cells import num as _num
from modelci.report.units import ROWS, Unit, training_data, unit_of

REPORT_FILE = "report.md"
FULL_REPORT_FILE = "report-full.md"  # written only when report.md had to be cut
# GitHub refuses a comment body over 65,536 characters, so report.md (the comment) always fits,
# with room for the note that says it was cut. A job summary may hold 1 MiB.
COMMENT_LIMIT = 65_536
SUMMARY_LIMIT = 1 << 18  # characters: 1 MiB even if every one took four bytes
CUT_NOTE = ("_The report was cut here to fit GitHub's limit of {limit:,} characters; the whole report is "
            f"`{FULL_REPORT_FILE}` among the run's outputs._")
CHART_COLOURS = {"blue": "#2563eb", "orange": "#f97316", "green": "#16a34a", "red": "#dc2626"}
# Hidden marker by which the pull-request comment is found and updated.
MARKER = "<!-- modelci-report -->"


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


def _gated(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gated row: the metrics, the operational figures, then the slices of the slice rules."""
    return [*comparison["metrics"], *comparison.get("operational", []), *comparison.get("slices", [])]


def _name(row: dict[str, Any]) -> str:
    """A row's name; a slice's with its column and value."""
    return f"{row['name']} [{row['slice']} = {row['slice_value']}]" if row.get("slice") else str(row["name"])


def _failures(comparison: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, reason) of each row and gap that failed the gate."""
    gaps = [(f"{g['metric']} gap by {g['slice']}", g["reason"]) for g in comparison.get("gaps", []) if not g["passed"]]
    return [(_name(m), m["reason"]) for m in _gated(comparison) if not m["passed"]] + gaps


def overall(out: Path) -> tuple[str, bool]:
    """The one-line verdict and whether the run passed, from what the stages wrote."""
    data, parity, comparison = (_load(out, n) for n in ("data-report.json", "parity.json", "comparison.json"))
    if data is not None and not data["passed"]:
        return "❌ **Failed**: the data checks found problems.", False
    if parity is not None and not parity["passed"]:
        return "❌ **Failed**: the exported ONNX model does not match the trained model.", False
    if comparison is None:
        return "⚠️ **Incomplete**: the pipeline stopped before the comparison.", False
    if not comparison["passed"]:
        failed = ", ".join(name for name, _ in _failures(comparison))
        because = f"the gate rejected {failed}" if failed else comparison["reason"]
        return f"❌ **Failed**: {because}.", False
    if comparison["baseline_status"] == "compared":
        return "✅ **Passed**: the candidate meets every gate rule against the baseline.", True
    return f"✅ **Passed** ({comparison['baseline_status']}): {comparison.get('reason') or ''}", True


def _comparison_section(comparison: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    level = round(comparison["confidence"] * 100)
    lines = ["## Metrics", ""]
    if comparison["baseline_status"] == "compared":
        lines.append(f"Baseline `{comparison['baseline_reference']}` = `{comparison['baseline_digest']}`, "
                     f"paired on the same {comparison['rows']:,} evaluation {unit.many}; {level}% intervals from "
                     f"{comparison['bootstrap']:,} bootstrap resamples.")
    else:
        lines.append(f"No comparison: {comparison.get('reason')}")
    lines += [part for note in (comparison.get("comparability") or {}).get("notes", []) for part in ("", f"⚠️ {note}.")]
    thresholds = comparison.get("thresholds") or {}  # NOTE: shown only when a model's is not the usual 0.5
    lines += ["", "Classification thresholds, each model's own, at which its label metrics are computed: " + ", ".join(
        f"{who} {value:g}" for who, value in thresholds.items()) + "."] if set(thresholds.values()) - {0.5} else []
    lines += ["", f"| metric | baseline | candidate | difference | {level}% interval | verdict | rule |",
              "|---|---:|---:|---:|---|---|---|"]
    for m in comparison["metrics"]:
        arrow = "↑" if m["higher_is_better"] else "↓"
        lines.append(f"| {m['name']} {arrow} | {_num(m['baseline'])} | {_num(m['candidate'])} | "
                     f"{_num(m['difference'], True)} | {gate.interval_cell(m, comparison['confidence'])} | "
                     f"{gate.verdict_cell(m['verdict'], m['passed'])} | {m['rule'] or ''} |")
    lines += _seeds(comparison) + gate.multiplicity(comparison) + gate.slices_section(comparison)
    lines += gate.legend([*comparison["metrics"], *comparison.get("slices", [])])
    for m in comparison["metrics"]:
        if m.get("mcnemar_p") is not None:
            only_candidate, only_baseline = m["discordant"]
            lines += ["", f"McNemar's exact test on {m['name']}: only the candidate is right on {only_candidate:,} "
                          f"{unit.many}, only the baseline on {only_baseline:,}; p = {m['mcnemar_p']:.3g}."]
    lines += _flips(comparison.get("flips"), unit)
    failures = [f"- **{name}**: {reason}" for name, reason in _failures(comparison)]
    lines += ["", *failures] if failures else []
    return [*lines, *_fold_differences(comparison), *_roc_chart(comparison), *_operational_section(comparison, unit),
            ""]


def _flips(flips: dict[str, Any] | None, unit: Unit) -> list[str]:
    """The predictions that changed from the baseline's: how many, which way, and the first few."""
    if not flips:
        return []
    if not flips["rows"]:
        return ["", "No prediction changed from the baseline's."]
    lines = ["", f"Predictions that changed from the baseline's: {unit.count(flips['rows'])}, {flips['fixed']:,} "
                 f"fixed (now right), {flips['broken']:,} broken (now wrong), {flips['other']:,} from one wrong "
                 f"class to another; every one in `changed-predictions.csv`."]
    text = any("text" in row for row in flips["examples"])
    lines += ["", "| row | label | baseline | candidate | outcome |" + (" text |" if text else ""),
              "|---:|---|---|---|---|" + ("---|" if text else "")]
    for row in flips["examples"]:
        # NOTE: a text from the data in a code span: no markdown, HTML or @mention of it takes effect in a comment
        shown = " `" + _cell(row["text"].replace("`", "'")) + "` |" if text else ""
        lines.append(f"| {row['row']} | {_cell(row['label'])} | {_cell(row['baseline'])} | "
                     f"{_cell(row['candidate'])} | {row['outcome']} |{shown}")
    for column, values in (flips.get("slices") or {}).items():
        lines += ["", f"| {_cell(column)} | {unit.many} | changed | fixed | broken |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {_cell(str(v['value']))} | {v['rows']:,} | {v['changed']:,} | {v['fixed']:,} | "
                  f"{v['broken']:,} |" for v in values]
    return lines


def _seeds(comparison: dict[str, Any]) -> list[str]:
    """The training noise: each seed's metrics, and what the intervals count of it."""
    found = comparison.get("seeds")
    if not found:
        return []
    n = found["seeds"]
    compared = comparison["baseline_status"] == "compared"
    lines = ["", f"Training noise: the candidate was trained with {n} seeds (compare.seeds); its figures above are "
                 "their mean, the recipe's, and the published model is the first seed's, on which the rules' min and "
                 "max are judged."
             + (" The metrics' intervals count the seeds' spread and the baseline's as well as the rows' (a Student "
                "t term with Welch–Satterthwaite's degrees of freedom, df). Slice and gap rules judge the published "
                "model on the rows' sampling alone, without the seeds' spread." if compared else "")]
    lines += [f"⚠️ {found['note']}."] if found.get("note") else []
    published = {m["name"]: m.get("published") for m in comparison["metrics"]}
    seeds = " | ".join("seed 1 (published)" if i == 0 else f"seed {i + 1}" for i in range(n))
    lines += ["", f"| metric | {seeds} | spread (sd) | baseline's spread (sd) | df |", "|---|" + "---:|" * (n + 3)]
    for name, values in found["candidate"].items():
        noise = found.get("noise", {}).get(name, {})
        base = _num(noise.get("baseline_sd")) + (" (assumed)" if noise.get("baseline_assumed") else "") \
            if compared else "–"
        df = f"{noise['df']:.3g}" if compared and noise.get("df") is not None else "–"
        shown = [published.get(name, values[0]) if i == 0 else v for i, v in enumerate(values)]
        lines.append(f"| {name} | " + " | ".join(_num(v) for v in shown)
                     + f" | {_num(noise.get('candidate_sd'))} | {base} | {df} |")
    return lines


def _fold_differences(comparison: dict[str, Any]) -> list[str]:
    found = comparison.get("kfold")
    if not found:
        return []
    k = found["folds"]
    if found["reason"]:
        return ["", f"No fold-wise comparison of the {k}-fold cross-validations: {found['reason']}."]
    level, repeats = round(comparison["confidence"] * 100), found.get("repeats", 1)
    folds = _fold_names(k, repeats)
    repeated = f" repeated {repeats} times" if repeats > 1 else ""
    lines = ["", f"Fold-wise differences (candidate − baseline) of the {k}-fold cross-validations{repeated}, the same "
             f"folds for both; {level}% intervals of the mean, Nadeau–Bengio corrected for the folds' overlapping "
             "training data:", "",
             f"| metric | mean difference | {level}% interval | " + " | ".join(folds) + " |",
             "|---|---:|---|" + "---:|" * len(folds)]
    for name, m in found["metrics"].items():
        interval = f"[{_num(m['ci_low'], True)}, {_num(m['ci_high'], True)}]" if m["ci_low"] is not None else "–"
        lines.append(f"| {name} | {_num(m['mean'], True)} | {interval} | "
                     + " | ".join(_num(v, True) for v in m["differences"]) + " |")
    return lines


def _operational_section(comparison: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    rows = comparison.get("operational") or []
    if not rows:
        return []
    lines = ["", "## Latency and size", "",
             f"Latency of one request in ONNX Runtime on this runner, of {unit.count(1)} and of "
             f"{unit.count(comparison['latency_batch'])}, both models timed in turns in this one process, so their "
             "figures are comparable by construction; "
             f"the change's {round(comparison['confidence'] * 100)}% bootstrap interval is in brackets.", "",
             "| figure ↓ | baseline | candidate | change | verdict | rule |", "|---|---:|---:|---:|---|---|"]
    for m in rows:
        change = f"{m['candidate'] / m['baseline'] - 1:+.1%}" if m["baseline"] and m["candidate"] is not None else "–"
        if m["baseline"] and m.get("ci_low") is not None:
            change += f" [{m['ci_low'] / m['baseline']:+.1%}, {m['ci_high'] / m['baseline']:+.1%}]"
            level = m.get("confidence")  # NOTE: Holm's step-down widens a latency rule's interval with other rules
            change += f" ({level * 100:.4g}%)" if level is not None and abs(level - comparison["confidence"]) > 1e-9 \
                else ""
        lines.append(f"| {m['name']} | {_figure(m['baseline'])} | {_figure(m['candidate'])} | {change} | "
                     f"{gate.verdict_cell(m['verdict'], m['passed'])} | {m['rule'] or ''} |")
    return lines


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _line_chart(title: str, x_label: str, x: list[str], y_label: str, series: dict[str, list[float]]) -> list[str]:
    """A Mermaid line chart, which GitHub draws from the markdown itself; Mermaid's xy charts have no
    legend, so the series are named, in drawing order, under the chart."""
    theme = json.dumps({"themeVariables": {"xyChart": {"plotColorPalette": ", ".join(CHART_COLOURS.values())}}})
    lines = ["", "```mermaid", f"%%{{init: {theme}}}%%", "xychart-beta", f'  title "{title}"',
             f'  x-axis "{x_label}" [{", ".join(json.dumps(v) for v in x)}]', f'  y-axis "{y_label}"']
    lines += [f"  line [{', '.join(f'{v:.4f}' for v in values)}]" for values in series.values()]
    named = ", ".join(f"{name} ({colour})" for name, colour in zip(series, CHART_COLOURS, strict=False))
    return [*lines, "```", "", f"Lines: {named}."]


def _roc_chart(comparison: dict[str, Any]) -> list[str]:
    roc = comparison.get("roc")
    if not roc:
        return []
    series = {"candidate": roc["candidate"]} | ({"baseline": roc["baseline"]} if roc.get("baseline") else {})
    chart = _line_chart("ROC curve", "false positive rate", [f"{v:g}" for v in roc["fpr"]],
                        "true positive rate", series)
    return ["", "<details><summary>ROC curves</summary>", *chart, "", "</details>"]


def _examples(v: dict[str, Any]) -> str:
    if not v["sample_values"]:
        return ", ".join(f"row {r}" for r in v["sample_rows"])
    return ", ".join(f"{r}: `{_cell(repr(val))}`" for r, val in zip(v["sample_rows"], v["sample_values"], strict=False))


def _findings(data: dict[str, Any]) -> list[str]:
    violations = [(d["name"], v) for d in data["datasets"] for v in d["violations"]]
    if not violations:
        return []
    icons = {"error": "❌", "warning": "⚠️", "cleaned": "🧹"}
    lines = ["", "<details><summary>Every finding</summary>", "",
             "| dataset | column | rule | rows | examples (row: value) |", "|---|---|---|---:|---|"]
    for name, v in violations:
        finding = f"{icons.get(v['severity'], '')} {v['rule']}: {v['message']}"
        lines.append(f"| {name} | {v['column'] or '(rows)'} | {finding} | {v['rows']:,} | {_examples(v)} |")
    return [*lines, "", "</details>"]


def _drift(data: dict[str, Any]) -> list[str]:
    rows = [(d["name"], c) for d in data["datasets"] for c in d.get("drift", [])]
    if not rows:
        return []
    drifted = [(n, c) for n, c in rows if c["verdict"] == "drifted"]
    lines = ["", f"Drift against the baseline's data: {len(drifted)} of {len(rows)} columns drifted.", "",
             "<details><summary>Drift by column</summary>", "",
             "| dataset | column | measure | score | threshold | verdict |", "|---|---|---|---:|---:|---|"]
    for name, c in sorted(rows, key=lambda r: r[1]["verdict"] != "drifted"):
        score = "" if c["score"] is None else f"{c['score']:.4f}"
        if c["p_value"] is not None:
            score += f" (p {c['p_value']:.2g})"
        verdict = {"drifted": "⚠️ drifted", "stable": "stable"}.get(c["verdict"], c["reason"] or c["verdict"])
        lines.append(f"| {name} | {c['column']} | {c['method']} | {score} | {c['threshold']} | {verdict} |")
    return [*lines, "", "</details>"]


def _cleaning(data: dict[str, Any]) -> list[str]:
    cleaning = data.get("cleaning") or {}
    lines = [f"- {name}: kept {c['rows_after']:,} of {c['rows_before']:,} rows: dropped {c['duplicates']:,} "
             f"duplicates, {c['null_label']:,} without a label, {c['invalid']:,} invalid; clipped {c['clipped']:,} "
             "values" for name, c in cleaning.items()]
    return ["", "Cleaning before training (`data.clean`):", "", *lines] if lines else []


def _data_section(data: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    # NOTE: a folder of images per class has two columns, the image and its label: counting them says nothing
    columns = unit == ROWS
    lines = ["## Data", "", f"| dataset | {unit.many} |{' columns |' if columns else ''} failed checks | fingerprint |",
             f"|---|---:|{'---:|' if columns else ''}---:|---|"]
    for d in data["datasets"]:
        errors = [v for v in d["violations"] if v["severity"] == "error"]
        counted = f" {d['columns']} |" if columns else ""
        lines.append(f"| {d['name']} (`{d['path']}`) | {d['rows']:,} |{counted} {len(errors)} | "
                     f"`{d['fingerprint'][:19]}…` |")
    return [*lines, *_findings(data), *_drift(data), *_cleaning(data), ""]


def _training_section(log: dict[str, Any]) -> list[str]:
    if log.get("version") != LOG_VERSION:  # NOTE: the report is written however far a run got: never a crash
        return ["## Training", "", "train-log.json was written by another version of modelci: run `modelci train` "
                "again to see its figures here.", ""]
    last = log["epochs"][-1] if log["epochs"] else None
    what = training_data(log) or \
        f"{log['rows']:,} rows, {len(log['input_columns'])} input columns ({log['input_dim']} features)"
    lines = ["## Training", "",
             f"{what}, {log['parameters']:,} parameters, on `{log['device']}` "
             f"({log['environment'].get('device_name', '')}, "
             f"{log.get('precision', 'fp32')}), {len(log['epochs'])} epochs in {log['seconds']:.1f} s, "
             f"seed {log['seed']}."]
    if last:
        lines.append(f"Final training loss {last['loss']:.4f}, validation loss {last['val_loss']:.4f}, "
                     f"{last['samples_per_s']:,.0f} samples/s.")
    kept = log.get("kept_epoch")
    if kept and kept != len(log["epochs"]):
        stopped = "Stopped early; the" if log.get("stopped_early") else "The"
        lines.append(f"{stopped} model is epoch {kept}'s, which had the lowest validation loss.")
    if log.get("resumed_from"):
        lines.append(f"Resumed after epoch {log['resumed_from']} from a saved state.")
    epochs = log["epochs"]
    finite = all(isinstance(e[k], (int, float)) and math.isfinite(e[k]) for e in epochs for k in ("loss", "val_loss"))
    if len(epochs) > 1 and finite:  # NOTE: a NaN would break the chart; the numbers above say what happened
        chart = _line_chart("Loss by epoch", "epoch", [str(e["epoch"]) for e in epochs], "loss",
                            {"training loss": [e["loss"] for e in epochs],
                             "validation loss": [e["val_loss"] for e in epochs]})
        lines += ["", "<details><summary>Training curves</summary>", *chart, "", "</details>"]
    return [*lines, ""]


def _tune_section(tune: dict[str, Any]) -> list[str]:
    trials = tune["trials"]
    states = {state: sum(t["state"] == state for t in trials) for state in ("complete", "pruned", "fail")}
    best = tune["best"]
    lines = ["## Hyperparameter search", "",
             f"Study `{tune['study']}` ({tune['sampler']} sampler, {tune['direction']} {tune['metric']}, "
             f"{tune['date']}): {len(trials)} trials, {states['complete']} complete, {states['pruned']} pruned, "
             f"{states['fail']} failed."]
    if best:
        lines.append(f"Best: trial {best['number']}, {tune['metric']} {best['value']:.4f}, "
                     + ", ".join(f"`{k}` {v}" for k, v in best["params"].items()) + ".")
    names = list(trials[0]["params"]) if trials else []
    ranked = sorted(trials, key=lambda t: (t["value"] is None, -(t["value"] or 0) if tune["direction"] == "maximize"
                                           else (t["value"] or 0)))
    lines += ["", "<details><summary>Every trial</summary>", "",
              f"| trial | state | {tune['metric']} | epochs | " + " | ".join(f"`{n}`" for n in names) + " |",
              "|---:|---|---:|---:|" + "---:|" * len(names)]
    lines += [f"| {t['number']} | {t['state']} | {_num(t['value'])} | {t['epochs'] or '–'} | "
              + " | ".join(_param(t["params"].get(n)) for n in names) + " |" for t in ranked]
    return [*lines, "", "</details>", ""]


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "–" if value is None else str(value)


def _export_section(parity: dict[str, Any], metrics: dict[str, Any] | None, unit: Unit = ROWS) -> list[str]:
    lines = ["## Export", "", _parity_line(parity, unit)]
    lines += [f"- {p}" for p in parity["problems"]]
    quantized = parity.get("quantization")
    if quantized:
        m = quantized["metric"]
        lines.append(f"\nQuantized to int8, the model deployed: {quantized['fp32_bytes'] / 1024:,.1f} KiB → "
                     f"{quantized['int8_bytes'] / 1024:,.1f} KiB; {m['name']} {m['fp32']:.4f} → {m['int8']:.4f} "
                     f"({m['change']:+.4f}), largest output change {quantized['max_abs_output_change']:.2e} on "
                     f"{quantized['rows']:,} rows.")
    if metrics:
        lines.append(f"\nModel `{metrics['model_digest']}`.")
        lines += _kfold(metrics) + _calibration(metrics, unit) + _per_class(metrics, unit) + _slices(metrics, unit)
    return [*lines, ""]


def _parity_line(parity: dict[str, Any], unit: Unit = ROWS) -> str:
    if not parity["outputs"]:
        return f"The model was written as ONNX by `{parity['exporter']}`: no trained model to check it against."
    status = "✅ passed" if parity["passed"] else "❌ failed"
    output, metric = parity["outputs"][0], parity["metric"]
    error = "unbounded" if output["max_abs_error"] is None else f"{output['max_abs_error']:.2e}"
    shown = {k: "undefined" if metric[k] is None else f"{metric[k]:.6f}" for k in ("trained", "onnx")}
    return (f"ONNX opset {parity['opset']} ({parity['exporter']} exporter). Parity on {unit.count(parity['rows'])}: "
            f"{status}; largest difference {error} (atol {parity['atol']}, rtol {parity['rtol']}); "
            f"{metric['name']} as trained {shown['trained']}, ONNX {shown['onnx']}.")


def _kfold(metrics: dict[str, Any]) -> list[str]:
    found = metrics.get("kfold")
    if not found:
        return []
    how = ", ".join(filter(None, ["stratified" if found["stratified"] else "",
                                  f"groups of `{found['group']}` kept whole" if found["group"] else ""]))
    k, repeats = found["folds"], found.get("repeats", 1)
    folds = _fold_names(k, repeats)
    repeated = f", repeated {repeats} times" if repeats > 1 else ""
    lines = ["", f"{k}-fold cross-validation on the training data{f' ({how})' if how else ''}{repeated}:", "",
             "| metric | mean | std | " + " | ".join(folds) + " |",
             "|---|---:|---:|" + "---:|" * len(folds)]
    lines += [f"| {name} | {_num(s['mean'])} | {_num(s['std'])} | " + " | ".join(map(_num, s["folds"])) + " |"
              for name, s in found["metrics"].items()]
    return lines


def _fold_names(k: int, repeats: int) -> list[str]:
    """Column heads of the folds: "fold i", or "r.i" (repeat r, fold i) for repeated K-fold."""
    if repeats == 1:
        return [f"fold {i}" for i in range(1, k + 1)]
    return [f"{r}.{i}" for r in range(1, repeats + 1) for i in range(1, k + 1)]


def _calibration(metrics: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    found = metrics.get("calibration")
    if not found:
        return []
    lines = ["", f"Calibration: expected calibration error {found['expected_calibration_error']:.4f}.", "",
             "<details><summary>Predicted against observed, by probability</summary>", "",
             f"| predicted | {unit.many} | mean predicted | observed |", "|---|---:|---:|---:|"]
    lines += [f"| {b['low']:.1f}–{b['high']:.1f} | {b['rows']:,} | {b['mean_predicted']:.3f} | {b['observed']:.3f} |"
              for b in found["bins"]]
    return [*lines, "", "</details>"]


def _per_class(metrics: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    """Each class's precision, recall and F1, and the confusion matrix, from metrics.json's matrix (at the model's
    threshold for a binary model), collapsed."""
    matrix: list[list[int]] = metrics.get("confusion_matrix") or []
    classes = [_cell(str(c)) for c in metrics.get("classes") or []]
    if not matrix or len(classes) != len(matrix) or any(len(row) != len(matrix) for row in matrix):
        return []
    hits = [matrix[i][i] for i in range(len(matrix))]
    called, rows = [sum(column) for column in zip(*matrix, strict=True)], [sum(row) for row in matrix]
    lines = ["", "<details><summary>Each class: precision, recall, and the confusion matrix</summary>", "",
             f"| class | {unit.many} | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
    for i, name in enumerate(classes):
        precision = hits[i] / called[i] if called[i] else None
        recall = hits[i] / rows[i] if rows[i] else None
        f1 = 2 * hits[i] / (called[i] + rows[i]) if called[i] + rows[i] else None
        lines.append(f"| {name} | {rows[i]:,} | {_num(precision)} | {_num(recall)} | {_num(f1)} |")
    lines += ["", "Rows: the true class; columns: the class predicted.", "",
              f"| true ↓ predicted → | {' | '.join(classes)} |", "|---|" + "---:|" * len(classes)]
    lines += [f"| {name} | " + " | ".join(f"{n:,}" for n in matrix[i]) + " |" for i, name in enumerate(classes)]
    return [*lines, "", "</details>"]


def _slices(metrics: dict[str, Any], unit: Unit = ROWS) -> list[str]:
    lines = []
    for column, groups in (metrics.get("slices") or {}).items():
        names = list(groups[0]["metrics"]) if groups else []
        lines += ["", f"<details><summary>Metrics by {column}</summary>", "",
                  f"| {column} | {unit.many} | {' | '.join(names)} |", "|---|---:|" + "---:|" * len(names)]
        lines += [f"| {_cell(str(g['value']))} | {g['rows']:,} | "
                  + " | ".join(_num(g["metrics"][n]) for n in names) + " |"
                  for g in groups]
        lines += ["", "</details>"]
    return lines


def build_report(out: Path) -> tuple[str, bool]:
    """The whole report as markdown, from whatever stage outputs exist in `out`, and whether it passed."""
    verdict, passed = overall(out)
    key = _load(out, "content-key.json")  # NOTE: modelci.cache.KEY_FILE; none for a dirty tree
    lines = [MARKER, "# modelci report", "", verdict, "", *([f"Content key: `{key['key']}`", ""] if key else [])]
    unit = unit_of(_load(out, "train-log.json"))  # NOTE: an image model's report counts images
    sections: tuple[tuple[str, Callable[[dict[str, Any]], list[str]]], ...] = (
        ("comparison.json", lambda found: _comparison_section(found, unit)),
        ("data-report.json", lambda found: _data_section(found, unit)),
        ("train-log.json", _training_section), ("tune-report.json", _tune_section))
    for name, render in sections:
        data = _load(out, name)
        if data is not None:
            lines += render(data)
    parity = _load(out, "parity.json")
    if parity is not None:
        lines += _export_section(parity, _load(out, "metrics.json"), unit)
    return "\n".join(lines).rstrip() + "\n", passed


def fit(markdown: str, limit: int = COMMENT_LIMIT) -> str:
    """The report cut at a line to `limit` characters when longer, with a note saying so; a chart is
    never cut in half and a collapsible section is closed."""
    if len(markdown) <= limit:
        return markdown
    kept: list[str] = []
    size, fence, details = 0, None, 0
    note = CUT_NOTE.format(limit=limit)
    room = limit - len(note) - 64  # NOTE: room for the closing tags and the note
    for line in markdown.splitlines():
        if size + len(line) + 1 > room:
            break
        kept.append(line)
        size += len(line) + 1
        if line.startswith("```"):
            fence = None if fence is not None else len(kept) - 1
        details += line.count("<details>") - line.count("</details>")
    if fence is not None:
        del kept[fence:]  # NOTE: half a chart draws nothing; drop it whole
    return "\n".join([*kept, "", *["</details>"] * max(details, 0), "", note]) + "\n"
