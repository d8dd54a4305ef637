"""Benchmark `modelci compare` end to end against a per-resample loop over the same metrics.

    python benchmarks/compare/run.py [--rows 100000] [--resamples 1000]

Two churn models (the bundled example, trained with two seeds): the baseline published to an
on-disk registry, the candidate exported next to it. `modelci` is the whole `compare()`: resolve
and pull the baseline, run both ONNX models in ONNX Runtime on the evaluation rows, the paired,
stratified bootstrap of five metrics (roc_auc, pr_auc, accuracy, f1, log_loss), the gate and
comparison.json. `loop` is the bootstrap alone as a plain implementation does it, on the same
predictions: draw each resample's rows and call each metric on both models. The two give the same
intervals to sampling error. Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "churn"
METRICS = ["roc_auc", "pr_auc", "accuracy", "f1", "log_loss"]
TARGET_SECONDS = 5.0


def two_models(work: Path, rows: int, resamples: int) -> Path:
    """The example with `rows` evaluation rows: the baseline published (seed 0), the candidate
    (seed 1) trained and exported into .modelci/out. Returns the config's path."""
    for name in ("model.py", "modelci.yaml", "schema.yaml", "generate_data.py"):
        shutil.copy(EXAMPLE / name, work / name)
    config = work / "modelci.yaml"
    text = config.read_text().replace("metrics: [roc_auc, accuracy, f1, log_loss]", f"metrics: [{', '.join(METRICS)}]")
    config.write_text(text + f"compare: {{bootstrap: {resamples}}}\n")
    sys.path.insert(0, str(work))
    from generate_data import generate

    (work / "data").mkdir()
    generate(20_000, 7).to_parquet(work / "data" / "train.parquet", index=False)
    generate(rows, 8).to_parquet(work / "data" / "eval.parquet", index=False)
    env = {**os.environ, "MODELCI_TRAIN_EPOCHS": "3"}
    quiet = {"cwd": work, "env": env, "check": True, "stdout": subprocess.DEVNULL}
    subprocess.run(["modelci", "run", "--publish", "--revision", "0" * 40], **quiet)  # type: ignore[call-overload]
    subprocess.run(["modelci", "train", "--seed", "1"], **quiet)  # type: ignore[call-overload]
    subprocess.run(["modelci", "export"], **quiet)  # type: ignore[call-overload]
    return config


def loop(y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, resamples: int) -> dict[str, list[float]]:
    from modelci.evaluate.metrics import FUNCTIONS

    rng = np.random.default_rng(0)
    strata = [np.flatnonzero(y == k) for k in np.unique(y)]
    differences: dict[str, list[float]] = {name: [] for name in METRICS}
    for _ in range(resamples):
        rows = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])
        for name in METRICS:
            metric = FUNCTIONS[name]
            differences[name].append(metric(y[rows], candidate[rows]) - metric(y[rows], baseline[rows]))
    return {name: [float(v) for v in np.quantile(d, [0.025, 0.975])] for name, d in differences.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="evaluation rows")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of compare(); the median is the result")
    args = parser.parse_args()
    from modelci.compare.cli import baseline_reference
    from modelci.compare.comparison import BASELINE_DIR, compare
    from modelci.config import load_config
    from modelci.data.tables import load_datasets
    from modelci.evaluate.evaluator import labels_of
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.registry.artifact import WEIGHT_FILE

    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = load_config(two_models(work, args.rows, args.resamples))
        frame = load_datasets(config).eval
        out = work / ".modelci" / "out"
        timings = []
        for _ in range(args.repeats):
            shutil.rmtree(out / BASELINE_DIR, ignore_errors=True)
            began = time.perf_counter()
            found = compare(config, frame, out / "model.onnx", baseline_reference(config, None), out)
            timings.append(time.perf_counter() - began)
        modelci_seconds = float(np.median(timings))
        candidate, baseline = OnnxModel(out / "model.onnx"), OnnxModel(out / BASELINE_DIR / WEIGHT_FILE)
        y, scores, baseline_scores = labels_of(candidate, frame), candidate.predict(frame), baseline.predict(frame)
    began = time.perf_counter()
    looped = loop(y, scores, baseline_scores, args.resamples)
    loop_seconds = time.perf_counter() - began
    intervals: dict[str, Any] = {m.name: {"modelci": [m.ci_low, m.ci_high], "loop": looped[m.name]}
                                 for m in found.metrics}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "rows": len(y), "resamples": args.resamples, "metrics": METRICS,
              "seconds": {"modelci": round(modelci_seconds, 2), "modelci_runs": [round(t, 2) for t in timings],
                          "loop": round(loop_seconds, 2)},
              "intervals": intervals,
              "target": {"target": f"under {TARGET_SECONDS:g} s", "value": f"{modelci_seconds:.1f} s",
                         "pass": modelci_seconds < TARGET_SECONDS}}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m = result["machine"]
    lines = ["# compare benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}. "
             f"{len(y):,} evaluation rows of the churn example, two MLPs (seeds 0 and 1), {args.resamples:,} "
             f"stratified resamples, metrics {', '.join(METRICS)}. Generated by `run.py`.", "",
             "| | seconds |", "|---|---:|",
             f"| modelci `compare()`: pull the baseline, both models in ONNX Runtime, bootstrap, latency, gate "
             f"(median of {len(timings)} runs: {', '.join(f'{t:.2f}' for t in timings)}) | {modelci_seconds:.2f} |",
             f"| the bootstrap alone as a loop over resamples, each metric called per model | {loop_seconds:.1f} |", "",
             "| metric | modelci 95% interval | loop 95% interval |", "|---|---|---|"]
    lines += [f"| {name} | [{v['modelci'][0]:+.4f}, {v['modelci'][1]:+.4f}] | [{v['loop'][0]:+.4f}, "
              f"{v['loop'][1]:+.4f}] |" for name, v in intervals.items()]
    lines += ["", "| target | measured | result |", "|---|---|---|",
              f"| the whole comparison {result['target']['target']} | {result['target']['value']} | "
              f"{'pass' if result['target']['pass'] else '**FAIL**'} |"]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
