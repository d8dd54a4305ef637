"""Reading training, validation and evaluation data (Parquet or CSV; a file, a glob or a folder of files), and
splitting any model's data, an image model's folders included (`load_datasets`, `split_datasets`)."""

from __future__ import annotations

import glob
from collections.abc import Callable
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
            raise DataError(f"{text}: the pattern matches no file",
                            hint="check the path in data.train, data.eval or data.validation")
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


def typed(batch: pa.RecordBatch, schema: Schema | None) -> pa.Table:
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
    tables = [typed(batch, schema) for _, batch in source.batches(path, text_columns=text)]
    if not tables:
        raise DataError(f"{path}: the data has no rows", hint="check that the file holds data, not just a header")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the files do not share one set of columns: {exc}") from None


@dataclass(frozen=True)
class Datasets:
    """The rows, each with one job: `train` fits, `validation` chooses (early stopping, the kept epoch, the
    tuning objective), `eval` judges; only `evaluate`, `compare` and the gate read `eval`."""

    train: pd.DataFrame
    eval: pd.DataFrame
    validation: pd.DataFrame
    cleaning: dict[str, Any] = field(default_factory=dict)  # what data.clean removed, per dataset
    # NOTE: an image model's image column, whose values are paths (or encoded bytes): its rows are the same rows
    # by their images' content, not by those values (the overlap check, data/rowsketch.py)
    images: tuple[str, ...] = ()


def require_label(frame: pd.DataFrame, label: str, where: Path) -> None:
    if label not in frame.columns:
        raise DataError(
            f"{where}: the label column '{label}' is missing (columns: {', '.join(map(str, frame.columns))})",
            hint="set data.label in modelci.yaml to the column to predict",
        )
    if frame[label].isna().any():
        raise DataError(f"{where}: the label column '{label}' has {int(frame[label].isna().sum())} empty values",
                        hint="remove the rows without a label, or fix the data")


def _strata(frame: pd.DataFrame, config: Config, stratify: bool) -> list[np.ndarray]:
    """The row numbers of each class (stratified classification), or of all rows."""
    if not stratify or config.task == "regression":
        return [np.arange(len(frame))]
    labels = frame[config.data.label].to_numpy()
    return [np.flatnonzero(labels == value) for value in sorted(frame[config.data.label].unique())]


def _split(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`data.split`: (training rows, evaluation rows)."""
    split = config.data.split
    rng = np.random.default_rng(split.seed)
    mask = np.zeros(len(frame), dtype=bool)
    for rows in _strata(frame, config, split.stratify):
        mask[rng.permutation(rows)[: round(len(rows) * split.fraction)]] = True
    return _sides(frame, mask)


def _sides(frame: pd.DataFrame, mask: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


VALIDATION_SPLIT = "data.validation_split"


def carve_validation(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`data.validation_split`: (training rows, validation rows), grouped, by time, or at random; exit 2
    naming the key when a side would have no rows, or (classification) a class none."""
    settings = config.data.validation_split
    if settings.group is not None:
        mask, key = _by_group(frame, settings.group, settings.fraction, settings.seed), f"{VALIDATION_SPLIT}.group"
    elif settings.time is not None:
        mask, key = _by_time(frame, settings.time, settings.fraction), f"{VALIDATION_SPLIT}.time"
    else:
        mask, key = _at_random(frame, config), f"{VALIDATION_SPLIT}.fraction"
    taken = int(mask.sum())
    if taken == 0 or taken == len(frame):
        raise DataError(f"{key}: of {len(frame):,} training rows, the validation split takes {taken:,}, which "
                        "leaves one side with no rows",
                        hint=f"change {VALIDATION_SPLIT}.fraction, or give a data.validation file")
    train, validation = _sides(frame, mask)
    _require_classes(train, validation, config, key)
    return train, validation


def _at_random(frame: pd.DataFrame, config: Config) -> np.ndarray:
    settings = config.data.validation_split
    rng = np.random.default_rng(settings.seed)
    mask = np.zeros(len(frame), dtype=bool)
    strata = _strata(frame, config, settings.stratify)
    for rows in strata:
        take = round(len(rows) * settings.fraction)
        if len(strata) > 1 and len(rows) > 1:
            take = min(max(take, 1), len(rows) - 1)  # NOTE: a small class still gets rows on both sides
        mask[rng.permutation(rows)[:take]] = True
    return mask


def _column(frame: pd.DataFrame, column: str, key: str) -> pd.Series:
    if column not in frame.columns:
        raise DataError(f"{key}: the training data has no column '{column}' (columns: "
                        f"{', '.join(map(str, frame.columns))})", hint=f"set {key} to a column of data.train")
    return frame[column]


def _by_group(frame: pd.DataFrame, column: str, fraction: float, seed: int) -> np.ndarray:
    """Whole groups, in a seeded order, until their rows come nearest the fraction of the rows."""
    import pandas as pd

    codes, groups = pd.factorize(_column(frame, column, f"{VALIDATION_SPLIT}.group"), use_na_sentinel=False)
    order = np.random.default_rng(seed).permutation(len(groups))
    rows = np.cumsum(np.bincount(codes, minlength=len(groups))[order])
    count = int(np.argmin(np.abs(rows - fraction * len(frame)))) + 1
    return np.isin(codes, order[:count])


def _by_time(frame: pd.DataFrame, column: str, fraction: float) -> np.ndarray:
    """The latest rows by the column: every row at or after the time that leaves the fraction of rows after it."""
    import pandas as pd

    key = f"{VALIDATION_SPLIT}.time"
    values = _column(frame, column, key)
    if values.isna().any():
        raise DataError(f"{key}: the column '{column}' has {int(values.isna().sum())} empty values",
                        hint="fill them in, or split by another column")
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        try:
            values = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{key}: the column '{column}' holds values that are neither times nor numbers ({exc})",
                            hint="name a column of dates, times or numbers") from None
    times = values.to_numpy()
    cutoff = np.sort(times)[len(times) - max(1, round(len(times) * fraction))]
    return np.asarray(times >= cutoff)


