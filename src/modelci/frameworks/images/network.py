"""An image model as trained, saved and exported: the factory's network behind modelci's own first layer,
which takes the uint8 images [N, H, W, C] and casts, scales, normalizes and transposes them to the
float [N, C, H, W] the network takes. The same module runs in training, in the parity check and, as
ONNX, in the artifact, so the preprocessing is inside the exported model.

NOTE: imports torch: only the PyTorch adapter's methods import this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modelci.config import Config, ImageConfig
from modelci.errors import ModelFactoryError
from modelci.evaluate.onnx_model import META_IMAGE
from modelci.features import FeatureSpec, Target
from modelci.frameworks import torch_model
from modelci.frameworks.factory import call_factory
from modelci.frameworks.images.pixels import RESAMPLE, pixels_of
from modelci.frameworks.torch_model import Scorer, export_onnx

if TYPE_CHECKING:
    from onnx import ModelProto

PREDICT_CHUNK = 256  # images per forward pass when scoring, so a large evaluation set is never all in memory
NO_FEATURES = FeatureSpec((), ())  # an image model takes its image column as it is: no table preprocessing


class Pixels(nn.Module):
    """uint8 images [N, H, W, C] as floats [N, C, H, W]: scaled to 0..1, then (x - mean) / std per channel."""

    mean: torch.Tensor  # buffers, declared for the type checker
    std: torch.Tensor

    def __init__(self, image: ImageConfig) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(image.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(image.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # NOTE: the transpose of an NHWC tensor is NCHW in channels-last memory, which convolutions on GPUs want
        scaled = images.permute(0, 3, 1, 2).float() / 255.0
        return (scaled - self.mean) / self.std


class ImageNetwork(nn.Module):
    """modelci's `Pixels` in front of the factory's network: what the loop trains and the checkpoint holds."""

    def __init__(self, net: nn.Module, image: ImageConfig) -> None:
        super().__init__()
        self.pixels = Pixels(image)
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.pixels(images))
        return out


class ImageScorer(Scorer):
    """A trained image model: the network and the task's output, with the image column and size it reads."""

    def __init__(self, network: ImageNetwork, target: Target, image: ImageConfig, column: str) -> None:
        super().__init__(network, target)
        self.image, self.column = image, column
        self.outputs = 2 if target.task == "binary" else target.output_dim


def check_network(made: Any, config: Config, image: ImageConfig, output_dim: int) -> nn.Module:
    """The factory's network, checked to map float [batch, channels, height, width] to [batch, output_dim]."""
    if not isinstance(made, nn.Module):
        raise ModelFactoryError(f"model.factory: {config.model.factory} returned {type(made).__name__}, "
                                "not a torch.nn.Module")
    shape = image.shape
    shown = f"(2, {', '.join(map(str, shape))})"
    with torch.no_grad():
        try:
            found = tuple(made.eval()(torch.zeros(2, *shape)).shape)
        except Exception as exc:
            raise ModelFactoryError(f"the model fails on a {shown} input: {type(exc).__name__}: {exc}",
                                    hint=f"its first layer must take input_shape={shape} (channels, height, "
                                         "width), as data.image says") from None
    if found != (2, output_dim):
        raise ModelFactoryError(f"the model returns shape {found} for 2 images; this task needs (2, {output_dim})",
                                hint="build the last layer with output_dim outputs")
    return made.train()


def save_checkpoint(path: Path, scorer: ImageScorer, target: Target, config: Config) -> None:
    torch_model.save_checkpoint(path, scorer, NO_FEATURES, target, config,
                                image=asdict(scorer.image) | {"column": scorer.column})


def load_checkpoint(path: Path, config: Config) -> tuple[ImageScorer, Target, str]:
    """Rebuild the trained image model from its checkpoint and the config's factory."""
    def read(data: dict[str, Any]) -> tuple[ImageConfig, str]:
        saved = dict(data["image"])
        image = ImageConfig(size=(int(saved["size"][0]), int(saved["size"][1])), channels=int(saved["channels"]),
                            mean=tuple(saved["mean"]), std=tuple(saved["std"]))
        return image, str(saved["column"])

    (image, column), target, state, label = torch_model.read_checkpoint(path, "an image model's", read)
    made = call_factory(config, {"input_shape": image.shape}, target.output_dim)
    scorer = ImageScorer(ImageNetwork(check_network(made, config, image, target.output_dim), image), target, image,
                         column)
    return torch_model.restore(scorer, state, path, config), target, label


def predict(scorer: ImageScorer, rows: Any) -> np.ndarray:
    """The model's output for a DataFrame's images (its image column: paths, bytes or pixels), as float64:
    [rows, classes]; decoded and resized exactly as ONNX Runtime's feeds are."""
    image, values = scorer.image, list(rows[scorer.column])
    parts = []
    with torch.no_grad():
        for first in range(0, len(values), PREDICT_CHUNK):
            pixels = pixels_of(values[first:first + PREDICT_CHUNK], image.size, image.channels)
            parts.append(scorer(torch.from_numpy(pixels)).numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, scorer.outputs), np.float64)


def to_onnx(scorer: ImageScorer, opset: int, output: str) -> tuple[ModelProto, str]:
    """The model as ONNX over the uint8 images [N, H, W, C] (the input named as the image column), with the
    cast, scaling, normalization and transpose in the graph; the input's layout in its metadata."""
    image = scorer.image
    example = torch.zeros(2, *image.size, image.channels, dtype=torch.uint8)
    model, exporter = export_onnx(scorer, example, scorer.column, opset, output)
    described = {"input": scorer.column, "size": list(image.size), "channels": image.channels, "layout": "NHWC",
                 "dtype": "uint8", "resample": RESAMPLE.lower(), "mean": list(image.mean), "std": list(image.std)}
    model.metadata_props.add(key=META_IMAGE, value=json.dumps(described))
    return model, exporter
