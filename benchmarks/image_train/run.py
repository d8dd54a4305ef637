"""Benchmark modelci's image training loop against a plain ImageFolder-style loop doing the same work.

    python benchmarks/image_train/run.py [--per-class 2500] [--side 64] [--size 32] [--batch 64] [--workers 2]
                                         [--repeat 7]

A generated data set of coloured shapes (examples/shapes' generator, drawn at `--side`×`--side` pixels, a
folder per class) trains the example's network at `--size`×`--size`, with examples/shapes' augmentations
(horizontal flip, a 2-pixel padded crop, colour jitter 0.1). Two loops train on the same images, each with
`--workers` loader processes (kept up between epochs) and the same batch size, network and optimizer:

- modelci: the loader and loop `modelci train` runs (`frameworks.images.training.image_feed` driving
  `torch_loop.Loop`), from the config and data `modelci train` would read;
- plain: a `Dataset` that opens each file with Pillow, converts it to RGB, resizes it (bilinear), flips,
  pads and crops and jitters it with Pillow (`ImageOps`, `ImageEnhance`, as torchvision's transforms do on
  PIL images), then `ToTensor` and `Normalize` by hand; a `DataLoader(shuffle=True)`; AdamW and
  cross-entropy, step by step.

Each loop's first epoch (its workers starting, the caches filling) is not counted; then the two take turns,
one epoch each, `--repeat` times, and each one's median images/s counts. Writes results.json and RESULTS.md
next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "shapes"
TARGET = 0.95  # modelci's images/s over the plain loop's, at least
LR, MEAN, STD, PADDING, JITTER, WIDTH, DROPOUT = 0.005, 0.5, 0.25, 2, 0.1, 16, 0.1


def generate(root: Path, per_class: int, side: int) -> None:
    """examples/shapes' images, drawn at SIDE pixels: train/ (from which modelci carves its validation rows)
    and a small eval/ (which `modelci train` requires and never reads)."""
    sys.path.insert(0, str(EXAMPLE))
    import generate_data

    generate_data.SIDE = side  # NOTE: the generator reads its module's SIDE when it draws
    generate_data.write(root / "train", per_class, np.random.default_rng(0))
    generate_data.write(root / "eval", 10, np.random.default_rng(1))


def config_text(args: argparse.Namespace) -> str:
    return f"""task: multiclass
data:
  train: data/train
  eval: data/eval
  label: shape
  image: {{size: [{args.size}, {args.size}], channels: 3, mean: {MEAN}, std: {STD}}}
model:
  factory: {EXAMPLE / 'model.py'}:build
  params: {{width: {WIDTH}, dropout: {DROPOUT}}}
train:
  batch_size: {args.batch}
  lr: {LR}
  seed: 0
  workers: {args.workers}
  augment: {{flip: horizontal, crop: {PADDING}, color_jitter: {JITTER}}}
"""


def network(size: int) -> nn.Module:
    sys.path.insert(0, str(EXAMPLE))
    from model import build

    torch.manual_seed(0)
    made: nn.Module = build((3, size, size), 3, width=WIDTH, dropout=DROPOUT)
    return made


# --- modelci: the loader and loop `modelci train` runs ------------------------------------------------------


class ModelciSide:
    """The feed and loop as `trainer.train` and `images.training.fit` build them (no checkpoint or validation)."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        from modelci.config import load_config
        from modelci.data.tables import load_datasets
        from modelci.features import FeatureSpec, Target
        from modelci.frameworks import Fit
        from modelci.frameworks.images.datasets import chosen
        from modelci.frameworks.images.network import ImageNetwork, check_network
        from modelci.frameworks.images.training import image_feed
        from modelci.frameworks.torch_loop import Loop, class_weights, device_for

        config = load_config(work / "modelci.yaml")
        self.datasets = load_datasets(config)
        image, settings = config.data.image, config.train
        assert image is not None
        column = chosen(config).features[0]
        target = Target.fit(self.datasets.train[config.data.label], config.task)
        fit = Fit(config, self.datasets, FeatureSpec((), ()), target, work / "out", None)  # type: ignore[arg-type]
        device = device_for(None, settings.device)
        net = ImageNetwork(check_network(network(args.size), config, image, target.output_dim), image).to(device)
        self.feed = image_feed(fit, image, column, device, None)
        self.loop = Loop(net, target, settings, device, self.feed.steps,
                         class_weights(target, self.feed.labels, settings.class_weights))
        self.column, self.label, self.target = column, config.data.label, target

    def epoch(self) -> int:
        from modelci.frameworks.progress import Progress

        self.feed.train(self.loop, Progress(1_000_000, self.feed.steps, live=False))
        return self.feed.rows


# --- plain: an ImageFolder-style loop ----------------------------------------------------------------------


