"""The PyTorch training loop: the factory's network trained on in-memory tensors with a seeded shuffle.

A table's rows are tensors in memory: the loop shuffles by one permutation per epoch and slices them
(no per-sample indexing). Whatever else feeds the loop (an image model's streaming loader,
frameworks/images) hands `run` a `Feed` and gets the same loop, seeds, resume, out-of-memory and
progress behaviour. The loop runs
in bf16 on GPUs that have it, weighs classes, clips gradients, steps a learning-rate schedule and
stops early when the validation loss stops improving. After every epoch the whole state (model,
optimizer, schedule, random generators) is saved atomically, so `--resume` continues a run that
was cut off and ends with exactly the model the uninterrupted run would have made.

NOTE: imports torch: only the PyTorch adapter's `fit` imports this module, so that training a model
of another framework never does.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelci import atomic, github
from modelci.config import TrainConfig
from modelci.errors import OutOfMemory, UsageError, first_line
from modelci.evaluate.metrics import DEFAULT_METRICS, compute, shown
from modelci.features import Target
from modelci.frameworks import Fit, distributed
from modelci.frameworks.distributed import Distributed
from modelci.frameworks.fitting import Diverged, check_finite
from modelci.frameworks.fitting import environment as base_environment
from modelci.frameworks.progress import Progress
from modelci.frameworks.torch import CHECKPOINT
from modelci.frameworks.torch_model import Scorer, check_network, save_checkpoint
from modelci.outputs import STATE_FILE, TRAIN_LOG, EpochRecord, TrainLog

STATE_VERSION = 1
EVAL_CHUNK = 65536  # rows per forward pass when scoring, so a big validation set never needs all activations at once
# NOTE: settings that may change between an interrupted run and its resumption without changing
# what the finished epochs mean.
RESUMABLE_CHANGES = ("epochs", "device", "workers")


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


def seed(seed: int, deterministic: bool) -> None:
    """Seed torch (`train` seeds Python's and numpy's generators) and choose its deterministic algorithms."""
    if deterministic:
        # NOTE: cuBLAS reads this when CUDA starts; without it deterministic algorithms refuse to run.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
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


def targets(target: Target, y: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """The labels as the loss takes them: class indices, a binary column, or standardized regression values."""
    if target.task == "multiclass":
        return torch.as_tensor(y, dtype=torch.long, device=device)
    if target.task == "binary":
        return torch.as_tensor(y, dtype=torch.float32, device=device)[:, None]
    return torch.as_tensor((y - target.mean) / target.std, dtype=torch.float32, device=device)[:, None]


def environment(device: torch.device) -> dict[str, str]:
    """What a rerun needs to match: `train`'s versions, and torch's, the device, CUDA and cuDNN."""
    cuda = device.type == "cuda"
    return base_environment() | {
        "torch": torch.__version__, "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",  # type: ignore[no-untyped-call]
        "device_name": torch.cuda.get_device_name(device) if cuda else base_environment()["device_name"],
        "gpus": str(torch.cuda.device_count() if cuda else 0),
    }


def device_for(job: Distributed | None, requested: str) -> torch.device:
    """The device this process trains on: its GPU in a torchrun job (joining the process group), else as asked."""
    return start(job, requested) if job else resolve_device(requested)


def start(job: Distributed, requested: str) -> torch.device:
    """Join the process group; each process on a GPU machine takes the GPU of its local rank."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device is 'cuda' but this machine has no CUDA device",
                         hint="use device: auto to train on the CPU when no GPU is present")
    cuda = requested != "cpu" and torch.cuda.is_available()
    if cuda and job.local_rank >= torch.cuda.device_count():
        raise UsageError(f"{job.world} processes on this machine but {torch.cuda.device_count()} GPUs",
                         hint="start one process per GPU: --nproc (or torchrun --nproc-per-node) at most the GPUs")
    device = torch.device("cuda", job.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def wrap(net: nn.Module, job: Distributed | None, device: torch.device) -> nn.Module:
    if job is None:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def stop(job: Distributed | None, loop: Loop) -> None:
    """End a torchrun job's process group, once the DDP wrapper that uses it is gone.

    NOTE: the wrapper's reducer holds the group: were it freed after the group is destroyed (when `run`'s frame
    ends), gloo's destructor would join its worker threads while this thread holds the GIL, and a worker that
    frees a Python tensor waits for the GIL: a deadlock (seen once in CI, a torchrun job that never ended)."""
    loop.model = loop.net
    gc.collect()
    if job is not None and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def shard(job: Distributed, order: torch.Tensor) -> torch.Tensor:
    """This process's share of an epoch's row order; every share is the same size, so no process waits."""
    usable = len(order) - len(order) % job.world
    return order[job.rank:usable:job.world]


def total(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` over every process."""
    summed = value.clone()
    torch.distributed.all_reduce(summed)
    return summed


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
                 steps: int, weights: torch.Tensor | None, job: Distributed | None = None) -> None:
        self.net, self.settings, self.device, self.steps, self.job = net, settings, device, steps, job
        self.model = wrap(net, job, device)  # NOTE: what steps run through; `net` is what is saved
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

    def epoch_order(self, rows: int) -> torch.Tensor:
        """This process's rows for the next epoch, in a fresh order from the run's seeded generator."""
        order = torch.randperm(rows, generator=self.generator)
        return shard(self.job, order) if self.job is not None else order

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, progress: Progress) -> float:
        """One pass over the rows in a fresh seeded order; the mean training loss."""
        order = self.epoch_order(len(x)).to(x.device)
        size = self.settings.batch_size
        slices = (order[first:first + size] for first in range(0, len(order), size))
        return self.train_batches(((x[rows], y[rows]) for rows in slices), progress)

    def train_batches(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], progress: Progress) -> float:
        """One epoch: a step on each (inputs, targets) batch, on the device; the mean training loss."""
        self.epoch += 1
        self.model.train()
        total_loss = torch.zeros((), device=self.device)
        rows_seen = 0
        for step, (x, y) in enumerate(batches, start=1):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self._forward(x, self.model), y)
            loss.backward()
            if self.settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            # NOTE: summed on the device and read once per epoch: .item() every batch waits for the GPU.
            total_loss += loss.detach() * len(y)
            rows_seen += len(y)
            progress.step(self.epoch, step)
        if self.job is not None:
            total_loss, rows_seen = total(total_loss), rows_seen * self.job.world
        return float(total_loss) / rows_seen

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
        """The loss on these rows (the validation rows) and the model's output (probabilities, or predictions in
        label units)."""
        return self.evaluate_batches((x[first:first + EVAL_CHUNK], y[first:first + EVAL_CHUNK])
                                     for first in range(0, len(x), EVAL_CHUNK))

    @torch.no_grad()
    def evaluate_batches(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, np.ndarray]:
        """`evaluate` on (inputs, targets) batches, whose scores are gathered (never all the inputs at once)."""
        self.net.eval()
        # NOTE: every process scores the whole validation set with the same weights, so all of them
        # reach the same early-stopping decision without exchanging anything.
        scores, ys = [], []
        for x, y in batches:
            scores.append(self._forward(x, self.net))
            ys.append(y)
        joined = torch.cat(scores)
        loss = float(self.loss_fn(joined, torch.cat(ys)))
        out = self.scorer.head(joined).double().cpu().numpy()
        return loss, out[:, 0] if self.scorer.task == "regression" else out

    def keep_if_best(self, val_loss: float) -> bool:
        """Track the best epoch by the validation loss; True when training should stop (patience run out)."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = val_loss, self.epoch, 0
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


@dataclass(frozen=True)
class Feed:
    """The rows a run trains and validates on, however they are held: a table's tensors in memory, or images a
    loader reads batch by batch. `train` and `validate` run one epoch and one validation pass of a `Loop`."""

    rows: int  # training rows, in every process together
    steps: int  # batches per epoch in each process
    labels: np.ndarray  # the training rows' encoded labels (for the class weights)
    val_labels: np.ndarray  # the validation rows' labels as float64 (for the metrics)
    train: Callable[[Loop, Progress], float]
    validate: Callable[[Loop], tuple[float, np.ndarray]]


def fit(made: Any, fit: Fit) -> TrainLog:
    """Train the factory's network on a table's rows: in this process, or as one of a torchrun job's processes."""
    config, job = fit.config, distributed.from_env()
    device = device_for(job, config.train.device)
    net = check_network(made, config, fit.spec.width, fit.target.output_dim).to(device)

    def save(trained: nn.Module) -> None:
        save_checkpoint(fit.out / CHECKPOINT, Scorer(trained.cpu(), fit.target).eval(), fit.spec, fit.target, config)

    return run(net, fit, device, job, _table_feed(fit, device, job), save)


def _table_feed(fit: Fit, device: torch.device, job: Distributed | None) -> Feed:
    """The training and validation rows as tensors on the device, preprocessed by the feature spec."""
    config, target, spec, datasets = fit.config, fit.target, fit.spec, fit.datasets
    y_train = target.encode(datasets.train[config.data.label])
    x = torch.as_tensor(spec.transform(datasets.train), device=device)
    y = targets(target, y_train, device)
    # NOTE: the validation rows choose the kept epoch; the evaluation rows, which judge the model, are never read here
    x_val = torch.as_tensor(spec.transform(datasets.validation), device=device)
    y_val_raw = target.encode(datasets.validation[config.data.label])
    y_val = targets(target, y_val_raw, device)
    rows_per_process = len(x) // job.world if job else len(x)
    return Feed(rows=len(x), steps=-(-rows_per_process // config.train.batch_size), labels=y_train,
                val_labels=y_val_raw.astype(np.float64), train=lambda loop, progress: loop.train_epoch(x, y, progress),
                validate=lambda loop: loop.evaluate(x_val, y_val))


def run(net: nn.Module, fit: Fit, device: torch.device, job: Distributed | None, feed: Feed,
        save: Callable[[nn.Module], None]) -> TrainLog:
    """Train `net` on the feed's rows with the run's seeds, resuming and stopping early as the settings say;
    `save` writes the kept network (in the first process only)."""
    config, target, out, log, settings = fit.config, fit.target, fit.out, fit.log, fit.config.train
    main = distributed.is_main(job)
    weights = class_weights(target, feed.labels, settings.class_weights)
    loop = Loop(net, target, settings, device, feed.steps, weights, job)
    log.device, log.processes, log.precision = str(device), job.world if job else 1, "bf16" if loop.autocast else "fp32"
    log.parameters, log.environment = sum(p.numel() for p in net.parameters()), environment(device)
    state_path = out / STATE_FILE
    if fit.resume:
        _resume(loop, log, state_path, settings)
    elif state_path.exists() and main:
        state_path.unlink()  # NOTE: a fresh run never picks up an older run's state by accident
    metric_names = config.evaluate.metrics or DEFAULT_METRICS[config.task]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        _fit(loop, log, feed, metric_names, state_path, fit.on_epoch)
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
        save(net)
        atomic.write_json(out / TRAIN_LOG, asdict(log))
        state_path.unlink(missing_ok=True)
    stop(job, loop)
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
    # NOTE: compared as asdict writes them: nested settings (train.augment) are dicts in the saved state
    current = asdict(settings)
    changed = [k for k, v in saved["settings"].items() if k not in free and current.get(k) != v]
    changed += [k for k, v in _identity(log).items() if saved.get("run", {}).get(k) != v]
    if changed:
        raise UsageError(f"{path} was trained with other settings ({', '.join(changed)}); resuming would mix two runs",
                         hint="restore those settings, or train without --resume to start again")
    try:
        loop.load(saved["loop"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UsageError(f"{path} does not fit this model: {first_line(exc)}",
                         hint="train without --resume to start again") from None
    log.epochs = [EpochRecord(**record) for record in saved["epochs"]]
    log.resumed_from = loop.epoch
    github.log(f"    resuming after epoch {loop.epoch} from {path}")


def _identity(log: TrainLog) -> dict[str, Any]:
    """What besides the train settings a saved state belongs to: the model, its inputs, the processes."""
    return {"model.params": log.settings.get("params"), "input_columns": log.input_columns,
            "input_dim": log.input_dim, "processes": log.processes, "image": log.image}


def _fit(loop: Loop, log: TrainLog, feed: Feed, metric_names: tuple[str, ...], state: Path,
         on_epoch: Callable[[EpochRecord], None] | None) -> None:
    settings = loop.settings
    main = distributed.is_main(loop.job)
    progress = Progress(settings.epochs, loop.steps)
    stop = bool(settings.patience) and loop.stale >= settings.patience
    while loop.epoch < settings.epochs and not stop:
        began = time.perf_counter()
        loss = feed.train(loop, progress)
        val_loss, scores = feed.validate(loop)
        # NOTE: the validation loss too: the epoch's last steps can break the weights after its
        # training loss, the mean of losses measured before each step, was still finite.
        check_finite(loop.epoch, loss, val_loss, settings)
        stop = loop.keep_if_best(val_loss)
        seconds = time.perf_counter() - began
        found = compute(metric_names, feed.val_labels, scores)
        metrics = {k: (v if np.isfinite(v) else None) for k, v in found.items()}
        record = EpochRecord(loop.epoch, loss, val_loss, metrics, loop.lr, round(seconds, 4),
                             round(feed.rows / seconds, 1))
        log.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        progress.epoch(f"    epoch {record.epoch:>3}/{settings.epochs}  loss {loss:.4f}  val_loss {val_loss:.4f}  "
                       + "  ".join(f"val_{k} {shown(v)}" for k, v in metrics.items())
                       + f"  {record.samples_per_s:,.0f} samples/s")
        if main:
            with atomic.atomic_open(state) as handle:
                torch.save({"loop": loop.state(), "epochs": [asdict(e) for e in log.epochs],
                            "settings": asdict(settings), "run": _identity(log), "version": STATE_VERSION}, handle)
    log.best_epoch = loop.best_epoch or None
    log.kept_epoch = log.best_epoch if settings.patience else loop.epoch
    log.stopped_early = stop and loop.epoch < settings.epochs
    if log.stopped_early:
        github.log(f"    stopped after epoch {loop.epoch}: no better val_loss for {settings.patience} epochs; "
                   f"keeping epoch {loop.best_epoch}")
    log.seconds = round(sum(e.seconds for e in log.epochs), 3)
