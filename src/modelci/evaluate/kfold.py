"""K-fold cross-validation: K models, each trained without one fold and scored on it, in ONNX Runtime.

Folds are stratified by the label for classification and keep each group whole when
`evaluate.group` names a column. Repeated K-fold (`evaluate.repeats` R) makes R such partitions,
each shuffled with its own seed derived from `train.seed`, so K·R results come back.
Every fold's model is trained exactly as `modelci train` trains (the validation rows, carved before
the folds are made, choose its epoch; the evaluation rows are never read), exported with the same
parity check, and then scored on its held-out fold, so what is measured is what would be deployed.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import github
from modelci.data.tables import Datasets
from modelci.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config

FOLDS_DIR = "kfold"
# The format of metrics.json's "kfold" part. 1 (no "version" key): one partition, no repeat index;
# 2: "repeats" and each fold's "repeat" (1-based), the folds' values repeat by repeat.
KFOLD_VERSION = 2


@dataclass(frozen=True)
class FoldMetrics:
    repeat: int
    fold: int
    train_rows: int
    rows: int
    metrics: dict[str, float | None]


def split_seed(seed: int, repeat: int) -> int:
    """The shuffling seed of repeat `repeat` (0-based): the configured seed itself for the first, so
    that one repeat makes the same folds as before repeats existed; a seed derived from both after."""
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**32, repeat]).generate_state(1)[0])


def fold_rows(frame: pd.DataFrame, config: Config, k: int, repeat: int = 0) -> list[np.ndarray]:
    """The row numbers of each fold's held-out part, in the partition of repeat `repeat` (0-based)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    group, seed = config.evaluate.group, split_seed(config.train.seed, repeat)
    classify = config.task != "regression"
    if group is not None and group not in frame.columns:
        raise UsageError(f"evaluate.group: the training data has no column '{group}'",
                         hint=f"its columns are {', '.join(map(str, frame.columns))}")
    splitter: Any
    if group is not None:
        # NOTE: GroupKFold without shuffling is deterministic: every repeat would make the same folds.
        # The first repeat keeps it unshuffled so that its folds are those made before repeats existed.
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed) if classify else \
            GroupKFold(k, shuffle=repeat > 0, random_state=seed if repeat > 0 else None)
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if classify else KFold(k, shuffle=True,
                                                                                                random_state=seed)
    labels = frame[config.data.label].astype(str)
    counts = labels.value_counts()
    if classify and counts.iloc[-1] < k:
        raise UsageError(f"evaluate.kfold: class {counts.index[-1]!r} has {counts.iloc[-1]} rows, fewer than the "
                         f"{k} folds; some folds would not hold it", hint="use fewer folds")
    groups = frame[group].astype(str) if group is not None else None
    try:
        return [held_out for _, held_out in splitter.split(frame, labels if classify else None, groups)]
    except ValueError as exc:
        raise UsageError(f"evaluate.kfold: cannot make {k} folds of this training data: {exc}",
                         hint="use fewer folds") from None


def summary(folds: list[FoldMetrics]) -> dict[str, dict[str, Any]]:
    """Per metric: the folds' mean, standard deviation (n - 1) and each fold's value."""
    from modelci.evaluate.metrics import spread

    found: dict[str, dict[str, Any]] = {}
    for name in folds[0].metrics:
        values = [f.metrics[name] for f in folds]
        found[name] = {**spread(values), "folds": values}
    return found


def cross_validate(config: Config, datasets: Datasets, out: Path, k: int) -> dict[str, Any]:
    """Train, export and score one model per fold, for each of `evaluate.repeats` partitions; the K·R
    folds' metrics and their summary."""
    if config.model.onnx is not None:
        # NOTE: K-fold trains a model per fold; a file made elsewhere would be the same model on every fold
        raise UsageError("K-fold cross-validation trains a model per fold; model.onnx is a model already made",
                         hint="set evaluate.kfold: 0 (and leave out --kfold) for a model.onnx")
    repeats = config.evaluate.repeats
    folds = []
    try:
        for repeat in range(repeats):
            for i, held_out in enumerate(fold_rows(datasets.train, config, k, repeat), start=1):
                name = f"fold {i}/{k}" if repeats == 1 else f"repeat {repeat + 1}/{repeats}, fold {i}/{k}"
                folds.append(_fold(config, datasets, out / FOLDS_DIR / f"fold-{repeat + 1}-{i}", held_out, name,
                                   (repeat + 1, i)))
    finally:
        shutil.rmtree(out / FOLDS_DIR, ignore_errors=True)
    rows = [{"repeat": f.repeat, "fold": f.fold, "train_rows": f.train_rows, "rows": f.rows} for f in folds]
    return {"version": KFOLD_VERSION, "folds": k, "repeats": repeats, "stratified": config.task != "regression",
            "group": config.evaluate.group, "seed": config.train.seed, "validation": _validation(config),
            "metrics": summary(folds), "fold_rows": rows}


def _validation(config: Config) -> dict[str, Any]:
    """Which rows were carved from the training data for validation: the folds partition the rest."""
    if config.data.validation is not None:
        return {"file": config.data.validation.name}
    return asdict(config.data.validation_split)


def _fold(config: Config, datasets: Datasets, folder: Path, held_out: np.ndarray, name: str,
          index: tuple[int, int]) -> FoldMetrics:
    """Train on the rows not in `held_out`, export, and score on `held_out`; `index` is (repeat, fold)."""
    from modelci.evaluate.evaluator import evaluate_frame
    from modelci.evaluate.retrain import train_and_export
    from modelci.outputs import MODEL_FILE

    folder.mkdir(parents=True, exist_ok=True)
    kept = np.setdiff1d(np.arange(len(datasets.train)), held_out)
    counted = "images" if datasets.images else "rows"
    github.log(f"    {name}: training on {len(kept):,} {counted}, scoring {len(held_out):,}")
    # NOTE: the validation rows, disjoint from every fold, choose the kept epoch: never the held-out fold
    fold = dataclasses.replace(datasets, train=datasets.train.iloc[kept].reset_index(drop=True))
    train_and_export(config, fold, folder, name)
    test = datasets.train.iloc[held_out].reset_index(drop=True)
    return FoldMetrics(*index, len(kept), len(test), evaluate_frame(config, test, folder / MODEL_FILE))
