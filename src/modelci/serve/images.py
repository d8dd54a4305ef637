"""Image inputs: a model whose input is uint8 images [N, height, width, channels] (`modelci export` of an image
model) takes each image either as its pixels, or as the encoded image (BYTES: a PNG or JPEG, one element per
image), which the server decodes and resizes with `frameworks.images.pixels`, the code training and parity read
images with, so the model sees the pixels it would have seen there.

The encoded form in JSON: the Open Inference Protocol's JSON carries BYTES elements as strings, and an encoded
image is not text, so each element is the image's bytes in base64 (standard alphabet, with padding).
MLServer marks such an input with `"parameters": {"content_type": "base64"}`: that marker is taken, not
required. With the binary tensor data extension (Triton's client) each element is the image's raw bytes after
its 4-byte length, as the extension defines BYTES.

Anything wrong is a `BadRequest` naming the input and the element (the image's number in the request, from 0).

Online drift: when the artifact's data profile describes the image column's statistics (`data.images.measure`:
per-channel brightness and contrast, width, height, channels, sharpness), encoded images are measured as the
data check measured the training images, before they are resized, into the columns `<input>.<statistic>` that
the drift window keeps: every image while the server is not busy, a sample of at most `Sample`'s rate a second
when it is (a measure costs a few times an image's decode in a busy server's threads, and drift needs a fair
sample of the traffic, not all of it). Images not measured, and pixels sent as a tensor (already resized by the
client), are NaN there, which the window leaves out.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelci.errors import first_line
from modelci.evaluate.onnx_model import META_IMAGE, described
from modelci.frameworks.images.pixels import load_pixels
from modelci.serve import binary
from modelci.serve.protocol import DTYPES, INT_RANGE, BadRequest, TensorSpec

BASE64 = "base64"  # the content type MLServer gives BYTES elements sent as base64
ENCODED = "BYTES [N] (one encoded PNG or JPEG per image: base64 in JSON, raw bytes as binary data)"


@dataclass(frozen=True)
class ImageInput:
    """What an image input takes: the pixels' size and channels, and how export described them."""

    size: tuple[int, int]  # height, width
    channels: int
    described: dict[str, Any]  # the model's modelci.image metadata (layout, resize filter, ...), or {}
    measured: bool = False  # whether encoded images' statistics are kept, for drift (`statistics`)

    @property
    def pixels(self) -> str:
        return f"UINT8 [N, {self.size[0]}, {self.size[1]}, {self.channels}] (the pixels, decoded and resized)"

    def parameters(self) -> dict[str, Any]:
        """The model metadata's `parameters` of this input: the forms it takes, and how the pixels are made."""
        return {"modelci.image": self.described, "forms": [self.pixels, ENCODED]}


def image_input(tensor: Any, meta: dict[str, str]) -> ImageInput | None:
    """The image an ONNX Runtime input takes, when it is one (uint8 [N, H, W, C], as `modelci export` writes an
    image model); None for any other input."""
    shape = list(tensor.shape)
    if tensor.type != "tensor(uint8)" or len(shape) != 4:
        return None
    if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise ValueError(f"'{tensor.name}' takes images of shape {shape}, with no fixed height, width and channels")
    return ImageInput((shape[1], shape[2]), shape[3], described(meta, META_IMAGE))


class Sample:
    """Which images to measure for drift (or rows to copy to a shadow): at most `per_second` a second, a token
    bucket holding one second's worth, so a server that is not busy takes every one."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._tokens, self._at = per_second, time.monotonic()
        self._lock = threading.Lock()  # NOTE: requests are parsed on several threads

    def __call__(self, count: int = 1) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
            self._at = now
            # NOTE: more than a second's worth at once is taken when the bucket is full, and paid for after
            if self._tokens < min(count, self.per_second):
                return False
            self._tokens -= count
            return True


def statistics(name: str) -> list[str]:
    """The columns of an image input's statistics, named as the data profile names them."""
    from modelci.data.images.measure import FLOAT_STATS, INT_STATS

    return [f"{name}.{stat}" for stat in (*INT_STATS, *FLOAT_STATS)]


def image_columns(tensor: dict[str, Any], spec: TensorSpec, raw: memoryview | None,
                  sample: Callable[[], bool] | None = None) -> dict[str, NDArray[Any]]:
    """An image input's images as the model's uint8 [N, height, width, channels]; with `measured`, and the
    encoded images' statistics, a column each (NaN: not measured; `sample` says which are, all when None)."""
    image, name, shape, datatype = spec.image, spec.name, tensor.get("shape"), tensor.get("datatype")
    assert image is not None
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of sizes; this model takes {_forms(image)}")
    if raw is not None and tensor.get("data") is not None:
        raise BadRequest(f"input '{name}': both 'data' and binary_data_size; send its values in one or the other")
    names = statistics(name)
    if datatype == "BYTES":
        encoded = _elements(tensor, name, shape, raw)
        read = [_read(data, image, name, i, image.measured and (sample is None or sample()))
                for i, data in enumerate(encoded)]
        pixels = np.stack([found for found, _ in read]) if read else np.zeros((0, *image.size, image.channels),
                                                                               np.uint8)
        measured = np.stack([row for _, row in read]) if read else np.zeros((0, len(names)))
    elif datatype in INT_RANGE:
        pixels = _pixels(tensor.get("data"), image, name, shape, datatype, raw)
        measured = np.full((len(pixels), len(names)), np.nan)
    else:
        raise BadRequest(f"input '{name}': datatype {datatype!r}; this model takes {_forms(image)}")
    if not image.measured:
        return {name: pixels}
    return {name: pixels, **{column: measured[:, k] for k, column in enumerate(names)}}


