"""Synthetic images for the example: coloured shapes on noisy backgrounds, deterministic for a seed.

Three classes, circle, square and triangle, each drawn in a random colour, at a random position and
size, over a background of another random colour (darker or lighter than the shape) and pixel noise;
saved as 32x32 PNG files in a folder per class, the layout torchvision's ImageFolder reads:

    python generate_data.py --out data        # data/train/<class>/*.png and data/eval/<class>/*.png
    python generate_data.py --out /tmp/shapes --train 20 --eval 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SIDE = 32


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(low, high, 3))
    return red, green, blue


def _shape(draw: ImageDraw.ImageDraw, kind: str, rng: np.random.Generator, fill: tuple[int, int, int]) -> None:
    size = int(rng.integers(14, 26))
    left, top = (int(v) for v in rng.integers(0, SIDE - size, 2))
    box = (left, top, left + size, top + size)
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(left + size // 2, top), (left, top + size), (left + size, top + size)], fill=fill)


def image(kind: str, rng: np.random.Generator) -> Image.Image:
    """One shape over a noisy background: a light shape on a dark background, or a dark one on a light one."""
    light, dark = _colour(rng, 150, 256), _colour(rng, 0, 100)
    background, fill = (dark, light) if rng.random() < 0.5 else (light, dark)
    noise = rng.normal(0, 12, (SIDE, SIDE, 3))
    picture = Image.fromarray(np.clip(np.array(background) + noise, 0, 255).astype(np.uint8))
    _shape(ImageDraw.Draw(picture), kind, rng, fill)
    return picture


def write(folder: Path, per_class: int, rng: np.random.Generator) -> None:
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            image(kind, rng).save(folder / kind / f"{kind}-{number:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--train", type=int, default=120, help="training images per class")
    parser.add_argument("--eval", type=int, default=40, help="evaluation images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.out / "train", args.train, np.random.default_rng(args.seed))
    write(args.out / "eval", args.eval, np.random.default_rng(args.seed + 1))
    print(f"wrote {len(CLASSES) * (args.train + args.eval)} images to {args.out}")


if __name__ == "__main__":
    main()
