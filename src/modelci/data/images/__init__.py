"""Image datasets, checked and profiled through the same report, profile and drift as tables.

Two layouts:

- **a folder per class** (torchvision's `ImageFolder`): `data.train: images/train/` where each
  subfolder is a class, named by its label, holding that class's images (subfolders of it too).
  A path is taken as such a folder when it is a directory with a subfolder or an image file and no
  Parquet or CSV file anywhere under it (a folder with one is a folder of tables, as before). Its
  dataset has two columns: the images (named by the schema's `type: image` column, else `image`)
  and the label (`data.label`), whose values are the folder names.
- **a table** (Parquet or CSV) with a column the schema marks `type: image`: each value is an
  image's path (relative to the table's own folder) or its encoded bytes (a Parquet binary column),
  and the table's other columns, the label among them, are checked as any table's.

PNG and JPEG are read, and whatever else Pillow reads among ImageFolder's suffixes (.bmp, .tif,
.webp, .ppm, .pgm). Pillow is the `images` extra, imported only when images are read.

Checks, in one pass, one image in memory at a time (see scan.py), each a `Violation` on the image
column (or the label for classes) in data-report.json: a path that names no file (`exists`), a
0-byte file (`empty_file`), a file cut short (`truncated`), one that does not decode (`decode`,
with Pillow's reason), CMYK or 16-bit images (`mode`, with how to convert them), sizes and channel
counts outside the schema's `min_width`, `max_width`, `min_height`, `max_height` and `channels`
(`width`, `height`, `channels`), exact duplicates and train/eval leakage by content hash (the
dataset rules `duplicates` and `leakage`), class balance, class folders with no image
(`empty_class`), labels outside the label column's `allowed` values (`allowed`); as warnings, files
that are not images, files outside the class folders, and allowed classes without a folder. When
no image at all can be read (or the path does not exist) it is a `DataError`, exit 2.

The profile holds, per image, the mean (brightness) and standard deviation (contrast) of each RGB
channel, the variance of the Laplacian of the grey image (sharpness), width, height and channels,
as numeric columns `<image column>.<statistic>` (e.g. `image.brightness.red`), so drift against a
baseline's profile is measured as for a table's columns. The fingerprint hashes the sorted
(content hash, label) pairs: renaming or reordering the files leaves it as it was.
"""

from __future__ import annotations

from pathlib import Path

from modelci.data.images.read import IMAGE_SUFFIXES, is_image_folder
from modelci.data.schema import Schema

__all__ = ["IMAGE_SUFFIXES", "is_image_data", "is_image_folder"]


def is_image_data(path: Path, schema: Schema | None) -> bool:
    """Whether the dataset at `path` is read as images: a folder per class, or a table with an image column."""
    return is_image_folder(path) or (schema is not None and schema.images is not None)
