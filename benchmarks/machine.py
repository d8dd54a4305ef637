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
