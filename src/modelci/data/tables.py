"""Reading training and evaluation data (Parquet or CSV; a file, a glob or a folder of files)."""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelci.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelci.config import Config

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def resolve_files(path: Path) -> list[Path]:
    """The data files a path names: itself, the files in a folder, or the matches of a glob."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"{text}: the pattern matches no file", hint="check the path in data.train / data.eval")
        return files
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder holds no .parquet or .csv file")
        return files
    if not path.exists():
        raise DataError(
            f"{path}: no such file",
            hint="check the data path in modelci.yaml (relative paths start at the config file's folder)",
        )
    return [path]


def _read_one(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type '{path.suffix}'", hint="use .parquet or .csv files")
    try:
        table = pq.read_table(path) if kind == "parquet" else pa_csv.read_csv(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind.upper()}: {reason}",
                        hint=f"check that the file is a complete, valid {kind.upper()} file") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no rows")
    return table


def read_table(path: Path) -> pa.Table:
    """Read every file a path names into one Arrow table; files must share their columns."""
    import pyarrow as pa

    tables = [_read_one(p) for p in resolve_files(path)]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the files do not share one set of columns: {exc}") from None


def fingerprint(path: Path) -> str:
    """A content hash of the data files a path names: their names and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in resolve_files(path):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class Datasets:
    train: pd.DataFrame
    eval: pd.DataFrame


def _require_label(frame: pd.DataFrame, label: str, where: Path) -> None:
    if label not in frame.columns:
        raise DataError(
            f"{where}: the label column '{label}' is missing (columns: {', '.join(map(str, frame.columns))})",
            hint="set data.label in modelci.yaml to the column to predict",
        )
    if frame[label].isna().any():
        raise DataError(f"{where}: the label column '{label}' has {int(frame[label].isna().sum())} empty values",
                        hint="remove the rows without a label, or fix the data")


def _split(frame: pd.DataFrame, config: Config) -> Datasets:
    split = config.data.split
    rng = np.random.default_rng(split.seed)
    eval_rows: list[np.ndarray] = []
    groups = (
        [np.flatnonzero(frame[config.data.label].to_numpy() == value)
         for value in sorted(frame[config.data.label].unique())]
        if split.stratify and config.task != "regression" else [np.arange(len(frame))]
    )
    for rows in groups:
        chosen = rng.permutation(rows)[: round(len(rows) * split.fraction)]
        eval_rows.append(chosen)
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.concatenate(eval_rows)] = True
    return Datasets(train=frame[~mask].reset_index(drop=True), eval=frame[mask].reset_index(drop=True))


def load_datasets(config: Config) -> Datasets:
    """The training and evaluation frames: `data.eval` when given, else a seeded (stratified) split."""
    train = read_table(config.data.train).to_pandas()
    _require_label(train, config.data.label, config.data.train)
    if config.data.eval is None:
        return _split(train, config)
    evaluation = read_table(config.data.eval).to_pandas()
    _require_label(evaluation, config.data.label, config.data.eval)
    return Datasets(train=train, eval=evaluation)
