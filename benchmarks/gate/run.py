"""The gate's own error rates: false alarms and power over many simulated pull requests, and their cost.

    python benchmarks/gate/run.py [--prs 200] [--small-prs 1000] [--seeds 7] [--worse-seeds 4]

Two data sets: the churn example's generator (examples/churn/generate_data.py) and scikit-learn's
bundled breast cancer data. On each, two recipes are trained through modelci's own trainer, with
seeds 0, 1, ...: the baseline's recipe (the example's network and settings) and a truly worse one
(the same with some features left out, `data.features`). Every model is exported to ONNX by
modelci and predicts a pool of held-out rows once. A simulated pull request then draws its models'
seeds and a fresh evaluation sample from the pool, and the decision is modelci's: `gate.judge` with
the example's gate rules, and the rules' `passed`. Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "churn"
LABELS = {"churn": "churned", "breast_cancer": "benign"}
# NOTE: the churn example's own gate rules (examples/churn/modelci.yaml); only the gated metrics are computed,
# since the other metrics' rows never decide the gate
GATE = """gate:
  - {metric: roc_auc, min: 0.75, max_drop: 0.01}
  - {metric: log_loss, max_drop: 0.02}
"""
# the worse recipes: the features each leaves out, chosen (once, by hand) so that the mean ROC AUC over seeds drops
# by about 0.02, twice the rule's max_drop; the drop actually reached is measured and reported
# (breast cancer: six features only: five "mean" ones, none of size or concavity, and radius_error)
BREAST_CANCER_KEPT = ("mean_texture", "mean_smoothness", "mean_compactness", "mean_symmetry", "mean_fractal_dimension",
                      "radius_error")
LEFT_OUT = {"churn": ("payment_method", "support_tickets", "senior"), "breast_cancer": None}
FALSE_ALARM_TARGET, POWER_TARGET = 0.05, 0.80


@dataclass(frozen=True)
class Setting:
    name: str
    seeds: int  # compare.seeds, for the candidate and for the baseline when it was published
    rows: int  # evaluation rows a pull request is judged on
    recorded: bool = True  # the baseline's metrics.json holds its seeds (it was published with the same seeds)


@dataclass
class Pool:
    """One recipe's models: each seed's probabilities on every pool row, and what training one took."""

    probabilities: list[np.ndarray]
    seconds: list[float]  # train + export + predict, per seed


@dataclass
class Data:
    name: str
    config: Any  # the modelci Config of the baseline's recipe
    y: np.ndarray  # the pool's labels
    baseline: Pool
    worse: Pool
    eval_rows: int  # the evaluation rows of the default setting
    left_out: list[str]  # the features the worse recipe leaves out


def quiet() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def churn_folder(work: Path, pool_rows: int) -> pd.DataFrame:
    """The example's files and data (20,000 training rows, seed 7; 5,000 evaluation rows, seed 8) in `work`;
    returns the pool: `pool_rows` more rows of the same process (seed 1000), never trained on."""
    for name in ("model.py", "schema.yaml"):
        shutil.copy(EXAMPLE / name, work / name)
    text = (EXAMPLE / "modelci.yaml").read_text()
    text = text.replace("metrics: [roc_auc, accuracy, f1, log_loss]", "metrics: [roc_auc, log_loss]")
    (work / "modelci.yaml").write_text(text.split("gate:")[0] + GATE)
    sys.path.insert(0, str(EXAMPLE))
    from generate_data import generate

    (work / "data").mkdir()
    generate(20_000, 7).to_parquet(work / "data" / "train.parquet", index=False)
    generate(5_000, 8).to_parquet(work / "data" / "eval.parquet", index=False)
    return generate(pool_rows, 1000)


def breast_cancer_folder(work: Path) -> pd.DataFrame:
    """scikit-learn's breast cancer data (569 rows, bundled): 60% to train on, stratified with a fixed seed; the
    other 40% are the pool (and the evaluation file that training and export read)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns[:-1]] + [LABELS["breast_cancer"]]
    train, pool = train_test_split(frame, test_size=0.4, random_state=0, stratify=frame[LABELS["breast_cancer"]])
    (work / "data").mkdir()
    train.to_parquet(work / "data" / "train.parquet", index=False)
    pool.to_parquet(work / "data" / "eval.parquet", index=False)
    shutil.copy(EXAMPLE / "model.py", work / "model.py")
    # NOTE: the example's network; smaller batches than the churn example's and early stopping on the validation
    # rows (modelci carves 10% of the training rows), for 341 training rows
    (work / "modelci.yaml").write_text(f"""task: binary
data: {{train: data/train.parquet, eval: data/eval.parquet, label: {LABELS["breast_cancer"]}}}
model: {{factory: model.py:build, params: {{hidden: 32, layers: 2, dropout: 0.1}}}}
train: {{epochs: 100, batch_size: 32, lr: 0.002, patience: 10, seed: 0, device: auto}}
evaluate: {{metrics: [roc_auc, log_loss]}}
""" + GATE)
    return pool.reset_index(drop=True)


