"""Shared fixtures: a small copy of the example model repository, and the CLI as a function."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelci.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "churn"
sys.path.insert(0, str(EXAMPLE))
from generate_data import generate  # noqa: E402 - the example's own generator, imported from its folder

SMALL_ROWS = 2000


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Call `main(argv)` in-process, outside GitHub Actions unless a test says otherwise."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_SHA", raising=False)

    def run(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def example_repository(example: str, folder: Path, small_data: Path,
                       prepare: Callable[[Path], None] | None = None) -> Path:
    """A copy of examples/<example> with the small churn data, `prepare`d, committed as a git repository."""
    shutil.copytree(ROOT / "examples" / example, folder)
    shutil.copytree(small_data, folder / "data")  # NOTE: the README's `generate_data.py --out data`, smaller
    if prepare is not None:
        prepare(folder)
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-qm", "model")
    return folder


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("churn-data")
    generate(SMALL_ROWS, 7).to_parquet(folder / "train.parquet", index=False)
    generate(SMALL_ROWS // 4, 8).to_parquet(folder / "eval.parquet", index=False)
    return folder


def copy_example(target: Path, small_data: Path, *, epochs: int) -> Path:
    """The churn example's model, schema and config in `target`, with the small data and `epochs`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "schema.yaml", "modelci.yaml"):
        shutil.copy(EXAMPLE / name, target / name)
    shutil.copytree(small_data, target / "data")
    config = target / "modelci.yaml"
    config.write_text(config.read_text().replace("epochs: 15", f"epochs: {epochs}"))
    return target


@pytest.fixture
def repo(tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The churn example with small data and few epochs, as a git repository; the cwd is its root."""
    target = copy_example(tmp_path / "churn", small_data, epochs=4)
    git(target, "init", "-q")
    git(target, "add", "model.py", "schema.yaml", "modelci.yaml")
    git(target, "commit", "-qm", "model")
    monkeypatch.chdir(target)
    return target
