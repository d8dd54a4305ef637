"""Benchmark the merge to `main` with a matching content key (promote, no training) against retraining.

    PYTHONPATH=src python benchmarks/judged/run.py [--rounds 3]

Builds a model repository from examples/churn, as a user runs it: its generated data
(generate_data.py's defaults) and its own config (15 epochs), with the embedded registry
(`registry: oci:.modelci/registry`), committed to git. Then the pull request's flow, once:
`modelci run`, then `modelci push-candidate --pull-request 1`. Then, on the same commit, taking
turns, each a whole process timed by the wall clock:

- promote: `modelci run --publish` (the merge; it must log "promoted the judged candidate", and
  `sha-<commit>` and `main` must equal the candidate's digest);
- retrain: `modelci run --publish --no-cache` (today's retraining run).

NOTE: before every timed run the registry folder is replaced by a copy of the one the pull request
left (the candidate, no `main`), so every run of a kind does the same work. Writes results.json and
RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLE = ROOT / "examples" / "churn"
sys.path.insert(0, str(HERE.parent))
from machine import describe  # noqa: E402

REGISTRY = Path(".modelci/registry")
PULL = 1
TARGET = 5.0
PROMOTED = "promoted the judged candidate"
KINDS = {"promote": ["run", "--publish"], "retrain": ["run", "--publish", "--no-cache"]}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
                          cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def environment() -> dict[str, str]:
    """This process's environment without GitHub's variables: a local run, as a user's."""
    return {name: value for name, value in os.environ.items() if not name.startswith("GITHUB_")}


def modelci(repo: Path, *args: str) -> tuple[float, str]:
    """`modelci ARGS` as a whole process in `repo`: its wall-clock seconds and its output."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "modelci", *args], cwd=repo, env=environment(),
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"modelci {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def build(repo: Path) -> str:
    """The example as a committed model repository with its generated data; the commit."""
    repo.mkdir(parents=True)
    for name in ("model.py", "schema.yaml", "modelci.yaml", "generate_data.py"):
        shutil.copy(EXAMPLE / name, repo / name)
    with (repo / "modelci.yaml").open("a") as config:
        config.write("registry: oci:.modelci/registry\n")
    (repo / ".gitignore").write_text("data/\n.modelci/\n")
    subprocess.run([sys.executable, "generate_data.py"], cwd=repo, check=True, capture_output=True)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    return git(repo, "rev-parse", "HEAD")


def tags(repo: Path) -> dict[str, str]:
    from modelci.registry.layout import OciLayout

    return {name: found.digest for name, found in OciLayout.open(repo / REGISTRY, create=False).tags().items()}


def check_promoted(repo: Path, commit: str, candidate: str, log: str) -> None:
    found = tags(repo)
    if PROMOTED not in log or found.get(f"sha-{commit}") != candidate or found.get("main") != candidate:
        raise SystemExit(f"the merge did not promote {candidate}: tags {found}\n{log}")


def measure(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modelci-judged-") as scratch:
        repo = Path(scratch) / "churn"
        commit = build(repo)
        pr_seconds, _ = modelci(repo, "run")
        modelci(repo, "push-candidate", "--pull-request", str(PULL))
        judged = tags(repo)
        candidate = judged[f"pr-{PULL}"]
        snapshot = Path(scratch) / "registry-after-pull-request"
        shutil.copytree(repo / REGISTRY, snapshot)
        seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for i in range(rounds):
            for kind, args in KINDS.items():
                shutil.rmtree(repo / REGISTRY)
                shutil.copytree(snapshot, repo / REGISTRY)
                took, log = modelci(repo, *args)
                if kind == "promote":
                    check_promoted(repo, commit, candidate, log)
                elif PROMOTED in log or tags(repo).get("main") in (None, candidate):
                    raise SystemExit(f"--no-cache did not train and publish its own model: {tags(repo)}\n{log}")
                seconds[kind].append(round(took, 2))
                print(f"  round {i + 1}: {kind} {took:.1f} s", flush=True)
    return {"pull_request_run_seconds": round(pr_seconds, 2), "candidate": candidate, "seconds": seconds}


def write(measured: dict[str, Any], rounds: int) -> dict[str, Any]:
    medians = {kind: statistics.median(values) for kind, values in measured["seconds"].items()}
    ratio = medians["retrain"] / medians["promote"]
    record = {"date": datetime.date.today().isoformat(), "machine": describe(), "rounds": rounds, **measured,
              "median_seconds": medians, "ratio": round(ratio, 1),
              "target": {"target": f"merge with a matching key at least {TARGET:g}× faster than retraining",
                         "value": f"{ratio:.1f}×", "pass": ratio >= TARGET}}
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    machine = record["machine"]
    runs = ", ".join
    (HERE / "RESULTS.md").write_text(
        f"# judged: the merge with a matching key against retraining\n\n{record['date']}, {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['ram_gib']} GiB, {machine['os']}; CPU only. examples/churn with its "
        "generated data (20,000 training rows, 5,000 evaluation rows) and its config (15 epochs), the embedded "
        f"registry; whole processes, wall clock, median of {rounds} rounds taking turns, each from the registry "
        f"the pull request left (its candidate, no `main`). Generated by `run.py`.\n\n"
        "| run on the merged commit | median | runs |\n|---|---:|---|\n"
        f"| `modelci run --publish` (promotes the judged candidate, no training) | {medians['promote']:.1f} s | "
        f"{runs(f'{s:.1f}' for s in measured['seconds']['promote'])} |\n"
        f"| `modelci run --publish --no-cache` (trains, as before) | {medians['retrain']:.1f} s | "
        f"{runs(f'{s:.1f}' for s in measured['seconds']['retrain'])} |\n\n"
        "| target | measured | result |\n|---|---|---|\n"
        f"| {record['target']['target']} | {record['target']['value']} | "
        f"{'pass' if record['target']['pass'] else 'FAIL'} |\n\n"
        f"The pull request's own run (`modelci run`, which trains) took {measured['pull_request_run_seconds']:.1f} s "
        "before `modelci push-candidate`. Each promote run logged \"promoted the judged candidate\" and left "
        "`sha-<commit>` and `main` at the candidate's digest. Not measured: GitHub's runner start, checkout and "
        "setup, which both runs pay alike, nor a remote registry's network.\n")
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    record = write(measure(args.rounds), args.rounds)
    print(json.dumps({k: record[k] for k in ("median_seconds", "ratio", "target")}, indent=2))
    return 0 if record["target"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
