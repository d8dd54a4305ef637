"""`modelci tune` on the example: real trials, pruning, a study shared through storage, tuned.yaml applied."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from test_train import configure, log

OUT = Path(".modelci/out")
SPACE = {"model.params.hidden": {"type": "categorical", "choices": [8, 32]},
         "train.lr": {"type": "float", "low": 1e-6, "high": 0.05, "log": True}}


def report() -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / "tune-report.json").read_text())


@pytest.mark.slow
def test_search_finds_the_best_trial_and_train_applies_it(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__epochs=2, tune={"trials": 4, "sampler": "random", "space": SPACE})
    result = cli("tune")
    assert result.code == 0, result.err
    found = report()
    assert len(found["trials"]) == 4
    complete = [t for t in found["trials"] if t["state"] == "complete"]
    assert found["best"]["value"] == max(t["value"] for t in complete)
    tuned = yaml.safe_load((repo / "tuned.yaml").read_text())
    assert tuned == found["best"]["params"]

    trained = cli("train")
    assert trained.code == 0
    assert "with the tuned parameters in tuned.yaml" in trained.err
    assert log()["settings"]["params"]["hidden"] == tuned["model.params.hidden"]
    assert log()["settings"]["lr"] == tuned["train.lr"]
    assert cli("report").code == 0
    assert "## Hyperparameter search" in (OUT / "report.md").read_text()


@pytest.mark.slow
def test_a_shared_study_prunes_a_trial_worse_than_the_median(  # type: ignore[no-untyped-def]
        cli, repo: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # NOTE: another runner's study: three good learning rates queued, then a hopeless one
    study = optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    for lr in (0.01, 0.01, 0.01, 1e-6):
        study.enqueue_trial({"model.params.hidden": 32, "train.lr": lr})
    configure(repo, train__epochs=4, tune={"trials": 4, "space": SPACE})
    result = cli("tune", "--storage", storage, "--study", "shared")
    assert result.code == 0, result.err
    states = [t["state"] for t in report()["trials"]]
    assert states == ["complete", "complete", "complete", "pruned"]
    assert report()["trials"][3]["epochs"] < 4
    assert "trial 3: pruned after epoch" in result.err
    # a second runner joins the same study
    assert cli("tune", "--storage", storage, "--study", "shared", "--trials", "1").code == 0
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == 5


@pytest.mark.slow
def test_the_grid_sampler_stops_when_the_grid_is_done(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__epochs=1, tune={"trials": 10, "sampler": "grid", "metric": "pr_auc",  # not evaluated
                                          "space": {"model.params.hidden": {"type": "int", "low": 8, "high": 24,
                                                                            "step": 8}}})
    assert cli("tune").code == 0
    assert sorted(t["params"]["model.params.hidden"] for t in report()["trials"]) == [8, 16, 24]
    assert all(t["state"] == "complete" for t in report()["trials"])  # pr_auc was measured for the search


def test_tune_without_a_space_says_what_to_add(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("tune")
    assert result.code == 2
    assert "modelci.yaml has no tune.space to search" in result.err


def test_tune_refuses_a_training_script_of_the_users_own(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, model=None, train={"command": "python train.py"}, tune={"space": SPACE})
    result = cli("tune")
    assert result.code == 2
    assert "modelci tune trains through modelci" in result.err


@pytest.mark.slow
def test_a_diverging_trial_is_pruned_and_the_search_goes_on(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    space = {"train.lr": {"type": "categorical", "choices": [0.01, 1.0e12]}}
    configure(repo, train__epochs=2, tune={"trials": 2, "sampler": "grid", "space": space})
    result = cli("tune")
    assert result.code == 0, result.err
    trials = {t["params"]["train.lr"]: t for t in report()["trials"]}
    assert trials[0.01]["state"] == "complete"
    assert trials[1.0e12]["state"] == "pruned"  # as Optuna's samplers learn from: among the worst, not ignored
    assert "the training loss became nan in epoch 1: training diverged" in trials[1.0e12]["error"]
    assert yaml.safe_load((repo / "tuned.yaml").read_text()) == {"train.lr": 0.01}

    configure(repo, tune={"trials": 1, "sampler": "grid", "space": {"train.lr": {"type": "categorical",
                                                                                  "choices": [1.0e12]}}})
    result = cli("tune")
    assert result.code == 2
    assert "no trial of the search completed: 1 trials, 1 diverged" in result.err
    assert "Traceback" not in result.err
