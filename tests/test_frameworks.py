"""Framework adapters: a scikit-learn model trains and exports with torch refused, an adapter of a team's own
registered through the `modelci.frameworks` entry point group by a real distribution trains and exports, and
a factory returning what no adapter takes is exit 2 naming them all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from test_core_without_torch import FRAMEWORK, NO_TORCH, TRIED, tried

# NOTE: skops, imported to save and load a scikit-learn model, lists scikit-learn's estimators with
# pkgutil.walk_packages, which imports every scikit-learn module and ignores the ones that fail, such as
# sklearn.externals.array_api_compat.torch, which imports torch. That probe is not recorded (an absent torch
# is what it expects); any other attempt is, as in test_core_without_torch.
NOT_PROBING = NO_TORCH.replace(
    "            tried.append(name)\n",
    "            import traceback\n"
    "            if not any(f.filename.endswith('pkgutil.py') for f in traceback.extract_stack()):\n"
    "                tried.append(name)\n")
assert NOT_PROBING != NO_TORCH

OUT = Path(".modelci/out")

SKLEARN_MODEL = """
from sklearn.linear_model import LogisticRegression


def build(input_dim, output_dim, **params):
    return LogisticRegression(max_iter=500)
"""

# A team's own adapter, installed as a distribution would be: a module beside its .dist-info folder,
# whose entry_points.txt registers it. Its model is a least-squares fit in numpy, exported as MatMul + Add.
ADAPTER_MODULE = '''
import json
from dataclasses import asdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelci import atomic
from modelci.features import FeatureSpec, Target
from modelci.frameworks import FEATURES, Trained
from modelci.outputs import TRAIN_LOG, EpochRecord


class LeastSquares:
    coef = None


class Adapter:
    name = "least-squares"
    extra = None
    checkpoint = "least-squares.json"

    def recognises(self, made):
        return isinstance(made, LeastSquares)

    def fit(self, made, fit):
        x = fit.spec.transform(fit.datasets.train)
        y = fit.target.encode(fit.datasets.train[fit.config.data.label]).astype(np.float64)
        design = np.hstack([x, np.ones((len(x), 1))])
        made.coef = np.linalg.lstsq(design, y, rcond=None)[0]
        fit.log.epochs.append(EpochRecord(1, 0.0, 0.0, {}, 0.0, 0.0, 0.0))
        fit.log.status = "completed"
        meta = {"coef": made.coef.tolist(), "features": fit.spec.to_json(), "target": fit.target.to_json(),
                "label": fit.config.data.label}
        atomic.write_json(fit.out / self.checkpoint, meta)
        atomic.write_json(fit.out / TRAIN_LOG, asdict(fit.log))
        return fit.log

    def load(self, path, config):
        meta = json.loads(path.read_text())
        model = LeastSquares()
        model.coef = np.asarray(meta["coef"])
        return Trained(model, FeatureSpec.from_json(meta["features"]), Target.from_json(meta["target"]),
                       meta["label"])

    def predict(self, trained, features):
        return features @ trained.model.coef[:-1] + trained.model.coef[-1]

    def to_onnx(self, trained, opset, output):
        coef = trained.model.coef
        weights = numpy_helper.from_array(coef[:-1, None].astype(np.float32), "weights")
        bias = numpy_helper.from_array(coef[-1:].astype(np.float32), "bias")
        graph = helper.make_graph(
            [helper.make_node("MatMul", [FEATURES, "weights"], ["product"]),
             helper.make_node("Add", ["product", "bias"], [output])],
            "least_squares",
            [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, trained.spec.width])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, 1])],
            [weights, bias])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), "numpy"


ADAPTER = Adapter()
'''

TEAM_MODEL = """
from least_squares_modelci import LeastSquares


def build(input_dim, output_dim, **params):
    return LeastSquares()
"""

IN_SITE = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from modelci.cli import main
from modelci.frameworks import adapters
print("adapters:", [a.name for a in adapters()], flush=True)
raise SystemExit(main(sys.argv[1:]))
"""


def without_torch(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`modelci ARGV` where torch is not installed, recording every attempt to import it but skops' probe."""
    return subprocess.run([sys.executable, "-c", NOT_PROBING, ",".join(FRAMEWORK), *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def configure(repo: Path, **changes: object) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config.update(changes)
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))


def train_log() -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / "train-log.json").read_text())