def _require_known_labels(train: pd.DataFrame, evaluation: pd.DataFrame, config: Config) -> None:
    """Refuse evaluation labels the training rows never had before training, not after it (exit 2)."""
    from modelci.features import Target

    if config.task != "regression":
        Target.fit(train[config.data.label], config.task).encode(evaluation[config.data.label])


def _require_classes(train: pd.DataFrame, validation: pd.DataFrame, config: Config, key: str) -> None:
    """Classification: every class on both sides, so validation measures every class the model learns."""
    if config.task == "regression":
        return
    label = config.data.label
    seen = {side: set(frame[label].drop_duplicates().tolist()) for side, frame in
            (("training", train), ("validation", validation))}
    for side, other in (("validation", "training"), ("training", "validation")):
        missing = sorted(map(str, seen[other] - seen[side]))
        if missing:
            raise DataError(f"{key}: the {side} rows have no row of class {', '.join(missing[:10])}",
                            hint=f"give every class rows on both sides: change {VALIDATION_SPLIT} (its fraction, "
                                 "group or time) or the data.validation file")


def _load(path: Path, config: Config, schema: Schema | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    from modelci.data.clean import clean_table

    table = read_table(path, schema)
    report = None
    if config.data.clean.active:
        table, cleaning = clean_table(table, schema, config.data.clean, config.data.label)
        report = asdict(cleaning)
    frame = table.to_pandas()
    require_label(frame, config.data.label, path)
    return frame, report


# A dataset's rows, read from the path a key of the config (data.train, data.eval, data.validation) names,
# with what data.clean removed from them (None: nothing cleaned).
Reader = Callable[[Path, str], tuple["pd.DataFrame", "dict[str, Any] | None"]]


def load_datasets(config: Config) -> Datasets:
    """The training, validation and evaluation frames of any model: an image model's rows of (image path, label)
    from its folders per class (`modelci.frameworks.images.datasets`), else the tables, cleaned as `data.clean`
    says; split as `split_datasets` says."""
    from modelci.data.named import require_named_columns
    from modelci.data.schema import load_schema
    from modelci.frameworks.images.datasets import image_datasets, is_image_model

    if is_image_model(config):
        return image_datasets(config)
    schema = load_schema(config.data.schema) if config.data.schema else None
    require_named_columns(config)
    return split_datasets(config, lambda path, _key: _load(path, config, schema))


def split_datasets(config: Config, read: Reader) -> Datasets:
    """`data.eval` or a seeded split of the training data (`data.split`), then `data.validation` or
    `data.validation_split` of the remaining training rows; labels the training rows never had refused (exit 2).
    One path for tables and images alike, so both are split and checked the same way."""
    train, cleaned = read(config.data.train, "data.train")
    cleaning = {"train": cleaned} if cleaned else {}
    if config.data.eval is None:
        train, evaluation = _split(train, config)
    else:
        evaluation, cleaned = read(config.data.eval, "data.eval")
        if cleaned:
            cleaning["eval"] = cleaned
    _require_known_labels(train, evaluation, config)
    if config.data.validation is None:
        train, validation = carve_validation(train, config)
    else:
        validation, cleaned = read(config.data.validation, "data.validation")
        _require_classes(train, validation, config, "data.validation")
        if cleaned:
            cleaning["validation"] = cleaned
    return Datasets(train=train, eval=evaluation, validation=validation, cleaning=cleaning)
