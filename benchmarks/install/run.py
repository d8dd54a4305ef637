"""Benchmark installing modelci: the core (`pip install modelci`) against `modelci[torch]`.

    python benchmarks/install/run.py

Each variant goes into a new, empty virtual environment, as on a fresh CI runner, with pip's cache
off. Recorded: the seconds `pip install` took and the megabytes the environment holds after it.
NOTE: the torch variant installs torch==2.13.0 first; on these machines that is the CPU build (a
file on disk), so its figures are a lower bound: on a Linux runner pip's default torch is the
CUDA build, several gigabytes more. Writes results.json and RESULTS.md next to this file.

    python benchmarks/install/run.py setup

The setup action's install (actions/setup/install.sh, `extras: auto`) as a job runs it, for the
scikit-learn example (examples/pipeline: no extra) and the torch example (examples/churn: the torch
extra), each into an empty RUNNER_TEMP with a bare Python (a venv without packages, as a fresh
runner's), first with no cache (cold), then with what the first run left, its environment and pip's
downloads, restored into the same RUNNER_TEMP path as the setup action's cache restores them (warm).
Recorded: seconds, megabytes pip downloaded (the growth of its cache), megabytes in the environment,
and the megabytes of the cache entry (what the warm job downloads from GitHub's cache). Writes
setup.json and the setup section of RESULTS.md.
NOTE: torch must be this machine's 2.13.0 CPU build: PIP_CONSTRAINT pins it, and a stand-in
`nvidia-smi` makes the installer take torch from the usual index, since PyTorch's CPU index (where a
runner without a GPU gets it) cannot be reached here; `pip show torch` is checked after.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
from machine import describe  # noqa: E402

VARIANTS = {"modelci (core)": [f"{ROOT}"], "modelci[torch]": ["torch==2.13.0", f"{ROOT}[torch]"]}


def megabytes(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6, 1)


def measure(requirements: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modelci-install-") as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        began = time.perf_counter()
        for requirement in requirements:  # NOTE: torch first and alone, as the README says
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir",
                            "--disable-pip-version-check", requirement], check=True)
        seconds = time.perf_counter() - began
        imports = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; "
                                  "print(u.find_spec('torch') is not None)"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        return {"seconds": round(seconds, 1), "megabytes": megabytes(venv), "has_torch": imports == "True"}


EXAMPLES = {"scikit-learn (examples/pipeline)": "pipeline", "torch (examples/churn)": "churn"}
TORCH = "2.13.0"  # NOTE: the CPU build on this machine's disk; any other version is a multi-GB download


CACHED = ("modelci-venv", "modelci-pip-cache")  # what the setup action's cache holds, in RUNNER_TEMP


def setup_once(example: str, work: Path, cache: Path) -> dict[str, Any]:
    """install.sh as a job runs it, into an empty RUNNER_TEMP (always the same path, as on a hosted runner) into
    which the setup action's cache entry `cache` is restored first, when there is one."""
    runner = work / "runner"
    shutil.rmtree(runner, ignore_errors=True)
    (runner / "bin").mkdir(parents=True)
    smi = runner / "bin" / "nvidia-smi"  # NOTE: see the docstring: keeps pip off PyTorch's CPU index here
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    (work / "constraints.txt").write_text(f"torch=={TORCH}\n")
    env = {**os.environ, "MODELCI_PYTHON": str(work / "bare" / "bin" / "python"), "RUNNER_TEMP": str(runner),
           "MODELCI_CONFIG": str(ROOT / "examples" / example / "modelci.yaml"), "MODELCI_EXTRAS": "auto",
           "PIP_CONSTRAINT": str(work / "constraints.txt"), "PATH": f"{runner / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_ENV"):
        env.pop(name, None)
    entry_mb = megabytes(cache) if cache.exists() else 0.0
    for name in CACHED:  # NOTE: as actions/cache restores them, into the job's RUNNER_TEMP
        if (cache / name).exists():
            shutil.copytree(cache / name, runner / name, symlinks=True)
    pip_cache = runner / "modelci-pip-cache"
    before = megabytes(pip_cache) if pip_cache.exists() else 0.0
    began = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "actions" / "setup" / "install.sh")], env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"install.sh failed:\n{done.stdout}\n{done.stderr}")
    pip_cache.mkdir(exist_ok=True)  # NOTE: pip writes nothing there when every file came from a local folder
    downloaded = megabytes(pip_cache) - before
    venv = runner / "modelci-venv"
    shown = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", "torch"], capture_output=True,
                           text=True, check=False).stdout
    torch = next((line.split()[-1] for line in shown.splitlines() if line.startswith("Version:")), None)
    if torch is not None and torch.partition("+")[0] != TORCH:  # NOTE: 2.13.0+cpu, the build on disk
        raise SystemExit(f"pip installed torch {torch}, not {TORCH}")
    shutil.rmtree(cache, ignore_errors=True)  # NOTE: as the setup action saves them
    for name in CACHED:
        shutil.copytree(runner / name, cache / name, symlinks=True)
    return {"seconds": round(seconds, 1), "downloaded_mb": round(downloaded, 1), "environment_mb": megabytes(venv),
            "cache_entry_mb": entry_mb, "reused": "installing from" not in done.stdout, "torch": torch,
            "log": done.stdout.strip().splitlines()}