def test_a_scikit_learn_model_trains_and_exports_without_torch(repo: Path) -> None:
    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, model={"factory": "model.py:build"})
    for command in ("train", "export"):
        done = without_torch(command, cwd=repo)
        assert done.returncode == 0, done.stdout + done.stderr
        assert tried(done.stdout) == f"{TRIED} []", command
    assert train_log()["framework"] == "scikit-learn"
    assert (OUT / "model.skops").is_file()
    assert not (OUT / "model.pt").exists()
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    assert parity["exporter"] == "skl2onnx"


def site_with_adapter(folder: Path) -> Path:
    """A folder holding an installed distribution that registers an adapter, as site-packages would."""
    info = folder / "least_squares_modelci-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: least-squares-modelci\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[modelci.frameworks]\nleast-squares = least_squares_modelci:ADAPTER\n")
    (folder / "least_squares_modelci.py").write_text(ADAPTER_MODULE)
    return folder


def in_site(site: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", IN_SITE, str(site), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_an_adapter_registered_by_a_distribution_trains_and_exports(repo: Path, tmp_path: Path) -> None:
    site = site_with_adapter(tmp_path / "site")
    (repo / "model.py").write_text(TEAM_MODEL)
    configure(repo, task="regression", data={**yaml.safe_load((repo / "modelci.yaml").read_text())["data"],
                                             "label": "monthly_charges"},
              model={"factory": "model.py:build"}, evaluate={"metrics": ["r2"]}, gate=[])
    for command in ("train", "export"):
        done = in_site(site, command, cwd=repo)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[0].startswith("adapters: ['least-squares', ")  # asked before the built-in
    assert train_log()["framework"] == "least-squares"
    assert (OUT / "least-squares.json").is_file()
    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"], parity
    assert parity["exporter"] == "numpy"
    assert (OUT / "model.onnx").is_file()


def test_a_factory_no_adapter_takes_is_exit_2_naming_the_adapters(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text("def build(input_dim, output_dim, **params):\n    return 'a string'\n")
    result = cli("train")
    assert result.code == 2, result.err
    assert "model.factory: model.py:build returned str, which no framework adapter takes" in result.err
    assert "scikit-learn" in result.err
    assert "pytorch (modelci[torch])" in result.err
    assert "modelci.frameworks entry point group" in result.err
    assert not (OUT / "model.pt").exists()


def test_a_factory_that_imports_torch_only_when_called_is_seeded(repo: Path) -> None:
    # NOTE: in processes of their own: in this one torch is imported already, which hides the case
    (repo / "model.py").write_text("def build(input_dim, output_dim, **params):\n    from torch import nn\n\n"
                                   "    return nn.Sequential(nn.Linear(input_dim, 8), nn.ReLU(),\n"
                                   "                         nn.Linear(8, output_dim))\n")
    losses = []
    for run in range(2):
        done = subprocess.run([sys.executable, "-m", "modelci", "train", "--epochs", "1", "--out", f"out-{run}"],
                              cwd=repo, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        losses.append(json.loads((repo / f"out-{run}" / "train-log.json").read_text())["epochs"][0]["loss"])
    assert losses[0] == losses[1]  # the same seed, the same initial weights: the same first epoch


def _imported_modules(file: Path) -> set[str]:
    """Every modelci module that `file` imports, at its top or inside a function."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("modelci.")}


def test_stages_import_frameworks_and_never_each_other() -> None:
    # NOTE: the design's dependency order: train and export call the adapters; an adapter never reaches back
    # into a stage, and export never imports train (nor train export), so neither stage can loop through another.
    source = Path(__file__).parents[1] / "src" / "modelci"
    forbidden = {"frameworks": ("modelci.train", "modelci.export", "modelci.tune"),
                 "export": ("modelci.train",), "train": ("modelci.export",)}
    found = [f"{file.relative_to(source)} imports {name}"
             for folder, prefixes in forbidden.items() for file in sorted((source / folder).glob("*.py"))
             for name in sorted(_imported_modules(file)) if name.startswith(prefixes)]
    assert found == []
