"""A team's own ONNX model (`model.onnx: PATH`, or a `train.command` that writes one): published,
compared and served like one modelci trained, and checked against its own predictions when given."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conftest import git
from modelci.evaluate.onnx_model import OnnxModel
from test_serve import request_of, start, train_and_export

OUT = Path(".modelci/out")
ALTERED = [3, 50, 200]

# NOTE: a training script of the team's own that writes an ONNX model it already has, and its predictions.
COPYING_SCRIPT = '''
import os, shutil, sys
shutil.copy(sys.argv[1], os.environ["MODELCI_MODEL"])
shutil.copy(sys.argv[2], os.environ["MODELCI_PREDICTIONS"])
'''


@pytest.fixture(scope="module")
def team_models(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> dict[str, Path]:
    """Two ONNX models over the churn data's raw columns (seeds 0 and 1), made once by modelci itself,
    and seed 0's own predictions for the evaluation rows as CSV: what a team brings."""
    folder = tmp_path_factory.mktemp("team")
    found = {}
    for seed in (0, 1):
        repo = train_and_export(folder / f"seed{seed}", small_data, seed)
        found[f"seed{seed}"] = shutil.copy(repo / OUT / "model.onnx", folder / f"team{seed}.onnx")
    own = OnnxModel(found["seed0"]).predict(pd.read_parquet(small_data / "eval.parquet"))
    pd.DataFrame(own, columns=["0", "1"]).to_csv(folder / "predictions.csv", index=False)
    found["predictions"] = folder / "predictions.csv"
    return found


def configure(repo: Path, model: dict[str, Any] | None, **train: Any) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"] = model
    config["train"] = {**config["train"], **train}
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))


def with_file(repo: Path, source: Path, name: str) -> str:
    shutil.copy(source, repo / name)
    return name


def read(name: str) -> Any:
    return json.loads((OUT / name).read_text())


def test_an_own_onnx_model_is_published_compared_and_served(  # type: ignore[no-untyped-def]
        cli, repo: Path, team_models: dict[str, Path]) -> None:
    configure(repo, {"onnx": with_file(repo, team_models["seed0"], "team.onnx")})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "our own ONNX model")
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    assert read("train-log.json")["framework"] == "onnx"
    assert read("parity.json")["exporter"] == "model.onnx"
    assert read("parity.json")["outputs"] == []
    assert "the team's own ONNX model `team.onnx`" in (OUT / "model-card.md").read_text()

    with_file(repo, team_models["seed1"], "team.onnx")
    git(repo, "commit", "-qam", "retrained")
    second = cli("run")
    assert second.code == 0, second.err
    comparison = read("comparison.json")
    assert comparison["baseline_status"] == "compared"
    roc = next(m for m in comparison["metrics"] if m["name"] == "roc_auc")
    assert roc["baseline"] != roc["candidate"]
    assert roc["verdict"]

    served = OnnxModel(OUT / "model.onnx")
    rows = pd.read_parquet(repo / "data/eval.parquet").iloc[:4]
    running = start(OUT / "model.onnx")
    try:
        answer = running.infer(request_of(rows, served))
    finally:
        running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
        running.process.wait(timeout=30)
    assert answer.status_code == 200, answer.text
    data = answer.json()["outputs"][0]["data"]
    assert data == pytest.approx(OnnxModel(repo / "team.onnx").predict(rows).ravel().tolist(), abs=1e-6)


def altered(predictions: Path, target: Path) -> Path:
    frame = pd.read_csv(predictions)
    frame.loc[ALTERED, "1"] = 1.0 - frame.loc[ALTERED, "1"]
    frame.to_csv(target, index=False)
    return target


@pytest.mark.parametrize("how", ["model.predictions", "MODELCI_PREDICTIONS"])
@pytest.mark.parametrize("changed", [False, True], ids=["agree", "three-rows-differ"])
def test_the_models_own_predictions_are_checked_for_parity(  # type: ignore[no-untyped-def]
        cli, repo: Path, team_models: dict[str, Path], how: str, changed: bool) -> None:
    predictions = team_models["predictions"]
    if changed:
        predictions = altered(predictions, repo / "altered.csv")
    with_file(repo, team_models["seed0"], "team.onnx")
    if how == "model.predictions":
        configure(repo, {"onnx": "team.onnx", "predictions": with_file(repo, predictions, "predictions.csv")})
    else:
        (repo / "own_train.py").write_text(COPYING_SCRIPT)
        configure(repo, None, command=[sys.executable, "own_train.py", "team.onnx", str(predictions)])
    assert cli("train").code == 0
    result = cli("export")
    parity = read("parity.json")
    assert parity["exporter"] == ("model.onnx" if how == "model.predictions" else "train.command")
    assert parity["rows"] == len(pd.read_parquet(repo / "data/eval.parquet"))
    if not changed:
        assert result.code == 0, result.err
        assert parity["passed"]
        assert parity["outputs"][0]["max_abs_error"] < 1e-6
        return
    assert result.code == 1
    assert "3 of 500 rows differ" in result.err, result.err
    assert "rows 3, 50, 200, counted from 0" in result.err
    assert parity["outputs"][0]["sample_rows"] == ALTERED
    assert not parity["passed"]