def train_pool(config: Any, datasets: Any, pool: pd.DataFrame, seeds: int, work: Path) -> Pool:
    """`seeds` models of one recipe, trained and exported by modelci, each predicting every pool row."""
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.onnx_export import export_model
    from modelci.outputs import MODEL_FILE
    from modelci.train.trainer import train

    found = Pool([], [])
    for seed in range(seeds):
        out = work / f"seed-{seed}"
        out.mkdir(parents=True)
        trained = config.with_train(seed=seed)
        began = time.perf_counter()
        with quiet():
            train(trained, datasets, out)
            parity = export_model(trained, datasets.eval, out)
        assert parity.passed, parity.problems
        found.probabilities.append(OnnxModel(out / MODEL_FILE).predict(pool))
        found.seconds.append(time.perf_counter() - began)
    return found


def build(name: str, work: Path, args: argparse.Namespace) -> Data:
    from modelci.config import load_config
    from modelci.data.tables import load_datasets

    folder = work / name
    folder.mkdir()
    pool = churn_folder(folder, args.pool) if name == "churn" else breast_cancer_folder(folder)
    config = load_config(folder / "modelci.yaml")
    datasets = load_datasets(config)
    label = LABELS[name]
    features = tuple(c for c in datasets.train.columns if c != label)
    left_out = LEFT_OUT[name] or tuple(c for c in features if c not in BREAST_CANCER_KEPT)
    worse_config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, features=tuple(c for c in features if c not in left_out)))
    y = pool[label].to_numpy().astype(np.float64)
    print(f"{name}: training {args.seeds} + {args.worse_seeds} models", file=sys.stderr, flush=True)
    baseline = train_pool(config, datasets, pool, args.seeds, folder / "baseline")
    worse = train_pool(worse_config, load_datasets(worse_config), pool, args.worse_seeds, folder / "worse")
    return Data(name, config, y, baseline, worse, args.rows if name == "churn" else len(pool), list(left_out))


def pool_metrics(data: Data) -> dict[str, Any]:
    """Each recipe's metrics on the whole pool: the truth the simulated pull requests sample."""
    from modelci.evaluate.metrics import FUNCTIONS

    found: dict[str, Any] = {}
    for recipe, models in (("baseline", data.baseline), ("worse", data.worse)):
        found[recipe] = {}
        for metric in ("roc_auc", "log_loss"):
            values = [float(FUNCTIONS[metric](data.y, p)) for p in models.probabilities]
            found[recipe][metric] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
                                     "values": [round(v, 5) for v in values]}
    found["drop"] = {metric: found["baseline"][metric]["mean"] - found["worse"][metric]["mean"]
                     for metric in ("roc_auc", "log_loss")}
    return found


