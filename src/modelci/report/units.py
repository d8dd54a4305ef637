"""What the report counts, rows or images, and how it describes an image model's input and data.

An image model (its train-log.json has an `image` section, from `modelci.frameworks.images`) is
evaluated, compared and timed on images, so the report says images where a table's says rows, and
names the size and classes instead of the input columns and features it has none of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unit:
    """What one example of the data is called in the report."""

    one: str
    many: str

    def count(self, number: int) -> str:
        return f"{number:,} {self.one if number == 1 else self.many}"


ROWS, IMAGES = Unit("row", "rows"), Unit("image", "images")


def unit_of(log: dict[str, Any] | None) -> Unit:
    """Images for an image model's run (known from its training log), rows otherwise."""
    return IMAGES if log is not None and isinstance(log.get("image"), dict) else ROWS


def image_input(log: dict[str, Any]) -> str:
    """The exported model's input: the uint8 pixels of the image, decoded and resized by the client."""
    image = log["image"]
    height, width = image["size"]
    return (f"`{image['column']}`: uint8 [N, {height}, {width}, {image['channels']}], the image decoded "
            f"({'grey' if image['channels'] == 1 else 'RGB'}) and resized to {width}×{height}; scaling and "
            "normalization are in the model")


def image_summary(log: dict[str, Any]) -> str:
    """The training images: how many, their size, and the classes."""
    image, classes = log["image"], log.get("classes") or []
    height, width = image["size"]
    names = ", ".join(f"`{c}`" for c in classes)
    return (f"{IMAGES.count(log['rows'])} ({width}×{height}, {image['channels']} channels; "
            f"{len(classes)} classes: {names})")
