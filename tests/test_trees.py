"""The XGBoost and LightGBM adapters: fitted on real (the churn example's) data, saved, read back,
converted to ONNX, and ONNX Runtime's outputs checked against the library's own with export's tolerances."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml

from adapters import TASKS, assert_compared_as_fitted, assert_exported_as_predicted, fit_of, onnx_outputs
from conftest import example_repository, generate, git
from modelci.config import Config, load_config
from modelci.errors import UsageError
from modelci.frameworks import Fit, Framework
from modelci.frameworks.lightgbm import ADAPTER as LIGHTGBM
from modelci.frameworks.xgboost import ADAPTER as XGBOOST
from modelci.outputs import TRAIN_LOG

FACTORIES = {
    "xgboost": "from xgboost import XGBClassifier, XGBRegressor\n"
               "def build(input_dim, output_dim, task='binary', n_estimators=20):\n"
               "    kind = XGBRegressor if task == 'regression' else XGBClassifier\n"
               "    return kind(n_estimators=n_estimators, max_depth=4, learning_rate=0.3, n_jobs=1)\n",
    "lightgbm": "from lightgbm import LGBMClassifier, LGBMRegressor\n"
                "def build(input_dim, output_dim, task='binary', n_estimators=20):\n"
                "    kind = LGBMRegressor if task == 'regression' else LGBMClassifier\n"
                "    return kind(n_estimators=n_estimators, num_leaves=15, n_jobs=1, verbose=-1)\n",
}
ADAPTERS: dict[str, Framework] = {"xgboost": XGBOOST, "lightgbm": LIGHTGBM}


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(1500, 11), generate(400, 12)


def _config(folder: Path, library: str, task: str) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(FACTORIES[library])
    (folder / "modelci.yaml").write_text(
        f"task: {task}\ndata: {{train: train.parquet, eval: eval.parquet, label: {TASKS[task]}}}\n"
        f"model: {{factory: model.py:build, params: {{task: {task}}}}}\n")
    return load_config(folder / "modelci.yaml")


def _fit(folder: Path, library: str, task: str, frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Fit, Any]:
    return fit_of(_config(folder, library, task), folder, task, TASKS[task], frames, {"task": task})


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_adapter_round_trip_and_onnx_parity(tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame],
                                            library: str, task: str) -> None:
    adapter = ADAPTERS[library]
    fit, made = _fit(tmp_path, library, task, churn)
    assert adapter.recognises(made)
    log = adapter.fit(made, fit)
    assert (log.framework, log.status, len(log.epochs)) == (library, "completed", 1)
    written = json.loads((tmp_path / TRAIN_LOG).read_text())
    assert written["framework"] == library
    assert written["epochs"][0]["metrics"]
    if task == "binary":
        assert written["epochs"][0]["metrics"]["roc_auc"] > 0.7  # it learnt something real

    trained = adapter.load(tmp_path / adapter.checkpoint, fit.config)
    assert (trained.spec, trained.target, trained.label) == (fit.spec, fit.target, TASKS[task])
    features = fit.spec.transform(churn[1])
    native = adapter.predict(trained, features)
    before = (made.predict(features) if task == "regression" else made.predict_proba(features))
    np.testing.assert_allclose(native, before, rtol=1e-6, atol=1e-6)  # the saved model is the fitted one
    classes = len(fit.target.classes)
    assert native.shape == ((len(features),) if task == "regression" else (len(features), classes))

    assert assert_exported_as_predicted(adapter, trained, features, native, task) == "onnxmltools"


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_a_binary_tree_model_is_exported_as_its_margin_and_a_sigmoid(tmp_path: Path,
                                                                      churn: tuple[pd.DataFrame, pd.DataFrame],
                                                                      library: str) -> None:
    # NOTE: ONNX Runtime's one-score path for the trees (benchmarks/trees); the probabilities are the parity test's
    adapter = ADAPTERS[library]
    fit, made = _fit(tmp_path, library, "binary", churn)
    adapter.fit(made, fit)
    model, _ = adapter.to_onnx(adapter.load(tmp_path / adapter.checkpoint, fit.config), 17, "probabilities")
    ops = [n.op_type for n in model.graph.node]
    assert ops[:4] == ["TreeEnsembleRegressor", "Sigmoid", "Sub", "Concat"]
    assert "TreeEnsembleClassifier" not in ops
    features = fit.spec.transform(churn[1])
    np.testing.assert_allclose(onnx_outputs(model, features), made.predict_proba(features), atol=1e-5)


def _stump(weights: list[float]) -> onnx.ModelProto:
    """A one-split two-class classifier as onnxmltools writes a boosted model: one score for class 0, LOGISTIC."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "TreeEnsembleClassifier", ["features"], ["label", "probabilities"], domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LT", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0], nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0], nodes_missing_value_tracks_true=[0, 0, 0], class_treeids=[0, 0],
        class_nodeids=[1, 2], class_ids=[0, 0], class_weights=weights, classlabels_int64s=[0, 1],
        base_values=[0.25], post_transform="LOGISTIC")
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([node], "stump", [features],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                             ir_version=8)


