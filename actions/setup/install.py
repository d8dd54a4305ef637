"""Installs modelci, from this action's own checkout, into a virtual environment of the job's own.

    python -I actions/setup/install.py     (install.sh runs it with the runner's Python)

Writes the folder that holds `modelci` to $GITHUB_PATH, and the outputs `version` and `python`.

NOTE: a persistent self-hosted runner keeps whatever one job writes for the next: the runner's
Python, $HOME (~/.local, ~/.cache/pip, ~/.docker) and the tool cache. Were modelci taken from any
of them because "that version is already there", a pull request's job could plant a modelci for a
later job with `packages: write` to run. So modelci goes into $RUNNER_TEMP, which the runner empties
at the start and at the end of every job, and nothing of it is taken from anywhere else. The
environment sees the runner's Python's packages after its own (a GPU runner's CUDA torch is used,
never replaced or downloaded again), so a job installs modelci itself and only the dependencies
that Python lacks: seconds. A second modelci action in the same job reuses the environment once
modelci's files there have been checked, one by one, against this checkout. The user's
site-packages (~/.local) is never seen: it is the easiest place for a job to plant a package.
What this cannot check: the runner's Python and the packages in it are taken as the runner's own (a
job that can write there can change anything that Python runs), so a persistent runner that runs
pull requests keeps them read-only to the runner's user (deploy/gpu-runners.md), or is ephemeral.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE = ROOT / "src" / "modelci"
# The .pth file that shows the runner's Python's packages to the environment, after its own
LINK = "_modelci_runner_python.pth"
RUNNER_PYTHON = "# the runner's Python: "
EXTRAS = "torch"  # pyproject.toml's extras installed with modelci


def main() -> int:
    venv = environment()
    if inside(venv):  # the setup action's `python` output, passed back in as an action's `python`
        python = runner_python(venv)
        if python is None:
            print(f"::error::modelci: {venv} does not say which Python it was made from; pass the runner's Python")
            return 2
        return subprocess.run([python, "-I", __file__], check=False).returncode
    link = link_text(sys.executable, [p for p in site.getsitepackages() if os.path.isdir(p)])
    why = changed(venv, link)
    if why:
        if venv.exists():
            print(f"::warning::modelci: {why}, in {venv}: installing modelci again")
        done = create(venv, link)
        if done:
            return done
    publish(venv)
    return 0


def environment() -> Path:
    """The job's own environment: in $RUNNER_TEMP, which the runner empties for every job."""
    temp = os.environ.get("RUNNER_TEMP")
    # NOTE: outside a runner no folder is the job's own, so each run gets a fresh one
    return Path(temp) / "modelci-venv" if temp else Path(tempfile.mkdtemp(prefix="modelci-")) / "venv"


def inside(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def runner_python(venv: Path) -> str | None:
    """The Python the environment was made from, as its link file records it."""
    link = purelib(venv) / LINK
    lines = link.read_text().splitlines() if link.is_file() else []
    return next((line.removeprefix(RUNNER_PYTHON) for line in lines if line.startswith(RUNNER_PYTHON)), None)


def link_text(python: str, sites: list[str]) -> str:
    # NOTE: plain folders, not `import site; site.addsitedir(...)`: pip's build isolation then keeps
    # them out of the build of modelci, and no startup hook (.pth) of the runner's Python runs here
    return "\n".join([f"{RUNNER_PYTHON}{python}", *sites]) + "\n"


def changed(venv: Path, link: str) -> str | None:
    """Why the environment cannot be reused as it is, or None when it can."""
    if not (venv / "pyvenv.cfg").is_file():
        return "it is not a virtual environment"
    library = purelib(venv)
    if not (library / LINK).is_file() or (library / LINK).read_text() != link:
        return "it was made for another Python"
    if not (library / "modelci").is_dir():
        return "modelci is not installed"
    different = difference(library / "modelci", SOURCE)
    if different:
        return f"modelci/{different} is not this action's"
    # NOTE: the check covers sources, not bytecode, so none is kept: Python compiles it again
    for cache in sorted((library / "modelci").rglob("__pycache__")):
        shutil.rmtree(cache)
    return None


def difference(installed: Path, source: Path) -> str | None:
    """The first file in which an installed package differs from its source, or None.

    Every installed file must be the source's file, byte for byte (bytecode aside), and every
    module of the source must be installed; a link is never the source's.
    """
    have, want = files(installed), files(source) or {}
    if have is None:
        return "__init__.py"
    for name in sorted(have.keys() | {name for name in want if name.endswith(".py")}):
        if name not in have or name not in want or have[name] is None or have[name] != want[name]:
            return name
    return None


def files(folder: Path) -> dict[str, str | None] | None:
    """Each file under folder (bytecode caches aside) and its SHA-256; None for a link."""
    if not folder.is_dir() or folder.is_symlink():
        return None
    found: dict[str, str | None] = {}
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if name != "__pycache__"]
        for name in [*names, *(name for name in folders if Path(parent, name).is_symlink())]:
            path = Path(parent, name)
            digest = None if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(folder).as_posix()] = digest
    return found


def create(venv: Path, link: str) -> int:
    """A new environment with the runner's packages after its own, and modelci installed from ROOT."""
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-I", "-m", "venv", str(venv)], check=False)
    if made.returncode:
        print(f"::error::modelci: {sys.executable} could not make a virtual environment "
              "(on Debian and Ubuntu: apt-get install python3-venv)")
        return 2
    (purelib(venv) / LINK).write_text(link)
    print(f"modelci {version()}: installing from {ROOT} into {venv}", flush=True)
    # NOTE: with the torch extra, as before modelci's core went without torch: every action trains or
    # may (run, train, export), and a runner's own torch satisfies it, so nothing more is downloaded
    pip = [str(interpreter(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
           f"{ROOT}[{EXTRAS}]"]
    installed = subprocess.run(pip, check=False)
    if installed.returncode:
        print(f"::error::modelci: pip could not install modelci from {ROOT} into {venv} (its messages are above)")
    return installed.returncode


def purelib(venv: Path) -> Path:
    """The environment's site-packages, where this interpreter's venv module puts it."""
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "nt" if os.name == "nt" else "posix_prefix"
    return Path(sysconfig.get_path("purelib", scheme, vars={"base": str(venv), "platbase": str(venv)}))


def interpreter(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def version() -> str:
    found = re.search(r'^__version__ = "(.*)"$', (SOURCE / "__init__.py").read_text(), re.MULTILINE)
    return found.group(1) if found else "unknown"


def publish(venv: Path) -> None:
    """`modelci` on the PATH of later steps (alone: the environment's python and pip stay off it)."""
    scripts = interpreter(venv).parent
    path = venv / "path"
    if os.name == "nt":
        path = scripts
    elif not (path / "modelci").exists():
        path.mkdir(exist_ok=True)
        (path / "modelci").symlink_to(scripts / "modelci")
    if "GITHUB_PATH" not in os.environ:  # not on a runner
        print(f"modelci {version()} is in {path}; its Python is {interpreter(venv)}")
        return
    with open(os.environ["GITHUB_PATH"], "a") as out:
        out.write(f"{path}\n")
    with open(os.environ["GITHUB_OUTPUT"], "a") as out:
        out.write(f"version={version()}\npython={interpreter(venv)}\n")


if __name__ == "__main__":
    sys.exit(main())
