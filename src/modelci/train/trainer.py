"""`modelci train`: the configured model, trained on in-memory tensors with a seeded shuffle."""

from __future__ import annotations

import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelci import atomic, github
from modelci.config import Config
from modelci.data.tables import Datasets
from modelci.errors import UsageError
from modelci.features import FeatureSpec, Target
from modelci.train.model import Scorer, build_network, save_checkpoint

LOG_VERSION = 1
CHECKPOINT = "model.pt"
TRAIN_LOG = "train-log.json"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    eval_loss: float
    seconds: float
    samples_per_s: float


@dataclass
class TrainLog:
    task: str
    device: str
    rows: int
    eval_rows: int
    input_columns: list[str]
    input_dim: int
    parameters: int
    seed: int
    settings: dict[str, Any]
    environment: dict[str, str]
    epochs: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    version: int = LOG_VERSION


def feature_columns(config: Config, columns: list[str]) -> list[str]:
    if config.data.features is not None:
        return list(config.data.features)
    return [c for c in columns if c != config.data.label]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device is 'cuda' but this machine has no CUDA device",
                         hint="use device: auto to train on the CPU when no GPU is present")
    return torch.device("cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _loss_fn(task: str) -> nn.Module:
    return {"binary": nn.BCEWithLogitsLoss(), "multiclass": nn.CrossEntropyLoss()}.get(task, nn.MSELoss())


def _targets(target: Target, y: np.ndarray, device: torch.device) -> torch.Tensor:
    if target.task == "multiclass":
        return torch.as_tensor(y, dtype=torch.long, device=device)
    if target.task == "binary":
        return torch.as_tensor(y, dtype=torch.float32, device=device)[:, None]
    return torch.as_tensor((y - target.mean) / target.std, dtype=torch.float32, device=device)[:, None]


def _environment(device: torch.device) -> dict[str, str]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    env["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return env


def train(config: Config, datasets: Datasets, out: Path) -> TrainLog:
    """Train the configured model and write the checkpoint and the training log to `out`."""
    columns = feature_columns(config, list(datasets.train.columns))
    spec = FeatureSpec.fit(datasets.train, columns)
    target = Target.fit(datasets.train[config.data.label], config.task)
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)
    net = build_network(config, spec.width, target.output_dim).to(device)

    x = torch.as_tensor(spec.transform(datasets.train), device=device)
    y = _targets(target, target.encode(datasets.train[config.data.label]), device)
    x_eval = torch.as_tensor(spec.transform(datasets.eval), device=device)
    y_eval = _targets(target, target.encode(datasets.eval[config.data.label]), device)

    settings = asdict(config.train) | {"params": config.model.params}
    log = TrainLog(task=config.task, device=str(device), rows=len(x), eval_rows=len(x_eval), input_columns=columns,
                   input_dim=spec.width, parameters=sum(p.numel() for p in net.parameters()),
                   seed=config.train.seed, settings=settings, environment=_environment(device))
    _fit(net, x, y, x_eval, y_eval, config, log)
    scorer = Scorer(net.cpu(), target).eval()
    save_checkpoint(out / CHECKPOINT, scorer, spec, target, config)
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    return log


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
         config: Config, log: TrainLog) -> None:
    """The loop: a seeded permutation per epoch and tensor slices, no per-sample indexing."""
    settings = config.train
    loss_fn = _loss_fn(config.task)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    start = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        began = time.perf_counter()
        net.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for first in range(0, len(x), settings.batch_size):
            rows = order[first:first + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[rows]), y[rows])
            if not torch.isfinite(loss):
                raise UsageError(f"the training loss became {loss.item()} in epoch {epoch}",
                                 hint="lower train.lr, or check the data for extreme values")
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        net.eval()
        with torch.no_grad():
            eval_loss = float(loss_fn(net(x_eval), y_eval))
        seconds = time.perf_counter() - began
        record = EpochRecord(epoch, total / len(x), eval_loss, round(seconds, 4), round(len(x) / seconds, 1))
        log.epochs.append(record)
        github.log(f"    epoch {epoch:>3}/{settings.epochs}  loss {record.loss:.4f}  "
                   f"eval_loss {record.eval_loss:.4f}  {record.samples_per_s:,.0f} samples/s")
    log.seconds = round(time.perf_counter() - start, 3)