NOT_ONNX = "not an ONNX model\n"


@pytest.mark.parametrize(("model", "files", "fragments"), [
    pytest.param({"onnx": "missing.onnx"}, {}, ("model.onnx:", "missing.onnx does not exist"), id="missing"),
    pytest.param({"onnx": "team.onnx"}, {"team.onnx": NOT_ONNX}, ("is not a valid ONNX model",), id="not-onnx"),
    pytest.param({"onnx": "team.onnx", "predictions": "p.csv"}, {"p.csv": "0,1\n0.5,0.5\n"},
                 ("model.predictions", "it has 1 rows; there are 500 evaluation rows"), id="too-few-rows"),
    pytest.param({"onnx": "team.onnx", "predictions": "p.csv"}, {"p.csv": "yes,no\n0.5,0.5\n"},
                 ("its columns are ['yes', 'no']; they must be ['0', '1']",), id="wrong-columns"),
    pytest.param({"onnx": "team.onnx", "predictions": "missing.csv"}, {},
                 ("model.predictions:", "missing.csv does not exist"), id="missing-predictions"),
])
def test_bad_own_models_and_predictions_are_named(  # type: ignore[no-untyped-def]
        cli, repo: Path, team_models: dict[str, Path], model: dict[str, str], files: dict[str, str],
        fragments: tuple[str, ...]) -> None:
    shutil.copy(team_models["seed0"], repo / "team.onnx")
    for name, text in files.items():
        (repo / name).write_text(text)
    configure(repo, model)
    result = cli("train")
    assert result.code == 2
    assert all(f in result.err for f in fragments), result.err
    assert not (OUT / "model.onnx").exists()  # no model, so no later stage can use one


def test_a_model_that_does_not_take_the_feature_columns_is_refused(  # type: ignore[no-untyped-def]
        cli, repo: Path, team_models: dict[str, Path]) -> None:
    configure(repo, {"onnx": with_file(repo, team_models["seed0"], "team.onnx")})
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["data"]["features"] = ["tenure_months", "monthly_charges"]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    result = cli("train")
    assert result.code == 2
    assert "model.onnx (" in result.err, result.err
    assert "does not fit modelci's contract" in result.err
    assert "they must be the feature columns ['tenure_months', 'monthly_charges']" in result.err
    assert not (OUT / "model.onnx").exists()


@pytest.mark.parametrize(("model", "train", "fragment"), [
    ({"onnx": "team.onnx", "factory": "model.py:build"}, {}, "model.factory and model.onnx are set"),
    ({"onnx": "team.onnx"}, {"command": "python x.py"}, "model.onnx and train.command are set"),
    ({"factory": "model.py:build", "predictions": "p.csv"}, {}, "model.predictions: only with model.onnx"),
])
def test_a_model_comes_from_one_place(  # type: ignore[no-untyped-def]
        cli, repo: Path, model: dict[str, str], train: dict[str, str], fragment: str) -> None:
    configure(repo, model, **train)
    result = cli("train")
    assert result.code == 2
    assert fragment in result.err, result.err


def test_tune_and_kfold_refuse_a_model_made_elsewhere(  # type: ignore[no-untyped-def]
        cli, repo: Path, team_models: dict[str, Path]) -> None:
    configure(repo, {"onnx": with_file(repo, team_models["seed0"], "team.onnx")})
    tuned = cli("tune")
    assert tuned.code == 2
    assert "model.onnx is a model already made" in tuned.err
    assert cli("train").code == 0
    assert cli("export").code == 0
    folds = cli("evaluate", "--kfold", "3")
    assert folds.code == 2, folds.err
    assert "K-fold cross-validation trains a model per fold; model.onnx is a model already made" in folds.err
