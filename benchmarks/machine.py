"""The machine a benchmark ran on, recorded with its results."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().split()
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = next((line.split("=", 1)[1].strip('"') for line in os_release.splitlines()
                   if line.startswith("PRETTY_NAME=")), "")
    ram_gib = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": ram_gib,
            "os": f"{pretty} ({platform.platform()})".strip()}


def shared_note(load: dict[str, float]) -> str:
    """The sentence a RESULTS.md gives when the machine was busy around the run (its 1-minute load average before
    and after, the run's own processes included); empty when it was quiet."""
    if max(load["before"], load["after"]) <= 0.5:
        return ""
    return (f"The machine is shared with other work (1-minute load average {load['before']:g} before the run, "
            f"{load['after']:g} after it, its own processes included), so the figures are indicative. ")


def target_rows(targets: list[dict[str, Any]]) -> list[str]:
    """RESULTS.md's table of targets: each one's measure and pass, **FAIL**, or pending (`pass` None: not measured
    on this machine)."""
    return ["| target | measured | result |", "|---|---|---|",
            *(f"| {t['target']} | {t['value']} | "
              f"{'pending' if t['pass'] is None else 'pass' if t['pass'] else '**FAIL**'} |" for t in targets)]