def archive(cache: Path, work: Path) -> dict[str, float]:
    """The cache entry as actions/cache stores it (a tar compressed with zstd): its MB, and the seconds to unpack it,
    which a warm job spends on top of the download (GitHub's network is not measured here)."""
    tarball = work / "entry.tar.zst"
    subprocess.run(["tar", "--zstd", "-cf", str(tarball), "-C", str(cache), "."], check=True)
    unpacked = work / "unpacked"
    unpacked.mkdir()
    began = time.perf_counter()
    subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", str(unpacked)], check=True)
    seconds = time.perf_counter() - began
    compressed = round(tarball.stat().st_size / 1e6, 1)
    shutil.rmtree(unpacked)
    tarball.unlink()
    return {"compressed_mb": compressed, "unpack_seconds": round(seconds, 1)}


def setup(example: str) -> dict[str, Any]:
    """Cold, then warm: the second run's cache entry is the one the first left."""
    with tempfile.TemporaryDirectory(prefix="modelci-setup-") as folder:
        work = Path(folder)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work / "bare")], check=True)
        cold = setup_once(example, work, work / "cache")
        entry = archive(work / "cache", work)
        warm = setup_once(example, work, work / "cache")
        return {"cold": cold, "warm": {**warm, **entry}}


def setup_main() -> int:
    results = {name: setup(example) for name, example in EXAMPLES.items()}
    record = {"date": datetime.date.today().isoformat(), "machine": describe(), "results": results}
    (HERE / "setup.json").write_text(json.dumps(record, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {cache} | {r['seconds']} | {r.get('unpack_seconds', '')} | {r['cache_entry_mb']:,} | "
                     f"{r.get('compressed_mb', '')} | {r['downloaded_mb']:,} | {r['environment_mb']:,} | "
                     f"{'yes' if r['reused'] else 'no'} | {r['torch'] or 'none'} |"
                     for name, runs in results.items() for cache, r in runs.items())
    machine = record["machine"]
    section = (
        f"# setup: the setup action's install, cold and warm cache\n\n{record['date']}, {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['ram_gib']} GiB, {machine['os']}. "
        "`python benchmarks/install/run.py setup`: "
        "install.sh with `extras: auto` from a bare Python into an empty RUNNER_TEMP; cold: no cache, warm: the "
        "cache entry the cold run left (its environment and pip's downloads), restored as the setup action "
        "restores it.\n\n"
        "| example | cache | seconds | s to unpack the entry | MB cache entry | MB compressed (zstd) | MB downloaded "
        "| MB in the environment | environment reused | torch |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|\n"
        + rows + "\n\nMB downloaded is the growth of pip's cache: 0 here, since every file came from this machine's "
        "own folders (file:// indexes and a wheel folder), which pip does not cache. torch is this machine's 2.13.0 "
        "CPU build from its own package index (PyTorch's CPU index, which the installer uses on a runner without a "
        "GPU, cannot be reached here). GitHub's hosted runners were not measured: their network, disks and CPUs "
        "differ: a warm job adds to its seconds the download of the compressed entry and its unpacking (measured "
        "here with tar and zstd, as actions/cache stores an entry), and a cold one the entry's save.\n")
    results_md = HERE / "RESULTS.md"
    text = results_md.read_text() if results_md.exists() else ""
    text = text.split("\n# setup:")[0].rstrip("\n") + "\n\n" + section
    results_md.write_text(text)
    print(json.dumps({name: {cache: {k: v for k, v in r.items() if k != "log"} for cache, r in runs.items()}
                      for name, runs in results.items()}, indent=2))
    return 0


def main() -> int:
    if sys.argv[1:] == ["setup"]:
        return setup_main()
    results = {name: measure(requirements) for name, requirements in VARIANTS.items()}
    record = {"date": datetime.date.today().isoformat(), "machine": describe(), "results": results}
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {r['seconds']} | {r['megabytes']:,} | {'yes' if r['has_torch'] else 'no'} |"
                     for name, r in results.items())
    machine = record["machine"]
    (HERE / "RESULTS.md").write_text(
        f"# install: the core against modelci[torch]\n\n{record['date']}, {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['ram_gib']} GiB, {machine['os']}. A new virtual environment each, pip's cache off.\n\n"
        "| install | seconds | MB in the environment | torch |\n|---|---:|---:|---|\n" + rows + "\n\n"
        "torch here is the CPU build (2.13.0, a file on this machine's disk); on a Linux runner pip's default is "
        "the CUDA build, several gigabytes more, so the torch row is a lower bound.\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
