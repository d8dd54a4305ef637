"""Training on several GPUs (or CPU processes) with torchrun and DistributedDataParallel.

`torchrun --nproc-per-node N -m modelci train` (or `modelci train --nproc N`, which runs that)
starts N processes. Each one trains the same model on its share of every epoch's shuffled rows
with `train.batch_size` rows per step, and DDP averages the gradients. So N processes train like one
process with batches N times as large. NCCL connects GPUs; gloo connects CPU processes, which is
how the tests run it. Only the first process (rank 0) prints and writes files.

NOTE: no torch here: the process group, DDP and the sharding are the PyTorch adapter's
(`modelci.frameworks.torch_loop`); this is where a process is in a job, and how a job is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def is_main(job: Distributed | None) -> bool:
    """Whether this process writes the files: the only one, or rank 0 of a torchrun job."""
    return job is None or job.main


def from_env() -> Distributed | None:
    """The process's place in a torchrun job, or None when it runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


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
