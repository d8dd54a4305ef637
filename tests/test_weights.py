"""`model.weights`: a PyTorch network started from a local file or folder of weights (a pretrained backbone).

On the image example (its own small data): weights of the same network made for other classes are taken
but for the head, from a torch file and from a folder holding `model.safetensors`; what cannot be used is
exit 2 naming why; the content key follows the file's content.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import ROOT, Result
from modelci.cache import config_hash
from modelci.config import load_config
from test_image_train import EXAMPLE, OUT, configure, repo, shapes_data, weights  # noqa: F401  (fixtures)

_spec = importlib.util.spec_from_file_location("shapes_model", EXAMPLE / "model.py")
assert _spec is not None
assert _spec.loader is not None
shapes_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shapes_model)  # NOTE: examples/shapes' factory, under a name no other test's model.py has


@pytest.fixture
def shapes(repo: Path) -> Path:  # noqa: F811
    """The example with its small data, as the image training tests have it; the working directory."""
    return repo


CONVOLUTIONS = ["0.weight", "0.bias", "3.weight", "3.bias"]  # the example's layers with weights; 8: its head


def backbone() -> dict[str, torch.Tensor]:
    """The example's network built for five classes: its convolutions fit a three-class network, its head not."""
    torch.manual_seed(7)
    return shapes_model.build((3, 32, 32), 5, width=16).state_dict()  # type: ignore[no-any-return]


def fine_tuned(cli: Callable[..., Result], shapes: Path, given: str,  # type: ignore[type-arg]
               loaded: int = 4) -> dict:
    configure(shapes, model__weights=given, train__epochs=1, train__lr=1e-9)  # NOTE: a step too small to move them
    trained = cli("train")
    assert trained.code == 0, trained.err
    assert f"weights: {loaded} of the network's 6 tensors from {shapes / given}" in trained.err
    log = json.loads((OUT / "train-log.json").read_text())["weights"]
    return log  # type: ignore[no-any-return]


def test_a_torch_file_starts_the_network_but_for_a_head_of_another_shape(cli: Callable[..., Result],
                                                                        shapes: Path) -> None:
    given = backbone()
    torch.save({"state_dict": given, "epoch": 90}, shapes / "backbone.pt")  # a checkpoint, as training scripts save
    log = fine_tuned(cli, shapes, "backbone.pt")
    assert (log["loaded"], log["tensors"], log["fresh"]) == (4, 6, ["8.weight", "8.bias"])
    assert log["shapes_differ"]["8.weight"] == [[5, 2048], [3, 2048]]
    trained = weights()
    for name in CONVOLUTIONS:
        assert torch.allclose(trained[f"net.net.{name}"], given[name], atol=1e-6), name


def test_a_folder_with_model_safetensors(cli: Callable[..., Result], shapes: Path) -> None:
    (shapes / "pretrained").mkdir()
    given = backbone()
    save_file({f"module.{name}": tensor for name, tensor in given.items()}, shapes / "pretrained" / "model.safetensors")
    log = fine_tuned(cli, shapes, "pretrained")
    assert log["file"] == str(shapes / "pretrained" / "model.safetensors")
    assert torch.allclose(weights()["net.net.0.weight"], given["0.weight"], atol=1e-6)  # DDP's module. prefix dropped


@pytest.mark.parametrize(("content", "problem"), [
    pytest.param(None, "model.weights: {path}: no such file or folder", id="missing"),
    pytest.param({"encoder.layer.weight": torch.zeros(2)}, "none of the 1 tensors in {path} fits the network's 6",
                 id="other-network"),
    pytest.param({"epochs": 3}, "{path} holds no state dict", id="not-a-state-dict"),
    pytest.param(b"not a torch file", "{path} cannot be read as PyTorch weights", id="damaged"),
])
def test_weights_that_cannot_start_the_network_are_exit_2(cli: Callable[..., Result], shapes: Path,
                                                          content: object, problem: str) -> None:
    path = shapes / "backbone.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    configure(shapes, model__weights="backbone.pt")
    found = cli("train")
    assert found.code == 2, found.err
    assert problem.format(path=path) in found.err
    assert "Traceback" not in found.err
    assert not (OUT / "model.pt").exists()


def test_weights_only_for_a_pytorch_factory(cli: Callable[..., Result], shapes: Path) -> None:
    torch.save(backbone(), shapes / "backbone.pt")
    (shapes / "forest.py").write_text("from sklearn.ensemble import RandomForestClassifier\n\n\n"
                                      "def build(input_shape, output_dim, **params):\n"
                                      "    return RandomForestClassifier()\n")
    configure(shapes, model__weights="backbone.pt", model__factory="forest.py:build")
    found = cli("train")
    assert found.code == 2
    assert "model.weights: starting weights are for a PyTorch network" in found.err
    configure(shapes, model__factory=None, model__onnx="model.onnx")
    found = cli("train")
    assert found.code == 2
    assert "model.weights: only with model.factory" in found.err


def test_the_content_key_follows_the_weights_content(shapes: Path) -> None:
    torch.save(backbone(), shapes / "backbone.pt")
    configure(shapes, model__weights="backbone.pt")
    before = config_hash(load_config("modelci.yaml"))
    assert config_hash(load_config("modelci.yaml")) == before
    torch.save({name: tensor + 1 for name, tensor in backbone().items()}, shapes / "backbone.pt")
    assert config_hash(load_config("modelci.yaml")) != before


def test_a_models_own_checkpoint_starts_the_next_one(cli: Callable[..., Result], shapes: Path) -> None:
    # modelci's model.pt holds the network under net.net. (the image layer in front): the names fit without it
    configure(shapes, train__epochs=1)
    assert cli("train").code == 0
    shutil.copy(OUT / "model.pt", shapes / "previous.pt")
    previous = weights()
    log = fine_tuned(cli, shapes, "previous.pt", loaded=6)
    assert (log["loaded"], log["fresh"]) == (6, [])
    assert torch.allclose(weights()["net.net.0.weight"], previous["net.net.0.weight"], atol=1e-6)


def test_weights_are_refused_for_a_text_model_over_its_own_words(cli: Callable[..., Result], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    reviews = tmp_path / "reviews"
    shutil.copytree(ROOT / "examples" / "reviews", reviews, ignore=shutil.ignore_patterns("data", ".modelci"))
    subprocess.run([sys.executable, "generate_data.py", "--out", "data", "--train", "100", "--eval", "50"],
                   cwd=reviews, check=True, capture_output=True)
    torch.save({"embedding.weight": torch.zeros(5, 4)}, reviews / "backbone.pt")
    configure(reviews, model__weights="backbone.pt")
    monkeypatch.chdir(reviews)
    found = cli("train")
    assert found.code == 2, found.err
    assert "model.weights: a text model over modelci's words learns its vocabulary" in found.err
