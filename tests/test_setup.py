"""The setup action's install.sh on a runner whose system Python is externally managed (PEP 668),
as ubuntu-latest's is: modelci goes into a virtual environment of its own, which keeps the
packages the system already has (its torch among them), and a second run installs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import modelci

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")


def externally_managed(python: Path) -> bool:
    probe = ("import os, sys, sysconfig; print(sys.prefix == sys.base_prefix and "
             "os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))")
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"


@pytest.fixture
def system_packages(tmp_path: Path) -> Path:
    """What a runner's system Python already has: this interpreter's packages, modelci left out, so
    that installing it needs nothing from an index (torch above all)."""
    packages = tmp_path / "system-packages"
    packages.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if "modelci" not in entry.name.lower():
            (packages / entry.name).symlink_to(entry)
    return packages


def install(python: Path, runner: Path, system_packages: Path) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """install.sh as the action runs it: the GITHUB_PATH line it wrote and its `python` output."""
    path_file, output_file = runner / "path", runner / "output"
    path_file.write_text("")
    output_file.write_text("")
    env = {**os.environ, "MODELCI_PYTHON": str(python), "RUNNER_TEMP": str(runner), "GITHUB_PATH": str(path_file),
           "GITHUB_OUTPUT": str(output_file), "PYTHONPATH": str(system_packages)}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", str(ROOT / "actions" / "setup" / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
    return done, path_file.read_text().strip(), outputs.get("python", "")


@pytest.mark.slow
def test_an_externally_managed_python_gets_a_virtual_environment_that_keeps_its_torch(
        tmp_path: Path, system_packages: Path) -> None:
    assert externally_managed(DEBIAN_PYTHON), "the test needs Debian's python3, which is externally managed"
    runner = tmp_path / "runner"
    runner.mkdir()
    first, scripts, python = install(DEBIAN_PYTHON, runner, system_packages)
    assert first.returncode == 0, first.stderr
    venv = runner / "modelci-venv"
    assert python == str(venv / "bin" / "python")
    assert scripts == str(venv / "bin")
    assert f"modelci {modelci.__version__}: installing from {ROOT} into {venv}" in first.stdout
    # the system's packages stay visible to it, a GPU runner's CUDA torch among them
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()

    env = {**os.environ, "PYTHONPATH": str(system_packages)}
    version = subprocess.run([venv / "bin" / "modelci", "--version"], env=env, capture_output=True, text=True,
                             check=True)
    assert modelci.__version__ in version.stdout
    torch = subprocess.run([python, "-c", "import torch; print(torch.__file__)"], env=env, capture_output=True,
                           text=True, check=True)
    assert torch.stdout.startswith(str(system_packages))  # the system's torch, not one pip put in the venv

    again, _, python_again = install(DEBIAN_PYTHON, runner, system_packages)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stdout  # that version is there already
    assert python_again == python


def test_a_python_that_is_not_there_is_named(tmp_path: Path) -> None:
    done, _, _ = install(Path(sys.prefix) / "no-such-python", tmp_path, tmp_path)
    assert done.returncode == 2
    assert f"::error::modelci: no '{Path(sys.prefix) / 'no-such-python'}' on this runner" in done.stdout
