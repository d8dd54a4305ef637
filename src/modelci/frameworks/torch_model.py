"""A PyTorch model: the scoring head modelci puts on the factory's network, its checkpoint, and its export.

Factory contract: `build(input_dim: int, output_dim: int, **params) -> torch.nn.Module`, where the
module maps a float tensor (batch, input_dim) to (batch, output_dim) raw scores: one logit for a
binary task, one per class for multiclass, one value for regression.

NOTE: imports torch: only the PyTorch adapter's methods import this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from modelci import atomic, github
from modelci.config import Config
from modelci.errors import ModelFactoryError, UsageError, first_line
from modelci.features import FeatureSpec, Target
from modelci.frameworks import FEATURES
from modelci.frameworks.factory import call_factory

if TYPE_CHECKING:
    from onnx import ModelProto

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


T = TypeVar("T")
ScorerT = TypeVar("ScorerT", bound=Scorer)


def build_network(config: Config, input_dim: int, output_dim: int) -> nn.Module:
    return check_network(call_factory(config, {"input_dim": input_dim}, output_dim), config, input_dim, output_dim)


def check_network(net: Any, config: Config, input_dim: int, output_dim: int) -> nn.Module:
    """The factory's network, checked to map (batch, input_dim) to (batch, output_dim)."""
    if not isinstance(net, nn.Module):
        raise ModelFactoryError(f"model.factory: {config.model.factory} returned {type(net).__name__}, "
                                "not a torch.nn.Module")
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


def save_checkpoint(path: Path, scorer: Scorer, spec: FeatureSpec, target: Target, config: Config,
                    **extra: Any) -> None:
    """The trained scorer and what it was trained on, in one file written whole; `extra`: what an image or text
    model adds (its input's description)."""
    with atomic.atomic_open(path) as handle:
        torch.save({
            "version": CHECKPOINT_VERSION,
            "state_dict": scorer.state_dict(),
            "features": spec.to_json(),
            "target": target.to_json(),
            "label": config.data.label,
            **extra,
        }, handle)


def read_checkpoint(path: Path, kind: str, read: Callable[[dict[str, Any]], T]) -> tuple[T, Target, Any, str]:
    """(what `read` takes from the file, the target, the state dict, the label) of a checkpoint `save_checkpoint`
    wrote; exit 2 when there is none, or it is corrupt, truncated, of another kind or another version."""
    if not path.is_file():
        raise ModelFactoryError(f"{path}: no checkpoint", hint="run `modelci train` first")
    try:
        # NOTE: weights_only: tensors and plain containers only, so a planted file cannot run code.
        data = torch.load(path, map_location="cpu", weights_only=True)
        found, target = read(data), Target.from_json(data["target"])
        version, state, label = data["version"], data["state_dict"], str(data["label"])
    except Exception as exc:  # NOTE: whatever the reason, the file is not one `save_checkpoint` wrote whole
        raise UsageError(f"{path} is corrupt or truncated, or not {kind} checkpoint ({type(exc).__name__}: "
                         f"{first_line(exc)})", hint="run `modelci train` again to write it anew") from None
    if version != CHECKPOINT_VERSION:
        raise UsageError(f"{path} was written by another version of modelci", hint="run `modelci train` again")
    return found, target, state, label


def restore(scorer: ScorerT, state: Any, path: Path, config: Config) -> ScorerT:
    """The scorer with the checkpoint's weights, in eval mode; exit 2 when the factory builds another network now."""
    try:
        scorer.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"{path} does not fit the network {config.model.factory} builds now: {first_line(exc)}",
                         hint="the factory or model.params changed since training: run `modelci train` again") from None
    return scorer.eval()


def load_checkpoint(path: Path, config: Config) -> tuple[Scorer, FeatureSpec, Target, str]:
    """Rebuild the trained model from its checkpoint and the config's factory."""
    def read(data: dict[str, Any]) -> FeatureSpec:
        return FeatureSpec.from_json(data["features"])

    spec, target, state, label = read_checkpoint(path, "a model's", read)
    scorer = Scorer(build_network(config, spec.width, target.output_dim), target)
    return restore(scorer, state, path, config), spec, target, label


def predict(scorer: Scorer, features: Any, task: str) -> Any:
    """The scorer's output on preprocessed features, as float64: [rows, classes], or [rows] for regression."""
    import numpy as np

    with torch.no_grad():
        scores: np.ndarray = scorer(torch.as_tensor(features)).numpy().astype(np.float64)
    return scores[:, 0] if task == "regression" else scores


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    # NOTE: the exporters print progress to stdout and log warnings about optional operators
    # (torchvision's, for example) that do not concern a user's model; a real failure still raises.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_onnx(scorer: Scorer, width: int, opset: int, output: str) -> tuple[ModelProto, str]:
    """The scorer as ONNX over the preprocessed features (input `FEATURES`, float32 [batch, width])."""
    return export_onnx(scorer, torch.zeros(2, width), FEATURES, opset, output)


def export_onnx(scorer: Scorer, example: torch.Tensor, name: str, opset: int, output: str,
                words_axis: bool = False, torchscript_first: bool = False) -> tuple[ModelProto, str]:
    """Export with the current (dynamo) exporter; fall back to the TorchScript one, saying so. `example`: an input
    of two rows, whose first dimension is the batch; `name`: the ONNX input's name; `words_axis`: the second
    dimension varies too (a text model's words); `torchscript_first`: try the TorchScript exporter first (its
    graph of a Hugging Face transformer runs faster in ONNX Runtime, benchmarks/text_serve)."""

    # NOTE: dynamic_shapes is keyed by the argument's name in Scorer.forward, whatever the ONNX input is called
    axes = {0: "batch", 1: "words"} if words_axis else {0: "batch"}
    if torchscript_first:
        try:
            return _torchscript(scorer, example, name, opset, output, axes), "torchscript"
        except UsageError as exc:
            github.warning(f"the TorchScript ONNX exporter failed ({exc.message[:300]}); trying the dynamo exporter")
    dynamic = {"features": {axis: torch.export.Dim(label) for axis, label in axes.items()}}
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                scorer, (example,), dynamo=True, opset_version=opset, input_names=[name],
                output_names=[output], dynamic_shapes=dynamic,
            )
        assert program is not None
        return program.model_proto, "dynamo"
    except Exception as exc:
        if torchscript_first:
            raise UsageError(f"the model cannot be exported to ONNX: {type(exc).__name__}: {exc}",
                             hint="use operators ONNX supports, or raise export.opset") from None
        github.warning(f"the dynamo ONNX exporter failed ({type(exc).__name__}: {str(exc)[:300]}); "
                       "falling back to the TorchScript exporter")
    return _torchscript(scorer, example, name, opset, output, axes), "torchscript"


def _torchscript(scorer: Scorer, example: torch.Tensor, name: str, opset: int, output: str,
                 axes: dict[int, str]) -> ModelProto:
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            with _quiet_exporter():
                torch.onnx.export(scorer, (example,), path, dynamo=False, opset_version=opset, input_names=[name],
                                  output_names=[output], dynamic_axes={name: axes, output: {0: "batch"}})
        except Exception as exc:
            raise UsageError(f"the model cannot be exported to ONNX: {type(exc).__name__}: {exc}",
                             hint="use operators ONNX supports, or raise export.opset") from None
        return onnx.load(path)
