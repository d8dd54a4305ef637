"""`modelci train`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.train.trainer import TrainLog


def stage(config: Config, out: Path, datasets: Datasets, *, resume: bool = False) -> TrainLog:
    from modelci.data.rowsketch import write_training_sketch
    from modelci.evaluate.seeds import SEEDS_DIR
    from modelci.train.trainer import train as train_model

    with github.group("Training"):
        # NOTE: the other seeds of an earlier model are not this one's (evaluate trains them anew)
        shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)
        log = train_model(config, datasets, out, resume=resume)
        # NOTE: the rows that made the model (cleaned, split), for a later comparison's overlap check
        write_training_sketch(out, datasets.train, datasets.validation, images=datasets.images)
        return log


@click.command()
@common
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Overrides train.epochs.")
@click.option("--seed", type=int, default=None, help="Overrides train.seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Overrides train.device.")
@click.option("--resume", is_flag=True,
              help="Continue from the state saved after the last finished epoch (train-state.pt), if there is one.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train in this many processes with torchrun and DistributedDataParallel (one per GPU).")
def train(config_path: Path | None, out: Path, epochs: int | None, seed: int | None, device: str | None,
          resume: bool, nproc: int) -> int:
    """Train the configured model; writes model.pt and train-log.json."""
    from modelci.data.tables import load_datasets
    from modelci.frameworks import distributed

    if nproc > 1 and distributed.from_env() is None:
        given = {"--config": config_path, "--out": out, "--epochs": epochs, "--seed": seed, "--device": device}
        arguments = [str(a) for flag, value in given.items() if value is not None for a in (flag, value)]
        return distributed.launch(nproc, ["train", *arguments, *(["--resume"] if resume else [])])
    config = prepare(config_path, out).with_train(epochs=epochs, seed=seed, device=device)
    stage(config, out, load_datasets(config), resume=resume)
    return 0
