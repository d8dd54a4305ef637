"""Training noise: the candidate's recipe trained again with other seeds (`compare.seeds: N`).

Seed i of N is `train.seed + i`. The model that is published is always the first (`train.seed`), fixed
before any is scored, never the best of N on the evaluation rows. The others are trained, exported
and checked for parity exactly as it is, into `--out/seeds/seed-<seed>/`, and scored on the
evaluation rows; metrics.json records every seed's metrics and their spread, so an artifact
published with seeds keeps its own noise on record for the comparisons made against it later. The
comparison (compare/comparison.py) counts that spread into the intervals of the gated metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import github
from modelci.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config
    from modelci.data.tables import Datasets

SEEDS_DIR = "seeds"
SEEDS_VERSION = 1


def seed_values(config: Config) -> list[int]:
    """The seeds of the `compare.seeds` trainings, the published model's first."""
    return [config.train.seed + i for i in range(config.compare.seeds)]


def seed_model(out: Path, seed: int) -> Path:
    from modelci.outputs import MODEL_FILE

    return out / SEEDS_DIR / f"seed-{seed}" / MODEL_FILE


def train_seeds(config: Config, datasets: Datasets, out: Path) -> None:
    """Train, export and check each seed after the first, into `out/seeds/`."""
    from modelci.evaluate.retrain import train_and_export

    shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)  # NOTE: no model of an earlier run is scored as this run's
    seeds = seed_values(config)
    for number, seed in enumerate(seeds[1:], start=2):
        folder = seed_model(out, seed).parent
        folder.mkdir(parents=True)
        name = f"seed {seed} ({number} of {len(seeds)}, compare.seeds)"
        github.log(f"    {name}: training")
        train_and_export(config.with_train(seed=seed), datasets, folder, name)


def score_seeds(config: Config, frame: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Every seed's metrics on the evaluation rows, the published model's first, and their spread."""
    from modelci.evaluate.evaluator import evaluate_frame
    from modelci.outputs import MODEL_FILE

    seeds = seed_values(config)
    models = [out / MODEL_FILE, *candidate_models(config, out)]
    return summary(seeds, [evaluate_frame(config, frame, model) for model in models])


def summary(seeds: list[int], metrics: list[dict[str, float | None]]) -> dict[str, Any]:
    """Per metric: each seed's value, their mean and standard deviation (n - 1)."""
    from modelci.evaluate.metrics import spread

    found: dict[str, Any] = {}
    for name in metrics[0]:
        values = [m[name] for m in metrics]
        found[name] = {"values": values, **spread(values)}
    return {"version": SEEDS_VERSION, "seeds": seeds, "metrics": found}


def candidate_models(config: Config, out: Path) -> list[Path]:
    """The extra seeds' models that this run trained (none when compare.seeds is 1)."""
    return [seed_model(out, seed) for seed in seed_values(config)[1:]]


def trained_with(config: Config, out: Path) -> list[Path]:
    """The other seeds' models for the comparison, checked to be those `modelci evaluate` trained beside the model
    in `out` (metrics.json records the seeds and the model's digest): never the seeds of an earlier model."""
    from modelci.evaluate.evaluator import METRICS_FILE, file_digest
    from modelci.outputs import MODEL_FILE

    found = candidate_models(config, out)
    if not found:
        return found
    metrics = out / METRICS_FILE
    record = json.loads(metrics.read_text()) if metrics.is_file() else {}
    model = out / MODEL_FILE
    current = (record.get("seeds") or {}).get("seeds") == seed_values(config) and model.is_file() \
        and record.get("model_digest") == file_digest(model) and all(path.is_file() for path in found)
    if not current:
        raise UsageError(f"compare.seeds is {config.compare.seeds}, but {out} holds no other seeds trained beside "
                         "this model",
                         hint="run `modelci evaluate` after `modelci export`: it trains the other seeds "
                              "(`modelci run` runs every stage)")
    return found
