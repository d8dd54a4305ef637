"""Export: int8 quantization, and the failures it names: NaN outputs, corrupt or planted model files, ID columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml

from modelci.config import load_config
from modelci.evaluate.onnx_model import OnnxModel
from modelci.frameworks.torch_model import load_checkpoint
from test_train import SKLEARN_MODEL, configure

OUT = Path(".modelci/out")


@pytest.mark.slow
def test_int8_quantization_replaces_the_model_and_records_what_it_changed(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    configure(repo, export__quantize="int8")
    for command in ("train", "export"):
        result = cli(command)
        assert result.code == 0, result.err
    assert "int8 quantization:" in result.err
    quantized = json.loads((OUT / "parity.json").read_text())["quantization"]
    assert quantized["int8_bytes"] < quantized["fp32_bytes"]
    assert abs(quantized["metric"]["change"]) < 0.02
    assert 0 < quantized["max_abs_output_change"] < 0.1
    ops = {node.op_type for node in onnx.load(OUT / "model.onnx").graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops  # the artifact is the int8 model
    samples = json.loads((OUT / "samples.json").read_text())  # golden samples come from the int8 model
    frame = pd.DataFrame(samples["inputs"])
    assert np.allclose(OnnxModel(OUT / "model.onnx").predict(frame), samples["outputs"], atol=1e-6)


NAN_MODEL = '''
import os

import torch
from torch import nn


class Nan(nn.Module):
    """A model that gives NaN where its first input is above NAN_ABOVE, when that is set."""

    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.net = nn.Linear(input_dim, output_dim)

    def forward(self, x):
        out = self.net(x)
        if os.environ.get("NAN_ABOVE"):
            out = torch.where(x[:, :1] > float(os.environ["NAN_ABOVE"]), float("nan"), out)
        return out


def build(input_dim, output_dim):
    return Nan(input_dim, output_dim)
'''


@pytest.mark.slow
def test_nan_outputs_at_export_are_exit_2_naming_the_rows_and_the_output(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "model.py").write_text(NAN_MODEL)
    configure(repo, model={"factory": "model.py:build"})
    assert cli("train").code == 0
    monkeypatch.setenv("NAN_ABOVE", "1.0")
    result = cli("export")
    assert result.code == 2, result.err
    first = load_checkpoint(OUT / "model.pt", load_config(repo / "modelci.yaml"))[1].transform(
        pd.read_parquet(repo / "data/eval.parquet"))[:, 0]
    rows = np.flatnonzero(first > 1.0)
    assert 0 < len(rows) < len(first)
    assert (f"the trained model's output 'probabilities' (columns 0, 1 of 2) is NaN or infinite for {len(rows)} of "
            f"{len(first)} rows: rows {', '.join(map(str, rows[:5]))}, …, counted from 0") in result.err
    assert "lower train.lr" in result.err
    assert "Traceback" not in result.err
    assert not (OUT / "model.onnx").exists()


@pytest.mark.slow
def test_a_corrupt_or_outdated_checkpoint_is_exit_2_saying_to_train_again(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    assert cli("train").code == 0
    whole = (OUT / "model.pt").read_bytes()
    for broken in (whole[:len(whole) // 2], b"not a checkpoint"):
        (OUT / "model.pt").write_bytes(broken)
        result = cli("export")
        assert result.code == 2, result.err
        assert f"{OUT / 'model.pt'} is corrupt or truncated" in result.err
        assert "run `modelci train` again" in result.err
    (OUT / "model.pt").write_bytes(whole)
    configure(repo, model={"factory": "model.py:build", "params": {"hidden": 8, "layers": 1}})
    result = cli("export")
    assert result.code == 2
    assert "does not fit the network model.py:build builds now" in result.err


PICKLE_PAYLOAD = '''
import pickle
import sys


class Payload:
    def __reduce__(self):
        return (open, (sys.argv[2], "w"))  # what unpickling it does: create a file


with open(sys.argv[1], "wb") as handle:
    pickle.dump({"version": 1, "estimator": Payload()}, handle)
'''


@pytest.mark.slow
def test_a_scikit_learn_model_is_saved_as_skops_and_a_planted_file_never_runs(  # type: ignore[no-untyped-def]
        cli, repo: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    (repo / "model.py").write_text(SKLEARN_MODEL)
    configure(repo, model={"factory": "model.py:forest"}, gate=[])
    assert cli("train").code == 0
    saved = OUT / "model.skops"
    assert saved.exists()
    assert not (OUT / "model.pkl").exists()
    genuine = saved.read_bytes()

    saved.write_bytes(genuine[:len(genuine) // 2])
    result = cli("export")
    assert result.code == 2
    assert f"{saved} is corrupt or truncated" in result.err

    # NOTE: a function an estimator calls when it predicts: never built from a model file
    saved.write_bytes(skops.io.dumps({"version": 1, "estimator": FunctionTransformer(func=os.popen), "meta": "{}"}))
    result = cli("export")
    assert result.code == 2
    assert "from a model file: os.popen; modelci does not load it" in result.err

    saved.unlink()
    marker = tmp_path / "the pickle ran"
    script = tmp_path / "plant.py"
    script.write_text(PICKLE_PAYLOAD)
    subprocess.run([sys.executable, str(script), str(OUT / "model.pkl"), str(marker)], check=True)
    result = cli("export")
    assert result.code == 2
    assert "model.pkl is a pickle, which modelci does not load" in result.err
    assert not marker.exists()

    (OUT / "model.pkl").unlink()
    saved.write_bytes(genuine)  # the trees' own type (sklearn.tree._tree.Tree) is one skops asks about
    result = cli("export")
    assert result.code == 0, result.err
    assert json.loads((OUT / "parity.json").read_text())["passed"]


# NOTE: a factory file that imports numpy, and a function that could harm if a model file could call it
PLANTED_FACTORY = '''
from os import remove

import numpy as np
from sklearn.linear_model import LogisticRegression


def build(input_dim, output_dim):
    return LogisticRegression()
'''


def _json(value: object) -> dict[str, object]:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def _call(module: str, name: str, *args: object) -> dict[str, object]:
    """A skops node that, once built, is `module.name(*args)`: what skops' ConstructorFromReduceNode does."""
    values = [{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
               "content": [_json(v) for v in value]} if isinstance(value, list) else _json(value) for value in args]
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                        "content": values}}


