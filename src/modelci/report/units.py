"""What the report counts, rows, images or texts, and how it describes an image model's input and data.

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


ROWS, IMAGES, TEXTS = Unit("row", "rows"), Unit("image", "images"), Unit("text", "texts")


def unit_of(log: dict[str, Any] | None) -> Unit:
    """Images for an image model's run, texts for a text model's (known from its training log), rows otherwise."""
    if log is not None and isinstance(log.get("image"), dict):
        return IMAGES
    return TEXTS if log is not None and isinstance(log.get("text"), dict) else ROWS


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


def text_input(log: dict[str, Any]) -> str:
    """The exported model's input: the texts themselves, split into words inside the model."""
    text = log["text"]
    return (f"`{text['column']}`: string [N, 1], the text itself; the tokenizer (the first {text['max_tokens']} "
            f"words, {text['vocabulary']:,} ids) is in the model")


def text_summary(log: dict[str, Any]) -> str:
    """The training texts: how many, the vocabulary, and the classes."""
    text, classes = log["text"], log.get("classes") or []
    names = f"; {len(classes)} classes: " + ", ".join(f"`{c}`" for c in classes) if classes else ""
    return (f"{TEXTS.count(log['rows'])} (a vocabulary of {text['vocabulary']:,} ids, the first {text['max_tokens']} "
            f"words of each; {text['unknown_share']:.1%} of the validation texts' words outside it{names})")


def model_input(log: dict[str, Any]) -> str | None:
    """An image or text model's input, described; None for a table model's columns."""
    unit = unit_of(log)
    return image_input(log) if unit == IMAGES else text_input(log) if unit == TEXTS else None


def training_data(log: dict[str, Any]) -> str | None:
    """An image or text model's training data, summarized; None for a table's rows."""
    unit = unit_of(log)
    return image_summary(log) if unit == IMAGES else text_summary(log) if unit == TEXTS else None
