"""An image model's training, validation and evaluation data: a folder per class, listed as a table of
(image path, label) rows, so that the splits, the stratification and the label checks are a table's.

Labels are the class folders' names; the classes are their sorted names. Nothing here decodes an
image: the training loader and the parity check do, one batch at a time.

NOTE: imports no torch or Pillow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from modelci.config import Config
from modelci.data.images.read import IMAGE_SUFFIXES, class_files, class_folders, is_image_folder
from modelci.data.images.scan import DEFAULT_COLUMN
from modelci.data.roles import Chosen
from modelci.data.tables import Datasets
from modelci.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd


def is_image_model(config: Config) -> bool:
    """Whether the config trains an image model: `data.image` set, or the training data a folder per class."""
    return config.data.image is not None or is_image_folder(config.data.train)


def image_column(config: Config) -> str:
    """The name of the images' column, and of the exported model's input: the schema's `type: image` column's,
    else `image`."""
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    found = schema.images if schema is not None else None
    return found.name if found is not None else DEFAULT_COLUMN


def chosen(config: Config) -> Chosen:
    """The model's input: the image column, taken as it is (resized and normalized inside the model)."""
    return Chosen(features=[image_column(config)])


def image_datasets(config: Config) -> Datasets:
    """An image model's training, validation and evaluation rows, from its folders per class, split and checked
    as a table's rows are (`modelci.data.tables.split_datasets`)."""
    from modelci.data import tables

    _require_image_setup(config)
    column, label = image_column(config), config.data.label
    found = tables.split_datasets(config, lambda path, key: (folder_frame(path, column, label, key), None))
    return dataclasses.replace(found, images=(column,))


def _require_image_setup(config: Config) -> None:
    """What training from images needs that a config may lack; every problem at once, exit 2."""
    problems = []
    if config.data.image is None:
        problems.append(f"data.image: missing; {config.data.train} is a folder of images, and the model needs the "
                        "size it takes, e.g. data.image: {size: [32, 32], channels: 3}")
    if not is_image_folder(config.data.train):
        problems.append(f"data.train: data.image is set, but {config.data.train} is not a folder of class folders of "
                        "images (a table's image column is not trained from yet)")
    if config.task == "regression":
        problems.append("task: a folder per class gives classes; an image model is binary or multiclass")
    if config.data.clean.active:
        problems.append("data.clean: cleans table rows; a folder of images has none to clean (leave it out)")
    if problems:
        from modelci.errors import ConfigError

        raise ConfigError(str(config.path), problems, hint="see the README's image models")


def folder_frame(root: Path, column: str, label: str, key: str) -> pd.DataFrame:
    """One row per image of a folder per class, in sorted order: its path and its class folder's name."""
    import pandas as pd

    if not root.is_dir():
        raise UsageError(f"{key}: {root} is not a folder",
                         hint="give a folder per class, as torchvision's ImageFolder reads")
    paths, labels = [], []
    for folder in class_folders(root):
        for file in class_files(folder):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(file.resolve()))
                labels.append(folder.name)
    if not paths:
        raise DataError(f"{key}: {root} holds no images", hint="put .png or .jpg files in a folder per class")
    return pd.DataFrame({column: pd.Series(paths, dtype=object), label: pd.Series(labels, dtype=object)})
