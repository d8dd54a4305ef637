"""What the stages hand each other under `--out`: the files' names, and the training log's type.

`train` writes a framework adapter's checkpoint (each adapter names its own file) and the training
log; `export` reads them back and writes the ONNX model and the parity report. Both import their
names from here, so that neither imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAIN_LOG = "train-log.json"
STATE_FILE = "train-state.pt"  # resumable state after the last finished epoch; removed once training ends
MODEL_FILE = "model.onnx"
BASELINE_DIR = "baseline"  # where compare pulls the baseline artifact
PARITY_FILE = "parity.json"
# the own predictions of a model written as ONNX (model.onnx, train.command) for the evaluation rows,
# one column per class (or `prediction`), in their order; export checks parity against them
PREDICTIONS_FILE = "native-predictions.parquet"
# NOTE: what modelci wrote for a scikit-learn model before it used skops: a pickle, which could run any
# code when read; never loaded, and removed by every training run.
PICKLE_CHECKPOINT = "model.pkl"

# NOTE: 3: the per-epoch loss and metrics are the validation rows' (`val_loss`, `validation_rows`); before,
# they were the evaluation rows', which chose the kept epoch. An older log is refused, not read as if it were one.
LOG_VERSION = 3


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    val_loss: float  # the validation rows' loss
    metrics: dict[str, float | None]  # on the validation rows
    lr: float
    seconds: float
    samples_per_s: float


@dataclass
class TrainLog:
    task: str
    framework: str  # the adapter's name (pytorch, scikit-learn, ...), command, or onnx
    device: str
    processes: int  # torchrun processes (one per GPU); 1 without torchrun
    precision: str
    rows: int
    validation_rows: int  # the rows that chose: early stopping, the kept epoch, the tuning objective
    input_columns: list[str]
    input_dim: int
    parameters: int
    seed: int
    settings: dict[str, Any]
    environment: dict[str, str]
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch with the lowest validation loss
    kept_epoch: int | None = None  # the epoch the saved model is: the best with train.patience, else the last
    stopped_early: bool = False
    resumed_from: int | None = None  # the last epoch the saved state held, when resumed
    status: str = "running"  # running | completed | out_of_memory | diverged
    peak_memory_bytes: int | None = None
    seconds: float = 0.0
    left_out: dict[str, str] = field(default_factory=dict)  # columns not taken as features, and why
    as_numbers: list[str] = field(default_factory=list)  # text columns taken as numbers
    # per categorical feature: kept (categories), folded and folded_rows (rare, into "other"), unseen_eval_rows
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: list[Any] = field(default_factory=list)  # classification: the classes, in the order of the outputs
    # an image model: its image column, the size, channels and normalization it takes (data.image)
    image: dict[str, Any] | None = None
    # a text model: its text column, the words read of each text, the vocabulary's size, the validation texts'
    # share of words outside it
    text: dict[str, Any] | None = None
    # model.weights: the file the network started from, its SHA-256, the tensors taken and those started fresh
    weights: dict[str, Any] | None = None
    version: int = LOG_VERSION


def read_train_log(out: Path) -> TrainLog | None:
    """OUT/train-log.json through the type that wrote it; None when there is none (or it cannot be read as
    JSON: a run cut off mid-write leaves no log, atomic writes see to that). Exit 2 when another version of
    modelci wrote it."""
    from modelci.errors import UsageError

    try:
        found = json.loads((out / TRAIN_LOG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("version") != LOG_VERSION:
        raise UsageError(f"{out / TRAIN_LOG} was written by another version of modelci (log version "
                         f"{found.get('version') if isinstance(found, dict) else '?'}, this one reads {LOG_VERSION})",
                         hint="run `modelci train` again")
    try:
        epochs = [EpochRecord(**epoch) for epoch in found.pop("epochs", [])]
        return TrainLog(**found, epochs=epochs)
    except TypeError as exc:
        raise UsageError(f"{out / TRAIN_LOG} is not a training log modelci wrote: {exc}",
                         hint="run `modelci train` again") from None


def logged_framework(out: Path) -> str | None:
    """The framework OUT/train-log.json names, or None when there is no log."""
    log = read_train_log(out)
    return log.framework if log is not None and log.framework else None
