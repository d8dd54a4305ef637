"""The composite actions and reusable workflows, read as YAML: documented inputs that reach a real
option, no expression inside a script, pinned references, least permissions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from modelci.cli import cli

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = sorted([ROOT / "action.yml", *ROOT.glob("actions/*/action.yml")])
WORKFLOWS = sorted(ROOT.glob(".github/workflows/*.yml"))
REUSABLE = [w for w in WORKFLOWS if "workflow_call" in (yaml.safe_load(w.read_text())[True] or {})]
# Variables modelci reads itself rather than through a command's options, and where
READ_FROM_ENVIRONMENT = {
    "MODELCI_PYTHON": ROOT / "actions/setup/install.sh",
    "MODELCI_EXTRAS": ROOT / "actions/setup/install.py",
    "MODELCI_CONFIG": ROOT / "actions/setup/install.py",  # the install step's: the config extras auto reads
    "MODELCI_REGISTRY_USERNAME": ROOT / "src/modelci/registry/remote.py",
    "MODELCI_REGISTRY_PASSWORD": ROOT / "src/modelci/registry/remote.py",
    "GITHUB_TOKEN": ROOT / "src/modelci/report/cli.py",
    "GH_TOKEN": ROOT / "src/modelci/registry/attestation.py",  # gh's own, for `gh attestation verify`
}


def load(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(path.read_text())
    return found


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def command_envvars(words: list[str]) -> set[str]:
    """The environment variables the click command `modelci WORDS...` reads its options from."""
    command: click.Command = cli
    prefix = "MODELCI"
    context = click.Context(cli)
    for word in words:
        assert isinstance(command, click.Group)
        found = command.get_command(context, word)
        assert found is not None, f"modelci has no command {' '.join(words)}"
        command, prefix = found, f"{prefix}_{word.upper().replace('-', '_')}"
    return {str(p.envvar) if p.envvar else f"{prefix}_{p.name.upper()}"
            for p in command.params if isinstance(p, click.Option) and p.name}


def runs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step with a `run:` script, in an action or in a workflow's jobs."""
    steps = document.get("runs", {}).get("steps", []) + [
        step for job in (document.get("jobs") or {}).values() for step in job.get("steps", [])]
    return [step for step in steps if "run" in step]


@pytest.mark.parametrize("path", [*ACTIONS, *WORKFLOWS], ids=name)
def test_no_expression_inside_a_script(path: Path) -> None:
    for step in runs(load(path)):
        assert "${{" not in step["run"], f"{name(path)}: pass values to a script through env:, not ${{{{ }}}}"


@pytest.mark.parametrize("path", ACTIONS, ids=name)
def test_every_input_is_kebab_case_documented_with_its_default_and_used(path: Path) -> None:
    action = load(path)
    text = path.read_text()
    assert action["runs"]["using"] == "composite"
    assert len(action["runs"]["steps"]) <= 3
    for key, spec in action["inputs"].items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", key), f"{name(path)}: input {key} is not kebab-case"
        assert "Default:" in spec["description"] or spec.get("required"), f"{name(path)}: {key} has no default said"
        assert f"inputs.{key} }}}}" in text, f"{name(path)}: input {key} is never used"


@pytest.mark.parametrize("path", ACTIONS, ids=name)
def test_every_input_reaches_a_real_option_or_environment_variable(path: Path) -> None:
    for variable, reader in READ_FROM_ENVIRONMENT.items():
        assert variable in reader.read_text(), f"{reader.name} no longer reads {variable}"
    action = load(path)
    for step in runs(action):  # NOTE: a step that uses an action (the setup's cache) gets no input through env
        script = step["run"]
        words = re.search(r"modelci ((?:[a-z-]+ ?)+)", script)
        options = command_envvars(words.group(1).split()) if words else set()
        environment = step.get("env") or {}
        for variable, value in environment.items():
            if not str(value).startswith("${{ inputs."):
                continue
            # NOTE: a secret reaches an option by name (env://NAME), never by value on the command line
            named = any(f"env://{variable}" in str(other) for other in environment.values())
            reaches = variable in options or f"${variable}" in script or variable in READ_FROM_ENVIRONMENT or named
            assert reaches, f"{name(path)}: {variable} reaches no option of `{script}` and nothing reads it"


