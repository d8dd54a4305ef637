"""The setup action's install.sh, run as the action runs it against Debian's python3: modelci goes
into a virtual environment of the job's own (in RUNNER_TEMP), which sees the runner's Python's
packages (its torch among them) after its own; a modelci that an earlier job left in the runner's
Python, in ~/.local or in the environment itself is never run; a second action in the same job
installs nothing; the extras input (auto from the factory's imports, none, or a list) decides what pip is
asked for, and torch comes from PyTorch's CPU index only on a runner without a GPU or a torch of its own."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

import modelci
from modelci.errors import UsageError
from modelci.extras import chosen, plan

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "actions" / "setup" / "install.sh"
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


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    """RUNNER_TEMP, with the runner user's home beside it."""
    (tmp_path / "runner" / "home").mkdir(parents=True)
    return tmp_path / "runner"


def install(python: Path, runner: Path, system_packages: Path, **inputs: str,
            ) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """install.sh as the action runs it (inputs: MODELCI_EXTRAS, MODELCI_CONFIG): the GITHUB_PATH line it
    wrote and its `python` output."""
    path_file, output_file = runner / "path", runner / "output"
    path_file.write_text("")
    output_file.write_text("")
    env = {**os.environ, "MODELCI_PYTHON": str(python), "RUNNER_TEMP": str(runner), "GITHUB_PATH": str(path_file),
           "GITHUB_OUTPUT": str(output_file), "PYTHONPATH": str(system_packages), "HOME": str(runner / "home"),
           **inputs}
    for name in ("VIRTUAL_ENV", "MODELCI_EXTRAS", "MODELCI_CONFIG"):
        if name not in inputs:
            env.pop(name, None)
    done = subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True, timeout=600, check=False)
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
    return done, path_file.read_text().strip(), outputs.get("python", "")


def modelci_on_path(path: str, runner: Path, system_packages: Path) -> str:
    """`modelci --version` as a later step runs it, from the folder install.sh put on the PATH."""
    env = {**os.environ, "PATH": f"{path}{os.pathsep}/usr/bin:/bin", "PYTHONPATH": str(system_packages),
           "HOME": str(runner / "home")}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(["modelci", "--version"], env=env, capture_output=True, text=True, check=True).stdout


def plant(site: Path, ran: Path) -> None:
    """A modelci of this very version, as a pull request's job could leave it: importing it, or
    running its `modelci`, leaves the file `ran`."""
    package, dist = site / "modelci", site / f"modelci-{modelci.__version__}.dist-info"
    package.mkdir(parents=True)
    dist.mkdir()
    (package / "__init__.py").write_text(f'__version__ = "{modelci.__version__}"\n'
                                         f'open({str(ran)!r}, "a").write("planted code ran")\n')
    (package / "__main__.py").write_text("def entry_point():\n    print('modelci, planted')\n")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: modelci\nVersion: {modelci.__version__}\n")
    (dist / "RECORD").write_text("")


