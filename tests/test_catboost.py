"""The CatBoost adapter: fitted on real (the churn example's) data, saved in CatBoost's own format, read back,
exported by CatBoost's own ONNX exporter, and ONNX Runtime's outputs checked against CatBoost's with export's
tolerances; and one `modelci run` end to end."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from adapters import TASKS, assert_compared_as_fitted, assert_exported_as_predicted, fit_of
from conftest import generate, git
from modelci.config import Config, load_config
from modelci.errors import UsageError
from modelci.frameworks import Fit, recognise
from modelci.frameworks.catboost import ADAPTER as CATBOOST
from modelci.outputs import TRAIN_LOG

FACTORY = ("from catboost import CatBoostClassifier, CatBoostRegressor\n"
           "def build(input_dim, output_dim, task='binary', iterations=20):\n"
           "    kind = CatBoostRegressor if task == 'regression' else CatBoostClassifier\n"
           "    return kind(iterations=iterations, depth=4, learning_rate=0.3, thread_count=1)\n")


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(1500, 11), generate(400, 12)


def _config(folder: Path, task: str) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(FACTORY)
    (folder / "modelci.yaml").write_text(
        f"task: {task}\ndata: {{train: train.parquet, eval: eval.parquet, label: {TASKS[task]}}}\n"
        f"model: {{factory: model.py:build, params: {{task: {task}}}}}\n")
    return load_config(folder / "modelci.yaml")


def _fit(folder: Path, task: str, frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Fit, Any]:
    return fit_of(_config(folder, task), folder, task, TASKS[task], frames, {"task": task})


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_adapter_round_trip_and_onnx_parity(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame],
                                            task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fit, made = _fit(tmp_path / "out", task, churn)
    assert recognise(made, "model.py:build") is CATBOOST  # before scikit-learn's, which does not take it
    log = CATBOOST.fit(made, fit)
    assert (log.framework, log.status, len(log.epochs)) == ("catboost", "completed", 1)
    written = json.loads((fit.out / TRAIN_LOG).read_text())
    assert written["framework"] == "catboost"
    assert written["epochs"][0]["metrics"]
    if task == "binary":
        assert written["epochs"][0]["metrics"]["roc_auc"] > 0.7  # it learnt something real
    assert not (tmp_path / "catboost_info").exists()  # CatBoost writes no files into the working directory
    checkpoint = json.loads((fit.out / CATBOOST.checkpoint).read_text())
    assert base64.b64decode(checkpoint["model"]).startswith(b"CBM1")  # CatBoost's own binary format

    trained = CATBOOST.load(fit.out / CATBOOST.checkpoint, fit.config)
    assert (trained.spec, trained.target, trained.label) == (fit.spec, fit.target, TASKS[task])
    features = fit.spec.transform(churn[1])
    native = CATBOOST.predict(trained, features)
    classes = len(fit.target.classes)
    assert native.shape == ((len(features),) if task == "regression" else (len(features), classes))

    assert assert_exported_as_predicted(CATBOOST, trained, features, native, task) == "catboost"


def test_the_factory_seed_and_logging_are_kept(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    from catboost import CatBoostClassifier

    fit, _ = _fit(tmp_path, "binary", churn)
    # NOTE: CatBoost refuses random_seed and random_state together; modelci sets random_state from train.seed
    made = CatBoostClassifier(iterations=5, random_seed=7, verbose=False, allow_writing_files=False)
    CATBOOST.fit(made, fit)
    trained = CATBOOST.load(tmp_path / CATBOOST.checkpoint, fit.config)
    assert trained.model.get_all_params()["random_seed"] == 7


@pytest.mark.parametrize("planted", [b"\x80\x04K\x01.", b'{"version": 1}', b"not json"], ids=["pickle", "json",
                                                                                                  "text"])
def test_a_planted_model_file_is_refused(tmp_path: Path, planted: bytes) -> None:
    config = _config(tmp_path, "binary")
    (tmp_path / CATBOOST.checkpoint).write_bytes(planted)
    with pytest.raises(UsageError, match="not a model that `modelci train` wrote"):
        CATBOOST.load(tmp_path / CATBOOST.checkpoint, config)


@pytest.mark.parametrize("model", ["not base64!", base64.b64encode(b"\x80\x04K\x01.").decode()], ids=["text", "pickle"])
def test_a_checkpoint_whose_model_is_not_catboosts_is_refused(
        tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame], model: str) -> None:
    fit, made = _fit(tmp_path, "binary", churn)
    CATBOOST.fit(made, fit)
    path = tmp_path / CATBOOST.checkpoint
    checkpoint = json.loads(path.read_text())
    path.write_text(json.dumps({**checkpoint, "model": model}))
    with pytest.raises(UsageError, match="not a model that `modelci train` wrote"):
        CATBOOST.load(path, fit.config)


OUT = Path(".modelci/out")


def _configure(repo: Path, iterations: int) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"] = {"factory": "model.py:build", "params": {"iterations": iterations}}
    config["evaluate"] = {"metrics": ["roc_auc", "log_loss"]}
    config["gate"] = [{"metric": "roc_auc", "min": 0.7}]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    (repo / "model.py").write_text(FACTORY)


def test_modelci_run_trains_exports_evaluates_and_compares_a_catboost_model(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    _configure(repo, 10)
    git(repo, "commit", "-qam", "catboost model")
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    assert json.loads((OUT / TRAIN_LOG).read_text())["framework"] == "catboost"
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    assert parity["exporter"] == "catboost"
    assert not (repo / "catboost_info").exists()

    _configure(repo, 30)
    git(repo, "commit", "-qam", "more trees")
    second = cli("run")
    assert second.code == 0, second.err
    assert_compared_as_fitted(OUT)


def test_a_factory_whose_catboost_is_missing_names_the_extra(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(repo, 5)
    monkeypatch.setitem(sys.modules, "catboost", None)  # NOTE: `import catboost` then fails as if it were not installed
    result = cli("train")
    assert result.code == 2
    assert "pip install 'modelci[catboost]'" in result.err
