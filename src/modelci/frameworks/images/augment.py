"""`train.augment`, with torch alone: random flips, crops and colour changes of a batch of training images.

Each takes and gives the uint8 pixels [N, height, width, channels] the model takes, so an augmented
image is one a client could have sent (values rounded and clipped to 0..255). They are applied in a
fixed order (flip, crop, colour jitter), each image's from a generator seeded for that image in that
epoch, so a run is the same with any number of loader workers or any batch size, and a resumed run the
same as an uninterrupted one.

The random draws are per image; the work is per batch where it can be: the colour jitter, a dozen
tensor operations, runs once over the batch with a factor per image, since one operation on one small
image costs more in torch's dispatch than in arithmetic.

NOTE: imports torch: only image training imports this module. torchvision is not needed (and is not
used where it is installed, so that a run does not depend on whether it is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional

from modelci.config import AugmentConfig

CROP_TRIES = 10  # random windows drawn before a scale crop falls back to the whole image
CROP_RATIO = (3 / 4, 4 / 3)  # the aspect ratios of a scale crop's window, as torchvision's RandomResizedCrop
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")
_DRAWS = 7  # uniforms drawn at once per image: two flips, a padded crop's top and left, three jitter factors


@dataclass(frozen=True)
class _Draws:
    """One image's random choices, drawn from its own seed."""

    flip_horizontal: bool
    flip_vertical: bool
    top: float  # a padded crop's window, as shares of its range
    left: float
    brightness: float  # the jitter factors
    contrast: float
    saturation: float
    generator: torch.Generator  # for the scale crop's tries, drawn after these


class Augment:
    """The configured augmentations; `None` from `of` when none is configured."""

    def __init__(self, settings: AugmentConfig) -> None:
        self.settings = settings

    @classmethod
    def of(cls, settings: AugmentConfig) -> Augment | None:
        return cls(settings) if settings.active else None

    def __call__(self, images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """uint8 images [N, H, W, C], each changed by the draws of its own seed."""
        draws = [self._draw(seed) for seed in seeds]
        geometric = [self._geometry(image, draw) for image, draw in zip(images, draws, strict=True)]
        batch = torch.stack(geometric) if geometric else images
        settings = self.settings
        if settings.brightness or settings.contrast or settings.saturation:
            batch = _jitter(batch, settings, draws)
        return batch.contiguous()

    def _draw(self, seed: int) -> _Draws:
        generator = torch.Generator().manual_seed(seed)
        u = torch.rand(_DRAWS, generator=generator, dtype=torch.float64).tolist()
        settings = self.settings
        return _Draws(flip_horizontal=settings.flip in ("horizontal", "both") and u[0] < 0.5,
                      flip_vertical=settings.flip in ("vertical", "both") and u[1] < 0.5,
                      top=u[2], left=u[3], brightness=_factor(settings.brightness, u[4]),
                      contrast=_factor(settings.contrast, u[5]), saturation=_factor(settings.saturation, u[6]),
                      generator=generator)

    def _geometry(self, x: torch.Tensor, draw: _Draws) -> torch.Tensor:
        if draw.flip_horizontal:
            x = x.flip(1)
        if draw.flip_vertical:
            x = x.flip(0)
        if self.settings.crop_padding:
            x = _padded_crop(x, self.settings.crop_padding, draw)
        if self.settings.crop_scale is not None:
            x = _scaled_crop(x, self.settings.crop_scale, draw.generator)
        return x


def _factor(spread: float, u: float) -> float:
    """A factor drawn from [1 - spread, 1 + spread] (ColorJitter's), never below 0."""
    low = max(0.0, 1 - spread)
    return low + (1 + spread - low) * u


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _integer(high: int, generator: torch.Generator) -> int:
    """A whole number from 0 to `high`, both included."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def _padded_crop(x: torch.Tensor, padding: int, draw: _Draws) -> torch.Tensor:
    """Pad with black on every side, then cut a random window of the image's own size (RandomCrop's padding)."""
    height, width, channels = x.shape
    padded = x.new_zeros(height + 2 * padding, width + 2 * padding, channels)
    padded[padding:padding + height, padding:padding + width] = x
    top, left = (min(int(share * (2 * padding + 1)), 2 * padding) for share in (draw.top, draw.left))
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


def _jitter(batch: torch.Tensor, settings: AugmentConfig, draws: list[_Draws]) -> torch.Tensor:
    """Brightness, contrast and saturation over the batch, each image scaled by its own factors."""
    image = batch.float()
    channels = image.shape[3]
    weights = torch.tensor(_LUMA if channels == 3 else (1.0,), dtype=torch.float32)

    def per_image(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)

    if settings.brightness:
        image = image * per_image([draw.brightness for draw in draws])
    if settings.contrast:
        mean = (image.clamp(0, 255) @ weights).mean(dim=(1, 2)).view(-1, 1, 1, 1)
        image = (image - mean) * per_image([draw.contrast for draw in draws]) + mean
    if settings.saturation and channels == 3:
        grey = (image.clamp(0, 255) @ weights)[..., None]
        image = (image - grey) * per_image([draw.saturation for draw in draws]) + grey
    return image.round().clamp(0, 255).to(torch.uint8)
