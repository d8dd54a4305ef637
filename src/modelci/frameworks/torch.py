"""The PyTorch adapter: a `torch.nn.Module` from the factory, trained by modelci's loop, saved as model.pt.

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
        from modelci.frameworks import torch_loop

        return torch_loop.fit(made, fit)

    def load(self, path: Path, config: Config) -> Trained:
        from modelci.frameworks.torch_model import load_checkpoint

        scorer, spec, target, label = load_checkpoint(path, config)
        return Trained(scorer, spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        from modelci.frameworks.torch_model import predict

        found: np.ndarray = predict(trained.model, features, trained.target.task)
        return found

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        from modelci.frameworks.torch_model import to_onnx

        return to_onnx(trained.model, trained.spec.width, opset, output)


ADAPTER = PyTorch()
