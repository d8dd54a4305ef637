"""The model card: what this model is, what it was trained on and how well it does, from the run's own files.

Written beside report.md and kept in the artifact, so whoever pulls the model (a reviewer, an
on-call engineer, an auditor) reads the facts of the run that made it: no field is typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelci.evaluate.metrics import LOWER_IS_BETTER
from modelci.report.cells import num as _num
from modelci.report.markdown import _load
from modelci.report.units import Unit, model_input, unit_of

CARD_FILE = "model-card.md"
SHOWN_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "patience", "grad_clip", "class_weights")


def build_card(out: Path, name: str) -> str | None:
    """The card as markdown, or None when there is no evaluated model in `out` yet."""
    metrics, log = _load(out, "metrics.json"), _load(out, "train-log.json")
    if metrics is None or log is None:
        return None
    data, parity, comparison = (_load(out, n) for n in ("data-report.json", "parity.json", "comparison.json"))
    unit = unit_of(log)
    inputs = model_input(log) or \
        f"{len(log['input_columns'])} raw columns: " + ", ".join(f"`{c}`" for c in log["input_columns"])
    rows = [("Task", _task(metrics, log, unit)), ("Model", _model(log)), ("Artifact", _artifact(metrics, parity)),
            ("Inputs", inputs), *_data_rows(data, unit), ("Training", _training(log)),
            ("Environment", _environment(log["environment"]))]
    if comparison is not None:
        rows.append(("Baseline", _baseline(comparison)))
    lines = [f"# Model card: {name}", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             f"## Metrics on the evaluation set ({unit.count(metrics['rows'])}, ONNX Runtime)", "",
             "| metric | value |", "|---|---:|", *(f"| {k} | {_num(v)} |" for k, v in metrics["metrics"].items())]
    if metrics.get("kfold"):
        kfold = metrics["kfold"]
        lines += ["", f"{kfold['folds']}-fold cross-validation on the training data: "
                  + ", ".join(f"{k} {_num(s['mean'])} ± {_num(s['std'])}" for k, s in kfold["metrics"].items()) + "."]
    cautions = _cautions(metrics, data)
    if cautions:
        lines += ["", "## What the run found to watch", "", *(f"- {c}" for c in cautions)]
    return "\n".join(lines) + "\n"


def _task(metrics: dict[str, Any], log: dict[str, Any], unit: Unit) -> str:
    classes = ", ".join(f"`{c}`" for c in metrics["classes"])
    kind = {"binary": "binary classification", "multiclass": "multiclass classification"}.get(metrics["task"],
                                                                                             "regression")
    return f"{kind}, {log['rows']:,} training {unit.many}" + (f"; classes {classes}" if classes else "")


def _model(log: dict[str, Any]) -> str:
    settings = log["settings"]
    if log["framework"] == "command":
        return f"written by the user's `train.command`: `{' '.join(settings['command'])}`"
    if log["framework"] == "onnx":
        return f"the team's own ONNX model `{Path(settings['onnx']).name}`"
    params = ", ".join(f"{k}={v}" for k, v in (settings.get("params") or {}).items())
    if log["framework"] == "scikit-learn":
        return f"scikit-learn `{settings['estimator']}`"
    return f"PyTorch network ({log['parameters']:,} parameters){f', params {params}' if params else ''}"


def _artifact(metrics: dict[str, Any], parity: dict[str, Any] | None) -> str:
    text = f"`model.onnx` `{metrics['model_digest']}`"
    if parity is not None and parity["outputs"]:
        text += f", opset {parity['opset']} ({parity['exporter']}), parity {'passed' if parity['passed'] else 'FAILED'}"
    if parity is not None and parity.get("quantization"):
        text += ", int8 quantized"
    return text


def _data_rows(data: dict[str, Any] | None, unit: Unit) -> list[tuple[str, str]]:
    if data is None:
        return []
    return [(f"{d['name'].capitalize()} data",
             f"`{d['path']}`: {unit.count(d['rows'])}, fingerprint `{d['fingerprint']}`")
            for d in data["datasets"]]


def _training(log: dict[str, Any]) -> str:
    settings = log["settings"]
    if log["framework"] != "pytorch":
        return f"{log['seconds']:.1f} s, seed {log['seed']}"
    shown = ", ".join(f"{k} {settings[k]}" for k in SHOWN_SETTINGS if settings.get(k) not in (None, 0, "none"))
    return (f"{len(log['epochs'])} epochs in {log['seconds']:.1f} s on `{log['device']}` × {log['processes']}, "
            f"{log['precision']}, seed {log['seed']}; {shown}"
            + (f"; tuned parameters from `{Path(settings['tuned_from']).name}`" if settings.get("tuned_from") else ""))


def _environment(env: dict[str, str]) -> str:
    keys = ("device_name", "python", "torch", "cuda", "onnxruntime", "scikit-learn", "modelci")
    return ", ".join(f"{k} {env[k]}" for k in keys if env.get(k) not in (None, "none", "not installed"))


def _baseline(comparison: dict[str, Any]) -> str:
    if comparison["baseline_status"] != "compared":
        return str(comparison["baseline_status"])
    verdicts = ", ".join(f"{m['name']} {m['verdict']}" for m in comparison["metrics"])
    return (f"compared with `{comparison['baseline_digest']}`: gate {'passed' if comparison['passed'] else 'failed'}"
            + (f" ({verdicts})" if verdicts else ""))


def _cautions(metrics: dict[str, Any], data: dict[str, Any] | None) -> list[str]:
    """Facts a user of the model should know: the weakest slice of each column, drift, data warnings."""
    found = []
    headline = next(iter(metrics["metrics"]), None)
    for column, groups in (metrics.get("slices") or {}).items():
        scored = [g for g in groups if g["metrics"].get(headline) is not None]
        if headline and len(scored) > 1:
            pick = max if headline in LOWER_IS_BETTER else min
            worst = pick(scored, key=lambda g: g["metrics"][headline])
            found.append(f"weakest `{column}` slice: `{worst['value']}` ({worst['rows']:,} rows), {headline} "
                         f"{_num(worst['metrics'][headline])} against {_num(metrics['metrics'][headline])} overall")
    for dataset in (data or {}).get("datasets", []):
        drifted = [d["column"] for d in dataset.get("drift", []) if d["verdict"] == "drifted"]
        if drifted:
            columns = ", ".join(f"`{c}`" for c in drifted)
            found.append(f"{dataset['name']} data drifted from the baseline's in {columns}")
        warnings = [v for v in dataset["violations"] if v["severity"] == "warning"]
        found += [f"{dataset['name']} data: {v['column'] or 'rows'}: {v['message']} ({v['rows']:,} rows)"
                  for v in warnings]
    return found
