"""Benchmark gradient-boosted trees through modelci: export, parity and ONNX Runtime inference against
the library's own prediction, for a 500-tree XGBoost and LightGBM classifier.

    python benchmarks/trees/run.py [--train-rows 100000] [--eval-rows 100000] [--trees 500]

The churn example's data (`examples/churn/generate_data.py`), its binary label. Each model is fitted
by modelci's own adapter (`modelci.frameworks.xgboost`, `.lightgbm`), which writes its checkpoint,
and read back as `modelci export` does. Then, per library:

- export: the adapter's `to_onnx` and the preprocessing put in front of it (`build_onnx`), and
  loading the result into ONNX Runtime (`OnnxModel`);
- parity: `check_parity` as `modelci export` runs it on the evaluation rows (NOTE: it compares a
  seeded sample of `parity.MAX_ROWS` of them), and the largest difference on all of them, computed
  here from the two full predictions;
- the library's own `predict_proba` on all evaluation rows (preprocessed features) beside ONNX
  Runtime's prediction of the same rows from their raw columns;
- batch 1 and batch 1,024: ONNX Runtime (`OnnxModel.predict` on raw columns, preprocessing inside
  the graph, as served) against the library's `predict_proba` on already preprocessed features
  (which spares the library's side the preprocessing's cost), and the trees alone in ONNX Runtime
  (`to_onnx` without the preprocessing) on the same features. The three take turns in blocks of
  calls, five rounds over, so that the other work on a shared machine falls on all alike. The
  target: ONNX Runtime no slower than the library at batch 1,024.

Both sides use the threads their library chooses by default (every core). Writes results.json and
RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "churn"
LABEL = "churned"
LIBRARIES = ("xgboost", "lightgbm")


def estimator(library: str, trees: int) -> Any:
    """An unfitted classifier as a team's model factory would return it: the library's defaults,
    `trees` trees."""
    if library == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=trees, max_depth=6, learning_rate=0.1, tree_method="hist")
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=trees, num_leaves=31, learning_rate=0.1, verbose=-1)


def fit_for(work: Path, train: pd.DataFrame, validation: pd.DataFrame, evaluation: pd.DataFrame) -> Any:
    """A `Fit` over the three frames, as `modelci train` builds it (see tests/adapters.py)."""
    from modelci.config import load_config
    from modelci.data.tables import Datasets
    from modelci.features import FeatureSpec, Target
    from modelci.frameworks import Fit
    from modelci.outputs import TrainLog

    # NOTE: the config must name a factory file; this benchmark builds its models itself, so it is never called
    (work / "model.py").write_text("def build(input_dim, output_dim):\n    raise NotImplementedError\n")
    (work / "modelci.yaml").write_text(f"task: binary\ndata: {{train: train.parquet, eval: eval.parquet, "
                                       f"label: {LABEL}}}\nmodel: {{factory: model.py:build}}\n")
    config = load_config(work / "modelci.yaml")
    columns = [c for c in train.columns if c != LABEL]
    spec, target = FeatureSpec.fit(train, columns), Target.fit(train[LABEL], "binary")
    log = TrainLog(task="binary", framework="", device="cpu", processes=1, precision="fp32", rows=len(train),
                   validation_rows=len(validation), input_columns=columns, input_dim=spec.width, parameters=0, seed=0,
                   settings={}, environment={})
    datasets = Datasets(train=train, eval=evaluation, validation=validation)
    return Fit(config=config, datasets=datasets, spec=spec, target=target, out=work, log=log)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    value = call()
    return value, time.perf_counter() - began


def in_turns(calls: list[Callable[[int], Any]], times: int, rounds: int = 5) -> list[float]:
    """The median seconds of `times` calls of each of `calls`: in `rounds` rounds, each taking its turn
    for a block of calls in a row.

    NOTE: blocks, not call by call: ONNX Runtime's and the libraries' thread pools keep spinning a while
    after a call, and on 2 cores one pool's spinning threads slow the other's next call many times over.
    A served model runs alone; rounds spread the other work on the shared machine over all alike.
    """
    seconds: list[list[float]] = [[] for _ in calls]
    for block in np.array_split(np.arange(times), rounds):
        for call, into in zip(calls, seconds, strict=True):
            for i in block:
                began = time.perf_counter()
                call(int(i))
                into.append(time.perf_counter() - began)
    return [statistics.median(s) for s in seconds]


def trees_alone(adapter: Any, trained: Any, opset: int, threads: int = 0) -> Callable[[np.ndarray], Any]:
    """ONNX Runtime on the adapter's `to_onnx` alone, over preprocessed features: the trees without the
    preprocessing and the raw columns' conversion, to show where the time goes. `threads`: 0 for ONNX Runtime's
    default (every core)."""
    import onnxruntime as ort

    from modelci.export.onnx_export import output_name
    from modelci.frameworks import FEATURES

    model, _ = adapter.to_onnx(trained, opset, output_name(trained.target.task))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda features: session.run(None, {FEATURES: features})


def one_thread(made: Any) -> Any:
    """A copy of the fitted estimator that predicts on one thread (both libraries take `n_jobs` at prediction)."""
    copy = deepcopy(made)
    copy.set_params(n_jobs=1)
    return copy


def measure(library: str, work: Path, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
            args: argparse.Namespace) -> dict[str, Any]:
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.export.onnx_export import build_onnx
    from modelci.export.parity import check_parity
    from modelci.frameworks.lightgbm import ADAPTER as LIGHTGBM
    from modelci.frameworks.xgboost import ADAPTER as XGBOOST

    adapter = XGBOOST if library == "xgboost" else LIGHTGBM
    work.mkdir()
    train, validation, evaluation = frames
    fit = fit_for(work, train, validation, evaluation)
    made = estimator(library, args.trees)
    _, fit_seconds = timed(lambda: adapter.fit(made, fit))
    trained = adapter.load(work / adapter.checkpoint, fit.config)
    opset = fit.config.export.opset
    (data, _), export_seconds = timed(lambda: build_onnx(adapter, trained, opset))
    (work / "model.onnx").write_bytes(data)
    onnx_model, load_seconds = timed(lambda: OnnxModel(work / "model.onnx"))
    report, parity_seconds = timed(lambda: check_parity(
        lambda features: adapter.predict(trained, features), trained.spec, trained.target, onnx_model, evaluation,
        exporter="onnxmltools", opset=opset, atol=fit.config.export.atol, rtol=fit.config.export.rtol))

    features, transform_seconds = timed(lambda: trained.spec.transform(evaluation))
    library_all, library_seconds = timed(lambda: made.predict_proba(features))
    onnx_all, onnx_seconds = timed(lambda: onnx_model.predict(evaluation))
    largest = float(np.abs(onnx_all - library_all).max())
    close = np.isclose(onnx_all, library_all, atol=fit.config.export.atol, rtol=fit.config.export.rtol)
    mismatched = int((~close.all(axis=1)).sum())

    rows = np.random.default_rng(0).permutation(len(evaluation))
    singles = [evaluation.iloc[[r]] for r in rows[:args.single_calls]]  # NOTE: sliced before timing
    single_features = [features[[r]] for r in rows[:args.single_calls]]
    alone = trees_alone(adapter, trained, opset)
    one_onnx, one_library, one_alone = in_turns([lambda i: onnx_model.predict(singles[i]),
                                                    lambda i: made.predict_proba(single_features[i]),
                                                    lambda i: alone(single_features[i])], args.single_calls)
    starts = [(i * args.batch) % (len(evaluation) - args.batch) for i in range(args.batch_repeats)]
    batches = [evaluation.iloc[s:s + args.batch] for s in starts]
    batch_features = [features[s:s + args.batch] for s in starts]
    many_onnx, many_library, many_alone = in_turns([lambda i: onnx_model.predict(batches[i]),
                                                       lambda i: made.predict_proba(batch_features[i]),
                                                       lambda i: alone(batch_features[i])], args.batch_repeats)
    # NOTE: one thread each: the kernels' own speed, without the thread pools and the other work on the machine
    alone_1, library_1 = trees_alone(adapter, trained, opset, threads=1), one_thread(made)
    one_alone_1, one_library_1 = in_turns([lambda i: alone_1(batch_features[i]),
                                           lambda i: library_1.predict_proba(batch_features[i])], args.batch_repeats)
    return {
        "exporter": "onnxmltools", "opset": opset, "onnx_megabytes": round(len(data) / 1e6, 2),
        "seconds": {"fit": round(fit_seconds, 2), "export": round(export_seconds, 2),
                    "load_onnx_runtime": round(load_seconds, 3), "parity": round(parity_seconds, 3),
                    "preprocess_all": round(transform_seconds, 3),
                    "library_predict_proba_all": round(library_seconds, 3),
                    "onnx_runtime_all": round(onnx_seconds, 3)},
        "parity": {"passed": report.passed, "rows": report.rows,
                   "largest_difference": report.outputs[0].max_abs_error, "mismatched": report.outputs[0].mismatched,
                   "largest_difference_all_rows": largest, "mismatched_all_rows": mismatched,
                   "rows_all": len(evaluation)},
        "batch_1": {"calls": args.single_calls, "onnx_runtime_ms": round(one_onnx * 1e3, 4),
                    "library_ms": round(one_library * 1e3, 4), "trees_alone_ms": round(one_alone * 1e3, 4),
                    "ratio": round(one_onnx / one_library, 3)},
        f"batch_{args.batch}": {"calls": args.batch_repeats, "onnx_runtime_ms": round(many_onnx * 1e3, 3),
                                "library_ms": round(many_library * 1e3, 3),
                                "trees_alone_ms": round(many_alone * 1e3, 3),
                                "ratio": round(many_onnx / many_library, 3),
                                "one_thread": {"trees_alone_ms": round(one_alone_1 * 1e3, 3),
                                               "library_ms": round(one_library_1 * 1e3, 3),
                                               "ratio": round(one_alone_1 / one_library_1, 3)}},
    }


def report(result: dict[str, Any]) -> list[str]:
    m, batch = result["machine"], f"batch_{result['batch']}"
    lines = ["# trees benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}. The churn "
             f"example's data: {result['train_rows']:,} training rows, {result['eval_rows']:,} evaluation rows, "
             f"a {result['trees']}-tree binary classifier each, fitted by modelci's adapter; "
             f"{', '.join(f'{k} {v}' for k, v in result['versions'].items())}. Generated by `run.py`. The machine "
             "is shared with other work (1-minute load average "
             f"{result['load_average_1min']['before']:g} before the run; {result['load_average_1min']['after']:g} "
             "after it, its own threads included), so the figures are indicative.", "",
             "| | " + " | ".join(result["libraries"]) + " |", "|---|" + "---:|" * len(result["libraries"])]
    per = result["libraries"].values()

    def row(label: str, value: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(value(r) for r in per) + " |")

    row("fit, seconds", lambda r: f"{r['seconds']['fit']:.1f}")
    row("export: `to_onnx` + preprocessing (`build_onnx`), seconds", lambda r: f"{r['seconds']['export']:.2f}")
    row("load into ONNX Runtime, seconds", lambda r: f"{r['seconds']['load_onnx_runtime']:.2f}")
    row("model.onnx, MB", lambda r: f"{r['onnx_megabytes']:.1f}")
    row("`check_parity` (its sample of the rows), seconds", lambda r: f"{r['seconds']['parity']:.2f}")
    row("parity: rows compared, largest difference, passed",
        lambda r: f"{r['parity']['rows']:,}, {r['parity']['largest_difference']:.2g}, "
                  f"{'yes' if r['parity']['passed'] else '**no**'}")
    row(f"all {result['eval_rows']:,} rows: largest difference, rows outside the tolerances",
        lambda r: f"{r['parity']['largest_difference_all_rows']:.2g}, {r['parity']['mismatched_all_rows']:,}")
    row(f"library `predict_proba`, all {result['eval_rows']:,} rows (preprocessed), seconds",
        lambda r: f"{r['seconds']['library_predict_proba_all']:.2f}")
    row("the preprocessing of those rows (numpy), seconds", lambda r: f"{r['seconds']['preprocess_all']:.2f}")
    row("ONNX Runtime, the same rows from raw columns, seconds", lambda r: f"{r['seconds']['onnx_runtime_all']:.2f}")
    for key, label in (("batch_1", "batch 1"), (batch, f"batch {result['batch']:,}")):
        calls = next(iter(per))[key]["calls"]
        row(f"{label}: ONNX Runtime / library, ms (median of {calls:,})",
            lambda r, k=key: f"{r[k]['onnx_runtime_ms']:.3g} / {r[k]['library_ms']:.3g}")
        row(f"{label}: ratio ONNX Runtime ÷ library", lambda r, k=key: f"{r[k]['ratio']:.2f}")
        row(f"{label}: the trees alone in ONNX Runtime (preprocessed features), ms",
            lambda r, k=key: f"{r[k]['trees_alone_ms']:.3g}")
    row(f"batch {result['batch']:,}, one thread each: the trees alone in ONNX Runtime / library, ms (ratio)",
        lambda r: f"{r[batch]['one_thread']['trees_alone_ms']:.3g} / {r[batch]['one_thread']['library_ms']:.3g} "
                  f"({r[batch]['one_thread']['ratio']:.2f})")
    lines += ["", "ONNX Runtime's side includes the preprocessing (in the graph, from raw columns, as served); "
              "the library's side is given preprocessed features. \"The trees alone\" is the adapter's `to_onnx` "
              "without the preprocessing, given the library's features: the gap between it and the served model "
              "is the preprocessing and the raw columns' conversion. The three take turns, in blocks of calls, five "
              "rounds over. \"One thread each\" gives ONNX Runtime's session and the library's estimator one thread "
              "(the rest use every core): the tree kernels' own speed, without the thread pools. A two-class model "
              "is exported as its margin (a one-target `TreeEnsembleRegressor`) and a sigmoid, which ONNX Runtime "
              "runs through its faster one-score path (`modelci.frameworks.trees.as_margin`). "
              "`check_parity` compares at most "
              f"{result['parity_max_rows']:,} rows (a seeded sample), as `modelci export` does; the largest "
              "difference on all rows is computed here from the two full predictions.", "",
              "| target | measured | result |", "|---|---|---|"]
    for name, r in result["libraries"].items():
        lines.append(f"| {name}: ONNX Runtime no slower than the library at batch {result['batch']:,} | ratio "
                     f"{r[batch]['ratio']:.2f} | {'pass' if r[batch]['ratio'] <= 1 else '**FAIL**'} |")
    slower = [why_slower(name, result["batch"], r[batch]) for name, r in result["libraries"].items()
              if r[batch]["ratio"] > 1]
    return [*lines, "", *slower] if slower else lines


def why_slower(name: str, batch: int, measured: dict[str, Any]) -> str:
    """Where a failing library's time goes, from the figures measured: the trees, and the rest of the served model."""
    served, trees, library = measured["onnx_runtime_ms"], measured["trees_alone_ms"], measured["library_ms"]
    kernel = measured["one_thread"]["ratio"]
    where = ("ONNX Runtime's tree kernel itself is the slower part, whatever graph gives it the trees"
             if kernel > 1 else "the kernel is not the slower part: the threads or the rest of the graph are")
    return (f"{name} at batch {batch:,}, every core: the served model {served:.3g} ms and the trees alone "
            f"{trees:.3g} ms against the library's {library:.3g} ms. One thread each, which the other work on the "
            f"machine disturbs least: ONNX Runtime takes {kernel:.2f}× the library's time on the same trees and "
            f"rows; {where}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--eval-rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--single-calls", type=int, default=2000, help="batch-1 calls of each; the median counts")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--batch-repeats", type=int, default=200, help="calls at --batch of each; the median counts")
    args = parser.parse_args()
    import lightgbm
    import onnxmltools
    import onnxruntime
    import xgboost

    from modelci.export.parity import MAX_ROWS

    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(EXAMPLE))
    from generate_data import generate
    from machine import describe

    load_before = os.getloadavg()[0]  # NOTE: the machine is shared; its load explains a run's outliers
    # NOTE: the validation rows only score the fitted model for its training log (trees choose nothing on them)
    frames = generate(args.train_rows, 7), generate(max(args.eval_rows // 10, 1000), 9), generate(args.eval_rows, 8)
    with tempfile.TemporaryDirectory() as folder:
        measured = {library: measure(library, Path(folder) / library, frames, args) for library in LIBRARIES}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "train_rows": args.train_rows, "eval_rows": args.eval_rows, "trees": args.trees,
              "batch": args.batch, "parity_max_rows": MAX_ROWS,
              "versions": {"xgboost": xgboost.__version__, "lightgbm": lightgbm.__version__,
                           "onnxruntime": onnxruntime.__version__, "onnxmltools": onnxmltools.__version__},
              "libraries": measured,
              "target": {name: {"target": f"ONNX Runtime ÷ library at batch {args.batch} <= 1",
                                "value": r[f"batch_{args.batch}"]["ratio"],
                                "pass": r[f"batch_{args.batch}"]["ratio"] <= 1} for name, r in measured.items()}}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = report(result)
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
