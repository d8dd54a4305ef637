"""An image as the model takes it: decoded with Pillow, converted to RGB (or grey), resized to the
configured size, as uint8 [height, width, channels].

Training, parity and ONNX Runtime's feeds all read images through `load_pixels`, so the exported
model is checked on exactly the pixels the trained one saw. The resize stretches the image to the
size (no aspect ratio kept, as torchvision's `Resize((h, w))`) with one fixed filter, bilinear
(Pillow's, which smooths when it shrinks). A client of the exported model does the same before it
sends the uint8 tensor.

NOTE: imports no torch: evaluation and serving read images too.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from modelci.data.images.measure import pillow

RESAMPLE = "BILINEAR"  # the one filter every resize uses (PIL.Image.Resampling's name)
MODES = {1: "L", 3: "RGB"}


def load_pixels(source: Any, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 [height, width, channels]: `source` is a file's path, the encoded image's bytes, or
    pixels already decoded ([height, width, channels] or [height, width] for grey, checked against the size)."""
    if isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        return _decoded(source, size, channels)
    pixels = np.asarray(source, dtype=np.uint8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    if pixels.shape != (*size, channels):
        raise ValueError(f"pixels of shape {list(pixels.shape)}; the model takes [{size[0]}, {size[1]}, {channels}]")
    return pixels


def _decoded(source: str | Path | bytes | bytearray | memoryview, size: tuple[int, int], channels: int) -> np.ndarray:
    handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with pillow().open(handle) as image:
        return pixels_from(image, size, channels)


def pixels_from(image: Any, size: tuple[int, int], channels: int) -> np.ndarray:
    """A Pillow image as uint8 [height, width, channels]: converted, and resized when its size differs."""
    converted = image.convert(MODES[channels])
    height, width = size
    if converted.size != (width, height):
        converted = converted.resize((width, height), getattr(pillow().Resampling, RESAMPLE))
    pixels = np.array(converted, dtype=np.uint8)  # NOTE: a copy: torch takes only writable arrays
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def pixels_of(sources: Iterable[Any], size: tuple[int, int], channels: int) -> np.ndarray:
    """Images as one uint8 batch [N, height, width, channels]."""
    found = [load_pixels(source, size, channels) for source in sources]
    return np.stack(found) if found else np.zeros((0, *size, channels), np.uint8)
