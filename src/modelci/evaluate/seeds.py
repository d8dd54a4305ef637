"""Training noise: the candidate's recipe trained again with other seeds (`compare.seeds: N`).

Seed i of N is `train.seed + i`. The model that is published is always the first (`train.seed`), fixed
before any is scored, never the best of N on the evaluation rows. The others are trained, exported
and checked for parity exactly as it is, into `--out/seeds/seed-<seed>/`, and scored on the
evaluation rows; metrics.json records every seed's metrics and their spread, so an artifact
published with seeds keeps its own noise on record for the comparisons made against it later. The
comparison (compare/comparison.py) counts that spread into the intervals of the gated metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelci import github
from modelci.child import stopped_with_modelci
from modelci.errors import CheckFailed, InternalError, ModelciError, OutOfMemory, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from modelci.config import Config
    from modelci.data.tables import Datasets

SEEDS_DIR = "seeds"
SEEDS_VERSION = 1
JOB_FILE = "job.pickle"  # the config and rows the seeds' processes train on, removed when they end
POLL_S = 0.2


def seed_values(config: Config) -> list[int]:
    """The seeds of the `compare.seeds` trainings, the published model's first."""
    return [config.train.seed + i for i in range(config.compare.seeds)]


def seed_model(out: Path, seed: int) -> Path:
    from modelci.outputs import MODEL_FILE

    return out / SEEDS_DIR / f"seed-{seed}" / MODEL_FILE


def train_seeds(config: Config, datasets: Datasets, out: Path) -> None:
    """Train, export and check each seed after the first, into `out/seeds/`: in this process, or in up to
    `seed_processes(config)` child processes at once."""
    from modelci.evaluate.retrain import train_and_export

    shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)  # NOTE: no model of an earlier run is scored as this run's
    seeds = seed_values(config)
    jobs = []
    for number, seed in enumerate(seeds[1:], start=2):
        folder = seed_model(out, seed).parent
        folder.mkdir(parents=True)
        jobs.append((seed, folder, f"seed {seed} ({number} of {len(seeds)}, compare.seeds)"))
    processes = seed_processes(config)
    if processes > 1:
        _train_in_processes(config, datasets, out / SEEDS_DIR, jobs, processes)
        return
    for seed, folder, name in jobs:
        github.log(f"    {name}: training")
        train_and_export(config.with_train(seed=seed), datasets, folder, name)


def seed_processes(config: Config) -> int:
    """How many seeds train at once: compare.seed_processes, or for `auto` one a GPU may be used (the seeds take
    turns on the device), else one process per 4 cores."""
    if config.compare.seed_processes is not None:
        return config.compare.seed_processes
    if shutil.which("nvidia-smi") or config.train.device == "cuda":
        return 1
    # NOTE: one PyTorch training already uses every core it is given: fewer than 4 a process only slows each down
    return max(1, min(config.compare.seeds - 1, (os.cpu_count() or 1) // 4))


def _train_in_processes(config: Config, datasets: Datasets, folder: Path, jobs: list[tuple[int, Path, str]],
                        processes: int) -> None:
    """Run the jobs as `python -m modelci.evaluate.seeds` children, `processes` at once; the first failure stops
    the others and is raised as the child's error, named after its seed."""
    job_file = folder / JOB_FILE
    # NOTE: the very config (with its command-line overrides) and rows this process trained on, not re-read
    job_file.write_bytes(pickle.dumps((config, datasets)))
    threads = max(1, (os.cpu_count() or 1) // processes)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    environment.pop("GITHUB_ACTIONS", None)  # NOTE: its log is a file: plain `error:` lines, read back below
    pending, running = list(jobs), list[tuple[subprocess.Popen[bytes], str, Path]]()
    with contextlib.ExitStack() as stack:
        try:
            while pending or running:
                while pending and len(running) < processes:
                    seed, seed_folder, name = pending.pop(0)
                    github.log(f"    {name}: training in a process of its own (compare.seed_processes)")
                    log = folder / f"seed-{seed}.log"
                    with log.open("wb") as handle:
                        child = subprocess.Popen(
                            [sys.executable, "-m", "modelci.evaluate.seeds", "--job", str(job_file),
                             "--out", str(seed_folder), "--seed", str(seed), "--name", name],
                            stdout=handle, stderr=subprocess.STDOUT, env=environment)
                    stack.enter_context(stopped_with_modelci(child))
                    running.append((child, name, log))
                time.sleep(POLL_S)
                for child, name, log in list(running):
                    if child.poll() is None:
                        continue
                    running.remove((child, name, log))
                    if child.returncode != 0:
                        _stop([process for process, _, _ in running])
                        raise _child_error(name, child.returncode, log)
        finally:
            job_file.unlink(missing_ok=True)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    from modelci.child import GRACE_S

    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _child_error(name: str, code: int, log: Path) -> ModelciError:
    """The child's `error:` line (and hint) as an error of its exit code's class, led by the seed's name."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [index for index, line in enumerate(lines) if line.startswith("error: ")]
    message = lines[errors[-1]].removeprefix("error: ") if errors else f"its process ended with exit {code}"
    following = lines[errors[-1] + 1] if errors and errors[-1] + 1 < len(lines) else ""
    hint = following.strip().removeprefix("hint: ") if following.strip().startswith("hint: ") else None
    kind = {1: CheckFailed, 2: UsageError, 4: OutOfMemory}.get(code, InternalError)
    text = message if message.startswith(name) else f"{name}: {message}"
    return kind(f"{text} (its log: {log})", hint=hint)


@click.command(hidden=True)
@click.option("--job", "job_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, required=True)
@click.option("--name", required=True)
def train_seed(job_file: Path, out: Path, seed: int, name: str) -> None:
    """One seed of `compare.seeds` trained and exported into --out, as `modelci train --seed S` and `modelci
    export` would (the child of `_train_in_processes`)."""
    from modelci.evaluate.retrain import train_and_export

    config, datasets = pickle.loads(job_file.read_bytes())
    train_and_export(config.with_train(seed=seed), datasets, out, name)


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


if __name__ == "__main__":
    # NOTE: the child of `_train_in_processes`: modelci's own main, so its errors become exit codes and lines as
    # they do for every command
    from modelci.cli import cli, main

    cli.add_command(train_seed, "train-seed")
    sys.exit(main(["train-seed", *sys.argv[1:]]))
