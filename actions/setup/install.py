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

Extras: modelci's core goes in first; then `python -m modelci.extras` (the environment's Python,
the modelci just checked) says which extras the config's model needs (the `extras` input: auto, none
or a comma list) and what pip installs for them. NOTE: it runs there, not with the runner's Python
before anything is installed, because modelci.yaml is YAML and the runner's Python may have no YAML
parser: the core brings one, and the one scan of the factory's imports (modelci/extras.py) serves the
action and the package alike. Torch, when it is to be installed (no torch in the runner's Python) on a
runner without a GPU (`nvidia-smi` absent or failing), comes alone from PyTorch's CPU wheel index with
`--no-deps`, then its dependencies from the usual index. NOTE: not `--extra-index-url` for the whole
install: pip would then take any package from whichever index offers the higher version.

GitHub's cache: the setup action restores the newest entry of the runner's OS and machine into
$RUNNER_TEMP (the environment, $RUNNER_TEMP/modelci-venv, and pip's downloads, PIP_CACHE_DIR =
$RUNNER_TEMP/modelci-pip-cache), and saves them (actions/cache, after a job whose lock has no entry
yet) under a key of the OS, the Python, modelci's version and the lock of what was installed
(`cache_key` below). A restored environment is reused only when it passes the checks above that a
second action in the same job passes (made from this Python, in this folder, modelci's files those of
this checkout, one by one); anything else, and it is made again, pip's downloads sparing the network.
What is not checked file by file are the other packages in it (numpy, onnxruntime, ...): an entry is
as trusted as the jobs that can write it. GitHub lets a job restore only entries of its own branch and
of the default branch, so a pull request's job cannot plant one that a job on main restores (its
entries serve only later runs of that same pull request, which run its code anyway); the save step
runs right after the install, before any of the job's own code; the jobs that hold more than the code
they run already has restore nothing (push-candidate, the one job of a pull request that may write to
the registry, and main.yml's sign job, which holds the signing key and the OIDC token: both install
with install.sh alone); and the cache is in $RUNNER_TEMP,
never ~/.cache/pip, which any earlier job on a persistent runner could have written. modelci itself
is never taken from the cache unchecked: a restored modelci whose files differ from this checkout's
is installed again, with the whole environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE = ROOT / "src" / "modelci"
# The .pth file that shows the runner's Python's packages to the environment, after its own
LINK = "_modelci_runner_python.pth"
RUNNER_PYTHON = "# the runner's Python: "
INSTALLED_EXTRAS = "modelci-extras.json"  # in the environment: the requirements of the extras installed
LOCK = "modelci-lock.txt"  # in the environment: name==version of each distribution installed in it
# NOTE: PyTorch's index of CPU-only wheels, as pytorch.org's install selector gives it for pip
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TIMEOUT = 60  # seconds for nvidia-smi to answer


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
    done = install_extras(venv)
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
    # NOTE: a restored one made elsewhere: its scripts name the Python of that folder (Windows' launchers are
    # binaries, not checked: a runner's RUNNER_TEMP does not move)
    if os.name != "nt" and f"{interpreter(venv).parent}{os.sep}" not in launcher(venv):
        return "it was made in another folder"
    different = difference(library / "modelci", SOURCE)
    if different:
        return f"modelci/{different} is not this action's"
    # NOTE: the check covers sources, not bytecode, so none is kept: Python compiles it again
    for cache in sorted((library / "modelci").rglob("__pycache__")):
        shutil.rmtree(cache)
    return None


def launcher(venv: Path) -> str:
    """The head of the environment's `modelci` script, which names the Python it runs with (on its first line,
    or, for a long path, in the `exec` line under a `#!/bin/sh` that pip writes instead)."""
    try:
        with (interpreter(venv).parent / "modelci").open("rb") as handle:
            return b"".join(handle.readline() for _ in range(3)).decode(errors="replace")
    except OSError:
        return ""


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
    installed = pip(venv, [str(ROOT)])
    if installed:
        print(f"::error::modelci: pip could not install modelci from {ROOT} into {venv} (its messages are above)")
    return installed


