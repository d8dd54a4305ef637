"""`modelci data check` and `data profile` on image datasets: a folder per class and a table of images.

Tiny datasets (coloured shapes on noise, 16-32 px) are written with Pillow in tmp_path, with every bad
input the checks name: corrupt, truncated, 0-byte, CMYK, 16-bit, missing, an empty class, a class not
in the schema, duplicates and leakage; drift against a brighter baseline; the fingerprint.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import Result
from test_core_without_torch import NO_TORCH

OUT = Path(".modelci") / "out"
SCHEMA = """columns:
  image: {type: image, min_width: 16, max_width: 32, min_height: 16, max_height: 32, channels: 3}
  label: {type: string, allowed: [circle, square]}
"""


def picture(seed: int, shape: str, size: int = 24, lift: int = 0) -> Image.Image:
    """A coloured shape on noise; `lift` brightens every pixel."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 120, (size, size, 3)).astype(np.int32)
    low, high = size // 4, 3 * size // 4
    y, x = np.mgrid[:size, :size]
    inside = (np.hypot(y - size / 2, x - size / 2) < size / 4) if shape == "circle" else \
        ((low <= y) & (y < high) & (low <= x) & (x < high))
    pixels[inside] = rng.integers(120, 255, 3)
    return Image.fromarray(np.clip(pixels + lift, 0, 255).astype(np.uint8))


def folder(root: Path, per_class: int = 8, seed: int = 0, lift: int = 0,
           classes: tuple[str, ...] = ("circle", "square")) -> Path:
    """A folder per class of PNG and JPEG images."""
    for c, shape in enumerate(classes):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = picture(seed * 1000 + c * 100 + i, shape, size=16 + (i % 3) * 8, lift=lift)
            image.save(root / shape / (f"{i:03d}.png" if i % 2 else f"{i:03d}.jpg"))
    return root


