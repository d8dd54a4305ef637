"""Reading training and evaluation data (Parquet or CSV; a file, a glob or a folder of files)."""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelci.config import Config
    from modelci.data.schema import Schema

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


def _typed(batch: pa.RecordBatch, schema: Schema | None) -> pa.Table:
    """A batch with the schema's columns converted to their types; values that do not parse become empty."""
    import pyarrow as pa

    from modelci.data.columns import column_batch

    columns = []
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        rule = schema.column(name) if schema else None
        if (rule is None or rule.type == "string") and pa.types.is_temporal(array.type):
            # NOTE: kept as dates and times, so training can tell them from text (data/roles.py)
            columns.append(array)
            continue
        converted = column_batch(array, rule.type if rule else None)
        if converted.kind == "string":
            columns.append(converted.raw.cast(pa.string()))
        else:
            assert converted.values is not None
            values = converted.values.astype(bool) if converted.kind == "bool" else converted.values
            columns.append(pa.array(values, mask=converted.missing))
    return pa.Table.from_arrays(columns, names=batch.schema.names)


def read_table(path: Path, schema: Schema | None = None) -> pa.Table:
    """Read every file a path names into one Arrow table, with the schema's columns in their types."""
    import pyarrow as pa

    from modelci.data import source

    text = [r.name for r in schema.columns if r.type != "string"] if schema else []
    tables = [_typed(batch, schema) for _, batch in source.batches(path, text_columns=text)]
    if not tables:
        raise DataError(f"{path}: the data has no rows", hint="check that the file holds data, not just a header")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the files do not share one set of columns: {exc}") from None


@dataclass(frozen=True)
class Datasets:
    train: pd.DataFrame
    eval: pd.DataFrame
    cleaning: dict[str, Any] = field(default_factory=dict)  # what data.clean removed, per dataset


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


def _load(path: Path, config: Config, schema: Schema | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    from modelci.data.clean import clean_table

    table = read_table(path, schema)
    report = None
    if config.data.clean.active:
        table, cleaning = clean_table(table, schema, config.data.clean, config.data.label)
        report = asdict(cleaning)
    frame = table.to_pandas()
    _require_label(frame, config.data.label, path)
    return frame, report


def load_datasets(config: Config) -> Datasets:
    """The training and evaluation frames, cleaned as `data.clean` says: `data.eval` or a seeded split."""
    from modelci.data.named import require_named_columns
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    require_named_columns(config)
    train, cleaned = _load(config.data.train, config, schema)
    cleaning = {"train": cleaned} if cleaned else {}
    if config.data.eval is None:
        split = _split(train, config)
        return Datasets(train=split.train, eval=split.eval, cleaning=cleaning)
    evaluation, cleaned = _load(config.data.eval, config, schema)
    if cleaned:
        cleaning["eval"] = cleaned
    return Datasets(train=train, eval=evaluation, cleaning=cleaning)
