"""A model the team writes as ONNX itself: `train.command`, the user's own training script run under a
contract, or `model.onnx`, a file they already have; either is checked and used like one modelci trained.

The contract (also in the README). The command runs in the model repository's root with:

- MODELCI_TRAIN_DATA, MODELCI_VALIDATION_DATA, MODELCI_EVAL_DATA: Parquet files of the training,
  validation and evaluation rows, after `data.clean`; choose (stop early, tune) on the validation rows
  only: the evaluation rows are there for MODELCI_PREDICTIONS, and judge the model;
- MODELCI_TASK, MODELCI_LABEL, MODELCI_FEATURES (a JSON list of the input columns), MODELCI_CLASSES
  (a JSON list: the order of the probability columns), MODELCI_SEED;
- MODELCI_MODEL: where it must write its ONNX model, which takes one input per feature column,
  named as the column (float32, or string for text, shape [batch, 1]), and whose first output is
  the probabilities [batch, classes] or, for regression, the prediction [batch, 1];
- MODELCI_PREDICTIONS: where it may write its model's own predictions for the evaluation rows
  (Parquet or CSV: one column per class, named as the class, or `prediction` for regression; one
  row per evaluation row, in their order), which export checks the ONNX model's outputs against.

`model.onnx: PATH` (with `model.predictions: PATH` in that format) is the same contract for a file.
modelci then checks that interface, records the task, classes and label in the model's metadata,
and evaluates, compares and publishes the model exactly like one it trained itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.child import stopped_with_modelci
from modelci.errors import ModelciError, UsageError
from modelci.evaluate.extensions import inference_session

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.features import Target
    from modelci.outputs import TrainLog

DATA_DIR = "command-data"


class CommandFailed(ModelciError):
    """The user's training command exited with an error; its own output says why."""

    exit_code = 2