def pip(venv: Path, arguments: list[str]) -> int:
    """`pip install ARGUMENTS` in the environment, with the job's own pip cache on a runner."""
    env = dict(os.environ)
    if "RUNNER_TEMP" in env:
        env["PIP_CACHE_DIR"] = str(pip_cache())
    command = [str(interpreter(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *arguments]
    return subprocess.run(command, env=env, check=False).returncode


def install_extras(venv: Path) -> int:
    """The extras that the `extras` input asks for, installed unless the environment has them already."""
    config = Path(os.environ.get("MODELCI_CONFIG") or "modelci.yaml").resolve()
    # NOTE: not isolated (-I): it sees what pip saw when it took the core's dependencies as installed (a
    # PYTHONPATH's too), as `modelci` will; run in the environment's folder, so that no module of the
    # workspace (the first entry of sys.path for `-m`) can stand in for one of modelci's
    asked = subprocess.run([str(interpreter(venv)), "-m", "modelci.extras", "--config", str(config),
                            "--extras", os.environ.get("MODELCI_EXTRAS", "auto")],
                           cwd=venv, capture_output=True, text=True, check=False)
    if asked.returncode:
        print(asked.stdout + asked.stderr, end="")
        return asked.returncode
    plan = json.loads(asked.stdout)
    extras, requirements = ",".join(plan["extras"]) or "none", plan["requirements"]
    record = venv / INSTALLED_EXTRAS
    have = set(json.loads(record.read_text())) if record.is_file() else set()
    if set(requirements) <= have:
        print(f"modelci: extras {extras} ({plan['why']}){': installed' if requirements else ''}")
        return 0
    print(f"modelci: extras {extras} ({plan['why']}): installing {' '.join(requirements)}", flush=True)
    done = install_torch(venv, requirements)
    done = done or pip(venv, requirements)
    if done:
        print(f"::error::modelci: pip could not install the extras {extras} into {venv} (its messages are above)")
        return done
    record.write_text(json.dumps(sorted(have | set(requirements))))
    return 0


def install_torch(venv: Path, requirements: list[str]) -> int:
    """torch alone from PyTorch's CPU index, on a runner without a GPU whose Python has no torch."""
    torch = next((r for r in requirements if re.match(r"torch\b(?![-_.])", r)), None)
    if torch is None or not cpu_torch(str(interpreter(venv)), dict(os.environ)):
        return 0
    print(f"modelci: no GPU on this runner: {torch} from PyTorch's CPU wheel index {TORCH_CPU_INDEX}", flush=True)
    # NOTE: alone and without its dependencies, which then come from the usual index
    return pip(venv, ["--no-deps", "--index-url", TORCH_CPU_INDEX, torch])


def cpu_torch(python: str, env: dict[str, str]) -> bool:
    """Whether torch should come from PyTorch's CPU index: no torch that this Python sees, and no GPU.

    A runner's own torch (a CUDA build on a GPU runner) is kept; a runner with a GPU and no torch gets
    pip's default torch, as before.
    """
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    has_torch = subprocess.run([python, "-c", probe], env=env, capture_output=True, check=False).returncode == 1
    return not has_torch and not gpu(env)


def gpu(env: dict[str, str]) -> bool:
    """Whether an NVIDIA GPU is visible: `nvidia-smi -L` on the PATH answers and succeeds."""
    smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], env=env, capture_output=True, timeout=TIMEOUT, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pip_cache() -> Path:
    """pip's cache for this job: in $RUNNER_TEMP, restored from and saved to GitHub's cache by the setup action."""
    return Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "modelci-pip-cache"


def cache_key(locked: str) -> str:
    """The key the setup action saves the environment and pip's cache under: the OS and machine (as the
    runner names them, the restore step's prefix), the Python, modelci's version and the lock's digest."""
    system = f"{os.environ.get('RUNNER_OS', platform.system())}-{os.environ.get('RUNNER_ARCH', platform.machine())}"
    digest = hashlib.sha256(locked.encode()).hexdigest()[:16]
    return f"modelci-env-{system}-py{platform.python_version()}-modelci{version()}-{digest}"


def lock(venv: Path) -> list[str]:
    """name==version of every distribution installed in the environment itself (not the runner's)."""
    return sorted({f"{re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()}=={d.version}"
                   for d in metadata.distributions(path=[str(purelib(venv))])})


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
    locked = "".join(f"{line}\n" for line in lock(venv))
    (venv / LOCK).write_text(locked)
    if "GITHUB_PATH" not in os.environ:  # not on a runner
        print(f"modelci {version()} is in {path}; its Python is {interpreter(venv)}")
        return
    with open(os.environ["GITHUB_PATH"], "a") as out:
        out.write(f"{path}\n")
    if "GITHUB_ENV" in os.environ:  # NOTE: a later setup in this job then restores no cache over it
        with open(os.environ["GITHUB_ENV"], "a") as out:
            out.write(f"MODELCI_ENVIRONMENT={venv}\n")
    outputs({"version": version(), "python": str(interpreter(venv)), "cache-key": cache_key(locked)})


def outputs(values: dict[str, str]) -> None:
    """The step's outputs, written to $GITHUB_OUTPUT."""
    with open(os.environ["GITHUB_OUTPUT"], "a") as out:
        out.write("".join(f"{name}={value}\n" for name, value in values.items()))


if __name__ == "__main__":
    sys.exit(main())