@pytest.mark.parametrize("path", REUSABLE, ids=name)
def test_reusable_workflows_ask_for_the_least_and_say_why(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for key, spec in workflow[True]["workflow_call"]["inputs"].items():
        assert spec.get("description"), f"{name(path)}: input {key} is not described"
        assert spec.get("type") in ("string", "number", "boolean")
    for job_name, job in workflow["jobs"].items():
        assert job.get("timeout-minutes"), f"{name(path)}: job {job_name} has no timeout"
        assert "concurrency" in job, f"{name(path)}: job {job_name} may race another run"
        lines = job_lines(path, job_name)
        for permission in job["permissions"]:
            line = next(line for line in lines if line.strip().startswith(f"{permission}:"))
            assert "#" in line, f"{name(path)}: say why job {job_name} needs {permission}"


def job_lines(path: Path, job: str) -> list[str]:
    """The lines of one job of a workflow file, from its key to the next job's."""
    lines = path.read_text().splitlines()
    start = lines.index(f"  {job}:")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^  \S", lines[i])), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("example", sorted(ROOT.glob("examples/workflows/*.yml")), ids=name)
def test_each_example_grants_what_the_workflow_it_calls_asks_for(example: Path) -> None:
    for job in load(example)["jobs"].values():
        called = ROOT / job["uses"].split("@")[0].removeprefix("modelci/modelci/")
        asked = {key: value for called_job in load(called)["jobs"].values()
                 for key, value in called_job["permissions"].items()}
        for permission, level in asked.items():
            granted = job["permissions"].get(permission)
            assert granted == level or (granted, level) == ("write", "read"), \
                f"{name(example)} grants {permission}: {granted}, and {name(called)} asks for {level}"


def test_every_reference_is_at_the_release_or_a_full_hash() -> None:
    done = subprocess.run([sys.executable, "scripts/check_references.py"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    sys.path.insert(0, str(ROOT / "scripts"))
    from check_references import problem

    assert problem("actions/checkout@v5") == "actions/checkout must be pinned to a full commit hash, not @v5"
    assert problem("modelci/modelci/actions/train@main") == "this repository's modelci/modelci/actions/train must " \
        "be used at @v1"
    assert problem("actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8") is None


@pytest.mark.parametrize("example", sorted(ROOT.glob("examples/workflows/*.yml")), ids=name)
def test_the_readme_shows_each_example_workflow_verbatim(example: Path) -> None:
    assert example.read_text().rstrip("\n") in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", [*ACTIONS, *REUSABLE], ids=name)
def test_the_readme_names_every_input(path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    document = load(path)
    inputs = document["inputs"] if "inputs" in document else document[True]["workflow_call"]["inputs"]
    for key in inputs:
        assert f"`{key}`" in readme, f"{name(path)}: the README does not document input {key}"


PULL_REQUEST = ROOT / ".github" / "workflows" / "pull-request.yml"
# What may write to a registry: publishing, and the actions that push or move tags
WRITING_STEPS = ("modelci/modelci/actions/push@", "modelci/modelci/actions/promote@", "modelci/modelci/actions/deploy@")


def secrets_used(document: object) -> set[str]:
    """The names of every `secrets.NAME` an expression in a parsed workflow or job mentions."""
    return set(re.findall(r"secrets\.([A-Za-z0-9_-]+)", yaml.safe_dump(document)))


def runs_the_pull_requests_code(job: dict) -> bool:  # type: ignore[type-arg]
    """Whether a job runs anything of the pull request's tree (a checkout alone only reads it): a script of its own,
    an action from the workspace, the root action (which runs the model's code), or a stage in the model's folder."""
    return any(step.get("uses", "").startswith(("./", "modelci/modelci@")) or "run" in step
               or "working-directory" in (step.get("with") or {}) for step in job["steps"])


def test_the_job_that_runs_a_pull_requests_code_only_reads_the_registry_and_takes_read_only_secrets() -> None:
    workflow = load(PULL_REQUEST)
    declared = workflow[True]["workflow_call"]["secrets"]
    for key, spec in declared.items():
        assert key.startswith("registry-read-"), \
            f"pull-request.yml takes the secret {key}; the pull request's code runs with it: take read-only ones only"
        assert "read-only" in spec["description"], f"pull-request.yml: say that {key} must be read-only"
    checks = {name: job for name, job in workflow["jobs"].items() if runs_the_pull_requests_code(job)}
    assert checks, "pull-request.yml has no job that runs the check"
    for job_name, job in checks.items():
        # NOTE: the called job's permissions bound the workflow's token, whatever the caller grants
        assert job["permissions"].get("packages") in (None, "read"), f"job {job_name}'s token could push to ghcr.io"
        assert job.get("secrets") != "inherit"
        assert secrets_used(job) <= set(declared), f"job {job_name} uses secrets it did not declare read-only"
        for step in job["steps"]:
            uses = step.get("uses", "")
            assert not uses.startswith(WRITING_STEPS), f"job {job_name} writes to the registry ({uses})"
            if uses.startswith("modelci/modelci@"):
                assert step["with"].get("publish") == "false", f"job {job_name} must say that it publishes nothing"


def test_the_job_that_pushes_the_candidate_runs_none_of_the_pull_requests_code() -> None:
    workflow = load(PULL_REQUEST)
    writers = {name: job for name, job in workflow["jobs"].items() if job["permissions"].get("packages") == "write"}
    assert list(writers) == ["candidate"]
    job = writers["candidate"]
    assert job["permissions"] == {"contents": "read", "packages": "write"}  # nothing else: no token for comments
    assert not runs_the_pull_requests_code(job)  # no script, nothing in the pull request's folder
    assert [step["uses"].split("@")[0] for step in job["steps"]] == \
        ["actions/checkout", "actions/download-artifact",
         "modelci/modelci/actions/push-candidate"]
    checkout, _, push = job["steps"]
    assert checkout["with"] == {"persist-credentials": False}  # the commit judged, for git to read its tree
    assert push["with"]["tree-from"] == "${{ inputs.working-directory }}"
    assert job["needs"] == "check"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]  # never a fork's
    assert not secrets_used(job)
    assert job["runs-on"] == "ubuntu-latest"  # a fresh runner, not the one the check's job may have left things on


@pytest.mark.parametrize("example", sorted(ROOT.glob("examples/workflows/*.yml")), ids=name)
def test_an_example_lets_the_pull_request_check_push_its_candidate_and_nothing_more(example: Path) -> None:
    declared = set(load(PULL_REQUEST)[True]["workflow_call"]["secrets"])
    for job in load(example)["jobs"].values():
        if job["uses"].split("@")[0] != "modelci/modelci/.github/workflows/pull-request.yml":
            continue
        # NOTE: the grant is the ceiling; pull-request.yml's candidate job alone uses write (the test above)
        assert job["permissions"].get("packages") == "write"
        assert job.get("secrets") != "inherit"
        assert set(job.get("secrets") or {}) <= declared


@pytest.mark.parametrize("path", REUSABLE, ids=name)
def test_the_readme_names_every_secret(path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    for key in load(path)[True]["workflow_call"].get("secrets") or {}:
        assert f"`{key}`" in readme, f"{name(path)}: the README does not document the secret {key}"
