"""`modelci run` on an image model repository, as on a table's (issue 18, the pipeline's "done when").

On a copy of examples/shapes with a small data set its own generator makes, committed as a git
repository with the embedded registry: data check, training, export and parity, evaluation, the
paired comparison with the published baseline on the same evaluation images, the report, the
publish; and the overlap of evaluation and training images by their content, not their paths.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, Result, git
from modelci.config import load_config
from modelci.data.rowsketch import SKETCH_FILE, RowSketch, frame_keys, write_training_sketch
from modelci.data.tables import load_datasets
from modelci.evaluate.evaluator import labels_of
from modelci.evaluate.onnx_model import OnnxModel
from modelci.outputs import BASELINE_DIR
from modelci.registry.layout import OciLayout
from test_image_train import generate_shapes

EXAMPLE = ROOT / "examples" / "shapes"
OUT = Path(".modelci/out")
REGISTRY = Path(".modelci/registry")
PER_CLASS = 12  # training and evaluation images per class
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's data: data/train/<class>/*.png and data/eval/<class>/*.png."""
    return generate_shapes(tmp_path_factory.mktemp("shapes-data") / "data", PER_CLASS)


def configure(repo: Path, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    change(config)
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def small(config: dict) -> None:  # type: ignore[type-arg]
    """Two epochs of small batches, top-k among the metrics, and a gate that tiny data can pass."""
    config["train"].update(epochs=2, batch_size=8, workers=0)
    config["evaluate"]["metrics"] = ["accuracy", "top_2_accuracy", "f1_macro", "log_loss"]
    config["gate"] = [{"metric": "accuracy", "min": 0.0, "max_drop": 0.5}]


@pytest.fixture
def shapes(tmp_path: Path, shapes_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example with the small data, committed (data included) as a git repository; the cwd."""
    repo = tmp_path / "shapes"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("data", ".modelci", "__pycache__"))
    shutil.copytree(shapes_data, repo / "data")
    configure(repo, small)
    (repo / ".gitignore").write_text(".modelci/\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    monkeypatch.chdir(repo)
    return repo


def tags(repo: Path) -> dict[str, str]:
    return {name: d.digest for name, d in OciLayout.open(repo / REGISTRY, create=True).tags().items()}


def read(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / name).read_text())  # type: ignore[no-any-return]


def test_an_image_model_repository_reads_as_datasets_of_image_paths(shapes: Path) -> None:
    datasets = load_datasets(load_config("modelci.yaml"))
    assert datasets.images == ("image",)
    assert sorted(datasets.eval["shape"].unique()) == CLASSES
    assert len(datasets.eval) == 3 * PER_CLASS
    assert len(datasets.train) + len(datasets.validation) == 3 * PER_CLASS
    assert all(Path(path).is_file() for path in datasets.eval["image"])


def test_evaluation_images_are_found_in_the_training_sketch_by_content_not_path(shapes_data: Path,
                                                                                tmp_path: Path) -> None:
    train = pd.DataFrame({"image": [str(p) for p in sorted((shapes_data / "train" / "circle").glob("*.png"))],
                          "shape": "circle"})
    copies = tmp_path / "elsewhere"
    copies.mkdir()
    for path in train["image"][:3]:  # the same images under other names, as another runner's paths would be
        shutil.copy(path, copies / f"copy-{Path(path).name}")
    fresh = [str(p) for p in sorted((shapes_data / "eval" / "circle").glob("*.png"))[:5]]
    evaluation = pd.DataFrame({"image": [str(p) for p in sorted(copies.iterdir())] + fresh, "shape": "circle"})
    write_training_sketch(tmp_path, train, images=["image"])
    sketch = RowSketch.from_bytes((tmp_path / SKETCH_FILE).read_bytes())
    assert sketch.header.images == ["image"]
    found = sketch.contains(frame_keys(evaluation, sketch.header.columns, sketch.header.images))
    assert found.tolist() == [True] * 3 + [False] * 5


def _accuracy_and_discordant(candidate: OnnxModel, baseline: OnnxModel, frame: pd.DataFrame) -> tuple[
        float, float, list[int]]:
    """Both models scored here on the same images: their accuracies and [only the candidate right, only the
    baseline right]."""
    y = labels_of(candidate, frame)
    right = [np.argmax(model.predict(frame), axis=1) == y for model in (candidate, baseline)]
    return (float(right[0].mean()), float(right[1].mean()),
            [int((right[0] & ~right[1]).sum()), int((right[1] & ~right[0]).sum())])


@pytest.mark.slow
def test_run_publishes_an_image_model_and_a_changed_one_gets_a_paired_verdict(
        cli: Callable[..., Result], shapes: Path) -> None:
    published = cli("run", "--publish")
    assert published.code == 0, published.err
    head = git(shapes, "rev-parse", "HEAD")
    found = tags(shapes)
    assert found["main"] == found[f"sha-{head}"]
    assert read("comparison.json")["baseline_status"] == "no-baseline"

    configure(shapes, lambda config: config["model"]["params"].update(width=8))  # a narrower network
    git(shapes, "commit", "-qam", "a narrower network")
    changed = cli("run")
    assert changed.code == 0, changed.err
    assert f"{3 * PER_CLASS} images: accuracy" in changed.err

    comparison = read("comparison.json")
    assert (comparison["baseline_status"], comparison["baseline_digest"]) == ("compared", found["main"])
    assert comparison["rows"] == 3 * PER_CLASS
    assert comparison["passed"]
    rows = {m["name"]: m for m in comparison["metrics"]}
    assert set(rows) == {"accuracy", "top_2_accuracy", "f1_macro", "log_loss"}
    assert all(m["verdict"] in {"improved", "unchanged", "worse-within-tolerance", "regressed", "inconclusive"}
               for m in rows.values())
    # paired: the comparison's figures are both models' on the very same evaluation images
    frame = load_datasets(load_config("modelci.yaml")).eval
    mine, theirs, discordant = _accuracy_and_discordant(OnnxModel(OUT / "model.onnx"),
                                                        OnnxModel(OUT / BASELINE_DIR / "model.onnx"), frame)
    assert (rows["accuracy"]["candidate"], rows["accuracy"]["baseline"]) == pytest.approx((mine, theirs))
    assert rows["accuracy"]["discordant"] == discordant
    # the overlap with the baseline's training images is checked by their content: none are evaluation images
    assert comparison["comparability"]["overlap_checked"]
    assert comparison["comparability"]["overlap_rows"] == 0

    metrics = read("metrics.json")
    assert metrics["classes"] == CLASSES
    assert np.array(metrics["confusion_matrix"]).sum() == 3 * PER_CLASS
    assert set(metrics["metrics"]) == set(rows)
    report = (OUT / "report.md").read_text()
    assert f"paired on the same {3 * PER_CLASS} evaluation images" in report
    assert "3 classes: `circle`, `square`, `triangle`" in report
    assert "| class | images | precision | recall | F1 |" in report
    assert "| circle | 12 |" in report
    assert "input columns" not in report
    assert "| dataset | images | failed checks |" in report

    pushed = cli("push-candidate", "--pull-request", "3")
    assert pushed.code == 0, pushed.err
    reused = cli("run")
    assert reused.code == 0, reused.err
    assert "reused the judged candidate" in reused.err
    assert "==> Training" not in reused.err
    trained = cli("run", "--no-cache")
    assert trained.code == 0, trained.err
    assert "==> Training" in trained.err
    assert "reused" not in trained.err
    assert read("comparison.json")["baseline_status"] == "compared"


def test_a_table_of_images_trains_and_its_other_columns_slice_the_evaluation(
        cli: Callable[..., Result], shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a table of image paths (CSV, relative to the table's folder) to train on, a table of encoded images
    # (Parquet) to judge on, and a site column in both: kept for slices, never given to the model
    repo = tmp_path / "table"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("data", ".modelci", "__pycache__"))
    shutil.copytree(shapes_data, repo / "data" / "pictures")
    files = sorted((repo / "data" / "pictures" / "train").rglob("*.png"))
    pd.DataFrame({"photo": [str(p.relative_to(repo / "data")) for p in files],
                  "shape": [p.parent.name for p in files],
                  "site": ["north", "south"] * (len(files) // 2)}).to_csv(repo / "data" / "train.csv", index=False)
    files = sorted((repo / "data" / "pictures" / "eval").rglob("*.png"))
    pd.DataFrame({"photo": [p.read_bytes() for p in files], "shape": [p.parent.name for p in files],
                  "site": ["north", "south", "east"] * (len(files) // 3)}).to_parquet(repo / "data" / "eval.parquet")
    (repo / "schema.yaml").write_text("columns:\n  photo: {type: image}\n  shape: {type: string}\n"
                                      "  site: {type: string}\n")

    def tables(config: dict) -> None:  # type: ignore[type-arg]
        small(config)
        config["data"].update(train="data/train.csv", eval="data/eval.parquet", schema="schema.yaml")
        config["evaluate"]["slices"] = ["site"]

    configure(repo, tables)
    monkeypatch.chdir(repo)
    for step in ("data check", "train", "export", "evaluate"):
        done = cli(*step.split())
        assert done.code == 0, f"{step}: {done.err}"

    datasets = load_datasets(load_config("modelci.yaml"))
    assert all(Path(path).is_file() for path in [*datasets.train["photo"], *datasets.validation["photo"]])
    assert all(isinstance(image, bytes) for image in datasets.eval["photo"])
    model = OnnxModel(OUT / "model.onnx")
    assert [i.name for i in model.session.get_inputs()] == ["photo"]  # the schema's image column, alone
    assert read("parity.json")["passed"]
    metrics = read("metrics.json")
    by_site = {s["value"]: s for s in metrics["slices"]["site"]}
    assert set(by_site) == {"north", "south", "east"}
    assert sum(s["rows"] for s in by_site.values()) == 3 * PER_CLASS
    y = labels_of(model, datasets.eval)
    predicted = np.argmax(model.predict(datasets.eval), axis=1)
    north = (datasets.eval["site"] == "north").to_numpy()
    assert by_site["north"]["metrics"]["accuracy"] == pytest.approx(float(np.mean(predicted[north] == y[north])))


@pytest.mark.parametrize(("rows", "problem"), [
    pytest.param({"photo": ["a.png", None], "shape": ["circle", "square"]},
                 "data/train.csv have no image (rows 1)", id="row-without-image"),
    pytest.param({"picture": ["a.png"], "shape": ["circle"]},
                 "has no image column 'photo' (columns: picture, shape)", id="no-image-column"),
    pytest.param({"photo": ["a.png"], "kind": ["circle"]}, "the label column 'shape' is missing", id="no-label"),
])
def test_a_table_of_images_that_cannot_be_trained_from_is_exit_2_naming_why(
        cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: dict,  # type: ignore[type-arg]
        problem: str) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "table", ignore=shutil.ignore_patterns("data", ".modelci", "__pycache__"))
    (tmp_path / "table" / "data").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "table" / "data" / "train.csv", index=False)
    (tmp_path / "table" / "schema.yaml").write_text("columns:\n  photo: {type: image}\n")
    configure(tmp_path / "table", lambda config: config["data"].update(train="data/train.csv", eval="data/train.csv",
                                                                      schema="schema.yaml"))
    monkeypatch.chdir(tmp_path / "table")
    found = cli("train")
    assert found.code == 2, found.err
    assert problem in found.err
    assert "Traceback" not in found.err