def repository(root: Path, schema: str | None = SCHEMA, train: str = "images/train",
               evaluation: str | None = "images/eval", extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["task: multiclass", "data:", f"  train: {train}", "  label: label"]
    lines += [f"  eval: {evaluation}"] if evaluation else []
    lines += ["  schema: schema.yaml"] if schema is not None else []
    (root / "modelci.yaml").write_text("\n".join(lines) + "\n" + extra + "model: {factory: 'model.py:build'}\n")
    if schema is not None:
        (root / "schema.yaml").write_text(schema)
    return root


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = repository(tmp_path / "vision")
    folder(root / "images" / "train")
    folder(root / "images" / "eval", per_class=3, seed=1)
    monkeypatch.chdir(root)
    return root


def report(repo: Path) -> dict:
    return json.loads((repo / OUT / "data-report.json").read_text())


def profile(repo: Path) -> dict:
    return json.loads((repo / OUT / "data-profile.json").read_text())


def findings(repo: Path, dataset: int = 0) -> dict[tuple[str | None, str], dict]:
    return {(v["column"], v["rule"]): v for v in report(repo)["datasets"][dataset]["violations"]}


def encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_a_clean_folder_per_class_passes_with_a_profile(cli: Callable[..., Result], repo: Path) -> None:
    result = cli("data", "check")
    assert result.code == 0, result.err
    train = report(repo)["datasets"][0]
    assert (train["rows"], train["columns"], train["files"]) == (16, 2, ["images/train"])
    assert train["violations"] == []
    columns = profile(repo)["datasets"]["train"]["columns"]
    assert columns["label"]["frequencies"] == [["circle", 8], ["square", 8]]
    for name in ("brightness.red", "contrast.blue", "sharpness", "width", "height"):
        assert set(columns[f"image.{name}"]) >= {"mean", "std", "histogram", "sketch", "quantiles"}, name
    assert columns["image.width"]["frequencies"] == [[16, 6], [24, 6], [32, 4]]
    assert profile(repo)["drift"]["image.brightness.red"] == {"method": "psi", "threshold": 0.2}


def test_every_bad_file_in_a_folder_is_named_with_what_to_do(cli: Callable[..., Result], repo: Path) -> None:
    train = repo / "images" / "train"
    good = (train / "circle" / "001.png").read_bytes()
    (train / "circle" / "corrupt.png").write_bytes(b"not an image at all")
    (train / "circle" / "truncated.png").write_bytes(good[: len(good) // 2])
    (train / "circle" / "empty.jpg").write_bytes(b"")
    picture(5, "circle").convert("CMYK").save(train / "square" / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(train / "square" / "deep.png")
    picture(6, "square", size=40).save(train / "square" / "large.png")
    picture(7, "square").convert("L").save(train / "square" / "grey.png")
    (train / "square" / "notes.txt").write_text("not an image")
    (train / "triangle").mkdir()
    picture(8, "circle").save(train / "triangle" / "0.png")
    (train / "empty").mkdir()
    result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings(repo)
    assert found["image", "decode"]["sample_values"] == ["circle/corrupt.png: not an image format Pillow reads "
                                                         "(PNG, JPEG, ...)"]
    assert found["image", "truncated"]["sample_values"][0].startswith("circle/truncated.png: cut short (image file is")
    assert found["image", "empty_file"]["sample_values"] == ["circle/empty.jpg: 0 bytes"]
    mode = found["image", "mode"]
    assert mode["rows"] == 2
    assert mode["sample_values"][0].startswith("square/cmyk.jpg: CMYK; convert it to RGB")
    assert mode["sample_values"][1].startswith("square/deep.png: 16 bits per channel (I;16); save it with 8 bits")
    assert found["image", "width"]["sample_values"] == ["square/large.png: 40x40"]
    assert found["image", "width"]["message"] == "images whose width is not at least 16 and at most 32 pixels"
    assert found["image", "channels"]["sample_values"] == ["square/grey.png: 1 channels"]
    assert found["label", "allowed"]["sample_values"] == ["triangle"]
    assert found["label", "empty_class"]["sample_values"] == ["empty"]
    assert found["image", "not_image"]["severity"] == "warning"
    assert found["image", "not_image"]["sample_values"] == ["square/notes.txt"]
    assert all(v["severity"] == "error" for k, v in found.items() if k[1] != "not_image")
    assert "Traceback" not in result.err


def test_duplicates_and_leakage_by_content_are_named(cli: Callable[..., Result], repo: Path) -> None:
    train, evaluation = repo / "images" / "train", repo / "images" / "eval"
    (train / "square" / "copy.png").write_bytes((train / "square" / "001.png").read_bytes())
    (evaluation / "circle" / "leaked.png").write_bytes((train / "circle" / "003.png").read_bytes())
    result = cli("data", "check")
    assert result.code == 1, result.err  # leakage is an error, duplicates a warning
    duplicates = findings(repo)[None, "duplicates"]
    assert (duplicates["rows"], duplicates["severity"], duplicates["sample_values"]) == (1, "warning",
                                                                                         ["square/copy.png"])
    assert duplicates["message"] == "images whose content repeats an earlier image's"
    leakage = findings(repo, 1)[None, "leakage"]
    assert (leakage["rows"], leakage["sample_values"]) == (1, ["circle/leaked.png"])


def test_class_balance_on_class_folders(cli: Callable[..., Result], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = repository(tmp_path / "balance", SCHEMA + "dataset:\n  class_balance: {min: 0.3}\n", evaluation=None)
    folder(root / "images" / "train", per_class=9)
    for extra in (root / "images" / "train" / "circle").glob("00[2-8].*"):
        extra.unlink()
    monkeypatch.chdir(root)
    result = cli("data", "check")
    assert result.code == 1, result.err
    assert findings(root)["label", "class_balance"]["sample_values"] == ["circle"]


def test_a_table_of_paths_and_of_bytes(cli: Callable[..., Result], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = repository(tmp_path / "table", SCHEMA + "  site: {type: int, min: 0}\n", train="data/train.csv",
                      evaluation="data/eval.parquet")
    folder(root / "data" / "pictures", per_class=4)
    rows = [{"image": f"pictures/{p.parent.name}/{p.name}", "label": p.parent.name, "site": 1}
            for p in sorted((root / "data" / "pictures").rglob("*.*"))]
    rows += [{"image": "pictures/circle/gone.png", "label": "circle", "site": 2},
             {"image": None, "label": "square", "site": -1}]
    pd.DataFrame(rows).to_csv(root / "data" / "train.csv", index=False)
    pictures = [encoded(picture(50 + i, "circle")) for i in range(4)] + [b"\x89PNG\r\n\x1a\n broken"]
    pd.DataFrame({"image": pictures, "label": ["circle", "square"] * 2 + ["circle"], "site": 3}).to_parquet(
        root / "data" / "eval.parquet", index=False)
    monkeypatch.chdir(root)
    result = cli("data", "check")
    assert result.code == 1, result.err
    train = findings(root)
    assert train["image", "exists"]["sample_values"] == ["pictures/circle/gone.png: no such file"]
    assert train["image", "exists"]["sample_rows"] == [8]
    assert train["image", "not_null"]["sample_rows"] == [9]
    assert train["site", "min"]["sample_rows"] == [9]  # the table's other columns are checked as any table's
    evaluation = findings(root, 1)
    assert evaluation["image", "decode"]["sample_values"] == ["row 4: starts as a PNG file but its header is "
                                                              "damaged or cut short"]
    assert report(root)["datasets"][1]["rows"] == 5
    frequencies = profile(root)["datasets"]["eval"]["columns"]["label"]["frequencies"]
    assert frequencies == [["circle", 3], ["square", 2]]


def test_drift_against_a_brighter_baseline(cli: Callable[..., Result], repo: Path, tmp_path: Path) -> None:
    brighter = folder(tmp_path / "bright", lift=90)
    assert cli("data", "profile", str(brighter), "--out", str(tmp_path / "baseline")).code == 0
    baseline = json.loads((tmp_path / "baseline" / "data-profile.json").read_text())
    baseline["datasets"]["train"] = baseline["datasets"].pop("data")
    # NOTE: the profile a baseline artifact carries, read the way `data check --baseline` reads it
    from modelci.config import load_config
    from modelci.data.check import check_data

    checked, _ = check_data(load_config(repo / "modelci.yaml"), baseline, "bright")
    drift = {d.column: d for d in checked.datasets[0].drift}
    assert drift["image.brightness.red"].verdict == "drifted"
    assert drift["image.width"].verdict == "stable"
    assert drift["label"].verdict == "stable"


def fingerprint(cli: Callable[..., Result], path: Path, out: Path) -> str:
    assert cli("data", "profile", str(path), "--out", str(out)).code == 0
    return str(json.loads((out / "data-profile.json").read_text())["datasets"]["data"]["fingerprint"])


def test_the_fingerprint_ignores_names_and_order_but_not_pixels(cli: Callable[..., Result], tmp_path: Path) -> None:
    first = folder(tmp_path / "first", per_class=4)
    renamed = tmp_path / "renamed"
    for i, file in enumerate(sorted(first.rglob("*.*"), reverse=True)):
        (renamed / file.parent.name).mkdir(parents=True, exist_ok=True)
        (renamed / file.parent.name / f"z{i}-{file.name}").write_bytes(file.read_bytes())
    changed = folder(tmp_path / "changed", per_class=4)
    pixels = np.asarray(Image.open(changed / "square" / "001.png")).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(changed / "square" / "001.png")
    relabelled = folder(tmp_path / "relabelled", per_class=4)
    (relabelled / "circle" / "000.jpg").rename(relabelled / "square" / "moved.jpg")
    prints = [fingerprint(cli, path, tmp_path / f"out-{path.name}") for path in (first, renamed, changed, relabelled)]
    assert prints[0] == prints[1]
    assert len(set(prints[1:])) == 3


def only_empty_classes(root: Path) -> None:
    (root / "images" / "train" / "cat").mkdir(parents=True)


def nothing_decodes(root: Path) -> None:
    folder(root / "images" / "train", per_class=0)  # empty class folders
    (root / "images" / "train" / "cat").mkdir()
    (root / "images" / "train" / "cat" / "a.png").write_bytes(b"junk")


def no_class_folders(root: Path) -> None:
    (root / "images" / "train").mkdir(parents=True)
    picture(1, "circle").save(root / "images" / "train" / "flat.png")


@pytest.mark.parametrize(("setup", "message"), [
    pytest.param(lambda root: None, "images/train: no such file", id="missing-folder"),
    pytest.param(only_empty_classes, "images/train: holds no images", id="only-empty-classes"),
    pytest.param(nothing_decodes, "none of its 1 images could be read (e.g. cat/a.png: not an image format",
                 id="nothing-decodes"),
    pytest.param(no_class_folders, "images/train: the images are not in class folders", id="no-class-folders"),
])
def test_nothing_readable_is_exit_2_naming_the_path(cli: Callable[..., Result], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    setup: Callable[[Path], object], message: str) -> None:
    root = repository(tmp_path / "bad", evaluation=None)
    setup(root)
    monkeypatch.chdir(root)
    result = cli("data", "check")
    assert result.code == 2, result.err
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(("rules", "problem"), [
    pytest.param("{type: image, min_width: 0}", "columns.image.min_width: expected a whole number of pixels",
                 id="zero-width"),
    pytest.param("{type: image, min_height: 40, max_height: 20}", "columns.image: min_height 40 is above max_height",
                 id="min-above-max"),
    pytest.param("{type: image, channels: [3, 5]}", "columns.image.channels: expected a channel count",
                 id="channels"),
    pytest.param("{type: image, allowed: [a]}", "columns.image: unknown keys ['allowed'] for an image column",
                 id="table-key"),
    pytest.param("{type: float, min_width: 3}", "columns.image: unknown keys ['min_width']", id="image-key"),
])
def test_image_schema_keys_are_validated(cli: Callable[..., Result], repo: Path, rules: str, problem: str) -> None:
    (repo / "schema.yaml").write_text(f"columns:\n  image: {rules}\n  label: {{type: string}}\n")
    result = cli("data", "check")
    assert result.code == 2, result.err
    assert problem in result.err


def test_without_pillow_the_check_names_the_images_extra(repo: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "PIL", "data", "check"], cwd=repo, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "reading images needs PIL, which is not installed" in done.stderr
    assert "pip install 'modelci[images]'" in done.stderr


def test_statistics_are_each_channels_mean_and_deviation_and_the_laplacians_variance() -> None:
    from modelci.data.images.measure import measure
    from modelci.data.images.read import Item

    image = picture(3, "circle", size=40)
    pixels = np.asarray(image, dtype=np.float64)
    grey = pixels @ [0.299, 0.587, 0.114]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    expected = [*pixels.mean(axis=(0, 1)), *pixels.std(axis=(0, 1)), laplacian.var()]
    found = measure(Item(0, "", None, data=encoded(image)), Image)
    assert found.sizes == (40, 40, 3)
    assert found.stats == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("image", "kind"), [
    pytest.param(picture(4, "square", size=40), "PNG", id="png"),
    pytest.param(picture(4, "square", size=40).convert("L"), "PNG", id="grey-png"),
    pytest.param(picture(5, "circle", size=600), "JPEG", id="large-jpeg-drafted"),
    pytest.param(picture(6, "circle", size=40).convert("CMYK"), "JPEG", id="cmyk-jpeg-not-measured"),
])
def test_one_read_gives_the_pixels_a_model_takes_and_the_statistics(image: Image.Image, kind: str) -> None:
    # a server measuring drift reads each image once for the model and the statistics: the same pixels as the
    # training loader's, the same statistics as the data check's
    from modelci.data.images.measure import measure
    from modelci.data.images.read import Item
    from modelci.frameworks.images.pixels import load_pixels

    data = encoded(image, kind)
    both = measure(Item(0, "", None, data=data), Image, pixels=((32, 24), 3))
    alone = measure(Item(0, "", None, data=data), Image)
    assert both.pixels is not None
    assert np.array_equal(both.pixels, load_pixels(data, (32, 24), 3))
    assert both.sizes == alone.sizes
    assert both.problems == alone.problems
    assert (both.stats is None) == (kind == "JPEG" and image.mode == "CMYK")
    assert (alone.stats is None) == (both.stats is None)
    if both.stats is not None:
        assert np.array_equal(both.stats, alone.stats)
    assert alone.pixels is None
