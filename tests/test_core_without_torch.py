"""A core without torch: the commands that need no framework run, for real, in a Python where torch
cannot be imported; `train` there is exit 2 naming the extra to install; pyproject.toml keeps torch
out of the core dependencies and the README's quick start installs the extra.

Torch is blocked in each subprocess by a finder at the front of `sys.meta_path` that refuses it, as
an absent package is refused, and records every attempt: a command that tried is caught even when
the ImportError was swallowed. (`sys.modules['torch'] = None` would do the refusing too, but
scipy.stats then reads that None as torch and fails in a way no torch-less install does.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import ROOT, copy_example
from loopback import free_port, stop, wait_until_ready
from modelci.cli import main

# The framework extra's packages, as `import` names them
FRAMEWORK = ("torch", "onnxscript")
TRIED = "imports tried:"
NO_TORCH = f"""
import sys
BLOCKED = set(sys.argv.pop(1).split(","))
tried = []

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from modelci.cli import main
code = main(sys.argv[1:])
print({TRIED!r}, sorted(set(tried)), flush=True)
raise SystemExit(code)
"""


def without_torch(*argv: str, cwd: Path, blocked: tuple[str, ...] = FRAMEWORK) -> subprocess.CompletedProcess[str]:
    """`modelci ARGV` in a Python where the `blocked` modules are not installed, as far as any import can tell."""
    return subprocess.run([sys.executable, "-c", NO_TORCH, ",".join(blocked), *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def tried(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(TRIED))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """The churn example trained (two epochs: one is below its gate), exported, evaluated, compared and
    pushed as oci:registry:v1, with torch, in this process: what the commands under test read."""
    folder = copy_example(tmp_path_factory.mktemp("no-torch") / "churn", small_data, epochs=2)
    here = Path.cwd()
    os.chdir(folder)
    try:
        for argv in (["train"], ["export"], ["evaluate"], ["compare"],
                     ["push", ".modelci/out", "--to", "oci:registry:v1"]):
            assert main(argv) == 0, argv
    finally:
        os.chdir(here)
    return folder


COMMANDS = [
    pytest.param(["--help"], id="help"),
    pytest.param(["data", "check"], id="data-check"),
    pytest.param(["data", "profile", "data/train.parquet", "--out", "profiled"], id="data-profile"),
    pytest.param(["data", "infer-schema", "data/train.parquet", "-o", "inferred.yaml"], id="data-infer-schema"),
    pytest.param(["evaluate"], id="evaluate"),
    pytest.param(["compare", "--baseline", "oci:registry:v1"], id="compare"),
    pytest.param(["report"], id="report"),
    pytest.param(["push", ".modelci/out", "--to", "oci:pushed:v1"], id="push"),
    pytest.param(["pull", "oci:registry:v1", "-o", "pulled"], id="pull"),
    pytest.param(["promote", "oci:registry:v1", "main"], id="promote"),
    pytest.param(["deploy", "oci:registry:v1", "--tag", "prod", "--force"], id="deploy"),
]


@pytest.mark.parametrize("argv", COMMANDS)
def test_a_core_command_runs_without_torch(argv: list[str], repo: Path) -> None:
    done = without_torch(*argv, cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tried(done.stdout) == f"{TRIED} []"


def test_serve_answers_without_torch(repo: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", NO_TORCH, ",".join(FRAMEWORK), "serve", "--model",
                                "oci:registry:v1", "--name", "churn", "--port", str(port), "--drain-period", "0"],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_ready(process, f"http://127.0.0.1:{port}/v2/health/ready", "the server")
    body = (ROOT / "examples" / "churn" / "request.json").read_text()
    answer = requests.post(f"http://127.0.0.1:{port}/v2/models/churn/infer", data=body, timeout=30)
    assert stop(process) == 143
    output = process.communicate()[0]
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["name"] == "probabilities"
    assert tried(output) == f"{TRIED} []"


def test_train_without_torch_names_the_extra(repo: Path) -> None:
    done = without_torch("train", "--out", "no-torch-out", cwd=repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "model.factory: model.py needs torch, which is not installed" in done.stderr
    assert "pip install 'modelci[torch]'" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (repo / "no-torch-out" / "traceback.txt").exists()


def test_a_factory_that_imports_a_module_of_a_missing_extra_names_the_extra(repo: Path) -> None:
    # NOTE: onnxscript, of the torch extra, stands for the framework: torch itself cannot be taken away
    # once modelci's trainer has imported it (torch imports its own submodules as it runs)
    (repo / "needs_onnxscript.py").write_text("import onnxscript  # noqa: F401\nfrom model import build\n")
    config = (repo / "modelci.yaml").read_text().replace("model.py:build", "needs_onnxscript.py:build")
    (repo / "needs-onnxscript.yaml").write_text(config)
    done = without_torch("train", "--config", "needs-onnxscript.yaml", "--out", "factory-out", cwd=repo,
                         blocked=("onnxscript",))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "model.factory: needs_onnxscript.py needs onnxscript, which is not installed" in done.stderr
    assert "pip install 'modelci[torch]'" in done.stderr


def requirements(pyproject: str, key: str) -> set[str]:
    """The names a list in pyproject.toml requires (`key = [...]`), without versions or extras."""
    # NOTE: read with a pattern, not tomllib, which Python 3.10 lacks
    listed = re.search(rf"^{re.escape(key)} = \[(.*?)\]$", pyproject, re.MULTILINE | re.DOTALL)
    assert listed, key
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in re.findall(r'"([^"]+)"', listed.group(1))}


def test_the_core_dependencies_leave_torch_to_its_extra() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "click" in requirements(pyproject, "dependencies")  # the pattern finds the list
    assert not requirements(pyproject, "dependencies") & set(FRAMEWORK)
    assert requirements(pyproject, "torch") == set(FRAMEWORK)
    assert requirements(pyproject, "all") >= {"modelci"}
    assert re.search(r"""^all = \[.*"modelci\[torch\]".*\]$""", pyproject, re.MULTILINE)


def test_the_quick_start_installs_the_torch_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick_start, re.DOTALL)
    assert re.search(r"pip install torch==[\d.]+ -e '\.\[torch,test\]'", commands[0])
    assert "'.[torch,test]'" in (ROOT / ".ci" / "run").read_text()
