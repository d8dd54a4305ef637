"""`modelci train`: the features and target chosen, the model factory called, and the model it
returns fitted by the adapter of its framework (`modelci.frameworks`), a `train.command` run, or a
`model.onnx` taken as it is.

NOTE: framework-free: what a framework needs (PyTorch's training loop, devices, precision, torchrun)
is its adapter's, so that training a scikit-learn model never imports torch.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from modelci import github
from modelci.config import Config, TrainConfig
from modelci.data.roles import choose_features, log_choice
from modelci.data.tables import Datasets
from modelci.errors import UsageError
from modelci.features import MIN_CATEGORY_COUNT, FeatureSpec, Target, category_report, describe_categories
from modelci.frameworks import Fit, adapters, recognise, seed_all
from modelci.outputs import PICKLE_CHECKPOINT, EpochRecord, TrainLog
from modelci.train import command, distributed
from modelci.train.model import call_factory, load_factory

__all__ = ["Diverged", "EpochRecord", "TrainLog", "check_finite", "diverged_hint", "environment", "train"]


class Diverged(UsageError):
    """Training diverged: a loss, or the fitted model's output, is no longer a finite number."""

    def __init__(self, message: str, *, epoch: int, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.epoch = epoch


def diverged_hint(settings: TrainConfig) -> str:
    """What to change after a diverged run, with the settings it used."""
    clip = ("lower train.grad_clip" if settings.grad_clip is not None
            else "set train.grad_clip (1.0 is a common start)")
    return (f"lower train.lr (it is {settings.lr:g}), {clip}, or check the data for extreme values; "
            "train-log.json records the losses of the epochs before")


def check_finite(epoch: int, loss: float, eval_loss: float, settings: TrainConfig) -> None:
    """Stop at the first epoch whose training or evaluation loss is NaN or infinite."""
    for name, value in (("training loss", loss), ("evaluation loss", eval_loss)):
        if not np.isfinite(value):
            raise Diverged(f"the {name} became {value} in epoch {epoch}: training diverged", epoch=epoch,
                           hint=diverged_hint(settings))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    """What a rerun needs to match: versions and the machine (a framework's adapter adds its own, and the device)."""
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cuda": "none", "cudnn": "none",
        "device_name": platform.processor() or "cpu", "gpus": "0", "cpus": str(os.cpu_count()),
        **{package: _version(package) for package in ("modelci", "numpy", "onnx", "onnxruntime", "scikit-learn")},
    }


def train(config: Config, datasets: Datasets, out: Path, *, resume: bool = False,
          on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainLog:
    """Train the configured model and write its adapter's checkpoint and the training log to `out`.

    `on_epoch` sees every epoch's record (hyperparameter search prunes trials with it).
    """
    settings = config.train
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    chosen = choose_features(datasets.train, config)
    columns = chosen.features
    spec = FeatureSpec.fit(datasets.train, columns, tuple(chosen.as_numbers))
    target = Target.fit(datasets.train[config.data.label], config.task)
    # NOTE: a model written as ONNX does its own preprocessing: modelci's categories are not what it used.
    own_onnx = settings.command is not None or config.model.onnx is not None
    categories = {} if own_onnx else category_report(spec, datasets.train, datasets.eval)
    every = () if own_onnx else adapters()
    if distributed.is_main(distributed.from_env()):
        log_choice(chosen)
        for name, entry in categories.items():
            github.log(describe_categories(name, entry, len(datasets.eval)))
        _warn_constant(spec.constant_columns(datasets.train))
        if config.tuned_from is not None:
            github.log(f"    with the tuned parameters in {config.tuned_from.name}")
        for stale in (*(adapter.checkpoint for adapter in every), PICKLE_CHECKPOINT):
            (out / stale).unlink(missing_ok=True)  # NOTE: a run that fails must not leave an older model behind
    log = TrainLog(task=config.task, framework="", device="cpu", processes=1, precision="fp32",
                   rows=len(datasets.train), eval_rows=len(datasets.eval), input_columns=columns,
                   input_dim=spec.width, parameters=0, seed=settings.seed,
                   settings=asdict(settings) | {"params": config.model.params,
                                                "tuned_from": str(config.tuned_from) if config.tuned_from else None},
                   environment=environment(), left_out=chosen.left_out,
                   as_numbers=chosen.as_numbers, categories=categories)
    if settings.command is not None:
        log.framework, log.input_dim, log.settings = "command", 0, {"command": command.argv(settings.command)}
        return command.run(config, datasets, columns, target, out, log)
    if config.model.onnx is not None:
        log.framework, log.input_dim, log.settings = "onnx", 0, {"onnx": str(config.model.onnx)}
        return command.copy_model(config, datasets, columns, target, out, log)
    factory = load_factory(config)
    # NOTE: after the factory's file imported its framework and before the factory builds the model,
    # whose initial weights come from the framework's generator.
    imported = set(sys.modules)
    seed_all(every, settings.seed, settings.deterministic)
    made = call_factory(config, spec.width, target.output_dim, factory)
    adapter = recognise(made, config.model.factory)
    if set(sys.modules) - imported:
        # NOTE: the factory imported a framework (or more of it) only when called, after the seeding above:
        # seed again and build again, so the initial weights still come from train.seed
        seed_all(every, settings.seed, settings.deterministic)
        made = call_factory(config, spec.width, target.output_dim, factory)
    log.framework = adapter.name
    return adapter.fit(made, Fit(config, datasets, spec, target, out, log, resume, on_epoch))


def _warn_constant(columns: list[str]) -> None:
    if columns:
        # NOTE: a warning, not an error: the model works, and a value never seen goes to "other" when served.
        github.warning(f"no value of {', '.join(columns)} occurs {MIN_CATEGORY_COUNT} times in the training data, "
                       "so each is one constant input (an ID column?); list the columns the model should use in "
                       "data.features to leave it out")