def _forms(image: ImageInput) -> str:
    return f"images as {ENCODED}, or as {image.pixels}"


def _elements(tensor: dict[str, Any], name: str, shape: list[int], raw: memoryview | None) -> list[bytes]:
    """The encoded images: raw binary BYTES elements, or JSON's base64 strings."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"input '{name}': BYTES of shape {shape}; encoded images go as [N] (or [N, 1]), one "
                         "element per image")
    if raw is None:
        return _base64_elements(tensor, name, shape)
    try:
        return binary.elements(raw, shape[0])
    except binary.Malformed as exc:
        raise BadRequest(f"input '{name}': {exc} (shape {shape})") from None


def _base64_elements(tensor: dict[str, Any], name: str, shape: list[int]) -> list[bytes]:
    parameters = tensor.get("parameters") or {}
    kind = parameters.get("content_type") if isinstance(parameters, dict) else None
    if kind is not None and kind != BASE64:
        raise BadRequest(f"input '{name}': content_type {json.dumps(kind)[:40]}; an encoded image in JSON is "
                         f"base64 (content_type \"{BASE64}\", or none)")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list of base64 strings, one per image")
    values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]  # NOTE: nested as [N, 1]
    if len(values) != shape[0]:
        raise BadRequest(f"input '{name}': {len(values)} values for shape {shape}")
    found = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise BadRequest(f"input '{name}': element {i} is {json.dumps(value)[:40]}, not a string: an encoded "
                             "image in JSON is its bytes in base64")
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"input '{name}': element {i} is not base64 ({exc}); an encoded image in JSON is its "
                             "bytes in base64") from None
    return found


def _read(data: bytes, image: ImageInput, name: str, element: int,
          measure: bool) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """One encoded image as the model's pixels (decoded, converted and resized as training read it) and, with
    `measure`, its statistics as the data check takes them from a training image (NaN: none, e.g. a 16-bit PNG,
    which the data check does not measure either); one decode for both."""
    from modelci.data.images.measure import FLOAT_STATS, INT_STATS, pillow
    from modelci.data.images.measure import measure as measured
    from modelci.data.images.read import Item

    module = pillow()  # NOTE: without Pillow (the images extra), the error that says so, not "does not decode"
    if not data:
        raise BadRequest(f"input '{name}': element {element} is empty (0 bytes), not an image")
    if not measure:
        try:
            return load_pixels(data, image.size, image.channels), np.full(len(INT_STATS) + len(FLOAT_STATS), np.nan)
        except MemoryError:
            raise
        # NOTE: Pillow's decoders raise many types for a bad file (OSError, SyntaxError, struct.error, zlib.error,
        # ValueError, DecompressionBombError): each means this element does not decode
        except Exception as exc:
            raise _undecodable(name, element, first_line(exc)) from None
    found = measured(Item(0, "", None, data=data), module, pixels=(image.size, image.channels))
    if found.pixels is None:
        raise _undecodable(name, element, found.problems[0][1] if found.problems else "no pixels")
    sizes = np.asarray(found.sizes if found.sizes is not None else [np.nan] * len(INT_STATS), dtype=np.float64)
    stats = found.stats if found.stats is not None else np.full(len(FLOAT_STATS), np.nan)
    return found.pixels, np.concatenate([sizes, stats])


def _undecodable(name: str, element: int, reason: str) -> BadRequest:
    return BadRequest(f"input '{name}': element {element} does not decode as a PNG or JPEG image: {reason}")


def _pixels(data: Any, image: ImageInput, name: str, shape: list[int], datatype: str,
            raw: memoryview | None) -> NDArray[np.uint8]:
    wanted = [*image.size, image.channels]
    if len(shape) != 4 or shape[1:] != wanted:
        raise BadRequest(f"input '{name}': pixels of shape {shape}; this model takes {image.pixels}, or "
                         f"{ENCODED}")
    count = math.prod(shape)
    if raw is not None:
        try:
            values = binary.fixed(raw, DTYPES[datatype], datatype, count)
        except binary.Malformed as exc:
            raise BadRequest(f"input '{name}': {exc} (shape {shape})") from None
    else:
        values = _json_pixels(data, name, shape, count)
    outside = np.flatnonzero((values < 0) | (values > 255))
    if len(outside):
        first = int(outside[0])
        raise BadRequest(f"input '{name}': element {first // math.prod(wanted)} holds {values[first]}, not a "
                         "pixel value (a whole number from 0 to 255)")
    return values.reshape(shape).astype(np.uint8)


def _json_pixels(data: Any, name: str, shape: list[int], count: int) -> NDArray[Any]:
    """JSON pixels, flat or nested by the shape, as whole numbers."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    try:
        values = np.array(data)
    except (ValueError, OverflowError):  # NOTE: ragged nesting, or an integer beyond any numpy type
        values = np.array([], dtype=np.float64)
    if values.dtype.kind not in "iu" or values.size != count:
        raise BadRequest(f"input '{name}': 'data' must hold {count} whole numbers from 0 to 255 for shape "
                         f"{shape}, flat or nested as the shape says")
    return values.ravel()
