"""The example's model: an embedding bag, the mean of the words' embeddings, and a linear layer.

modelci calls `build(vocabulary_size=..., output_dim=..., **model.params)` and trains what it returns on
word ids, int64 [batch, words], 0 padding a text shorter than its batch's longest; modelci puts the
tokenizer in front of it and the softmax behind it, in training and in the exported ONNX model alike.
"""

import torch
from torch import nn


class Bag(nn.Module):
    def __init__(self, vocabulary_size: int, output_dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, width, padding_idx=0)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, output_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        words = (ids > 0).unsqueeze(-1).float()  # NOTE: id 0 pads; a text of no words gives the zero vector
        mean = (self.embedding(ids) * words).sum(dim=1) / words.sum(dim=1).clamp(min=1.0)
        return self.out(mean)


def build(vocabulary_size: int, output_dim: int, width: int = 32, dropout: float = 0.1) -> nn.Module:
    return Bag(vocabulary_size, output_dim, width, dropout)