def argv(command: str | tuple[str, ...]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def run(config: Config, datasets: Datasets, columns: list[str], target: Target, out: Path,
        log: TrainLog) -> TrainLog:
    """Run the command, then check and stamp the model it wrote."""
    from modelci.outputs import MODEL_FILE, PREDICTIONS_FILE

    assert config.train.command is not None
    data = out / DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    model, predictions = (out / MODEL_FILE).resolve(), (out / PREDICTIONS_FILE).resolve()
    model.unlink(missing_ok=True)
    predictions.unlink(missing_ok=True)  # NOTE: an earlier run's predictions are not this model's
    env = {**os.environ,
           "MODELCI_TRAIN_DATA": str(_parquet(datasets.train, data / "train.parquet")),
           "MODELCI_VALIDATION_DATA": str(_parquet(datasets.validation, data / "validation.parquet")),
           # NOTE: the evaluation rows too, for the predictions export checks parity on (MODELCI_PREDICTIONS)
           "MODELCI_EVAL_DATA": str(_parquet(datasets.eval, data / "eval.parquet")),
           "MODELCI_TASK": config.task, "MODELCI_LABEL": config.data.label,
           "MODELCI_FEATURES": json.dumps(columns), "MODELCI_CLASSES": json.dumps(list(target.classes)),
           "MODELCI_SEED": str(config.train.seed), "MODELCI_MODEL": str(model),
           "MODELCI_PREDICTIONS": str(predictions)}
    command = argv(config.train.command)
    github.log(f"    running train.command: {shlex.join(command)}")
    began = time.perf_counter()
    try:
        code = _relay(command, config.root, env)
    finally:
        shutil.rmtree(data, ignore_errors=True)  # NOTE: a copy of the user's data, needed only by the script
    if code != 0:
        raise CommandFailed(f"train.command exited with code {code}: {shlex.join(command)}",
                            hint="its own output above says why")
    if not model.is_file():
        raise UsageError(f"train.command finished but wrote no model at {model}",
                         hint="write the ONNX model to the path in MODELCI_MODEL")
    _check_and_stamp(model, columns, target, config.data.label, source=f"the model train.command wrote ({model})",
                     key="train.command")
    if predictions.is_file():
        _keep_predictions(model, predictions, predictions, target, len(datasets.eval),
                          "the predictions train.command wrote (MODELCI_PREDICTIONS)")
    return _completed(log, began, out)


def copy_model(config: Config, datasets: Datasets, columns: list[str], target: Target, out: Path,
               log: TrainLog) -> TrainLog:
    """`model.onnx: PATH`: the team's own ONNX model, checked like a train.command's, copied to `out` and stamped."""
    from modelci.outputs import MODEL_FILE, PREDICTIONS_FILE

    given, native = config.model.onnx, config.model.predictions
    assert given is not None
    began = time.perf_counter()
    model, predictions = out / MODEL_FILE, out / PREDICTIONS_FILE
    model.unlink(missing_ok=True)
    predictions.unlink(missing_ok=True)  # NOTE: an earlier run's predictions are not this model's
    for key, path in (("model.onnx", given), ("model.predictions", native)):
        if path is not None and not path.is_file():
            raise UsageError(f"{key}: {path} does not exist",
                             hint=f"set {key} to the file's path, relative to modelci.yaml")
    atomic.write_bytes(model, given.read_bytes())
    _check_and_stamp(model, columns, target, config.data.label, source=f"model.onnx ({given})", key="model.onnx")
    if native is not None:
        _keep_predictions(model, native, predictions, target, len(datasets.eval), f"model.predictions ({native})")
    return _completed(log, began, out)


def _completed(log: TrainLog, began: float, out: Path) -> TrainLog:
    from modelci.outputs import TRAIN_LOG

    log.seconds, log.status = round(time.perf_counter() - began, 3), "completed"
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    return log


def prediction_columns(target: Target) -> list[str]:
    """The columns a model's own predictions have: one per class, named as the class; `prediction` for regression."""
    return ["prediction"] if target.task == "regression" else [str(c) for c in target.classes]


def _keep_predictions(model: Path, path: Path, kept: Path, target: Target, rows: int, source: str) -> None:
    """Check the model's own predictions (Parquet or CSV) against the evaluation rows; keep them as Parquet."""
    try:
        _check_predictions(path, kept, target, rows, source)
    except UsageError:
        model.unlink()  # NOTE: export must not take the model without the predictions it was given with
        kept.unlink(missing_ok=True)
        raise


def _check_predictions(path: Path, kept: Path, target: Target, rows: int, source: str) -> None:
    import pandas as pd

    try:
        with path.open("rb") as file:
            parquet = file.read(4) == b"PAR1"
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as exc:
        raise UsageError(f"{source} cannot be read as Parquet or CSV: {str(exc).strip()[:300]}",
                         hint="write a Parquet or CSV file with one column per class (see MODELCI_PREDICTIONS "
                              "in the README)") from None
    wanted = prediction_columns(target)
    frame.columns = [str(c) for c in frame.columns]
    problems = []
    if sorted(frame.columns) != sorted(wanted):
        problems.append(f"its columns are {list(frame.columns)}; they must be {wanted}")
    if len(frame) != rows:
        problems.append(f"it has {len(frame)} rows; there are {rows} evaluation rows, and it needs one for each, "
                        "in their order")
    if not problems:
        values = frame[wanted].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            problems.append(f"{len(bad)} rows hold a value that is not a finite number: rows "
                            f"{', '.join(map(str, bad[:5]))}, counted from 0")
    if problems:
        raise UsageError(f"{source} do not fit modelci's contract: " + "; ".join(problems),
                         hint="see MODELCI_PREDICTIONS in the README")
    atomic.write_bytes(kept, _parquet_bytes(pd.DataFrame(values, columns=wanted)))


def _parquet_bytes(frame: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _relay(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run the command; its output joins modelci's progress on stderr, line by line (stdout stays for data)."""
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace")
    except OSError as exc:
        raise UsageError(f"train.command cannot start: {exc}", hint="check the program's name and path") from None
    assert process.stdout is not None
    with process, stopped_with_modelci(process):
        for line in process.stdout:
            sys.stderr.write(f"    | {line}")
    return process.returncode


def _parquet(frame: Any, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path.resolve()


def _check_and_stamp(path: Path, columns: list[str], target: Target, label: str, *, source: str, key: str) -> None:
    """Refuse a model that does not take the feature columns or give the task's output; then add modelci's metadata.

    `source` names the model in messages, `key` the setting that gave it.
    """
    import onnx

    from modelci.evaluate.onnx_model import META_CLASSES, META_LABEL, META_TASK

    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:
        path.unlink()
        raise UsageError(f"{source} is not a valid ONNX model: {exc}",
                         hint=f"{key} must give an ONNX file (onnx.save writes one)") from None
    problems = []
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if sorted(inputs) != sorted(columns):
        problems.append(f"its inputs are {inputs}; they must be the feature columns {columns}")
    width = 1 if target.task != "multiclass" else len(target.classes)
    width = 2 if target.task == "binary" else width
    dims = [d.dim_value or None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] not in (width, None):
        what = "prediction [batch, 1]" if target.task == "regression" else f"probabilities [batch, {width}]"
        problems.append(f"its first output has shape {dims}; a {target.task} model's must be the {what}")
    if problems:
        path.unlink()  # NOTE: later stages must not pick up a model that was refused
        raise UsageError(f"{source} does not fit modelci's contract: " + "; ".join(problems),
                         hint=f"see {key} in the README")
    try:
        import onnxruntime as ort

        inference_session(path.read_bytes(), ort.SessionOptions())
    except Exception as exc:
        path.unlink()
        raise UsageError(f"ONNX Runtime cannot load {source}: {str(exc).strip()[-300:]}",
                         hint="use operators, an opset and an IR version this ONNX Runtime supports, "
                              "e.g. onnx.helper.make_model(graph, ir_version=10, opset_imports=[opset 18])") from None
    ours = {META_TASK: target.task, META_CLASSES: json.dumps(list(target.classes)), META_LABEL: label}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in ours]
    del model.metadata_props[:]
    for key, value in [*kept, *ours.items()]:
        model.metadata_props.add(key=key, value=value)
    atomic.write_bytes(path, model.SerializeToString())
