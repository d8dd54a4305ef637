"""The example's model: a small convolutional network for 32x32 images.

modelci calls `build(input_shape=(channels, height, width), output_dim=..., **model.params)` and trains
what it returns on float images [batch, channels, height, width], already normalized; modelci puts the
uint8 image's scaling and normalization in front of it and the softmax behind it, in training and in
the exported ONNX model alike.
"""

from torch import nn


def build(input_shape: tuple[int, int, int], output_dim: int, width: int = 16, dropout: float = 0.1) -> nn.Module:
    channels, height, side = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * (height // 4) * (side // 4), output_dim),
    )
