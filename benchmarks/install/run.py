"""Benchmark installing modelci: the core (`pip install modelci`) against `modelci[torch]`.

    python benchmarks/install/run.py

Each variant goes into a new, empty virtual environment, as on a fresh CI runner, with pip's cache
off. Recorded: the seconds `pip install` took and the megabytes the environment holds after it.
NOTE: the torch variant installs torch==2.13.0 first; on these machines that is the CPU build (a
file on disk), so its figures are a lower bound: on a Linux runner pip's default torch is the
CUDA build, several gigabytes more. Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import datetime
import json
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


def main() -> int:
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
