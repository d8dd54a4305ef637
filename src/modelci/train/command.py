"""`train.command`: the user's own training script, run under a contract, its ONNX model checked and used.

The contract (also in the README). The command runs in the model repository's root with:

- MODELCI_TRAIN_DATA, MODELCI_EVAL_DATA: Parquet files of the training and evaluation rows, after
  `data.clean`;
- MODELCI_TASK, MODELCI_LABEL, MODELCI_FEATURES (a JSON list of the input columns), MODELCI_CLASSES
  (a JSON list: the order of the probability columns), MODELCI_SEED;
- MODELCI_MODEL: where it must write its ONNX model, which takes one input per feature column,
  named as the column (float32, or string for text, shape [batch, 1]), and whose first output is
  the probabilities [batch, classes] or, for regression, the prediction [batch, 1].

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

from modelci import atomic, github
from modelci.child import stopped_with_modelci
from modelci.errors import ModelciError, UsageError

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
    from modelci.outputs import MODEL_FILE, TRAIN_LOG

    assert config.train.command is not None
    data = out / DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    model = (out / MODEL_FILE).resolve()
    model.unlink(missing_ok=True)
    env = {**os.environ,
           "MODELCI_TRAIN_DATA": str(_parquet(datasets.train, data / "train.parquet")),
           "MODELCI_EVAL_DATA": str(_parquet(datasets.eval, data / "eval.parquet")),
           "MODELCI_TASK": config.task, "MODELCI_LABEL": config.data.label,
           "MODELCI_FEATURES": json.dumps(columns), "MODELCI_CLASSES": json.dumps(list(target.classes)),
           "MODELCI_SEED": str(config.train.seed), "MODELCI_MODEL": str(model)}
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
    _check_and_stamp(model, columns, target, config.data.label)
    log.seconds, log.status = round(time.perf_counter() - began, 3), "completed"
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    return log


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


def _check_and_stamp(path: Path, columns: list[str], target: Target, label: str) -> None:
    """Refuse a model that does not take the feature columns or give the task's output; then add modelci's metadata."""
    import onnx

    from modelci.evaluate.onnx_model import META_CLASSES, META_LABEL, META_TASK

    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:
        path.unlink()
        raise UsageError(f"train.command wrote {path}, which is not a valid ONNX model: {exc}") from None
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
        raise UsageError("the model train.command wrote does not fit modelci's contract: " + "; ".join(problems),
                         hint="see train.command in the README")
    try:
        import onnxruntime as ort

        ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        path.unlink()
        raise UsageError(f"ONNX Runtime cannot load the model train.command wrote: {str(exc).strip()[-300:]}",
                         hint="use operators, an opset and an IR version this ONNX Runtime supports, "
                              "e.g. onnx.helper.make_model(graph, ir_version=10, opset_imports=[opset 18])") from None
    ours = {META_TASK: target.task, META_CLASSES: json.dumps(list(target.classes)), META_LABEL: label}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in ours]
    del model.metadata_props[:]
    for key, value in [*kept, *ours.items()]:
        model.metadata_props.add(key=key, value=value)
    atomic.write_bytes(path, model.SerializeToString())