class PlainImages(Dataset[tuple[torch.Tensor, int]]):
    """(path, label) pairs read as torchvision's ImageFolder reads them, transformed as its PIL transforms do."""

    def __init__(self, items: list[tuple[str, int]], size: int) -> None:
        self.items, self.size = items, size
        self.mean = torch.full((3, 1, 1), MEAN)
        self.std = torch.full((3, 1, 1), STD)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, ImageEnhance, ImageOps

        path, label = self.items[index]
        with open(path, "rb") as handle:
            image = Image.open(handle).convert("RGB")
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        if random.random() < 0.5:  # RandomHorizontalFlip
            image = ImageOps.mirror(image)
        padded = ImageOps.expand(image, border=PADDING, fill=0)  # RandomCrop(size, padding)
        top, left = random.randint(0, 2 * PADDING), random.randint(0, 2 * PADDING)
        image = padded.crop((left, top, left + self.size, top + self.size))
        enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]  # ColorJitter
        for enhancer in random.sample(enhancers, len(enhancers)):
            image = enhancer(image).enhance(random.uniform(1 - JITTER, 1 + JITTER))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255  # ToTensor
        return (pixels - self.mean) / self.std, label  # Normalize


class PlainSide:
    def __init__(self, items: list[tuple[str, int]], args: argparse.Namespace) -> None:
        self.net = network(args.size)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=0.0)
        self.loss_fn = nn.CrossEntropyLoss()
        self.loader = DataLoader(PlainImages(items, args.size), batch_size=args.batch, shuffle=True,
                                 num_workers=args.workers, persistent_workers=args.workers > 0)
        self.rows = len(items)

    def epoch(self) -> int:
        self.net.train()
        total = torch.zeros(())
        for x, y in self.loader:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.net(x), y)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(y)
        float(total)
        return self.rows


def measure(sides: dict[str, Callable[[], int]], repeat: int) -> dict[str, list[float]]:
    for name, epoch in sides.items():
        began = time.perf_counter()
        epoch()  # NOTE: the first epoch starts the workers and fills the caches: not counted
        print(f"  {name}: first epoch {time.perf_counter() - began:.1f} s (not counted)", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, epoch in sides.items():
            began = time.perf_counter()
            rows = epoch()
            rates[name].append(rows / (time.perf_counter() - began))
            print(f"  {name}: {rates[name][-1]:,.0f} images/s", flush=True)
    return rates


# --- results -----------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    m, load, s = result["machine"], result["load_average_1min"], result["setup"]
    from machine import shared_note

    shared = shared_note(load)
    lines = ["# image_train benchmark results", "",
             f"{result['date']} on CPU ({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}); "
             f"torch {result['torch']}, {result['threads']} threads in the training process, fp32. "
             f"{s['train_images']:,} training images (examples/shapes' generator, {s['side']}×{s['side']} PNG, "
             f"3 classes) resized to {s['size']}×{s['size']}, flip + {PADDING}-pixel padded crop + colour jitter "
             f"{JITTER}; examples/shapes' CNN, AdamW, batch {s['batch']}, {s['workers']} loader workers each. "
             f"One epoch per run after a first epoch not counted, the loops taking turns, {s['repeat']} runs each. "
             f"{shared}Generated by `run.py`; every number in results.json.", "",
             "| loop | median images/s | runs (images/s) |", "|---|---:|---|"]
    lines += [f"| {name} | {statistics.median(v):,.0f} | {', '.join(f'{x:,.0f}' for x in v)} |"
              for name, v in result["images_per_s"].items()]
    from machine import target_rows

    lines += ["", *target_rows(result["targets"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2500, help="training images per class (3 classes)")
    parser.add_argument("--side", type=int, default=64, help="the generated images' side, in pixels")
    parser.add_argument("--size", type=int, default=32, help="the side the model takes (the resize)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    load_before = os.getloadavg()[0]  # NOTE: the machine is shared; its load explains a run's outliers
    with tempfile.TemporaryDirectory(prefix="modelci-image-train-") as folder:
        work = Path(folder)
        generate(work / "data", args.per_class, args.side)
        (work / "modelci.yaml").write_text(config_text(args), encoding="utf-8")
        modelci = ModelciSide(work, args)
        train = modelci.datasets.train
        labels = modelci.target.encode(train[modelci.label])
        # NOTE: the same rows: modelci's training rows, without the validation rows it carved out
        items = [(str(path), int(label)) for path, label in zip(train[modelci.column], labels, strict=True)]
        plain = PlainSide(items, args)
        rates = measure({"modelci": modelci.epoch, "plain ImageFolder-style": plain.epoch}, args.repeat)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    ratio = medians["modelci"] / medians["plain ImageFolder-style"]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "setup": {"train_images": len(items), "side": args.side, "size": args.size, "batch": args.batch,
                        "workers": args.workers, "repeat": args.repeat},
              "images_per_s": rates,
              "targets": [{"target": f"CPU: modelci ≥ {TARGET}× the plain loop's images/s", "value": f"{ratio:.2f}×",
                           "pass": ratio >= TARGET},
                          {"target": "GPU: ResNet-18 at 224×224 in bf16 keeps the GPU ≥ 90% busy",
                           "value": "not measured: no GPU on this machine", "pass": None}]}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (HERE / "RESULTS.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
