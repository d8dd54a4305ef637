"""Benchmark modelci's training loop against the compute alone and a plain shuffled DataLoader loop.

    python benchmarks/train_loop/run.py [--rows 1000000] [--batch 1024] [--repeat 5] [--device cpu|cuda]

An MLP (20 -> 256 -> 256 -> 1, binary cross-entropy, AdamW) trains on random tabular data held in
memory. Three loops run the same number of optimizer steps, taking turns, `--repeat` times:

- modelci: one epoch of `modelci.train.trainer.Loop.train_epoch`, the loop `modelci train` runs;
- compute alone: the same steps on one fixed batch, so no shuffling or gathering at all;
- DataLoader: `DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`, the usual PyTorch loop.

Writes results.json and RESULTS.md (on CUDA: results-cuda.json and RESULTS-cuda.md) next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
FEATURES, HIDDEN = 20, 256


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 1))


def data(rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, FEATURES, generator=generator)
    y = (x[:, :3].sum(dim=1, keepdim=True) + 0.5 * torch.randn(rows, 1, generator=generator) > 0).float()
    return x.to(device), y.to(device)


def settings(batch: int, device: torch.device, precision: str) -> Any:
    from modelci.config import TrainConfig

    return TrainConfig(epochs=1, batch_size=batch, lr=1e-3, device=device.type, precision=precision)


def modelci_loop(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, precision: str) -> int:
    from modelci.features import Target
    from modelci.frameworks.progress import Progress
    from modelci.frameworks.torch_loop import Loop

    steps = -(-len(x) // batch)
    loop = Loop(network().to(device), Target("binary", (0, 1)), settings(batch, device, precision), device, steps,
                None)
    loop.train_epoch(x, y, Progress(1, steps, live=False))
    return len(x)


def _step(net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
          autocast: torch.dtype | None) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(xb.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        out = net(xb)
    loss: torch.Tensor = loss_fn(out.float(), yb)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compute_alone(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, precision: str) -> int:
    from modelci.frameworks.torch_loop import resolve_precision

    net = network().to(device)
    optimizer, loss_fn = torch.optim.AdamW(net.parameters(), lr=1e-3), nn.BCEWithLogitsLoss()
    xb, yb, autocast = x[:batch].contiguous(), y[:batch].contiguous(), resolve_precision(precision, device)
    total = torch.zeros((), device=device)
    for _ in range(-(-len(x) // batch)):
        total += _step(net, optimizer, loss_fn, xb, yb, autocast) * batch
    float(total)  # NOTE: waits for the GPU, as the modelci loop does at the end of its epoch
    return len(x)


def dataloader_loop(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, precision: str) -> int:
    from modelci.frameworks.torch_loop import resolve_precision

    net = network().to(device)
    optimizer, loss_fn = torch.optim.AdamW(net.parameters(), lr=1e-3), nn.BCEWithLogitsLoss()
    autocast = resolve_precision(precision, device)
    total = torch.zeros((), device=device)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                             generator=torch.Generator().manual_seed(0)):
        total += _step(net, optimizer, loss_fn, xb, yb, autocast) * len(xb)
    float(total)
    return len(x)


LOOPS: dict[str, Callable[..., int]] = {"modelci": modelci_loop, "compute alone": compute_alone,
                                        "DataLoader": dataloader_loop}


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, list[float]]:
    x, y = data(args.rows, device)
    # NOTE: the data and the thread pools warm up on a few steps first; then the loops take turns.
    for run in LOOPS.values():
        run(x[: args.batch * 20], y[: args.batch * 20], args.batch, device, args.precision)
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for _ in range(args.repeat):
        for name, run in LOOPS.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            rows = run(x, y, args.batch, device, args.precision)
            rates[name].append(rows / (time.perf_counter() - start))
            print(f"  {name}: {rates[name][-1]:,.0f} samples/s", flush=True)
    return rates


def targets(rates: dict[str, float]) -> list[dict[str, Any]]:
    of_compute = rates["modelci"] / rates["compute alone"]
    of_loader = rates["modelci"] / rates["DataLoader"]
    return [{"target": "modelci ≥ 90% of the compute alone", "value": f"{of_compute:.0%}", "pass": of_compute >= 0.9},
            {"target": "modelci ≥ 2× a shuffled DataLoader loop", "value": f"{of_loader:.1f}×", "pass": of_loader >= 2}]


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = ["# train_loop benchmark results", "",
             f"{result['date']} on {result['device_name']} ({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
             f"{m['os']}); torch {result['torch']}, {result['threads']} CPU threads, {result['precision']}. "
             f"MLP {FEATURES}→{HIDDEN}→{HIDDEN}→1 on {result['rows']:,} rows, batch {result['batch']}: one epoch "
             "per run, loops taking turns. Generated by `run.py`; every number in the JSON file.", "",
             "| loop | median samples/s | runs |", "|---|---:|---:|"]
    lines += [f"| {name} | {statistics.median(v):,.0f} | {len(v)} |" for name, v in result["samples_per_s"].items()]
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'pass' if t['pass'] else '**FAIL**'} |" for t in result["targets"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 on a GPU that has it, fp32 on the CPU (as `modelci train`)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    from modelci.frameworks.torch_loop import resolve_precision

    device = torch.device(args.device)
    rates = measure(args, device)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
              "precision": "bf16" if resolve_precision(args.precision, device) else "fp32",
              "rows": args.rows, "batch": args.batch, "samples_per_s": rates, "targets": targets(medians)}
    suffix = "-cuda" if device.type == "cuda" else ""
    (HERE / f"results{suffix}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (HERE / f"RESULTS{suffix}.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
