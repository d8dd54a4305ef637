"""The Keras 3 adapter: a `keras.Model` (a `Sequential` network, say) on Keras's PyTorch backend, trained by
Keras's own `fit`, saved in Keras's `.keras` format inside modelci's checkpoint, exported through torch.

Factory contract, as for PyTorch: `build(input_dim, output_dim, **params) -> keras.Model` mapping a float
batch (batch, input_dim) to (batch, output_dim) raw scores: one logit for a binary task, one per class for
multiclass, one value for regression (the target standardized). modelci adds the sigmoid or softmax, or
undoes the standardization, in front of the scores itself (`torch_model.Scorer`), in training's
evaluation, in `predict` and in the exported graph alike. A factory that compiles the model keeps its
optimizer and loss (its loss must then take logits, e.g. `from_logits=True`); otherwise modelci compiles
it with Adam (`train.lr`, `train.weight_decay`) and the task's loss on the logits.

NOTE: Keras chooses its backend once, when it is first imported (the factory's file imports it), from
KERAS_BACKEND. Importing this module sets KERAS_BACKEND=torch when it is unset (modelci lists its adapters
before it imports the factory's file), and a model on any other backend is refused (exit 2): on the
PyTorch backend a Keras model is a `torch.nn.Module`, which is what lets modelci export it and no
TensorFlow is needed. This module imports no keras itself.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic, github
from modelci.errors import ModelFactoryError, UsageError
from modelci.frameworks import trees

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.features import Target
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

BACKEND_VARIABLE = "KERAS_BACKEND"
BACKEND = "torch"
os.environ.setdefault(BACKEND_VARIABLE, BACKEND)  # NOTE: see the module's NOTE: before the factory imports keras


class Keras:
    name = "keras"
    extra: str | None = "keras"
    checkpoint = "model.keras.json"

    def recognises(self, made: object) -> bool:
        # NOTE: a Keras model's class comes from an imported keras; asking must not import it.
        keras = sys.modules.get("keras")
        return keras is not None and isinstance(made, keras.Model)

    def seed(self, seed: int, deterministic: bool) -> None:
        if "keras" in sys.modules:  # NOTE: only a keras the factory's file imported
            import keras

            keras.utils.set_random_seed(seed)  # Python's, numpy's, the backend's and Keras's own generators

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        from modelci.frameworks.sklearn import one_process

        _torch_backend()
        one_process(made)
        if fit.resume:
            raise UsageError("a Keras model trains from the start: --resume continues PyTorch networks only",
                             hint="run modelci train without --resume")
        return _fit(made, fit)

    def load(self, path: Path, config: Config) -> Trained:
        from modelci.frameworks.factory import load_factory

        _torch_backend()
        load_factory(config)  # NOTE: custom layers the factory's file registers with Keras must be known first
        text, spec, target, label = trees.read(path, self.name)
        return trees.trained(_scorer(_read_keras(path, text), target), spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        from modelci.frameworks.torch_model import predict

        found: np.ndarray = predict(trained.model, features, trained.target.task)
        return found

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        from modelci.frameworks.torch_model import to_onnx

        # NOTE: on the PyTorch backend the Keras model is a torch module: torch's exporter takes it inside
        # modelci's Scorer, so the input is FEATURES and the one output is the task's, as for PyTorch.
        return to_onnx(trained.model, trained.spec.width, opset, output)


def _torch_backend() -> None:
    """Refuse a Keras imported on another backend than PyTorch's (exit 2, naming the variable)."""
    import keras

    if keras.backend.backend() != BACKEND:
        raise UsageError(f"Keras runs on its {keras.backend.backend()} backend; modelci trains and exports Keras "
                         f"models on its {BACKEND} backend only",
                         hint=f"set {BACKEND_VARIABLE}={BACKEND} in the environment (or unset it)")


def _scorer(model: Any, target: Target) -> Any:
    """The Keras model with the task's output on its scores (a torch module: see the module's NOTE)."""
    from modelci.frameworks.torch_model import Scorer

    return Scorer(model, target).eval()


def _compile(model: Any, fit: Fit) -> str:
    """Compile with Adam and the task's loss on logits unless the factory compiled; who compiled it."""
    import keras

    if getattr(model, "compiled", False):
        return "factory"
    settings, task = fit.config.train, fit.target.task
    loss = (keras.losses.BinaryCrossentropy(from_logits=True) if task == "binary"
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True) if task == "multiclass"
            else keras.losses.MeanSquaredError())
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=settings.lr,
                                                  weight_decay=settings.weight_decay or None), loss=loss)
    return "modelci"


def _targets(target: Target, y: np.ndarray) -> np.ndarray:
    """What the loss compares the scores with: 0/1 [rows, 1], class numbers [rows], standardized values [rows, 1]."""
    if target.task == "multiclass":
        return y.astype(np.int64)
    if target.task == "regression":
        return ((y - target.mean) / target.std).astype(np.float32).reshape(-1, 1)
    return y.astype(np.float32).reshape(-1, 1)


