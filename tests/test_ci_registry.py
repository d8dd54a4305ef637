"""A baseline that persists in GitHub Actions: with no `registry` in the config a workflow uses the repository's
own package on GitHub's registry, a folder on the runner's disk is exit 2 naming the line to write (unless
`registry_local_in_ci` says the disk persists), and a pull request must be compared once main has published."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import git
from modelci.config import DEFAULT_REGISTRY, load_config

IN_ACTIONS = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "Team/Churn"}


def _set(repo: Path, **keys: object) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config.update(keys)
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))


def _in_actions(monkeypatch: pytest.MonkeyPatch, event: str = "push") -> None:
    for name, value in {**IN_ACTIONS, "GITHUB_EVENT_NAME": event}.items():
        monkeypatch.setenv(name, value)


def test_a_workflow_without_a_registry_uses_the_repositorys_package(repo: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert "registry" not in yaml.safe_load((repo / "modelci.yaml").read_text())  # the example leaves it out
    assert load_config("modelci.yaml").registry == DEFAULT_REGISTRY  # on a laptop: the folder
    _in_actions(monkeypatch)
    assert load_config("modelci.yaml").registry == "ghcr.io/team/churn-model"  # GHCR's names are lowercase


def test_a_registry_on_the_runners_disk_is_exit_2_naming_the_line_to_write(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set(repo, registry="oci:.modelci/registry")
    _in_actions(monkeypatch)
    for command in (("data", "check"), ("compare",), ("run",)):
        result = cli(*command)
        assert result.code == 2, (command, result.err)
        assert "registry: oci:.modelci/registry is a folder on this runner's disk" in result.err
        assert "put `registry: ghcr.io/team/churn-model`" in result.err
        assert "registry_local_in_ci: true" in result.err
    # the same on the command line
    _set(repo, registry="ghcr.io/team/churn-model")
    result = cli("run", "--registry", "oci:elsewhere")
    assert result.code == 2
    assert "registry: oci:elsewhere is a folder on this runner's disk" in result.err
    # a self-hosted runner whose disk persists says so
    _set(repo, registry="oci:.modelci/registry", registry_local_in_ci=True)
    assert cli("data", "check").code == 0


@pytest.mark.slow  # NOTE: two trainings: a regression model published, then the example's classifier
def test_a_pull_request_must_be_compared_once_main_has_published(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set(repo, registry="oci:.modelci/registry", registry_local_in_ci=True)
    git(repo, "commit", "-qam", "a persistent registry")
    _in_actions(monkeypatch, "pull_request")
    first = cli("run")
    assert first.code == 0, first.err  # nothing published yet: the first pull request has nothing to compare with

    monkeypatch.delenv("GITHUB_ACTIONS")
    classifier = yaml.safe_load((repo / "modelci.yaml").read_text())
    _set(repo, task="regression", data={**classifier["data"], "label": "monthly_charges"},
         evaluate={"metrics": ["rmse"]}, gate=[])
    git(repo, "commit", "-qam", "a regression model on main")
    assert cli("run", "--publish").code == 0

    (repo / "modelci.yaml").write_text(yaml.safe_dump(classifier))
    _in_actions(monkeypatch, "push")
    assert cli("run").code == 0  # not a pull request: a baseline that cannot be compared is reported, not failed
    _in_actions(monkeypatch, "pull_request")
    result = cli("run")
    assert result.code == 1
    assert "the baseline is a regression model, the candidate a binary model" in result.err
    assert "once main has published, the comparison must be made" in result.err
    _set(repo, compare={"require_baseline": False})
    assert cli("run").code == 0  # the team's own choice