@pytest.mark.parametrize(("weights", "rewritten"), [([-0.4, 0.7], True), ([0.2, 0.7], False)],
                         ids=["a-margin", "all-positive-weights-kept"])
def test_as_margin_keeps_the_classifiers_probabilities(weights: list[float], rewritten: bool) -> None:
    from modelci.frameworks.trees import as_margin

    x = np.array([[0.0], [1.0], [np.nan]], dtype=np.float32)
    model = as_margin(_stump(weights))
    onnx.checker.check_model(model, full_check=True)
    assert ("TreeEnsembleRegressor" in [n.op_type for n in model.graph.node]) == rewritten
    np.testing.assert_allclose(onnx_outputs(model, x), onnx_outputs(_stump(weights), x), atol=1e-6)
    if rewritten:  # NaN is not < 0.5: the false leaf
        p1 = 1 / (1 + np.exp(-(np.array([weights[0], weights[1], weights[1]]) + 0.25)))
        np.testing.assert_allclose(onnx_outputs(model, x), np.stack([1 - p1, p1], axis=1), atol=1e-6)


def test_recognises_only_its_own_library() -> None:
    from lightgbm import LGBMClassifier
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBRegressor

    assert XGBOOST.recognises(XGBRegressor())
    assert not XGBOOST.recognises(LGBMClassifier())
    assert LIGHTGBM.recognises(LGBMClassifier())
    assert not LIGHTGBM.recognises(XGBRegressor())
    assert not XGBOOST.recognises(LogisticRegression())
    assert not LIGHTGBM.recognises(object())


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("planted", [b"\x80\x04K\x01.", b'{"version": 1}', b"not json"], ids=["pickle", "json",
                                                                                                  "text"])
def test_a_planted_model_file_is_refused(tmp_path: Path, library: str, planted: bytes) -> None:
    adapter = ADAPTERS[library]
    config = _config(tmp_path, library, "binary")
    (tmp_path / adapter.checkpoint).write_bytes(planted)
    with pytest.raises(UsageError, match="not a model that `modelci train` wrote"):
        adapter.load(tmp_path / adapter.checkpoint, config)


OUT = Path(".modelci/out")


