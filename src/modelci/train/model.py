"""The user's model factory, the scoring head modelci puts on it, and the checkpoint file.

Factory contract: `build(input_dim: int, output_dim: int, **params) -> torch.nn.Module`, where the
module maps a float tensor (batch, input_dim) to (batch, output_dim) raw scores: one logit for a
binary task, one per class for multiclass, one value for regression.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelci import atomic
from modelci.config import Config
from modelci.errors import ModelFactoryError, UsageError
from modelci.extras import missing_extra
from modelci.features import FeatureSpec, Target

CHECKPOINT_VERSION = 1


class Scorer(nn.Module):
    """The user's network plus the task's output: probabilities, or predictions in label units."""

    target_mean: torch.Tensor  # buffers, declared for the type checker
    target_std: torch.Tensor

    def __init__(self, net: nn.Module, target: Target) -> None:
        super().__init__()
        self.net = net
        self.task = target.task
        self.register_buffer("target_mean", torch.tensor(target.mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(target.std, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(features))

    def head(self, scores: torch.Tensor) -> torch.Tensor:
        """The network's raw scores as the task's output."""
        if self.task == "binary":
            positive = torch.sigmoid(scores[:, :1])
            return torch.cat([1 - positive, positive], dim=1)
        if self.task == "multiclass":
            return torch.softmax(scores, dim=1)
        return scores[:, :1] * self.target_std + self.target_mean


def _user_frame(exc: BaseException, file: Path) -> str:
    """Where in the user's file an exception came from, as 'model.py:12'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
    return f"{file.name}:{frames[-1].lineno}" if frames else file.name


def load_factory(config: Config) -> Callable[..., Any]:
    file_part, _, function = config.model.factory.rpartition(":")
    file = (config.root / file_part).resolve()
    if not file.is_file():
        raise ModelFactoryError(f"model.factory: {file_part} does not exist (looked in {config.root})",
                                hint="set model.factory to 'FILE.py:FUNCTION', relative to modelci.yaml")
    spec = importlib.util.spec_from_file_location(f"modelci_user_model_{file.stem}", file)
    if spec is None or spec.loader is None:  # NOTE: never for a .py file path; here for the type checker
        raise ModelFactoryError(f"model.factory: {file_part} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered under its name, so that classes defined in the file can be pickled and
    # unpickled (a scikit-learn estimator of the user's own is saved that way).
    sys.modules[spec.name] = module
    sys.path.insert(0, str(file.parent))  # the factory may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        missing = missing_extra(exc, f"model.factory: {file_part}")
        if missing:
            raise missing from None
        raise ModelFactoryError(f"model.factory: importing {file_part} failed at {_user_frame(exc, file)}: "
                                f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(file.parent))
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ModelFactoryError(f"model.factory: {file_part} has no function '{function}'")
    return factory  # type: ignore[no-any-return]


def call_factory(config: Config, input_dim: int, output_dim: int) -> Any:
    """What the user's factory returns: a torch.nn.Module or a scikit-learn estimator."""
    factory = load_factory(config)
    file = (config.root / config.model.factory.rpartition(":")[0]).resolve()
    try:
        return factory(input_dim=input_dim, output_dim=output_dim, **config.model.params)
    except Exception as exc:
        raise ModelFactoryError(f"model.factory: {config.model.factory} raised at {_user_frame(exc, file)}: "
                                f"{type(exc).__name__}: {exc}",
                                hint="check model.params in modelci.yaml against the factory's arguments") from None


def build_network(config: Config, input_dim: int, output_dim: int) -> nn.Module:
    return check_network(call_factory(config, input_dim, output_dim), config, input_dim, output_dim)


def check_network(net: Any, config: Config, input_dim: int, output_dim: int) -> nn.Module:
    """The factory's network, checked to map (batch, input_dim) to (batch, output_dim)."""
    if not isinstance(net, nn.Module):
        raise ModelFactoryError(f"model.factory: {config.model.factory} returned {type(net).__name__}, "
                                "not a torch.nn.Module or a scikit-learn estimator")
    with torch.no_grad():
        try:
            shape = tuple(net(torch.zeros(2, input_dim)).shape)
        except Exception as exc:
            raise ModelFactoryError(f"the model fails on a (2, {input_dim}) input: {type(exc).__name__}: {exc}",
                                    hint=f"its first layer must take input_dim={input_dim} features") from None
    if shape != (2, output_dim):
        raise ModelFactoryError(f"the model returns shape {shape} for 2 rows; this task needs (2, {output_dim})",
                                hint="build the last layer with output_dim outputs")
    return net


def save_checkpoint(path: Path, scorer: Scorer, spec: FeatureSpec, target: Target, config: Config) -> None:
    with atomic.atomic_open(path) as handle:
        torch.save({
            "version": CHECKPOINT_VERSION,
            "state_dict": scorer.state_dict(),
            "features": spec.to_json(),
            "target": target.to_json(),
            "label": config.data.label,
        }, handle)


def load_checkpoint(path: Path, config: Config) -> tuple[Scorer, FeatureSpec, Target, str]:
    """Rebuild the trained model from its checkpoint and the config's factory."""
    if not path.is_file():
        raise ModelFactoryError(f"{path}: no checkpoint", hint="run `modelci train` first")
    try:
        # NOTE: weights_only: tensors and plain containers only, so a planted file cannot run code.
        data = torch.load(path, map_location="cpu", weights_only=True)
        spec, target = FeatureSpec.from_json(data["features"]), Target.from_json(data["target"])
        version, state, label = data["version"], data["state_dict"], str(data["label"])
    except Exception as exc:  # NOTE: whatever the reason, the file is not one `save_checkpoint` wrote whole
        raise UsageError(f"{path} is corrupt or truncated ({type(exc).__name__}: {first_line(exc)})",
                         hint="run `modelci train` again to write it anew") from None
    if version != CHECKPOINT_VERSION:
        raise UsageError(f"{path} was written by another version of modelci", hint="run `modelci train` again")
    scorer = Scorer(build_network(config, spec.width, target.output_dim), target)
    try:
        scorer.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"{path} does not fit the network {config.model.factory} builds now: {first_line(exc)}",
                         hint="the factory or model.params changed since training: run `modelci train` again") from None
    return scorer.eval(), spec, target, label


def first_line(exc: BaseException) -> str:
    """An exception's message for one line of modelci's own: its first line, at most 200 characters."""
    return (str(exc).strip().splitlines() or [""])[0][:200]
