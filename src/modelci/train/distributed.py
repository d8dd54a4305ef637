"""Training on several GPUs (or CPU processes) with torchrun and DistributedDataParallel.

`torchrun --nproc-per-node N -m modelci train` (or `modelci train --nproc N`, which runs that)
starts N processes. Each one trains the same model on its share of every epoch's shuffled rows
with `train.batch_size` rows per step, and DDP averages the gradients. So N processes train like one
process with batches N times as large. NCCL connects GPUs; gloo connects CPU processes, which is
how the tests run it. Only the first process (rank 0) prints and writes files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from modelci.child import stopped_with_modelci
from modelci.errors import ERROR_FILE_VARIABLE, INTERNAL_ERROR

RANK0_PREFIX = "[default0]:"  # what `torchrun --tee` puts before local rank 0's lines


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of an epoch's row order; every share is the same size, so no process waits."""
        usable = len(order) - len(order) % self.world
        return order[self.rank:usable:self.world]

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of `value` over every process."""
        summed = value.clone()
        torch.distributed.all_reduce(summed)
        return summed


def is_main(job: Distributed | None) -> bool:
    """Whether this process writes the files: the only one, or rank 0 of a torchrun job."""
    return job is None or job.main


def from_env() -> Distributed | None:
    """The process's place in a torchrun job, or None when it runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(job: Distributed, requested: str) -> torch.device:
    """Join the process group; each process on a GPU machine takes the GPU of its local rank."""
    from modelci.errors import UsageError

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


def stop(job: Distributed | None) -> None:
    if job is not None and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def launch(nproc: int, arguments: list[str]) -> int:
    """Run `modelci ARGUMENTS` in `nproc` processes with torchrun on this machine; the first process's exit code.

    Rank 0's output is shown as it comes; torchrun's own report of a failed worker (a traceback) is
    not. A worker that fails on purpose (a `ModelciError`) leaves its message and exit code in a file,
    and they are shown once, as a single process would.
    """
    from modelci import github

    with tempfile.TemporaryDirectory(prefix="modelci-torchrun-") as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "--tee", "3", "--log-dir", str(Path(folder) / "logs"), "-m", "modelci", *arguments]
        env = {**os.environ, ERROR_FILE_VARIABLE: str(Path(folder) / "error")}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace")
        assert process.stdout is not None
        with process, stopped_with_modelci(process):
            for line in process.stdout:
                if line.startswith(RANK0_PREFIX):
                    sys.stderr.write(line[len(RANK0_PREFIX):])
        errors = sorted(Path(folder).glob("error.*"), key=lambda p: int(p.suffix[1:]))
        if errors:
            found = json.loads(errors[0].read_text(encoding="utf-8"))
            github.error(found["message"])
            if found.get("hint"):
                github.log(f"  hint: {found['hint']}")
            return int(found["exit_code"])
        if process.returncode != 0:
            # NOTE: no worker said why (a crash, a signal): never exit 1, which means "the gate said no"
            github.error(f"training in {nproc} processes failed (torchrun exit code {process.returncode}); "
                         f"the logs above say why")
            return INTERNAL_ERROR
        return process.returncode
