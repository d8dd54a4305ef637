"""Training an image model: the images streamed from disk by a `DataLoader`, through the PyTorch loop.

Each image is decoded with Pillow, converted and resized (`pixels.load_pixels`), and each batch augmented,
in a loader worker (`train.workers` processes; pinned memory on CUDA), so only a few batches of images are
ever in memory. Batches travel as uint8 [N, H, W, C]; the network's own first layer (`Pixels`)
normalizes them on the device, in channels-last memory and bf16 autocast on CUDA. The loop itself is
the table models' (`torch_loop.run`): the same seeds, resume, early stopping, out-of-memory report and
progress lines. The shuffle and each image's augmentation come from the run's seeded generator, so
two runs with the same seed make the same model, with any number of workers.

An image that does not decode never raises in a worker: the worker hands over a blank image and the
reason, and the training process stops with the file named (exit 2).

NOTE: imports torch: only the PyTorch adapter's `fit` imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from modelci.config import ImageConfig
from modelci.errors import DataError, first_line
from modelci.features import Target
from modelci.frameworks import Fit, distributed
from modelci.frameworks.distributed import Distributed
from modelci.frameworks.images.augment import Augment
from modelci.frameworks.images.network import ImageNetwork, ImageScorer, check_network, save_checkpoint
from modelci.frameworks.images.pixels import load_pixels
from modelci.frameworks.progress import Progress
from modelci.frameworks.torch import CHECKPOINT
from modelci.frameworks.torch_loop import Feed, Loop, device_for, run, targets
from modelci.outputs import TrainLog

NO_AUGMENT = -1  # the seed of an image that is not augmented (a validation image)
SEED_BOUND = 2**62
SHOWN_FAILURES = 3

Key = tuple[int, int]  # (row, seed): the image to read, and the seed of its augmentation


class ImageRows(Dataset[tuple[torch.Tensor, torch.Tensor, list[str]]]):
    """The training images, then the validation images, read a batch at a time by their (row, seed) keys."""

    def __init__(self, sources: list[Any], labels: np.ndarray, image: ImageConfig, augment: Augment | None) -> None:
        self.sources, self.labels, self.image, self.augment = sources, labels, image, augment

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        return self.__getitems__([key])

    def __getitems__(self, keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """A batch: (uint8 images [N, H, W, C], labels [N], a problem per image, "" when it decoded)."""
        # NOTE: the DataLoader calls this with a batch's keys (and hands the result to `as_batch`), so the
        # augmentations run once per batch in the worker
        found = [self._pixels(row) for row, _ in keys]
        images = torch.stack([pixels for pixels, _ in found])
        augmented = [at for at, (_, seed) in enumerate(keys) if seed != NO_AUGMENT]
        if self.augment is not None and augmented:
            images[augmented] = self.augment(images[augmented], [keys[at][1] for at in augmented])
        labels = torch.from_numpy(self.labels[[row for row, _ in keys]])
        return images, labels, [problem for _, problem in found]

    def _pixels(self, row: int) -> tuple[torch.Tensor, str]:
        try:
            return torch.from_numpy(load_pixels(self.sources[row], self.image.size, self.image.channels)), ""
        # NOTE: Pillow raises many types for a bad file; any of them means this image cannot be used
        except Exception as exc:
            blank = torch.zeros(*self.image.size, self.image.channels, dtype=torch.uint8)
            return blank, f"{self.sources[row]}: {type(exc).__name__}: {first_line(exc)}"


def as_batch(batch: Any) -> Any:
    """The loader's collate function: `ImageRows.__getitems__` already gives a whole batch."""
    return batch


class Keys(Sampler[Key]):
    """The keys of the next pass, set before each epoch and each validation (the loader's workers stay up)."""

    def __init__(self) -> None:
        self.keys: list[Key] = []

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def _one_thread(_: int) -> None:
    # NOTE: each worker decodes one image at a time; torch's own threads in every worker would only compete
    torch.set_num_threads(1)


def fit(made: Any, fit: Fit) -> TrainLog:
    """Train the factory's network on the images of `fit.datasets`: in this process, or in a torchrun job."""
    config, target, job = fit.config, fit.target, distributed.from_env()
    image, column = config.data.image, fit.log.input_columns[0]
    assert image is not None  # NOTE: the adapter sends only image models here
    device = device_for(job, config.train.device)
    network = ImageNetwork(check_network(made, config, image, target.output_dim), image).to(device)
    if device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fit.log.image = asdict(image) | {"column": column, "augment": asdict(config.train.augment)}

    def save(trained: torch.nn.Module) -> None:
        assert isinstance(trained, ImageNetwork)
        scorer = ImageScorer(trained.cpu(), target, image, column).eval()
        save_checkpoint(fit.out / CHECKPOINT, scorer, target, config)

    return run(network, fit, device, job, image_feed(fit, image, column, device, job), save)


def image_feed(fit: Fit, image: ImageConfig, column: str, device: torch.device, job: Distributed | None) -> Feed:
    """The training and validation images, read in batches by one loader (one set of worker processes)."""
    settings, target, label = fit.config.train, fit.target, fit.config.data.label
    train, validation = fit.datasets.train, fit.datasets.validation
    y_train, y_val = target.encode(train[label]), target.encode(validation[label])
    rows = ImageRows([*train[column], *validation[column]], np.concatenate([y_train, y_val]), image,
                     Augment.of(settings.augment))
    keys = Keys()
    loader = DataLoader(rows, batch_size=settings.batch_size, sampler=keys, collate_fn=as_batch,
                        num_workers=settings.workers, pin_memory=device.type == "cuda",
                        persistent_workers=settings.workers > 0,
                        worker_init_fn=_one_thread if settings.workers else None,
                        # NOTE: its own generator: a loader draws its workers' seed from torch's global one otherwise,
                        # which dropout uses too, and a resumed run would then draw it in another epoch
                        generator=torch.Generator().manual_seed(settings.seed))
    count = len(train)

    def train_epoch(loop: Loop, progress: Progress) -> float:
        order = loop.epoch_order(count)
        seeds = torch.randint(0, SEED_BOUND, (count,), generator=loop.generator)
        keys.keys = [(int(row), int(seeds[row])) for row in order]
        return loop.train_batches(_batches(loader, target, device), progress)

    def validate(loop: Loop) -> tuple[float, np.ndarray]:
        keys.keys = [(count + row, NO_AUGMENT) for row in range(len(validation))]
        return loop.evaluate_batches(_batches(loader, target, device))

    per_process = count // job.world if job else count
    return Feed(rows=count, steps=-(-per_process // settings.batch_size), labels=y_train,
                val_labels=y_val.astype(np.float64), train=train_epoch, validate=validate)


def _batches(loader: DataLoader[Any], target: Target, device: torch.device) -> Iterator[tuple[torch.Tensor,
                                                                                              torch.Tensor]]:
    """(images, targets) on the device; exit 2 naming the images of a batch that did not decode."""
    for pixels, labels, problems in loader:
        failed = [problem for problem in problems if problem]
        if failed:
            raise DataError(f"{len(failed)} image(s) cannot be read: " + "; ".join(failed[:SHOWN_FAILURES]),
                            hint="`modelci data check` names every such file; replace or remove them")
        yield pixels.to(device, non_blocking=True), targets(target, labels, device)