def _configure(repo: Path, library: str, n_estimators: int) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["model"] = {"factory": "model.py:build", "params": {"n_estimators": n_estimators}}
    config["evaluate"] = {"metrics": ["roc_auc", "log_loss"]}
    config["gate"] = [{"metric": "roc_auc", "min": 0.7}]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    (repo / "model.py").write_text(FACTORIES[library])


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_modelci_run_trains_exports_evaluates_and_compares_a_tree_model(  # type: ignore[no-untyped-def]
        cli, repo: Path, library: str) -> None:
    _configure(repo, library, 10)
    git(repo, "commit", "-qam", f"{library} model")
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    assert json.loads((OUT / TRAIN_LOG).read_text())["framework"] == library
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    assert parity["exporter"] == "onnxmltools"

    _configure(repo, library, 30)
    git(repo, "commit", "-qam", "more trees")
    second = cli("run")
    assert second.code == 0, second.err
    assert_compared_as_fitted(OUT)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_export_refuses_a_planted_model_file_with_exit_2(  # type: ignore[no-untyped-def]
        cli, repo: Path, library: str) -> None:
    _configure(repo, library, 5)
    assert cli("train").code == 0
    checkpoint = OUT / ADAPTERS[library].checkpoint
    assert checkpoint.exists()
    checkpoint.write_bytes(b"\x80\x04K\x01.")  # a pickle where the library's model text belongs
    result = cli("export")
    assert result.code == 2
    assert "not a model that `modelci train` wrote" in result.err


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_a_factory_whose_library_is_missing_names_the_extra(  # type: ignore[no-untyped-def]
        cli, repo: Path, library: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(repo, library, 5)
    monkeypatch.setitem(sys.modules, library, None)  # NOTE: `import LIBRARY` then fails as if it were not installed
    result = cli("train")
    assert result.code == 2
    assert f"pip install 'modelci[{library}]'" in result.err


def test_export_without_onnxmltools_names_the_extra(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(repo, "xgboost", 5)
    assert cli("train").code == 0
    monkeypatch.setitem(sys.modules, "onnxmltools", None)
    result = cli("export")
    assert result.code == 2
    assert "needs onnxmltools" in result.err
    assert "pip install 'modelci[xgboost]'" in result.err


def test_the_trees_example_runs_as_a_model_repository(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fewer_trees(folder: Path) -> None:  # seconds, not minutes
        config = folder / "modelci.yaml"
        config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 20"))

    monkeypatch.chdir(example_repository("trees", tmp_path / "trees", small_data, fewer_trees))
    result = cli("run", "--publish")
    assert result.code == 0, result.err
    assert json.loads((OUT / TRAIN_LOG).read_text())["framework"] == "lightgbm"
    assert json.loads((OUT / "parity.json").read_text())["passed"]


def test_trees_train_in_one_process(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(repo, "lightgbm", 5)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):  # NOTE: as torchrun sets them
        monkeypatch.setenv(name, value)
    result = cli("train")
    assert result.code == 2
    assert "LGBMClassifier trains in one process" in result.err
    assert not (repo / OUT / "model.lightgbm.json").exists()


def test_a_tree_inside_a_scikit_learn_pipeline_is_refused_at_training(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    _configure(repo, "lightgbm", 5)
    (repo / "model.py").write_text("from lightgbm import LGBMClassifier\nfrom sklearn.pipeline import make_pipeline\n"
                                   "from sklearn.preprocessing import StandardScaler\n"
                                   "def build(input_dim, output_dim, n_estimators=5):\n"
                                   "    trees = LGBMClassifier(n_estimators=n_estimators, verbose=-1)\n"
                                   "    return make_pipeline(StandardScaler(), trees)\n")
    result = cli("train")
    assert result.code == 2
    assert "returned Pipeline holding LGBMClassifier, which modelci cannot export inside" in result.err
    assert "return the LGBMClassifier itself" in result.err


def test_export_without_the_model_the_log_names_says_train_first(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _configure(repo, "xgboost", 5)
    assert cli("train").code == 0
    (repo / OUT / "model.xgboost.json").unlink()
    result = cli("export")
    assert result.code == 2
    assert "no trained model" in result.err
    assert "run `modelci train` first" in result.err


def test_lightgbm_thresholds_are_lowered_to_float32_so_onnx_splits_as_lightgbm_does() -> None:
    import lightgbm
    import onnxruntime
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    from modelci.frameworks.lightgbm import float32_thresholds

    # NOTE: two adjacent float32 values: LightGBM splits at their midpoint, a double whose nearest float32
    # is the upper value, so ONNX's rounded threshold would send that value left
    low = np.nextafter(np.float32(1.0), np.float32(2))
    high = np.nextafter(low, np.float32(2))
    x = np.array([[low]] * 100 + [[high]] * 100, dtype=np.float32)
    fitted = lightgbm.LGBMClassifier(n_estimators=1, num_leaves=2, min_child_samples=5, verbose=-1)
    fitted.fit(x, np.array([0] * 100 + [1] * 100))
    expected = fitted.predict_proba(x)

    def onnx_probabilities(booster: Any) -> np.ndarray:
        model = convert_lightgbm(booster, initial_types=[("x", FloatTensorType([None, 1]))], zipmap=False,
                                 target_opset=15)
        session = onnxruntime.InferenceSession(model.SerializeToString())
        return np.asarray(session.run(None, {"x": x})[1])

    rounded = onnx_probabilities(fitted.booster_)
    assert np.abs(rounded - expected).max() > 0.05  # the fault: the upper value goes the wrong way
    lowered = lightgbm.Booster(model_str=float32_thresholds(fitted.booster_.model_to_string()))
    np.testing.assert_allclose(onnx_probabilities(lowered), expected, atol=1e-6)


def test_the_log_records_the_library_and_export_refuses_a_log_of_another_version(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    _configure(repo, "xgboost", 5)
    assert cli("train").code == 0
    log = json.loads((repo / OUT / "train-log.json").read_text())
    assert log["environment"]["xgboost"] == importlib.metadata.version("xgboost")
    log["version"] = 1
    (repo / OUT / "train-log.json").write_text(json.dumps(log))
    result = cli("export")
    assert result.code == 2
    assert "train-log.json was written by another version of modelci (log version 1" in result.err
