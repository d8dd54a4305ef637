"""Image models: trained from a folder per class and exported with the preprocessing in the graph (issue 18, items 4-6).

On the shapes example (examples/shapes), with a small data set its own generator makes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from modelci.config import AugmentConfig, ImageConfig, load_config
from modelci.data.tables import load_datasets
from modelci.evaluate.evaluator import labels_of
from modelci.evaluate.onnx_model import OnnxModel
from modelci.frameworks.images.augment import Augment
from modelci.frameworks.images.pixels import load_pixels
from modelci.frameworks.images.training import NO_AUGMENT, ImageRows

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes"
OUT = Path(".modelci/out")
PER_CLASS = 20  # images per class and split: 60 training and 60 evaluation images
SIZE = (32, 32)

# NOTE: stands in for a runner that is stopped part-way: the network raises in the first training step after
# STOP_AFTER evaluation passes (the factory's network is checked once in eval mode, then one pass per epoch).
STOPPABLE_MODEL = '''
import os
from torch import nn
from model_base import build as build_base


class Stoppable(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.evaluations, self.was_training = net, 0, True

    def forward(self, x):
        if not self.training and self.was_training:
            self.evaluations += 1
        elif self.training and self.evaluations == int(os.environ.get("STOP_AFTER", "-1")):
            raise KeyboardInterrupt("the runner was stopped")
        self.was_training = self.training
        return self.net(x)


def build(input_shape, output_dim, **params):
    return Stoppable(build_base(input_shape, output_dim, **params))
'''


def generate_shapes(folder: Path, per_class: int) -> Path:
    """The example's generator: `folder`/train/<class>/*.png and `folder`/eval/<class>/*.png, `per_class` each."""
    subprocess.run([sys.executable, str(EXAMPLE / "generate_data.py"), "--out", str(folder), "--train",
                    str(per_class), "--eval", str(per_class)], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's data, generated once for the module."""
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "data", PER_CLASS)


@pytest.fixture
def repo(tmp_path: Path, shapes_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example with the small data, 2 epochs of small batches; the working directory."""
    shutil.copytree(EXAMPLE, tmp_path / "shapes", ignore=shutil.ignore_patterns("data", ".modelci"))
    folder = tmp_path / "shapes"
    shutil.copytree(shapes_data, folder / "data")
    configure(folder, train__epochs=2, train__batch_size=8, train__workers=1)
    monkeypatch.chdir(folder)
    return folder


def configure(repo: Path, **changes: object) -> None:
    """Set `section__key=value` in the repository's modelci.yaml (None removes the key)."""
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if value is None:
            config.setdefault(section, {}).pop(name, None)
        else:
            config.setdefault(section, {})[name] = value
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))


def weights(out: Path = OUT) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]  # type: ignore[no-any-return]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_an_image_model_trains_and_exports_with_its_preprocessing_in_the_graph(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    configure(repo, train__epochs=10)  # NOTE: 2 epochs of 54 images leave a model near chance
    trained = cli("train")
    assert trained.code == 0, trained.err
    assert "epoch  10/10" in trained.err
    assert "samples/s" in trained.err
    log = json.loads((OUT / "train-log.json").read_text())
    assert log["classes"] == ["circle", "square", "triangle"]  # the class folders' names, sorted
    assert log["image"]["size"] == [32, 32]
    assert log["image"]["column"] == "image"
    assert (log["rows"], log["validation_rows"]) == (54, 6)  # data.validation_split's 10%, stratified
    exported = cli("export")
    assert exported.code == 0, exported.err

    session = ort.InferenceSession(str(OUT / "model.onnx"), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1:]) == ("image", "tensor(uint8)", [32, 32, 3])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["modelci.classes"]) == ["circle", "square", "triangle"]
    assert json.loads(meta["modelci.image"])["layout"] == "NHWC"

    # the model learnt something: ONNX Runtime's accuracy on the evaluation images is well above chance (1/3)
    config = load_config("modelci.yaml")
    evaluation = load_datasets(config).eval
    model = OnnxModel(OUT / "model.onnx")
    probabilities = model.predict(evaluation)
    assert probabilities.shape == (60, 3)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels_of(model, evaluation)))
    assert accuracy > 0.6, accuracy

    parity = json.loads((OUT / "parity.json").read_text())
    assert parity["passed"]
    assert parity["rows"] == 60
    assert parity["problems"] == []
    assert parity["outputs"][0]["name"] == "probabilities"
    assert parity["outputs"][0]["max_abs_error"] < 1e-4
    assert parity["metric"]["trained"] == parity["metric"]["onnx"]
    samples = json.loads((OUT / "samples.json").read_text())
    pixels = np.asarray([row["image"] for row in samples["inputs"]])
    assert pixels.shape == (5, 32, 32, 3)
    assert pixels.min() >= 0
    assert pixels.max() <= 255
    assert np.allclose(session.run(None, {"image": pixels.astype(np.uint8)})[0], samples["outputs"], atol=1e-5)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__workers=2)
    assert cli("train").code == 0
    assert cli("train", "--out", "again").code == 0
    assert same_weights(weights(), weights(Path("again")))
    assert cli("train", "--out", "other-seed", "--seed", "1").code == 0
    assert not same_weights(weights(), weights(Path("other-seed")))


