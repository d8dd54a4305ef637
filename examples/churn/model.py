"""The example's model: a small multilayer perceptron.

modelci calls `build(input_dim=..., output_dim=..., **model.params)` and trains what it returns.
"""

from torch import nn


def build(input_dim: int, output_dim: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1) -> nn.Module:
    blocks: list[nn.Module] = []
    width = input_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, output_dim))
