"""The PyTorch adapter: a `torch.nn.Module` from the factory, trained by modelci's loop, saved as model.pt.

A table's model takes the preprocessed features (`torch_model`, `torch_loop`); an image model
(`data.image` set) takes the images themselves (`modelci.frameworks.images`): the choice between them
is made here, and nowhere else.

NOTE: this module imports no torch, so that listing the adapters does not: its methods import
`torch_model` and `torch_loop`, which do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci.frameworks import Fit, Trained

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.outputs import TrainLog


CHECKPOINT = "model.pt"


class PyTorch:
    name = "pytorch"
    extra: str | None = "torch"
    checkpoint = CHECKPOINT

    def recognises(self, made: object) -> bool:
        # NOTE: a module's class comes from an imported torch; when the factory's file imported none,
        # `made` is no module, and asking must not import torch.
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(made, torch.nn.Module)

    def seed(self, seed: int, deterministic: bool) -> None:
        if "torch" in sys.modules:  # NOTE: only a torch the factory's file imported
            from modelci.frameworks import torch_loop

            torch_loop.seed(seed, deterministic)

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        if fit.config.model.weights is not None:
            from modelci.frameworks.weights import load_weights

            fit.log.weights = load_weights(made, fit.config.model.weights)
        if fit.config.data.image is not None:
            from modelci.frameworks.images import training

            return training.fit(made, fit)
        if fit.config.data.text is not None:
            from modelci.frameworks.text import training as text_training

            return text_training.fit(made, fit)
        from modelci.frameworks import torch_loop

        return torch_loop.fit(made, fit)

    def load(self, path: Path, config: Config) -> Trained:
        if config.data.image is not None:
            from modelci.frameworks.images import network

            image_scorer, target, label = network.load_checkpoint(path, config)
            return Trained(image_scorer, network.NO_FEATURES, target, label)
        if config.data.text is not None:
            from modelci.frameworks.text import network as text_network

            text_scorer, target, label = text_network.load_checkpoint(path, config)
            return Trained(text_scorer, text_network.NO_FEATURES, target, label)
        from modelci.frameworks.torch_model import load_checkpoint

        scorer, spec, target, label = load_checkpoint(path, config)
        return Trained(scorer, spec, target, label)

    def predict(self, trained: Trained, features: Any) -> np.ndarray:
        """Scores of preprocessed features; for an image or text model, of a DataFrame's images or texts."""
        from modelci.frameworks.images import network
        from modelci.frameworks.text import network as text_network
        from modelci.frameworks.torch_model import predict

        if isinstance(trained.model, network.ImageScorer):
            return network.predict(trained.model, features)
        if isinstance(trained.model, text_network.TextScorer):
            return text_network.predict(trained.model, features)
        found: np.ndarray = predict(trained.model, features, trained.target.task)
        return found

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        """Over the preprocessed features; for an image model, over the uint8 images (see `images.network`), for a
        text model over the texts (`text.network`)."""
        from modelci.frameworks.images import network
        from modelci.frameworks.text import network as text_network
        from modelci.frameworks.torch_model import to_onnx

        if isinstance(trained.model, network.ImageScorer):
            return network.to_onnx(trained.model, opset, output)
        if isinstance(trained.model, text_network.TextScorer):
            return text_network.to_onnx(trained.model, opset, output)
        return to_onnx(trained.model, trained.spec.width, opset, output)


ADAPTER = PyTorch()
