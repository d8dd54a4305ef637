"""An image model's training, validation and evaluation data: a folder per class, listed as a table of
(image path, label) rows, or a table (Parquet or CSV) with an image column, so that the splits, the
stratification and the label checks are a table's.

From folders, labels are the class folders' names; the classes are their sorted names. From a table,
the image column holds each image's path (relative to the table's own folder, as the data check reads
it) or its encoded bytes, the label column the labels, and any other column (a site, a camera, a
date) is kept for the evaluation's slices, never given to the model. Nothing here decodes an image:
the training loader and the parity check do, one batch at a time; a table's encoded bytes are held in
memory with its rows.

NOTE: imports no torch or Pillow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelci.config import Config
from modelci.data import tables
from modelci.data.images.read import IMAGE_SUFFIXES, class_files, class_folders, is_image_folder, table_batches
from modelci.data.images.scan import DEFAULT_COLUMN
from modelci.data.roles import Chosen
from modelci.errors import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from modelci.data.schema import Schema


def is_image_model(config: Config) -> bool:
    """Whether the config trains an image model: `data.image` set, the training data a folder per class, or the
    schema naming a `type: image` column."""
    return config.data.image is not None or is_image_folder(config.data.train) or _schema_image(config) is not None


def _schema_image(config: Config) -> str | None:
    """The schema's `type: image` column, if it names one."""
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    found = schema.images if schema is not None else None
    return found.name if found is not None else None


def image_column(config: Config) -> str:
    """The name of the images' column, and of the exported model's input: the schema's `type: image` column's,
    else `image`."""
    return _schema_image(config) or DEFAULT_COLUMN


def chosen(config: Config) -> Chosen:
    """The model's input: the image column, taken as it is (resized and normalized inside the model)."""
    return Chosen(features=[image_column(config)])


def image_datasets(config: Config) -> tables.Datasets:
    """An image model's training, validation and evaluation rows, from its folders per class or its tables, split
    and checked as a table's rows are (`modelci.data.tables.split_datasets`)."""
    from modelci.data.schema import load_schema

    _require_image_setup(config)
    column, label = image_column(config), config.data.label
    schema = load_schema(config.data.schema) if config.data.schema else None

    def read(path: Path, key: str) -> tuple[pd.DataFrame, None]:
        return folder_frame(path, column, label, key) if is_image_folder(path) else \
            table_frame(path, column, label, key, schema), None

    return dataclasses.replace(tables.split_datasets(config, read), images=(column,))


def _require_image_setup(config: Config) -> None:
    """What training from images needs that a config may lack; every problem at once, exit 2."""
    problems = []
    if config.data.image is None:
        problems.append(f"data.image: missing; {config.data.train} holds images, and the model needs the size it "
                        "takes, e.g. data.image: {size: [32, 32], channels: 3}")
    if config.task == "regression":
        problems.append("task: an image model is binary or multiclass")
    if config.data.clean.active:
        problems.append("data.clean: cleans table rows; an image model's data is not cleaned (leave it out)")
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


def table_frame(path: Path, column: str, label: str, key: str, schema: Schema | None) -> pd.DataFrame:
    """A table's rows, every file the path names, read as the data check reads them (`table_batches`): the image
    column's paths made absolute from each table's own folder, encoded bytes as they are, the other columns in the
    schema's types; a row without an image is exit 2."""
    import pandas as pd

    text = [r.name for r in schema.columns if r.type not in ("string", "image")] if schema else []
    frames = []
    for file, batch in table_batches(path, column, text):
        if column not in batch.schema.names:
            raise DataError(f"{key}: {file} has no image column '{column}' (columns: {', '.join(batch.schema.names)})",
                            hint="mark the column of image paths or bytes `type: image` in data.schema, or call it "
                                 f"'{DEFAULT_COLUMN}'")
        frame = tables.typed(batch.drop_columns([column]), schema).to_pandas()
        frame[column] = [str((file.parent / value).resolve()) if isinstance(value, str) else value
                         for value in batch.column(column).to_pylist()]
        frames.append(frame)
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if found.empty:
        raise DataError(f"{key}: {path} holds no rows", hint="give a table with a row per image")
    tables.require_label(found, label, path)
    empty = np.flatnonzero(found[column].isna().to_numpy())
    if len(empty):
        raise DataError(f"{key}: {len(empty)} row(s) of {path} have no image (rows {', '.join(map(str, empty[:5]))})",
                        hint="`modelci data check` names them; remove those rows or give their images")
    return found
