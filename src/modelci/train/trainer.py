"""`modelci train`: the configured model, trained on in-memory tensors with a seeded shuffle.

The loop shuffles by one permutation per epoch and slices tensors (no per-sample indexing), runs
in bf16 on GPUs that have it, weighs classes, clips gradients, steps a learning-rate schedule and
stops early when the evaluation loss stops improving. After every epoch the whole state (model,
optimizer, schedule, random generators) is saved atomically, so `--resume` continues a run that
was cut off and ends with exactly the model the uninterrupted run would have made.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelci import atomic, github
from modelci.config import Config, TrainConfig
from modelci.data.roles import choose_features, log_choice
from modelci.data.tables import Datasets
from modelci.errors import OutOfMemory, UsageError
from modelci.evaluate.metrics import DEFAULT_METRICS, compute, shown
from modelci.features import MIN_CATEGORY_COUNT, FeatureSpec, Target, category_report, describe_categories
from modelci.train import command, distributed, sklearn_model
from modelci.train.model import Scorer, call_factory, check_network, first_line, save_checkpoint
from modelci.train.progress import Progress

LOG_VERSION = 2
STATE_VERSION = 1
CHECKPOINT = "model.pt"
TRAIN_LOG = "train-log.json"
STATE_FILE = "train-state.pt"  # resumable state after the last finished epoch; removed once training ends
EVAL_CHUNK = 65536  # rows per forward pass when evaluating, so a big eval set never needs all activations at once
# NOTE: settings that may change between an interrupted run and its resumption without changing
# what the finished epochs mean.
RESUMABLE_CHANGES = ("epochs", "device")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    eval_loss: float
    metrics: dict[str, float | None]
    lr: float
    seconds: float
    samples_per_s: float


@dataclass
class TrainLog:
    task: str
    framework: str  # pytorch | scikit-learn | command
    device: str
    processes: int  # torchrun processes (one per GPU); 1 without torchrun
    precision: str
    rows: int
    eval_rows: int
    input_columns: list[str]
    input_dim: int
    parameters: int
    seed: int
    settings: dict[str, Any]
    environment: dict[str, str]
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch with the lowest evaluation loss
    kept_epoch: int | None = None  # the epoch the saved model is: the best with train.patience, else the last
    stopped_early: bool = False
    resumed_from: int | None = None  # the last epoch the saved state held, when resumed
    status: str = "running"  # running | completed | out_of_memory | diverged
    peak_memory_bytes: int | None = None
    seconds: float = 0.0
    left_out: dict[str, str] = field(default_factory=dict)  # columns not taken as features, and why
    as_numbers: list[str] = field(default_factory=list)  # text columns taken as numbers
    # per categorical feature: kept (categories), folded and folded_rows (rare, into "other"), unseen_eval_rows
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = LOG_VERSION


class Diverged(UsageError):
    """Training diverged: a loss, or the fitted model's output, is no longer a finite number."""

    def __init__(self, message: str, *, epoch: int, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.epoch = epoch


def diverged_hint(settings: TrainConfig) -> str:
    """What to change after a diverged run, with the settings it used."""
    clip = ("lower train.grad_clip" if settings.grad_clip is not None
            else "set train.grad_clip (1.0 is a common start)")
    return (f"lower train.lr (it is {settings.lr:g}), {clip}, or check the data for extreme values; "
            "train-log.json records the losses of the epochs before")


def check_finite(epoch: int, loss: float, eval_loss: float, settings: TrainConfig) -> None:
    """Stop at the first epoch whose training or evaluation loss is NaN or infinite."""
    for name, value in (("training loss", loss), ("evaluation loss", eval_loss)):
        if not np.isfinite(value):
            raise Diverged(f"the {name} became {value} in epoch {epoch}: training diverged", epoch=epoch,
                           hint=diverged_hint(settings))


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device is 'cuda' but this machine has no CUDA device",
                         hint="use device: auto to train on the CPU when no GPU is present")
    return torch.device("cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu")


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast type: bf16 where asked for (or, with auto, on a GPU that has it); None is fp32."""
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if requested == "bf16" else None


def seed_everything(seed: int, deterministic: bool) -> None:
    if deterministic:
        # NOTE: cuBLAS reads this when CUDA starts; without it deterministic algorithms refuse to run.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(target: Target, y: np.ndarray, how: str) -> torch.Tensor | None:
    """Inverse-frequency weights: BCE's positive weight (binary) or one weight per class (multiclass)."""
    if how == "none" or target.task == "regression":
        return None
    counts = np.bincount(y, minlength=len(target.classes)).astype(np.float64)
    if target.task == "binary":
        return torch.tensor([counts[0] / counts[1]], dtype=torch.float32)
    return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)