def _fit(made: Any, fit: Fit) -> TrainLog:
    from modelci.frameworks.sklearn import finite_scores
    from modelci.frameworks.torch_model import check_network, predict
    from modelci.outputs import TRAIN_LOG

    config, target, label, settings = fit.config, fit.target, fit.config.data.label, fit.config.train
    check_network(made, config, fit.spec.width, target.output_dim)
    x, y = fit.spec.transform(fit.datasets.train), target.encode(fit.datasets.train[label])
    x_val, y_val = fit.spec.transform(fit.datasets.validation), target.encode(fit.datasets.validation[label])
    compiled_by = _compile(made, fit)
    scorer = _scorer(made, target)
    records = _EpochLog(fit, lambda: predict(scorer, x_val, target.task), y_val, len(x))
    try:
        made.fit(x, _targets(target, y), epochs=settings.epochs, batch_size=settings.batch_size, verbose=0,
                 shuffle=True, callbacks=[records.callback()])
    except (UsageError, ModelFactoryError):
        raise
    except Exception as exc:
        raise ModelFactoryError(f"fitting the Keras model failed: {type(exc).__name__}: {exc}",
                                hint="check the factory's model and model.params") from None
    finite_scores(made, predict(scorer, x, target.task), predict(scorer, x_val, target.task))
    log = fit.log
    log.status, log.seconds = "completed", round(sum(e.seconds for e in log.epochs), 3)
    log.parameters = int(made.count_params())
    log.environment = {**log.environment, "keras": _version("keras"), "torch": _version("torch")}
    log.settings = {**log.settings, "compiled_by": compiled_by}
    trees.save(fit.out / ADAPTER.checkpoint, ADAPTER.name, _dump(made), fit.spec, target, label)
    atomic.write_json(fit.out / TRAIN_LOG, asdict(log))
    return log


class _EpochLog:
    """One EpochRecord per epoch of Keras's fit: its training loss, the validation rows' loss and metrics."""

    def __init__(self, fit: Fit, scores: Any, y_val: np.ndarray, rows: int) -> None:
        from modelci.evaluate.metrics import DEFAULT_METRICS

        self.fit, self.scores, self.y_val, self.rows = fit, scores, y_val.astype(np.float64), rows
        self.names = fit.config.evaluate.metrics or DEFAULT_METRICS[fit.config.task]
        self.began = time.perf_counter()

    def callback(self) -> Any:
        import keras

        log = self

        class Records(keras.callbacks.Callback):  # type: ignore[misc]  # NOTE: keras ships no types
            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                log.began = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                log.record(epoch + 1, float((logs or {}).get("loss", float("nan"))), self.model)

        return Records()

    def record(self, epoch: int, loss: float, model: Any) -> None:
        from modelci.evaluate.metrics import compute, shown
        from modelci.frameworks.sklearn import _loss
        from modelci.outputs import EpochRecord

        seconds = time.perf_counter() - self.began
        out = self.scores()
        metrics = {k: (v if np.isfinite(v) else None) for k, v in compute(self.names, self.y_val, out).items()}
        val_loss = _loss(self.fit.target, self.y_val, out) if np.isfinite(out).all() else float("nan")
        lr = float(np.asarray(model.optimizer.learning_rate))
        record = EpochRecord(epoch, loss, val_loss, metrics, lr, round(seconds, 4),
                             round(self.rows / max(seconds, 1e-9), 1))
        self.fit.log.epochs.append(record)
        if self.fit.on_epoch is not None:
            self.fit.on_epoch(record)
        github.log(f"    epoch {epoch:>3}/{self.fit.config.train.epochs}  loss {loss:.4f}  val_loss {val_loss:.4f}  "
                   + "  ".join(f"val_{k} {shown(v)}" for k, v in metrics.items()))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _dump(model: Any) -> str:
    """Keras's own `.keras` file (the architecture as JSON, the weights as HDF5, in a zip) as base64 text."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def _read_keras(path: Path, text: str) -> Any:
    """The Keras model in the checkpoint `path` (its `.keras` file as base64 `text`), running no code from it.

    NOTE: safe_mode=True (Keras's default, said here so no one drops it): whatever is in the output folder may
    have been put there by someone else (a pull request's job, a downloaded artifact), and a `.keras` file can
    hold a Lambda layer's Python bytecode, which Keras would run; in safe mode it refuses such a file. Layers
    are built only from classes Keras knows (its own, and those the factory's file registers). compile=False:
    modelci only predicts with it, and a custom loss or optimizer need not be found.
    """
    import keras

    try:
        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / "model.keras"
            saved.write_bytes(base64.b64decode(text.encode("ascii"), validate=True))
            return keras.saving.load_model(saved, compile=False, safe_mode=True)
    except Exception as exc:  # NOTE: whatever the reason, the file is not one `_dump` wrote whole
        raise trees.corrupt(path, exc) from None


ADAPTER = Keras()
