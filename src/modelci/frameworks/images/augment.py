"""`train.augment`, with torch alone: random flips, crops and colour changes of one training image.

Each takes and gives the uint8 pixels [height, width, channels] the model takes, so an augmented
image is one a client could have sent (values rounded and clipped to 0..255). They are applied in a
fixed order (flip, crop, colour jitter) with a generator seeded for that image in that epoch, so a
run is the same with any number of loader workers, and a resumed run the same as an uninterrupted one.

NOTE: imports torch: only image training imports this module. torchvision is not needed (and is not
used where it is installed, so that a run does not depend on whether it is).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from modelci.config import AugmentConfig

CROP_TRIES = 10  # random windows drawn before a scale crop falls back to the whole image
CROP_RATIO = (3 / 4, 4 / 3)  # the aspect ratios of a scale crop's window, as torchvision's RandomResizedCrop
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")


class Augment:
    """The configured augmentations of one image; `None` from `of` when none is configured."""

    def __init__(self, settings: AugmentConfig) -> None:
        self.settings = settings

    @classmethod
    def of(cls, settings: AugmentConfig) -> Augment | None:
        return cls(settings) if settings.active else None

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        settings = self.settings
        x = pixels
        if settings.flip in ("horizontal", "both") and _chance(generator):
            x = x.flip(1)
        if settings.flip in ("vertical", "both") and _chance(generator):
            x = x.flip(0)
        if settings.crop_padding:
            x = _padded_crop(x, settings.crop_padding, generator)
        if settings.crop_scale is not None:
            x = _scaled_crop(x, settings.crop_scale, generator)
        if settings.brightness or settings.contrast or settings.saturation:
            x = _jitter(x, settings, generator)
        return x.contiguous()


def _chance(generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _integer(high: int, generator: torch.Generator) -> int:
    """A whole number from 0 to `high`, both included."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def _padded_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad with black on every side, then cut a random window of the image's own size (RandomCrop's padding)."""
    height, width = x.shape[0], x.shape[1]
    padded = functional.pad(x.permute(2, 0, 1), (padding, padding, padding, padding)).permute(1, 2, 0)
    top, left = _integer(2 * padding, generator), _integer(2 * padding, generator)
    return padded[top:top + height, left:left + width]


def _scaled_crop(x: torch.Tensor, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """A random window of a share of the area in `scale`, resized back to the image's size (RandomResizedCrop)."""
    height, width = x.shape[0], x.shape[1]
    for _ in range(CROP_TRIES):
        area = height * width * _uniform(*scale, generator)
        ratio = math.exp(_uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator))
        w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < w <= width and 0 < h <= height:
            top, left = _integer(height - h, generator), _integer(width - w, generator)
            window = x[top:top + h, left:left + w].permute(2, 0, 1)[None].float()
            resized = functional.interpolate(window, size=(height, width), mode="bilinear", align_corners=False,
                                             antialias=True)
            return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
    return x


def _jitter(x: torch.Tensor, settings: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by a factor drawn from [1 - v, 1 + v] (ColorJitter's)."""
    image = x.float()
    channels = image.shape[2]
    weights = torch.tensor(_LUMA if channels == 3 else (1.0,), dtype=torch.float32)
    if settings.brightness:
        image = image * _uniform(max(0.0, 1 - settings.brightness), 1 + settings.brightness, generator)
    if settings.contrast:
        mean = (image.clamp(0, 255) @ weights).mean()
        factor = _uniform(max(0.0, 1 - settings.contrast), 1 + settings.contrast, generator)
        image = (image - mean) * factor + mean
    if settings.saturation and channels == 3:
        grey = (image.clamp(0, 255) @ weights)[:, :, None]
        factor = _uniform(max(0.0, 1 - settings.saturation), 1 + settings.saturation, generator)
        image = (image - grey) * factor + grey
    return image.round().clamp(0, 255).to(torch.uint8)
