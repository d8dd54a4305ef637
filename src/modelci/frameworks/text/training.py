"""Training a text model: the texts as token ids in memory (words from modelci's vocabulary, or a Hugging Face
tokenizer's ids), in batches of similar lengths, each padded to its own longest text, through the PyTorch loop.

Each epoch's order is the run's seeded shuffle; within each run of BUCKET batches' texts, they are sorted by
length before they are cut into batches, and the batches are shuffled again, so a batch pads little and the
epoch is still random. The loop is the table models' (`torch_loop.run`): the same seeds, resume, early
stopping, out-of-memory report and progress lines.

NOTE: imports torch: only the PyTorch adapter's `fit` imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from modelci.frameworks import Fit, distributed
from modelci.frameworks.distributed import Distributed
from modelci.frameworks.progress import Progress
from modelci.frameworks.text.network import TextScorer, check_network, save_checkpoint
from modelci.frameworks.text.vocabulary import PAD, UNKNOWN, Vocabulary
from modelci.frameworks.torch import CHECKPOINT
from modelci.frameworks.torch_loop import Feed, Loop, device_for, run, targets
from modelci.outputs import TrainLog

BUCKET = 50  # batches whose texts are sorted by length together


class Texts:
    """Texts as token ids, ragged: one flat array and where each text starts; padded with `pad` in a batch."""

    def __init__(self, found: list[list[int]], pad: int) -> None:
        self.pad = pad
        self.lengths = np.array([len(ids) for ids in found], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])
        self.flat = np.fromiter((i for ids in found for i in ids), dtype=np.int64, count=int(self.lengths.sum()))

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, rows: np.ndarray) -> torch.Tensor:
        """The rows' ids, int64 [len(rows), their longest], padded; at least one id wide, as the exported graph
        makes them (a batch of texts without a word is one column of padding)."""
        ids = np.full((len(rows), int(self.lengths[rows].max(initial=1))), self.pad, dtype=np.int64)
        for at, row in enumerate(rows):
            ids[at, :self.lengths[row]] = self.flat[self.starts[row]:self.starts[row + 1]]
        return torch.from_numpy(ids)


Encode = Callable[[list[Any]], list[list[int]]]  # texts as token ids, each text's list


def fit(made: Any, fit: Fit) -> TrainLog:
    """Train the factory's network on the texts of `fit.datasets`, as word ids from the vocabulary the trainer
    learnt: in this process, or in a torchrun job."""
    config, target, job = fit.config, fit.target, distributed.from_env()
    vocabulary, column = fit.vocabulary, fit.log.input_columns[0]
    assert isinstance(vocabulary, Vocabulary)  # NOTE: the trainer learns it for a text model of words
    device = device_for(job, config.train.device)
    net = check_network(made, config, vocabulary.size, target.output_dim).to(device)

    def encode(texts: list[Any]) -> list[list[int]]:
        return [vocabulary.ids(text) for text in texts]

    validation = Texts(encode(list(fit.datasets.validation[column])), PAD)
    unknown = round(float(np.mean(validation.flat == UNKNOWN)), 4) if len(validation.flat) else 0.0
    fit.log.text = {"column": column, "max_tokens": vocabulary.max_tokens, "vocabulary": vocabulary.size,
                    "unknown_share": unknown}

    def save(trained: torch.nn.Module) -> None:
        scorer = TextScorer(trained.cpu(), target, vocabulary, column).eval()
        save_checkpoint(fit.out / CHECKPOINT, scorer, target, config)

    return run(net, fit, device, job, feed(fit, column, encode, PAD, device, job), save)


def feed(fit: Fit, column: str, encode: Encode, pad: int, device: torch.device, job: Distributed | None) -> Feed:
    """The training and validation texts as token ids in memory, read in bucketed, padded batches."""
    settings, target, label = fit.config.train, fit.target, fit.config.data.label
    train, validation = fit.datasets.train, fit.datasets.validation
    y_train, y_val = target.encode(train[label]), target.encode(validation[label])
    texts, checked = Texts(encode(list(train[column])), pad), Texts(encode(list(validation[column])), pad)
    size = settings.batch_size

    def train_epoch(loop: Loop, progress: Progress) -> float:
        order = loop.epoch_order(len(texts)).numpy()
        return loop.train_batches(_batches(texts, y_train, _bucketed(order, texts.lengths, size, loop), target,
                                           device), progress)

    def validate(loop: Loop) -> tuple[float, np.ndarray]:
        rows = np.arange(len(checked))
        return loop.evaluate_batches(_batches(checked, y_val, [rows[i:i + size] for i in range(0, len(rows), size)],
                                              target, device))

    count = len(texts)
    per_process = count // job.world if job else count
    return Feed(rows=count, steps=-(-per_process // size), labels=y_train, val_labels=y_val.astype(np.float64),
                train=train_epoch, validate=validate)


def _bucketed(order: np.ndarray, lengths: np.ndarray, size: int, loop: Loop) -> list[np.ndarray]:
    """The epoch's rows cut into batches of texts of similar lengths, the batches in a seeded order."""
    batches = []
    for first in range(0, len(order), size * BUCKET):
        chunk = order[first:first + size * BUCKET]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    shuffled = torch.randperm(len(batches), generator=loop.generator).tolist()
    return [batches[i] for i in shuffled]


def _batches(texts: Texts, labels: np.ndarray, batches: list[np.ndarray], target: Any,
             device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for rows in batches:
        yield texts.padded(rows).to(device, non_blocking=True), targets(target, labels[rows], device)