def one_pr(data: Data, setting: Setting, config: Any, worse: bool, rng: np.random.Generator) -> tuple[bool, list[str]]:
    """One simulated pull request: the baseline's seeds and the candidate's (from the same recipe, or from the
    worse one), a fresh evaluation sample of the pool, and the gate's decision, made by `gate.judge`."""
    from modelci.compare.gate import judge
    from modelci.evaluate.evaluator import metric_names
    from modelci.evaluate.metrics import FUNCTIONS
    from modelci.evaluate.seeds import summary

    k = setting.seeds
    chosen = rng.choice(len(data.baseline.probabilities), k if worse else 2 * k, replace=False)
    baseline_seeds = [int(s) for s in chosen[:k]]
    candidate_models = (data.worse.probabilities if worse else data.baseline.probabilities)
    candidate_seeds = ([int(s) for s in rng.choice(len(data.worse.probabilities), k, replace=False)] if worse
                       else [int(s) for s in chosen[k:]])
    # NOTE: rows drawn with replacement: an independent sample of the pool's distribution, of any size
    rows = rng.integers(0, len(data.y), setting.rows)
    y = data.y[rows]
    baseline = [data.baseline.probabilities[s][rows] for s in baseline_seeds]
    candidate = [candidate_models[s][rows] for s in candidate_seeds]
    recorded = None
    if k > 1 and setting.recorded:
        # the baseline's metrics.json, as its own run with compare.seeds wrote it (on the same evaluation file)
        recorded = summary(baseline_seeds, [{name: float(FUNCTIONS[name](y, p)) for name in metric_names(config)}
                                            for p in baseline])
    judged = judge(config, y, candidate[0], baseline[0], "binary", None, candidate[1:] or None, recorded)
    failed = [m.name for m in judged.metrics if not m.passed]
    return bool(failed), failed


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The Wilson score interval (95%) of a proportion."""
    if n == 0:
        return 0.0, 1.0
    z = 1.959963984540054
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson(hits, n)
    return {"failed": hits, "prs": n, "rate": hits / n if n else None, "ci95": [round(low, 4), round(high, 4)]}


def simulate(data: Data, setting: Setting, prs: int, bootstrap: int, seed: int) -> dict[str, Any]:
    config = dataclasses.replace(data.config, compare=dataclasses.replace(
        data.config.compare, seeds=setting.seeds, bootstrap=bootstrap))
    rng = np.random.default_rng(seed)
    found: dict[str, Any] = {}
    for kind, worse in (("false_alarm", False), ("power", True)):
        fails, by_rule, began = 0, {"roc_auc": 0, "log_loss": 0}, time.perf_counter()
        for _ in range(prs):
            failed, rules = one_pr(data, setting, config, worse, rng)
            fails += failed
            for name in rules:
                by_rule[name] += 1
        found[kind] = rate(fails, prs) | {"by_rule": by_rule,
                                          "judge_seconds": round((time.perf_counter() - began) / prs, 4)}
    return found


def settings_for(data: Data) -> list[Setting]:
    n = data.eval_rows
    found = [Setting("default (compare.seeds 1)", 1, n),
             Setting("compare.seeds 3, baseline published with 3", 3, n),
             Setting("compare.seeds 3, baseline published without seeds", 3, n, recorded=False)]
    if data.name == "churn":  # NOTE: the breast cancer data has no more rows to evaluate on
        found.append(Setting(f"compare.seeds 1, {4 * n:,} evaluation rows", 1, 4 * n))
    return found


def added_seconds(entry: dict[str, Any], setting: dict[str, Any]) -> float:
    """What a setting adds to a run over the default: a training (with export and scoring) for each extra seed,
    and the comparison's extra time (measured here, per simulated pull request)."""
    def judging(found: dict[str, Any]) -> float:
        return float((found["false_alarm"]["judge_seconds"] + found["power"]["judge_seconds"]) / 2)

    return (setting["seeds"] - 1) * entry["train_seconds"] + judging(setting) - judging(entry["settings"][0])


def shown(found: dict[str, Any]) -> str:
    low, high = found["ci95"]
    return f"{found['rate'] * 100:.1f}% [{low * 100:.1f}, {high * 100:.1f}] of {found['prs']}"


