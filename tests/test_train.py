"""Training on the example repository: reproducible, resumable, every task, early stopping, out of memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modelci.config import load_config
from modelci.data.tables import load_datasets
from modelci.features import Target
from modelci.frameworks.progress import Progress
from modelci.frameworks.torch_model import load_checkpoint

OUT = Path(".modelci/out")

# NOTE: stands in for a runner that is stopped part-way: the network raises in the first training
# step after STOP_AFTER_EPOCHS evaluations (one per finished epoch).
STOPPABLE_MODEL = '''
import os
from torch import nn


class Stoppable(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.evaluations = net, 0

    def forward(self, x):
        if not self.training:
            self.evaluations += 1
        elif self.evaluations == int(os.environ.get("STOP_AFTER_EPOCHS", "-1")):
            raise KeyboardInterrupt("the runner was stopped")
        return self.net(x)


def build(input_dim, output_dim, hidden=16, layers=1, dropout=0.1):
    return Stoppable(nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, output_dim)))
'''

# NOTE: a real allocation failure: in training, each forward pass asks the allocator for 128 TiB.
GREEDY_MODEL = '''
import torch
from torch import nn


class Greedy(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.net = nn.Linear(input_dim, output_dim)

    def forward(self, x):
        if self.training and x.shape[0] > 2:
            torch.empty(2**45)
        return self.net(x)


def build(input_dim, output_dim):
    return Greedy(input_dim, output_dim)
'''


def configure(repo: Path, **changes: object) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))


def log() -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / "train-log.json").read_text())


def on_validation_rows(metric: str) -> float | None:
    """The metric of the exported model, by ONNX Runtime, on the validation rows (which training logs)."""
    from modelci.evaluate.evaluator import evaluate_frame

    config = load_config("modelci.yaml")
    return evaluate_frame(config, load_datasets(config).validation, OUT / "model.onnx")[metric]


def weights() -> dict[str, torch.Tensor]:
    return torch.load(OUT / "model.pt", weights_only=True)["state_dict"]  # type: ignore[no-any-return]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_same_data_and_seed_give_the_identical_model(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__deterministic=True, train__schedule="cosine", train__grad_clip=1.0,
              train__class_weights="balanced")
    assert cli("train").code == 0
    first, first_log = weights(), log()
    assert cli("train").code == 0
    assert same_weights(first, weights())
    assert [e["loss"] for e in first_log["epochs"]] == [e["loss"] for e in log()["epochs"]]
    assert first_log["epochs"][-1]["metrics"] == log()["epochs"][-1]["metrics"]
    assert first_log["environment"]["torch"] == torch.__version__
    assert {"cuda", "numpy", "onnxruntime", "device_name"} <= set(first_log["environment"])


@pytest.mark.slow
def test_resume_after_a_stopped_runner_gives_the_uninterrupted_model(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "model.py").write_text(STOPPABLE_MODEL)
    configure(repo, model={"factory": "model.py:build"}, train__schedule="onecycle")
    assert cli("train").code == 0
    uninterrupted, expected = weights(), log()["epochs"]
    assert not (OUT / "train-state.pt").exists()  # removed once training completed

    monkeypatch.setenv("STOP_AFTER_EPOCHS", "2")
    assert cli("train").code == 130  # as for Ctrl-C or a cancelled job's SIGINT
    assert (OUT / "train-state.pt").exists()
    assert not (OUT / "model.pt").exists()  # a run that did not finish leaves no model behind
    monkeypatch.delenv("STOP_AFTER_EPOCHS")

    resumed = cli("train", "--resume")
    assert resumed.code == 0, resumed.err
    assert "resuming after epoch 2" in resumed.err
    assert same_weights(uninterrupted, weights())
    assert [e["loss"] for e in log()["epochs"]] == [e["loss"] for e in expected]
    assert log()["resumed_from"] == 2


@pytest.mark.slow
def test_resume_refuses_a_state_trained_with_other_settings(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "model.py").write_text(STOPPABLE_MODEL)
    configure(repo, model={"factory": "model.py:build"})
    monkeypatch.setenv("STOP_AFTER_EPOCHS", "1")
    assert cli("train").code == 130
    monkeypatch.delenv("STOP_AFTER_EPOCHS")
    configure(repo, train__lr=0.1)
    result = cli("train", "--resume")
    assert result.code == 2
    assert "trained with other settings (lr)" in result.err
    configure(repo, train__lr=0.002, model={"factory": "model.py:build", "params": {"hidden": 8}})
    result = cli("train", "--resume")
    assert result.code == 2
    assert "trained with other settings (model.params)" in result.err


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__epochs=40, train__lr=0.05, train__patience=2)
    assert cli("train").code == 0
    found = log()
    assert found["stopped_early"]
    best = found["epochs"][found["best_epoch"] - 1]
    assert best["val_loss"] == min(e["val_loss"] for e in found["epochs"])
    assert len(found["epochs"]) == found["best_epoch"] + 2
    # the saved model is the best epoch's: its loss on the validation rows is that epoch's
    config = load_config("modelci.yaml")
    scorer, spec, target, label = load_checkpoint(OUT / "model.pt", config)
    frame = load_datasets(config).validation
    assert found["validation_rows"] == len(frame)
    with torch.no_grad():
        p = scorer(torch.as_tensor(spec.transform(frame)))[:, 1].double().numpy()
    y = target.encode(frame[label])
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss == pytest.approx(best["val_loss"], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("task", "label", "metric"), [("multiclass", "contract", "f1_macro"),
                                                       ("regression", "monthly_charges", "r2")])
def test_multiclass_and_regression_train_export_and_evaluate(  # type: ignore[no-untyped-def]
        cli, repo: Path, task: str, label: str, metric: str) -> None:
    configure(repo, task=task, data__label=label, evaluate={"metrics": [metric]}, gate=[])
    for command in ("train", "export", "evaluate"):
        result = cli(command)
        assert result.code == 0, result.err
    metrics = json.loads((OUT / "metrics.json").read_text())
    assert metrics["task"] == task
    assert metrics["metrics"][metric] > 0.1  # learnt something from the other columns
    assert log()["epochs"][-1]["metrics"][metric] == pytest.approx(on_validation_rows(metric), abs=1e-4)


@pytest.mark.slow
def test_out_of_memory_is_exit_4_with_the_log_and_no_model(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(GREEDY_MODEL)
    configure(repo, model={"factory": "model.py:build"})
    result = cli("train")
    assert result.code == 4
    assert "training ran out of CPU memory in epoch 1 at batch_size 256" in result.err
    assert "lower train.batch_size" in result.err
    assert log()["status"] == "out_of_memory"
    assert not (OUT / "model.pt").exists()


def test_class_weights_balance_the_classes() -> None:
    from modelci.frameworks.torch_loop import class_weights

    y = np.array([0] * 75 + [1] * 25)
    binary = class_weights(Target("binary", (0, 1)), y, "balanced")
    assert binary is not None
    assert binary.tolist() == [3.0]  # each positive counts as much as three negatives
    multi = class_weights(Target("multiclass", ("a", "b", "c")), np.array([0] * 50 + [1] * 30 + [2] * 20), "balanced")
    assert multi is not None
    assert multi.numpy() * np.array([50, 30, 20]) == pytest.approx([100 / 3] * 3)
    assert class_weights(Target("binary", (0, 1)), y, "none") is None


def test_progress_draws_a_bar_only_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    for live in (True, False):
        progress = Progress(epochs=2, steps=4, live=live)
        for step in range(1, 5):
            progress.step(1, step)
        progress.epoch("    epoch   1/2  loss 0.5")
        err = capsys.readouterr().err
        assert err.endswith("    epoch   1/2  loss 0.5\n")
        assert ("\r" in err) == live
        assert ("[########################] 4/4 batches" in err) == live



SKLEARN_MODEL = '''
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures


def forest(input_dim, output_dim, trees=20):
    return RandomForestClassifier(n_estimators=trees, max_depth=6, random_state=0)


def histogram(input_dim, output_dim):  # its trees are TreePredictor objects, which skops does not trust by default
    return HistGradientBoostingClassifier(max_iter=30)


def polynomial(input_dim, output_dim):
    return make_pipeline(PolynomialFeatures(2), LogisticRegression(max_iter=2000))


def ridge(input_dim, output_dim):
    return Ridge(alpha=1.0)


class Homemade(ClassifierMixin, BaseEstimator):  # a scikit-learn estimator skl2onnx has never heard of
    def fit(self, x, y):
        self.inner_ = LogisticRegression().fit(x, y)
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, x):
        return self.inner_.predict_proba(x)


def homemade(input_dim, output_dim):
    return Homemade()


def with_lambda(input_dim, output_dim):  # skops writes the lambda, and cannot read it back
    return make_pipeline(FunctionTransformer(lambda x: x), LogisticRegression())
'''


@pytest.mark.slow
@pytest.mark.parametrize(("factory", "task", "label", "metric", "floor"),
                         [("forest", "binary", "churned", "roc_auc", 0.7),
                          ("polynomial", "binary", "churned", "roc_auc", 0.7),
                          ("ridge", "regression", "monthly_charges", "r2", 0.1)])
def test_scikit_learn_estimators_train_export_and_evaluate(  # type: ignore[no-untyped-def]
        cli, repo: Path, factory: str, task: str, label: str, metric: str, floor: float) -> None:
    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, task=task, data__label=label, model={"factory": f"model.py:{factory}"},
              evaluate={"metrics": [metric]}, gate=[])
    for command in ("train", "export", "evaluate"):
        result = cli(command)
        assert result.code == 0, result.err
    assert log()["framework"] == "scikit-learn"
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    assert parity["exporter"] == "skl2onnx"
    metrics = json.loads((OUT / "metrics.json").read_text())["metrics"]
    assert metrics[metric] > floor
    # what ONNX Runtime measures from the validation rows' raw columns is what scikit-learn measured from their features
    assert log()["epochs"][0]["metrics"][metric] == pytest.approx(on_validation_rows(metric), abs=1e-4)


def test_a_histogram_gradient_boosting_model_is_read_back(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    from modelci.config import load_config
    from modelci.frameworks import sklearn

    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, model={"factory": "model.py:histogram"})
    assert cli("train").code == 0
    trained = sklearn.ADAPTER.load(OUT / sklearn.CHECKPOINT, load_config(repo / "modelci.yaml"))
    assert type(trained.model).__name__ == "HistGradientBoostingClassifier"


@pytest.mark.slow
def test_an_estimator_skl2onnx_cannot_convert_is_named(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, model={"factory": "model.py:homemade"})
    assert cli("train").code == 0
    result = cli("export")
    assert result.code == 2
    assert "skl2onnx cannot convert Homemade" in result.err


def test_an_estimator_skops_cannot_read_back_is_named_at_training(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, model={"factory": "model.py:with_lambda"})
    result = cli("train")
    assert result.code == 2
    assert "the fitted Pipeline cannot be saved in skops' format" in result.err
    assert "no lambda" in result.err
    assert not (OUT / "model.skops").exists()


@pytest.mark.slow
def test_two_processes_with_ddp_train_like_one_with_twice_the_batch(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    """torchrun, gloo and DistributedDataParallel for real: two CPU processes, gradients averaged."""
    configure(repo, model={"factory": "model.py:build", "params": {"hidden": 32, "layers": 2, "dropout": 0.0}},
              train__batch_size=512)
    assert cli("train").code == 0
    alone, alone_log = weights(), log()
    configure(repo, train__batch_size=256)
    result = cli("train", "--nproc", "2")
    assert result.code == 0, result.err
    together = weights()
    assert log()["processes"] == 2
    assert all(torch.allclose(alone[k], together[k], atol=1e-5) for k in alone)
    assert [e["val_loss"] for e in log()["epochs"]] == pytest.approx([e["val_loss"] for e in alone_log["epochs"]],
                                                                     abs=1e-5)


# NOTE: a training script of a user's own: scikit-learn on the numeric columns, the ONNX graph written by hand.
OWN_SCRIPT = '''
import json, os, sys
import numpy as np, pandas as pd
import onnx
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression

if os.environ.get("FAIL_WITH"):
    sys.exit(int(os.environ["FAIL_WITH"]))
features = json.loads(os.environ["MODELCI_FEATURES"])
train = pd.read_parquet(os.environ["MODELCI_TRAIN_DATA"])
x = train[features].to_numpy(np.float64)
mean, std = x.mean(axis=0), x.std(axis=0)
fitted = LogisticRegression(random_state=int(os.environ["MODELCI_SEED"])).fit((x - mean) / std,
                                                                             train[os.environ["MODELCI_LABEL"]])
names = features if not os.environ.get("WRONG_INPUTS") else [f"col{i}" for i in range(len(features))]
inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in names]
const = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, np.shape(v), np.ravel(v).astype(np.float32))
custom = "com.example" if os.environ.get("CUSTOM_OP") else ""  # an operator ONNX Runtime has no kernel for
graph = helper.make_graph(
    [helper.make_node("Concat", names, ["x"], axis=1), helper.make_node("Sub", ["x", "mean"], ["centred"]),
     helper.make_node("Div", ["centred", "std"], ["z"]), helper.make_node("MatMul", ["z", "w"], ["zw"]),
     helper.make_node("Add", ["zw", "b"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["p"], domain=custom),
     helper.make_node("Sub", ["one", "p"], ["q"]), helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1)],
    "own", inputs, [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
    [const("mean", mean), const("std", std), const("w", fitted.coef_.T), const("b", fitted.intercept_),
     const("one", [1.0])])
opsets = [helper.make_opsetid("", 18), *([helper.make_opsetid(custom, 1)] if custom else [])]
onnx.save(helper.make_model(graph, ir_version=10, opset_imports=opsets), os.environ["MODELCI_MODEL"])
'''
NUMERIC = ["tenure_months", "monthly_charges", "support_tickets", "senior", "num_products"]


@pytest.mark.slow
def test_train_command_runs_the_users_script_and_modelci_evaluates_its_model(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    from modelci.evaluate.onnx_model import OnnxModel

    (repo / "own_train.py").write_text(OWN_SCRIPT)
    configure(repo, model=None, train={"command": f"{sys.executable} own_train.py"}, data__features=NUMERIC)
    result = cli("run")
    assert result.code == 0, result.err
    assert "running train.command" in result.err
    assert log()["framework"] == "command"
    metrics = json.loads((OUT / "metrics.json").read_text())["metrics"]
    assert metrics["roc_auc"] > 0.7
    model = OnnxModel(OUT / "model.onnx")
    assert (model.task, model.classes, model.label) == ("binary", [0, 1], "churned")  # stamped by modelci
    assert "written as ONNX by `train.command`" in (OUT / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("variable", "fragments"), [
    ("FAIL_WITH", ("train.command exited with code 3",)),
    ("WRONG_INPUTS", ("does not fit modelci's contract", "they must be the feature columns")),
    ("CUSTOM_OP", ("ONNX Runtime cannot load the model train.command wrote", "Sigmoid")),
])
def test_train_command_failures_are_named(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch, variable: str, fragments: tuple[str, ...]) -> None:
    (repo / "own_train.py").write_text(OWN_SCRIPT)
    configure(repo, model=None, train={"command": [sys.executable, "own_train.py"]}, data__features=NUMERIC)
    monkeypatch.setenv(variable, "3")
    result = cli("train")
    assert result.code == 2
    assert all(f in result.err for f in fragments), result.err
    assert not (OUT / "model.onnx").exists()  # no model, so no later stage can use one


@pytest.mark.slow
def test_a_nan_loss_stops_with_a_clear_message_and_no_model(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(GREEDY_MODEL.replace("torch.empty(2**45)", "return self.net(x) * float('nan')"))
    configure(repo, model={"factory": "model.py:build"})
    result = cli("train")
    assert result.code == 2
    assert "the training loss became nan in epoch 1" in result.err
    assert "set train.grad_clip" in result.err
    assert not (OUT / "model.pt").exists()


@pytest.mark.slow
def test_a_failure_in_torchrun_workers_is_one_message_with_its_exit_code(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text("def build(input_dim, output_dim, **kw):\n    raise ValueError('no luck')\n")
    result = cli("train", "--nproc", "2")
    assert result.code == 2
    assert result.err.count("raised at model.py:2: ValueError: no luck") == 1
    assert "Traceback" not in result.err


@pytest.mark.slow
def test_a_loss_that_breaks_after_the_last_step_stops_training_with_the_log(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    # NOTE: the training loss stays finite (it is measured before each step); the weights the epoch
    # ends with give NaN, as after a last step that overflowed.
    (repo / "model.py").write_text(GREEDY_MODEL.replace(
        "        if self.training and x.shape[0] > 2:\n            torch.empty(2**45)\n",
        "        if not self.training and x.shape[0] > 2:\n            return self.net(x) * float('nan')\n"))
    configure(repo, model={"factory": "model.py:build"}, train__lr=1.0e12)
    result = cli("train")
    assert result.code == 2, result.err
    assert "the validation loss became nan in epoch 1: training diverged" in result.err
    assert "lower train.lr (it is 1e+12), set train.grad_clip" in result.err
    assert "Traceback" not in result.err
    assert log()["status"] == "diverged"
    assert not (OUT / "model.pt").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_diverging_scikit_learn_fit_says_what_to_lower(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text("from sklearn.neural_network import MLPRegressor\n\n\n"
                                   "def build(input_dim, output_dim, lr=0.001):\n"
                                   "    return MLPRegressor(learning_rate_init=lr, max_iter=5, random_state=0)\n")
    configure(repo, task="regression", data__label="monthly_charges", evaluate={"metrics": ["rmse"]}, gate=[],
              model={"factory": "model.py:build", "params": {"lr": 1.0e30}})
    result = cli("train")
    assert result.code == 2
    assert "fitting MLPRegressor diverged: ValueError: Solver produced non-finite parameter weights" in result.err
    assert "lower the estimator's learning rate (learning_rate_init" in result.err
    assert not (OUT / "model.skops").exists()