def _loss_fn(task: str, weights: torch.Tensor | None) -> nn.Module:
    if task == "binary":
        return nn.BCEWithLogitsLoss(pos_weight=weights)
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weights)
    return nn.MSELoss()


def _targets(target: Target, y: np.ndarray, device: torch.device) -> torch.Tensor:
    if target.task == "multiclass":
        return torch.as_tensor(y, dtype=torch.long, device=device)
    if target.task == "binary":
        return torch.as_tensor(y, dtype=torch.float32, device=device)[:, None]
    return torch.as_tensor((y - target.mean) / target.std, dtype=torch.float32, device=device)[:, None]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(device: torch.device) -> dict[str, str]:
    """What a rerun needs to match: versions, the device, CUDA and cuDNN."""
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",  # type: ignore[no-untyped-call]
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "gpus": str(torch.cuda.device_count() if cuda else 0), "cpus": str(os.cpu_count()),
        **{package: _version(package) for package in ("modelci", "numpy", "onnx", "onnxruntime", "scikit-learn")},
    }


def _schedule(optimizer: torch.optim.Optimizer, settings: TrainConfig,
              steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    total = settings.epochs * steps
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=total)
    return None


class Loop:
    """One training run's model, optimizer, schedule and random state, advanced an epoch at a time."""

    def __init__(self, net: nn.Module, target: Target, settings: TrainConfig, device: torch.device,
                 steps: int, weights: torch.Tensor | None, job: distributed.Distributed | None = None) -> None:
        self.net, self.settings, self.device, self.steps, self.job = net, settings, device, steps, job
        self.model = distributed.wrap(net, job, device)  # NOTE: what steps run through; `net` is what is saved
        self.scorer = Scorer(net, target).to(device)
        self.loss_fn = _loss_fn(target.task, None if weights is None else weights.to(device))
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = _schedule(self.optimizer, settings, steps)
        self.generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        self.autocast = resolve_precision(settings.precision, device)
        self.epoch = 0
        self.best_loss, self.best_epoch, self.stale = float("inf"), 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _forward(self, x: torch.Tensor, model: nn.Module) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            out: torch.Tensor = model(x)
        return out.float()

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, progress: Progress) -> float:
        """One pass over the rows in a fresh seeded order; the mean training loss."""
        self.epoch += 1
        self.model.train()
        order = torch.randperm(len(x), generator=self.generator).to(x.device)
        if self.job is not None:
            order = self.job.shard(order)
        total = torch.zeros((), device=x.device)
        size = self.settings.batch_size
        for step, first in enumerate(range(0, len(order), size), start=1):
            rows = order[first:first + size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self._forward(x[rows], self.model), y[rows])
            loss.backward()
            if self.settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            # NOTE: summed on the device and read once per epoch: .item() every batch waits for the GPU.
            total += loss.detach() * len(rows)
            progress.step(self.epoch, step)
        rows_seen = len(order)
        if self.job is not None:
            total, rows_seen = self.job.total(total), rows_seen * self.job.world
        return float(total) / rows_seen

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
        """The evaluation loss and the model's output (probabilities, or predictions in label units)."""
        self.net.eval()
        # NOTE: every process scores the whole evaluation set with the same weights, so all of them
        # reach the same early-stopping decision without exchanging anything.
        scores = torch.cat([self._forward(x[first:first + EVAL_CHUNK], self.net)
                            for first in range(0, len(x), EVAL_CHUNK)])
        loss = float(self.loss_fn(scores, y))
        out = self.scorer.head(scores).double().cpu().numpy()
        return loss, out[:, 0] if self.scorer.task == "regression" else out

    def keep_if_best(self, eval_loss: float) -> bool:
        """Track the best epoch; True when training should stop (patience run out)."""
        if eval_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = eval_loss, self.epoch, 0
            if self.settings.patience:
                self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            return False
        self.stale += 1
        return bool(self.settings.patience) and self.stale >= self.settings.patience

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "epoch": self.epoch, "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "best": {"loss": self.best_loss, "epoch": self.best_epoch, "stale": self.stale, "state": self.best_state},
        }

    def load(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        best = state["best"]
        self.best_loss, self.best_epoch, self.stale, self.best_state = (
            best["loss"], best["epoch"], best["stale"], best["state"])


def train(config: Config, datasets: Datasets, out: Path, *, resume: bool = False,
          on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainLog:
    """Train the configured model and write the checkpoint and the training log to `out`.

    `on_epoch` sees every epoch's record (hyperparameter search prunes trials with it).
    """
    settings = config.train
    seed_everything(settings.seed, settings.deterministic)
    chosen = choose_features(datasets.train, config)
    columns = chosen.features
    spec = FeatureSpec.fit(datasets.train, columns, tuple(chosen.as_numbers))
    target = Target.fit(datasets.train[config.data.label], config.task)
    # NOTE: a train.command does its own preprocessing: modelci's categories are not what it used.
    categories = {} if settings.command is not None else category_report(spec, datasets.train, datasets.eval)
    job = distributed.from_env()
    if distributed.is_main(job):
        log_choice(chosen)
        for name, entry in categories.items():
            github.log(describe_categories(name, entry, len(datasets.eval)))
        _warn_constant(spec.constant_columns(datasets.train))
        if config.tuned_from is not None:
            github.log(f"    with the tuned parameters in {config.tuned_from.name}")
        for stale in (CHECKPOINT, sklearn_model.CHECKPOINT, sklearn_model.PICKLE_CHECKPOINT):
            (out / stale).unlink(missing_ok=True)  # NOTE: a run that fails must not leave an older model behind
    log = TrainLog(task=config.task, framework="pytorch", device="cpu", processes=1, precision="fp32",
                   rows=len(datasets.train), eval_rows=len(datasets.eval), input_columns=columns,
                   input_dim=spec.width, parameters=0, seed=settings.seed,
                   settings=asdict(settings) | {"params": config.model.params,
                                                "tuned_from": str(config.tuned_from) if config.tuned_from else None},
                   environment=environment(torch.device("cpu")), left_out=chosen.left_out,
                   as_numbers=chosen.as_numbers, categories=categories)
    if settings.command is not None:
        log.framework, log.input_dim, log.settings = "command", 0, {"command": command.argv(settings.command)}
        return command.run(config, datasets, columns, target, out, log)
    device = distributed.start(job, settings.device) if job else resolve_device(settings.device)
    made = call_factory(config, spec.width, target.output_dim)
    if sklearn_model.is_estimator(made):
        if job is not None:
            raise UsageError("a scikit-learn estimator trains in one process",
                             hint="run modelci train without torchrun or --nproc")
        log.framework, log.settings = "scikit-learn", {"estimator": repr(made)[:500], "params": config.model.params}
        return sklearn_model.fit(made, config, datasets, spec, target, out, log)
    net = check_network(made, config, spec.width, target.output_dim).to(device)
    return _train_network(net, config, datasets, spec, target, out, log, device, job, resume, on_epoch)


def _warn_constant(columns: list[str]) -> None:
    if columns:
        # NOTE: a warning, not an error: the model works, and a value never seen goes to "other" when served.
        github.warning(f"no value of {', '.join(columns)} occurs {MIN_CATEGORY_COUNT} times in the training data, "
                       "so each is one constant input (an ID column?); list the columns the model should use in "
                       "data.features to leave it out")


def _train_network(net: nn.Module, config: Config, datasets: Datasets, spec: FeatureSpec, target: Target,
                   out: Path, log: TrainLog, device: torch.device, job: distributed.Distributed | None,
                   resume: bool, on_epoch: Callable[[EpochRecord], None] | None) -> TrainLog:
    settings, main = config.train, distributed.is_main(job)
    y_train = target.encode(datasets.train[config.data.label])
    x = torch.as_tensor(spec.transform(datasets.train), device=device)
    y = _targets(target, y_train, device)
    x_eval = torch.as_tensor(spec.transform(datasets.eval), device=device)
    y_eval_raw = target.encode(datasets.eval[config.data.label])
    y_eval = _targets(target, y_eval_raw, device)

    rows_per_process = len(x) // job.world if job else len(x)
    steps = -(-rows_per_process // settings.batch_size)
    loop = Loop(net, target, settings, device, steps, class_weights(target, y_train, settings.class_weights), job)
    log.device, log.processes, log.precision = str(device), job.world if job else 1, "bf16" if loop.autocast else "fp32"
    log.parameters, log.environment = sum(p.numel() for p in net.parameters()), environment(device)
    state_path = out / STATE_FILE
    if resume:
        _resume(loop, log, state_path, settings)
    elif state_path.exists() and main:
        state_path.unlink()  # NOTE: a fresh run never picks up an older run's state by accident
    metric_names = config.evaluate.metrics or DEFAULT_METRICS[config.task]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        _fit(loop, log, (x, y), (x_eval, y_eval, y_eval_raw.astype(np.float64)), metric_names, state_path, on_epoch)
    except Diverged:
        if main:
            log.status = "diverged"
            atomic.write_json(out / TRAIN_LOG, asdict(log))
        raise
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory(log, device, settings, out, exc) from None
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc):
            raise
        raise _out_of_memory(log, device, settings, out, exc) from None
    finally:
        if device.type == "cuda":
            log.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    loop.restore_best()
    log.status = "completed"
    if main:
        save_checkpoint(out / CHECKPOINT, Scorer(net.cpu(), target).eval(), spec, target, config)
        atomic.write_json(out / TRAIN_LOG, asdict(log))
        state_path.unlink(missing_ok=True)
    distributed.stop(job)
    return log


def _out_of_memory(log: TrainLog, device: torch.device, settings: TrainConfig, out: Path,
                   exc: BaseException) -> OutOfMemory:
    """Record how far training got and its peak memory, and say what to change."""
    log.status = "out_of_memory"
    if device.type == "cuda":
        log.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    atomic.write_json(out / TRAIN_LOG, asdict(log))
    where = "GPU" if device.type == "cuda" else "CPU"
    peak = f", with {log.peak_memory_bytes / 2**30:.2f} GiB allocated at the peak" if log.peak_memory_bytes else ""
    what = first_line(exc) or type(exc).__name__
    return OutOfMemory(f"training ran out of {where} memory in epoch {len(log.epochs) + 1} at batch_size "
                       f"{settings.batch_size}{peak} ({what})",
                       hint="lower train.batch_size or the model's size; train-log.json records how far it got")


def _resume(loop: Loop, log: TrainLog, path: Path, settings: TrainConfig) -> None:
    if not path.exists():
        github.log(f"    no saved state in {path}: starting from epoch 1")
        return
    # NOTE: loaded on the CPU: random-number states must stay CPU tensors, and load_state_dict moves
    # the weights and the optimizer's state to the parameters' device itself.
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # NOTE: whatever the reason, the file is not one a finished epoch wrote whole
        raise UsageError(f"{path} is corrupt or truncated ({type(exc).__name__}: {first_line(exc)})",
                         hint="train without --resume to start again") from None
    if saved.get("version") != STATE_VERSION:
        raise UsageError(f"{path} was written by another version of modelci",
                         hint="delete it and train from the start")
    # NOTE: a schedule is laid out over all the epochs: with one, their number cannot change either.
    free = [k for k in RESUMABLE_CHANGES if settings.schedule == "constant" or k != "epochs"]
    changed = [k for k, v in saved["settings"].items() if k not in free and getattr(settings, k, None) != v]
    changed += [k for k, v in _identity(log).items() if saved.get("run", {}).get(k) != v]
    if changed:
        raise UsageError(f"{path} was trained with other settings ({', '.join(changed)}); resuming would mix two runs",
                         hint="restore those settings, or train without --resume to start again")
    try:
        loop.load(saved["loop"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UsageError(f"{path} does not fit this model: {str(exc).splitlines()[0][:200]}",
                         hint="train without --resume to start again") from None
    log.epochs = [EpochRecord(**record) for record in saved["epochs"]]
    log.resumed_from = loop.epoch
    github.log(f"    resuming after epoch {loop.epoch} from {path}")


def _identity(log: TrainLog) -> dict[str, Any]:
    """What besides the train settings a saved state belongs to: the model, its inputs, the processes."""
    return {"model.params": log.settings.get("params"), "input_columns": log.input_columns,
            "input_dim": log.input_dim, "processes": log.processes}


def _fit(loop: Loop, log: TrainLog, train_set: tuple[torch.Tensor, torch.Tensor],
         eval_set: tuple[torch.Tensor, torch.Tensor, np.ndarray], metric_names: tuple[str, ...], state: Path,
         on_epoch: Callable[[EpochRecord], None] | None) -> None:
    (x, y), (x_eval, y_eval, labels) = train_set, eval_set
    settings = loop.settings
    main = distributed.is_main(loop.job)
    progress = Progress(settings.epochs, loop.steps)
    stop = bool(settings.patience) and loop.stale >= settings.patience
    while loop.epoch < settings.epochs and not stop:
        began = time.perf_counter()
        loss = loop.train_epoch(x, y, progress)
        eval_loss, scores = loop.evaluate(x_eval, y_eval)
        # NOTE: the evaluation loss too: the epoch's last steps can break the weights after its
        # training loss, the mean of losses measured before each step, was still finite.
        check_finite(loop.epoch, loss, eval_loss, settings)
        stop = loop.keep_if_best(eval_loss)
        seconds = time.perf_counter() - began
        metrics = {k: (v if np.isfinite(v) else None) for k, v in compute(metric_names, labels, scores).items()}
        record = EpochRecord(loop.epoch, loss, eval_loss, metrics, loop.lr, round(seconds, 4),
                             round(len(x) / seconds, 1))
        log.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        progress.epoch(f"    epoch {record.epoch:>3}/{settings.epochs}  loss {loss:.4f}  eval_loss {eval_loss:.4f}  "
                       + "  ".join(f"{k} {shown(v)}" for k, v in metrics.items())
                       + f"  {record.samples_per_s:,.0f} samples/s")
        if main:
            with atomic.atomic_open(state) as handle:
                torch.save({"loop": loop.state(), "epochs": [asdict(e) for e in log.epochs],
                            "settings": asdict(settings), "run": _identity(log), "version": STATE_VERSION}, handle)
    log.best_epoch = loop.best_epoch or None
    log.kept_epoch = log.best_epoch if settings.patience else loop.epoch
    log.stopped_early = stop and loop.epoch < settings.epochs
    if log.stopped_early:
        github.log(f"    stopped after epoch {loop.epoch}: no better eval_loss for {settings.patience} epochs; "
                   f"keeping epoch {loop.best_epoch}")
    log.seconds = round(sum(e.seconds for e in log.epochs), 3)