def table(result: dict[str, Any]) -> list[str]:
    """The table the top-level README publishes."""
    lines = ["| data | setting | evaluation rows | false alarms (target ≤ 5%) | power at a drop of 2 × max_drop "
             "(target ≥ 80%) | seconds added to a run |", "|---|---|---:|---|---|---:|"]
    for name, entry in result["datasets"].items():
        for setting in entry["settings"]:
            lines.append(f"| {name.replace('_', ' ')} | {setting['name']} | {setting['rows']:,} | "
                         f"{shown(setting['false_alarm'])} | {shown(setting['power'])} | "
                         f"{added_seconds(entry, setting):+.1f} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["arguments"]
    lines = ["# gate benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; "
             f"{result['seconds']:.0f} s in all. Generated by `run.py` ({a['seeds']} models of the baseline's recipe "
             f"and {a['worse_seeds']} of the worse one per data set, compare.bootstrap {a['bootstrap']}, "
             "confidence 0.95, the churn example's gate: roc_auc max_drop 0.01 and log_loss max_drop 0.02).", "",
             "Rates are the share of simulated pull requests that the gate failed, with their 95% Wilson interval "
             "and the number of pull requests. False alarms: the candidate is the baseline's recipe with other "
             "seeds. Power: the candidate is the worse recipe. Seconds added: over the default setting, "
             "the extra seeds' training, export and scoring plus the comparison's extra time.", ""]
    lines += table(result)
    lines += ["", "| data | recipe | features | ROC AUC on the pool (mean ± sd over seeds) | log loss |",
              "|---|---|---|---|---|"]
    for name, entry in result["datasets"].items():
        truth = entry["truth"]
        for recipe in ("baseline", "worse"):
            features = "all" if recipe == "baseline" else "without " + ", ".join(entry["left_out"]) \
                if len(entry["left_out"]) < 6 else "only " + ", ".join(BREAST_CANCER_KEPT)
            found = truth[recipe]
            lines.append(f"| {name.replace('_', ' ')} | {recipe} | {features} | {found['roc_auc']['mean']:.4f} ± "
                         f"{found['roc_auc']['std']:.4f} | {found['log_loss']['mean']:.4f} ± "
                         f"{found['log_loss']['std']:.4f} |")
        lines.append(f"| {name.replace('_', ' ')} | drop | | {truth['drop']['roc_auc']:+.4f} (max_drop 0.01) | "
                     f"{-truth['drop']['log_loss']:+.4f} (max_drop 0.02) |")
    lines += ["", "Which rule failed (pull requests; both may fail in one):", "",
              "| data | setting | false alarms: roc_auc, log_loss | power: roc_auc, log_loss | "
              "comparison seconds per pull request |", "|---|---|---|---|---:|"]
    for name, entry in result["datasets"].items():
        for s in entry["settings"]:
            lines.append(f"| {name.replace('_', ' ')} | {s['name']} | {s['false_alarm']['by_rule']['roc_auc']}, "
                         f"{s['false_alarm']['by_rule']['log_loss']} | {s['power']['by_rule']['roc_auc']}, "
                         f"{s['power']['by_rule']['log_loss']} | {s['false_alarm']['judge_seconds']:.2f} |")
        lines.append(f"| {name.replace('_', ' ')} | one model trained, exported and scored (median) | | | "
                     f"{entry['train_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prs", type=int, default=200, help="simulated pull requests per setting and kind, churn")
    parser.add_argument("--small-prs", type=int, default=1000, help="the same on the breast cancer data (cheaper)")
    parser.add_argument("--seeds", type=int, default=7, help="models trained of the baseline's recipe (6 at least)")
    parser.add_argument("--worse-seeds", type=int, default=4, help="models trained of the worse recipe (3 at least)")
    parser.add_argument("--pool", type=int, default=100_000, help="churn rows the pull requests sample")
    parser.add_argument("--rows", type=int, default=5_000, help="churn evaluation rows (the example's)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="compare.bootstrap")
    parser.add_argument("--datasets", nargs="+", default=["churn", "breast_cancer"], choices=list(LABELS))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    began = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.datasets:
            data = build(name, Path(folder), args)
            entry: dict[str, Any] = {"truth": pool_metrics(data), "pool_rows": len(data.y),
                                     "left_out": data.left_out,
                                     "settings": []}
            prs = args.prs if name == "churn" else args.small_prs
            for index, setting in enumerate(settings_for(data)):
                print(f"{name}: {setting.name}, {prs} pull requests of each kind", file=sys.stderr, flush=True)
                entry["settings"].append(dataclasses.asdict(setting) | simulate(data, setting, prs, args.bootstrap,
                                                                                index))
            entry["train_seconds"] = float(np.median(data.baseline.seconds + data.worse.seconds))
            results[name] = entry
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "arguments": vars(args), "seconds": round(time.perf_counter() - began, 1),
              "datasets": results}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = markdown(result)
    (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
