"""One image read, hashed, decoded and measured; what is wrong with it said in words.

Pillow is imported here, inside functions, so that modelci's core imports without it (the `images`
extra). The statistics are taken on the image reduced to at most STATS_SIDE pixels on its longer
side (JPEGs decode at that size directly, with Pillow's `draft`), so they cost little for large
images and a sharpness measure means the same at any resolution.

A server measuring each image it is sent for drift also needs the image as the model takes it:
`measure(..., pixels=(size, channels))` decodes once for both, unless the statistics drafted a JPEG.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.data.images.read import Item
from modelci.errors import first_line
from modelci.extras import missing_extra

if TYPE_CHECKING:
    from PIL import Image as PILImage

STATS_SIDE = 256
# The per-image statistics kept in the profile, in the order `Measured.stats` holds them
CHANNELS = ("red", "green", "blue")
FLOAT_STATS = (*(f"brightness.{c}" for c in CHANNELS), *(f"contrast.{c}" for c in CHANNELS), "sharpness")
INT_STATS = ("width", "height", "channels")
_PNG = b"\x89PNG\r\n\x1a\n"
_GREY = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma, as Pillow's convert("L")


def pillow() -> ModuleType:
    """PIL.Image, or the error naming the `images` extra when Pillow is not installed."""
    try:
        from PIL import Image
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc, "reading images")
        if missing is None:
            raise
        raise missing from None
    return Image


@dataclass
class Measured:
    """What one image gave: its content hash, the problems found, and its statistics (None when not decoded)."""

    digest: bytes | None = None  # 16 bytes of BLAKE2b over the file's bytes
    problems: list[tuple[str, str]] = field(default_factory=list)  # (rule, what is wrong with this image)
    sizes: tuple[int, int, int] | None = None  # width, height, channels
    stats: np.ndarray | None = None  # FLOAT_STATS, in order
    pixels: np.ndarray | None = None  # the image as a model takes it, when asked for (`measure`'s `pixels`)


def _content(item: Item) -> bytes | str:
    """The image's bytes, or why there are none."""
    if item.data is not None:
        return item.data
    assert item.path is not None
    try:
        return item.path.read_bytes()
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or first_line(exc)


def _channels(image: PILImage.Image) -> int:
    """Channels as a model sees them: a palette image is RGB (RGBA with transparency)."""
    if image.mode == "P":
        return 4 if "transparency" in image.info else 3
    return 4 if image.mode == "PA" else len(image.getbands())


def _unusual(image: PILImage.Image, data: bytes) -> str | None:
    """Why an image would not load as 8-bit RGB or grey the way a training loader expects, with the fix."""
    if image.mode == "CMYK":
        return "CMYK; convert it to RGB (Image.open(f).convert('RGB').save(f))"
    if (data.startswith(_PNG) and len(data) > 24 and data[24] == 16) or image.mode.startswith(("I", "F")):
        return (f"{16 if data.startswith(_PNG) else 32} bits per channel ({image.mode}); save it with 8 bits per "
                "channel, or Pillow loads it clipped")
    return None


def _failure(exc: Exception, data: bytes, module: ModuleType) -> tuple[str, str]:
    """(rule, reason) for an image that does not decode."""
    reason = first_line(exc)
    if "truncated" in reason.lower() or isinstance(exc, EOFError):
        return "truncated", f"cut short ({reason})"
    if isinstance(exc, module.UnidentifiedImageError):
        known = "PNG" if data.startswith(_PNG) else "JPEG" if data.startswith(b"\xff\xd8\xff") else None
        return "decode", (f"starts as a {known} file but its header is damaged or cut short" if known
                          else "not an image format Pillow reads (PNG, JPEG, ...)")
    return "decode", f"{type(exc).__name__}: {reason}"


def _statistics(image: PILImage.Image) -> np.ndarray:
    """Per-channel mean (brightness) and standard deviation (contrast), and the Laplacian's variance (sharpness)."""
    factor = math.ceil(max(image.size) / STATS_SIDE)
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    flat = pixels.reshape(-1, 3)
    ones = np.ones(len(flat))
    # NOTE: sums as matrix products, in float64: exact for 8-bit pixels, and several times faster than numpy's
    # mean and std along an axis, which were most of a small image's measure (and of a server's drift)
    mean = ones @ flat / len(flat)
    deviation = np.sqrt(np.maximum(ones @ (flat * flat) / len(flat) - mean * mean, 0.0))
    grey = pixels @ _GREY
    laplacian = ((grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]) - 4 * grey[1:-1, 1:-1]).ravel()
    centred = laplacian - laplacian.mean() if laplacian.size else laplacian
    sharpness = float(centred @ centred) / max(centred.size, 1)
    return np.concatenate([mean, deviation, [sharpness]])


def measure(item: Item, module: ModuleType, pixels: tuple[tuple[int, int], int] | None = None) -> Measured:
    """Read, hash, decode and measure one image; `module` is PIL.Image. With `pixels` (a model's size and
    channels), the image is also made into the pixels the model takes (`frameworks.images.pixels`)."""
    data = _content(item)
    if isinstance(data, str):
        return Measured(problems=[("exists", data)])
    if not data:
        return Measured(problems=[("empty_file", "0 bytes")])
    found = Measured(digest=hashlib.blake2b(data, digest_size=16).digest())
    try:
        image: Any = module.open(io.BytesIO(data))
        with image:
            width, height = image.size
            found.sizes = (width, height, _channels(image))
            unusual = _unusual(image, data)
            # NOTE: a JPEG of at least twice the statistics' side decodes at a half, a quarter or an eighth
            drafted = image.format == "JPEG" and unusual is None and min(width, height) >= 2 * STATS_SIDE
            if drafted:
                image.draft(None, (STATS_SIDE, STATS_SIDE))
            image.load()
            if pixels is not None and not drafted:
                found.pixels = _model_pixels(image, pixels)
            if unusual is not None:
                # NOTE: no statistics from an image a loader would read wrongly: they would skew the profile
                found.problems.append(("mode", unusual))
            else:
                found.stats = _statistics(image)
        if pixels is not None and drafted:
            with module.open(io.BytesIO(data)) as whole:
                found.pixels = _model_pixels(whole, pixels)
    except MemoryError:
        raise
    # NOTE: Pillow's decoders raise many types for a bad file (OSError, SyntaxError for a broken PNG,
    # struct.error, zlib.error, ValueError, DecompressionBombError): each means this file does not decode
    except Exception as exc:
        found.sizes = found.pixels = found.stats = None
        found.problems.append(_failure(exc, data, module))
    return found


def _model_pixels(image: PILImage.Image, pixels: tuple[tuple[int, int], int]) -> np.ndarray:
    from modelci.frameworks.images.pixels import pixels_from

    size, channels = pixels
    return pixels_from(image, size, channels)