def site_packages(base: Path) -> Path:
    """Where Debian's python3, or a virtual environment made from it, keeps packages under base."""
    version = subprocess.run([DEBIAN_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return base / "lib" / f"python{version}" / "site-packages"


@pytest.mark.slow
def test_a_job_gets_an_environment_of_its_own_that_keeps_the_runners_torch_and_is_reused_only_unchanged(
        runner: Path, system_packages: Path, tmp_path: Path) -> None:
    assert externally_managed(DEBIAN_PYTHON), "the test needs Debian's python3, which is externally managed"
    first, path, python = install(DEBIAN_PYTHON, runner, system_packages)
    assert first.returncode == 0, first.stderr
    venv = runner / "modelci-venv"
    assert python == str(venv / "bin" / "python")
    assert path == str(venv / "path")  # modelci alone: the environment's python and pip stay off the PATH
    assert sorted(p.name for p in (venv / "path").iterdir()) == ["modelci"]
    assert f"modelci {modelci.__version__}: installing from {ROOT} into {venv}" in first.stdout
    assert modelci.__version__ in modelci_on_path(path, runner, system_packages)
    # the system's packages stay visible to it, a GPU runner's CUDA torch among them
    env = {**os.environ, "PYTHONPATH": str(system_packages)}
    torch = subprocess.run([python, "-c", "import torch; print(torch.__file__)"], env=env, capture_output=True,
                           text=True, check=True)
    assert torch.stdout.startswith(str(system_packages))  # the system's torch, not one pip put in the venv

    # a second modelci action in the same job
    again, path_again, python_again = install(DEBIAN_PYTHON, runner, system_packages)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stdout
    assert (path_again, python_again) == (path, python)
    # ... that was given the setup action's `python` output as its python
    passed_back, _, python_passed_back = install(Path(python), runner, system_packages)
    assert passed_back.returncode == 0, passed_back.stderr
    assert "installing" not in passed_back.stdout
    assert python_passed_back == python

    # modelci in the environment changed since it was installed: it is installed again, never run
    ran = tmp_path / "ran"
    cli = site_packages(venv) / "modelci" / "cli.py"
    cli.write_text(f"{cli.read_text()}\nopen({str(ran)!r}, 'a').write('tampered code ran')\n")
    tampered, path, _ = install(DEBIAN_PYTHON, runner, system_packages)
    assert tampered.returncode == 0, tampered.stderr
    assert f"::warning::modelci: modelci/cli.py is not this action's, in {venv}: installing modelci again" \
        in tampered.stdout
    assert modelci.__version__ in modelci_on_path(path, runner, system_packages)
    assert not ran.exists()

    # the environment as the setup action's cache restores it, in the next job: where it was made, it is reused
    # once checked; in another folder (its scripts name the Python of that folder), it is made again
    saved = tmp_path / "cache-entry"
    shutil.copytree(venv, saved, symlinks=True)
    shutil.rmtree(venv)
    shutil.copytree(saved, venv, symlinks=True)
    restored, path, _ = install(DEBIAN_PYTHON, runner, system_packages)
    assert restored.returncode == 0, restored.stderr
    assert "installing" not in restored.stdout
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "home").mkdir(parents=True)
    shutil.copytree(saved, elsewhere / "modelci-venv", symlinks=True)
    moved, path, _ = install(DEBIAN_PYTHON, elsewhere, system_packages)
    assert moved.returncode == 0, moved.stderr
    assert f"it was made in another folder, in {elsewhere / 'modelci-venv'}: installing modelci again" in moved.stdout
    assert modelci.__version__ in modelci_on_path(path, elsewhere, system_packages)


@pytest.mark.slow
def test_the_extras_input_decides_what_pip_is_asked_to_install(runner: Path, system_packages: Path,
                                                                tmp_path: Path) -> None:
    sklearn, torch = model_repository(tmp_path / "sklearn", SKLEARN), model_repository(tmp_path / "torch", TORCH)
    first, _, _ = install(DEBIAN_PYTHON, runner, system_packages, MODELCI_CONFIG=str(sklearn))
    assert first.returncode == 0, first.stderr
    assert "modelci: extras none (model.factory's model.py imports no module of an extra)\n" in first.stdout
    assert not (runner / "modelci-venv" / "modelci-extras.json").exists()  # pip was asked for no extra
    # a later action of the job whose model is torch's: the extra's requirements, the runner's torch kept
    torch_job, _, _ = install(DEBIAN_PYTHON, runner, system_packages, MODELCI_CONFIG=str(torch))
    assert torch_job.returncode == 0, torch_job.stderr
    assert "modelci: extras torch (model.factory's model.py imports torch): installing torch<3,>=2.5 " \
           "onnxscript>=0.2\n" in torch_job.stdout
    assert "CPU wheel index" not in torch_job.stdout  # the runner's Python has a torch
    explicit, _, _ = install(DEBIAN_PYTHON, runner, system_packages, MODELCI_EXTRAS="torch",
                             MODELCI_CONFIG=str(sklearn))
    assert "modelci: extras torch (the extras input is torch): installed\n" in explicit.stdout
    none, _, _ = install(DEBIAN_PYTHON, runner, system_packages, MODELCI_EXTRAS="none", MODELCI_CONFIG=str(torch))
    assert "modelci: extras none (the extras input is none)\n" in none.stdout
    bad, _, _ = install(DEBIAN_PYTHON, runner, system_packages, MODELCI_EXTRAS="torch,tensorflow")
    assert bad.returncode == 2
    assert "::error::modelci: the extras input is 'torch,tensorflow': modelci has no extra 'tensorflow' (set " \
           "extras to auto, none, or a comma list of: all, catboost, images, keras, lightgbm, text, torch, xgboost)" \
           in bad.stdout


SKLEARN = "from sklearn.linear_model import LogisticRegression\n\ndef build():\n    return LogisticRegression()\n"
TORCH = "from torch import nn\n\ndef build():\n    return nn.Linear(3, 1)\n"


def model_repository(folder: Path, factory: str, config: str = "model: {factory: model.py:build}\n",
                     **neighbours: str) -> Path:
    """A model repository: modelci.yaml, its factory's model.py and any neighbouring modules; its config's path."""
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(factory)
    for name, text in neighbours.items():
        (folder / f"{name}.py").write_text(text)
    (folder / "modelci.yaml").write_text(f"task: binary\n{config}")
    return folder / "modelci.yaml"


@pytest.mark.parametrize(("value", "factory", "config", "neighbours", "extras"), [
    ("auto", SKLEARN, None, {}, []),
    ("auto", TORCH, None, {}, ["torch"]),
    ("auto", "import torch.nn.functional as F\nimport lightgbm\n", None, {}, ["lightgbm", "torch"]),
    ("auto", "from layers import block\n", None, {"layers": "import xgboost as xgb\nimport layers\n"}, ["xgboost"]),
    ("auto", "import keras\n", None, {}, ["keras"]),
    ("auto", "from transformers import BertForSequenceClassification\n", None, {}, ["text"]),
    ("auto", "from . import x\nimport importlib\n", None, {}, []),
    ("auto", TORCH, "model: {onnx: model.onnx}\n", {}, []),
    ("auto", TORCH, "train: {command: python train.py}\n", {}, []),
    ("auto", TORCH, "model: {factory: missing.py:build}\n", {}, []),
    ("none", TORCH, None, {}, []),
    ("", TORCH, None, {}, []),
    (" xgboost, catboost ", SKLEARN, None, {}, ["catboost", "xgboost"]),
], ids=["scikit-learn", "torch", "two frameworks", "a neighbouring module's import", "keras", "hugging face",
         "relative and stdlib",
        "model.onnx", "train.command: the team's script", "a factory that is not there", "none", "empty",
        "an explicit list"])
def test_the_extras_a_config_needs_are_read_from_its_factorys_imports(
        tmp_path: Path, value: str, factory: str, config: str | None, neighbours: dict[str, str],
        extras: list[str]) -> None:
    arguments = {"config": config} if config else {}
    path = model_repository(tmp_path / "repo", factory, **arguments, **neighbours)
    assert chosen(value, path)[0] == extras


def test_the_extras_of_an_extra_are_installed_and_a_bad_extras_value_is_exit_2(tmp_path: Path) -> None:
    assert "torch<3,>=2.5" in plan("keras", tmp_path / "modelci.yaml")["requirements"]  # keras: modelci[torch]
    assert chosen("auto", tmp_path / "modelci.yaml") == ([], f"there is no modelci.yaml at {tmp_path}")
    broken = model_repository(tmp_path / "broken", "def build(:\n")
    with pytest.raises(UsageError, match=r"model.py does not parse \(line 1\)"):
        chosen("auto", broken)
    done = subprocess.run([sys.executable, "-I", "-m", "modelci.extras", "--extras", "tensorflow"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stdout.startswith("::error::modelci: the extras input is 'tensorflow': modelci has no extra")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runner's Python without torch: a virtual environment without packages."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    return venv / "bin" / "python"


@pytest.mark.parametrize(("has_torch", "smi", "cpu_index"), [
    (False, None, True),
    (False, "exit 9", True),
    (False, "exit 0", False),
    (True, None, False),
], ids=["no torch, no nvidia-smi", "no torch, nvidia-smi failing", "no torch, a GPU", "the runner's own torch"])
def test_torch_comes_from_the_cpu_index_only_without_a_gpu_and_without_a_runners_torch(
        installer: ModuleType, bare_python: Path, tmp_path: Path, has_torch: bool, smi: str | None,
        cpu_index: bool) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    if smi:
        (folder / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
        (folder / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{folder}{os.pathsep}/usr/bin:/bin"}
    python = sys.executable if has_torch else str(bare_python)
    assert installer.cpu_torch(python, env) is cpu_index


@pytest.mark.slow
@pytest.mark.parametrize("where", ["the runner's Python", "the runner user's ~/.local"])
def test_a_modelci_of_the_same_version_that_an_earlier_job_planted_is_never_run(
        where: str, runner: Path, system_packages: Path, tmp_path: Path) -> None:
    # the runner's Python: a virtual environment of the runner user's own, as deploy/gpu-runners.md
    # sets one up for the CUDA torch, and writable by every job; here it holds a GPU package stand-in
    runners_python = tmp_path / "runners-python"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", runners_python], check=True)
    (site_packages(runners_python) / "gpu_stand_in.py").write_text("")
    ran = tmp_path / "ran"
    if where == "the runner's Python":
        plant(site_packages(runners_python), ran)
    else:
        plant(runner / "home" / ".local" / site_packages(Path()), ran)
    python = DEBIAN_PYTHON if "local" in where else runners_python / "bin" / "python"

    done, path, job_python = install(python, runner, system_packages)
    assert done.returncode == 0, done.stderr
    assert "installing from" in done.stdout
    assert not ran.exists()
    version = modelci_on_path(path, runner, system_packages)
    assert modelci.__version__ in version
    assert "planted" not in version
    env = {**os.environ, "PYTHONPATH": str(system_packages), "HOME": str(runner / "home")}
    probe = "import gpu_stand_in, modelci; print(modelci.__file__)" if python != DEBIAN_PYTHON else \
        "import modelci; print(modelci.__file__)"
    found = subprocess.run([job_python, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert found.stdout.startswith(str(runner / "modelci-venv"))  # the runner's packages seen, its modelci not
    assert not ran.exists()


def test_a_python_that_is_not_there_is_named(tmp_path: Path) -> None:
    done, _, _ = install(Path(sys.prefix) / "no-such-python", tmp_path, tmp_path)
    assert done.returncode == 2
    assert f"::error::modelci: no '{Path(sys.prefix) / 'no-such-python'}' on this runner" in done.stdout


@pytest.fixture(scope="module")
def installer() -> ModuleType:
    """actions/setup/install.py, the script, as a module."""
    spec = importlib.util.spec_from_file_location("install", ROOT / "actions" / "setup" / "install.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tamper_nothing(package: Path) -> None:
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"bytecode is not compared: it is dropped")


@pytest.mark.parametrize(("tamper", "found"), [
    (tamper_nothing, None),
    (lambda package: (package / "cli.py").write_text("print('changed')\n"), "cli.py"),
    (lambda package: (package / "cli.py").write_bytes((package / "cli.py").read_bytes() + b" "), "cli.py"),
    (lambda package: (package / "evil.py").write_text(""), "evil.py"),
    (lambda package: (package / "sub" / "__init__.py").unlink(), "sub/__init__.py"),
    (lambda package: (package / "sub" / "data.txt").write_text("not shipped"), "sub/data.txt"),
    (lambda package: (package / "cli").mkdir() or (package / "cli" / "__init__.py").write_text(""),
     "cli/__init__.py"),
    (lambda package: (package / "cli.py").unlink() or (package / "cli.py").symlink_to(package / "__init__.py"),
     "cli.py"),
], ids=["unchanged", "a module changed", "a byte added", "a module added", "a module removed",
        "a file added", "a package shadowing a module", "a link"])
def test_an_installed_package_is_compared_file_by_file_with_its_source(
        installer: ModuleType, tmp_path: Path, tamper: object, found: str | None) -> None:
    source, installed = tmp_path / "source", tmp_path / "installed"
    for package in (source, installed):
        (package / "sub").mkdir(parents=True)
        (package / "__init__.py").write_text('__version__ = "1"\n')
        (package / "cli.py").write_text("def main(): ...\n")
        (package / "sub" / "__init__.py").write_text("")
    assert callable(tamper)
    tamper(installed)
    assert installer.difference(installed, source) == found


def test_image_data_needs_the_images_extra_whatever_the_model(tmp_path: Path) -> None:
    folder = model_repository(tmp_path / "folder", TORCH, "model: {factory: model.py:build}\n"
                              "data: {train: images/train, label: label}\n")
    (folder.parent / "images" / "train" / "cat").mkdir(parents=True)
    (folder.parent / "images" / "train" / "cat" / "1.png").write_bytes(b"")
    assert chosen("auto", folder) == (["images", "torch"], "model.factory's model.py imports torch; "
                                                           "data.train is a folder of images")
    table = model_repository(tmp_path / "table", SKLEARN, "model: {onnx: model.onnx}\n"
                             "data: {train: train.parquet, label: label, schema: schema.yaml}\n")
    (table.parent / "schema.yaml").write_text("version: 1\ncolumns:\n  photo: {type: image}\n  label: {type: string}\n")
    assert chosen("auto", table)[0] == ["images"]
    (table.parent / "schema.yaml").write_text("version: 1\ncolumns:\n  age: {type: int}\n")
    assert chosen("auto", table)[0] == []
