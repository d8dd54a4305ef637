"""Exit codes mean what the README says: 1 only for a check or the gate, 2 for what the user can fix
(a full disk included), 70 with a traceback file for what modelci did not expect, 130/143 for signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modelci.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_exit_codes() -> dict[int, str]:
    section = README.read_text(encoding="utf-8").split("**Exit codes:**", 1)[1].split("\n\n", 2)[1]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)}


def test_help_lists_every_exit_code_the_readme_lists(cli) -> None:  # type: ignore[no-untyped-def]
    documented = readme_exit_codes()
    assert {0, 1, 2, 3, 4, 5, 70, 130, 143} <= set(documented)
    helped = cli("--help").out.split("Exit codes:", 1)[1].split("Options:", 1)[0]
    assert {int(code) for code in re.findall(r"^\s+(\d+)\s", helped, re.MULTILINE)} == set(documented)


def test_an_unexpected_error_is_exit_70_with_its_traceback_in_a_file(  # type: ignore[no-untyped-def]
        cli, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:  # NOTE: a fault injected: a bug in the scan
        raise RuntimeError("the scan broke\nsecond line")

    monkeypatch.setattr("modelci.data.scan.scan", broken)
    result = cli("data", "profile", str(small_data / "train.parquet"), "--out", str(tmp_path / "out"))
    assert result.code == 70
    assert "Traceback" not in result.err
    trace = tmp_path / "out" / "traceback.txt"
    assert f"unexpected error: RuntimeError: the scan broke (exit 70); the traceback is in {trace}" in result.err
    assert "second line" not in result.err
    assert "Traceback (most recent call last)" in trace.read_text()
    assert "in broken" in trace.read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="a tmpfs in a mount namespace of its own is Linux's")
def test_a_full_disk_is_exit_2_with_what_to_do(small_data: Path, tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare makes the small disk"
    out = tmp_path / "out"
    out.mkdir()
    # NOTE: a 4 KiB tmpfs, mounted in a mount namespace of the command's own (CI and tests run as root): a
    # real ENOSPC, gone with the process
    mount = 'mount -t tmpfs -o size=4k tmpfs "$0" && exec "$@"'
    done = subprocess.run(["unshare", "--mount", "sh", "-c", mount, str(out), sys.executable, "-m", "modelci",
                           "data", "profile", str(small_data / "train.parquet"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "No space left on device" in done.stderr
    assert f"No space left on device: {out}/" in done.stderr
    assert "hint: free space on that disk; for what modelci writes, --out (MODELCI_OUT) may name another" in done.stderr


def test_the_sigterm_handler_is_restored_after_a_command(cli) -> None:  # type: ignore[no-untyped-def]
    before = signal.getsignal(signal.SIGTERM)
    assert cli("--version").code == 0
    assert main(["--version"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_training_script_stops_with_modelci(repo: Path, stop: signal.Signals, code: int) -> None:
    # NOTE: a script that runs for minutes and prints nothing more (a broken pipe would not end it): it must
    # end when modelci is stopped
    (repo / "forever.py").write_text("import os, pathlib, time\n"
                                     "pathlib.Path('child.pid').write_text(str(os.getpid()))\n"
                                     "print('epoch 1', flush=True)\ntime.sleep(600)\n")
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"], config["train"] = None, {"command": [sys.executable, "forever.py"]}
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "modelci", "train"], cwd=repo, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while not (repo / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((repo / "child.pid").read_text())
    began = time.monotonic()
    process.send_signal(stop)  # NOTE: to modelci alone, by its PID, as a runner or `kill` sends it
    _, err = process.communicate(timeout=90)
    assert process.returncode == code, err
    assert time.monotonic() - began < 15  # not a wait for a child that was never told
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_command_without_out_keeps_its_traceback_out_of_the_current_folder(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:  # NOTE: a fault injected: a bug in the pull
        raise RuntimeError("the pull broke")

    monkeypatch.setattr("modelci.registry.artifact.pull", broken)
    monkeypatch.chdir(tmp_path)
    result = cli("pull", f"oci:{tmp_path / 'registry'}:v1", "-o", ".")
    assert result.code == 70
    written = re.search(r"the traceback is in (\S+/traceback\.txt)", result.err)
    assert written, result.err
    assert "the pull broke" in Path(written[1]).read_text()
    assert list(tmp_path.iterdir()) == []  # `-o .` is no less empty for the crash
    shutil.rmtree(Path(written[1]).parent)
