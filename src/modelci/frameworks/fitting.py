"""What every adapter's fitting shares: a diverged run as a usage error, and the environment a rerun
must match, recorded in the train log.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

import numpy as np

from modelci.config import TrainConfig
from modelci.errors import UsageError


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


def check_finite(epoch: int, loss: float, val_loss: float, settings: TrainConfig) -> None:
    """Stop at the first epoch whose training or validation loss is NaN or infinite."""
    for name, value in (("training loss", loss), ("validation loss", val_loss)):
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