def _plant(path: Path, estimator: dict[str, object]) -> None:
    """A model.skops written by hand, as someone other than `modelci train` could write one."""
    import zipfile

    schema = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
              "content": {"version": _json(1), "estimator": estimator, "meta": _json("{}")},
              "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                            "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}] * 3},
              "protocol": 2, "_skops_version": "0.16.0"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


@pytest.mark.parametrize(("module", "name", "args", "refused"), [
    ("numpy", "memmap", ("uint8", "w+", 0, [4]), "numpy.memmap"),  # would overwrite the file with zeros
    ("modelci_user_model_model", "remove", (), "modelci_user_model_model.remove"),  # os.remove, the factory's
], ids=["a-numpy-class-that-writes-files", "a-function-the-factory-file-imports"])
def test_a_planted_model_file_that_calls_a_type_or_function_is_refused_and_touches_nothing(  # type: ignore[no-untyped-def]
        cli, repo: Path, tmp_path: Path, module: str, name: str, args: tuple[object, ...], refused: str) -> None:
    (repo / "model.py").write_text(PLANTED_FACTORY)
    configure(repo, model={"factory": "model.py:build"}, gate=[])
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    _plant(OUT / "model.skops", _call(module, name, str(victim), *args))
    result = cli("export")
    assert result.code == 2, result.err
    assert victim.read_bytes() == b"precious"
    assert f"{refused}; modelci does not load it" in result.err


@pytest.mark.slow
def test_an_id_column_exports_and_an_unseen_id_is_served(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("train", "eval"):
        path = repo / "data" / f"{name}.parquet"
        frame = pd.read_parquet(path)
        frame.insert(0, "customer_id", [f"{name}-{i}" for i in range(len(frame))])  # a distinct value per row
        frame.to_parquet(path, index=False)
    schema = yaml.safe_load((repo / "schema.yaml").read_text())
    # NOTE: an ID column is left out unless brought back (tests/test_columns.py); brought back, it exports
    schema["columns"]["customer_id"] = {"type": "string", "role": "feature"}
    (repo / "schema.yaml").write_text(yaml.safe_dump(schema))
    trained = cli("train")
    assert trained.code == 0, trained.err
    # NOTE: 1,800 of the 2,000 training rows: a tenth are the validation rows
    assert "no value of customer_id (1,800 distinct values in 1,800 rows) occurs 5 times" in trained.err
    assert "data.features" in trained.err
    result = cli("export")
    assert result.code == 0, result.err
    assert json.loads((OUT / "parity.json").read_text())["passed"]
    model = OnnxModel(OUT / "model.onnx")
    assert "customer_id" in [i.name for i in model.inputs]
    frame = pd.read_parquet(repo / "data/eval.parquet")
    unseen = frame.assign(customer_id="a customer never seen")
    np.testing.assert_allclose(model.predict(unseen), model.predict(frame), rtol=1e-6)