@pytest.mark.slow
def test_resume_after_a_stopped_runner_gives_the_uninterrupted_model(  # type: ignore[no-untyped-def]
        cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(repo / "model.py", repo / "model_base.py")
    (repo / "model.py").write_text(STOPPABLE_MODEL)
    configure(repo, train__epochs=3)
    assert cli("train").code == 0
    uninterrupted = weights()
    monkeypatch.setenv("STOP_AFTER", "2")  # the check, then epoch 1's validation
    assert cli("train").code == 130
    assert (OUT / "train-state.pt").is_file()
    assert not (OUT / "model.pt").exists()
    monkeypatch.delenv("STOP_AFTER")
    resumed = cli("train", "--resume")
    assert resumed.code == 0, resumed.err
    assert "resuming after epoch 1" in resumed.err
    assert json.loads((OUT / "train-log.json").read_text())["resumed_from"] == 1
    assert same_weights(uninterrupted, weights())


def test_augmentations_change_training_images_and_never_the_others(shapes_data: Path) -> None:
    image = ImageConfig(size=SIZE)
    files = sorted(str(p) for p in (shapes_data / "train").rglob("*.png"))[:8]
    augment = Augment.of(AugmentConfig(flip="horizontal", crop_padding=3, brightness=0.3, contrast=0.3,
                                       saturation=0.3))
    assert augment is not None
    assert Augment.of(AugmentConfig()) is None
    rows = ImageRows(files, np.zeros(len(files), np.int64), image, augment)
    originals = [load_pixels(f, SIZE, 3) for f in files]
    keys = [(row, 1000 + row) for row in range(len(files))]
    augmented = [a.numpy() for a in rows.__getitems__(keys)[0]]
    assert all(a.shape == (32, 32, 3) and a.dtype == np.uint8 for a in augmented)
    assert sum(not np.array_equal(a, o) for a, o in zip(augmented, originals, strict=True)) >= len(files) - 1
    # the same seed, the same change, alone or in any batch: a run does not depend on the workers or batch size
    assert all(np.array_equal(rows[key][0][0].numpy(), augmented[key[0]]) for key in keys)
    assert np.array_equal(rows.__getitems__(keys[::-1])[0][-1].numpy(), augmented[0])
    # validation images (and evaluation's, which ONNX Runtime reads with load_pixels) are never augmented, even
    # beside augmented ones in a batch
    mixed = rows.__getitems__([(0, NO_AUGMENT), (1, 1001), (2, NO_AUGMENT)])[0]
    assert np.array_equal(mixed[0].numpy(), originals[0])
    assert np.array_equal(mixed[2].numpy(), originals[2])
    assert np.array_equal(mixed[1].numpy(), augmented[1])


def test_pixels_are_the_same_from_a_path_bytes_or_an_array(shapes_data: Path) -> None:
    file = next((shapes_data / "eval" / "circle").glob("*.png"))
    from_path = load_pixels(str(file), (16, 24), 3)
    assert from_path.shape == (16, 24, 3)
    assert from_path.dtype == np.uint8
    assert np.array_equal(load_pixels(file.read_bytes(), (16, 24), 3), from_path)
    assert np.array_equal(load_pixels(from_path.tolist(), (16, 24), 3), from_path)
    assert load_pixels(str(file), (16, 24), 1).shape == (16, 24, 1)
    with pytest.raises(ValueError, match=r"the model takes \[32, 32, 3\]"):
        load_pixels(from_path, SIZE, 3)


def test_bad_image_settings_are_exit_2_naming_every_problem(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, data__image={"size": [32], "channels": 4, "std": [0.2, 0.0, 0.2]},
              train__augment={"flip": "sideways", "rotate": 10, "crop": {"scale": [0.9, 0.5]}, "color_jitter": 2})
    found = cli("train")
    assert found.code == 2
    for problem in ("data.image.size", "data.image.channels", "data.image.std", "train.augment.flip",
                    "train.augment.rotate: unknown key", "train.augment.crop", "train.augment.color_jitter"):
        assert problem in found.err, problem


def test_augmentations_without_an_image_model_are_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    del config["data"]["image"]
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    found = cli("train")
    assert found.code == 2
    assert "train.augment: augmentations change images; set data.image" in found.err


def test_a_folder_of_images_without_data_image_is_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    del config["data"]["image"], config["train"]["augment"], config["evaluate"], config["gate"]
    config["task"] = "regression"
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    found = cli("train")
    assert found.code == 2
    assert "data.image: missing" in found.err
    assert "task: an image model is binary or multiclass" in found.err


def test_a_factory_with_the_table_signature_is_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text("from torch import nn\n\n\n"
                                   "def build(input_dim, output_dim, width=16, dropout=0.1):\n"
                                   "    return nn.Linear(input_dim, output_dim)\n")
    found = cli("train")
    assert found.code == 2
    assert "cannot be called as build(input_shape, output_dim, **params)" in found.err
    assert "unexpected keyword argument 'input_shape'" in found.err or "input_dim" in found.err


def test_a_network_that_does_not_take_the_image_shape_is_exit_2(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text("from torch import nn\n\n\ndef build(input_shape, output_dim, **params):\n"
                                   "    return nn.Sequential(nn.Flatten(), nn.Linear(100, output_dim))\n")
    found = cli("train")
    assert found.code == 2
    assert "the model fails on a (2, 3, 32, 32) input" in found.err
    assert "input_shape=(3, 32, 32)" in found.err


def test_an_image_that_does_not_decode_stops_training_naming_it(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    broken = repo / "data" / "train" / "square" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    found = cli("train")
    assert found.code == 2
    assert "image(s) cannot be read" in found.err
    assert "broken.png" in found.err
    assert "Traceback" not in found.err
