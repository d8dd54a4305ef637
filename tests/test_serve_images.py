"""`modelci serve` of an image model (issue 18, item 8): the shapes example trained and exported, served for real,
asked with Triton's own HTTP client (PNGs as BYTES, binary) and with JSON (base64 PNGs, uint8 pixels); its answers
against ONNX Runtime in-process on the pixels `load_pixels` makes; bad images are 400s naming the input; a hot
swap and `modelci deploy` of an image artifact pass its golden samples (uint8 pixels in samples.json)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as triton
from PIL import Image

from modelci.cli import main
from modelci.frameworks.images.pixels import load_pixels
from modelci.registry.artifact import ANNOTATION_PREFIX, push_files, resolve
from modelci.registry.reference import parse_reference
from test_image_train import EXAMPLE, configure, shapes_data  # noqa: F401  (the module's data set, a fixture)
from test_serve import Running, artifact_of, metric, start

PASSED = {f"{ANNOTATION_PREFIX}verdict": "passed"}
SIZE = (32, 32)  # examples/shapes/modelci.yaml's data.image.size
NAME = "shapes"


def train_and_export(folder: Path, data: Path, seed: int) -> Path:
    """The shapes example trained for one epoch with `seed` and exported, in-process."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", ".modelci"))
    shutil.copytree(data, folder / "data")
    configure(folder, train__epochs=1, train__batch_size=16, train__workers=0)
    here = Path.cwd()
    os.chdir(folder)
    try:
        assert main(["train", "--seed", str(seed)]) == 0
        assert main(["export"]) == 0
    finally:
        os.chdir(here)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, shapes_data: Path) -> tuple[Path, Path]:  # noqa: F811
    """Two image models with other weights and the same input: seeds 0 and 1."""
    root = tmp_path_factory.mktemp("serve-images")
    return train_and_export(root / "a", shapes_data, 0), train_and_export(root / "b", shapes_data, 1)


@pytest.fixture(scope="module")
def server(models: tuple[Path, Path]) -> Iterator[Running]:
    # NOTE: a batch waits 20 ms for more requests, so that concurrent ones share it
    running = start(models[0] / ".modelci/out/model.onnx", "--max-delay-ms", "20", name=NAME)
    yield running
    running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
    running.process.wait(timeout=30)


def onnx_runtime(model: Path, pngs: list[bytes]) -> np.ndarray:
    """The model's answer in this process, on the pixels training and parity read from the same files."""
    session = ort.InferenceSession(str(model / ".modelci/out/model.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.stack([load_pixels(png, SIZE, 3) for png in pngs])
    return np.asarray(session.run(None, {"image": pixels})[0])


def encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


@pytest.fixture(scope="module")
def pngs(shapes_data: Path) -> list[bytes]:  # noqa: F811
    """Evaluation images as clients send them: PNGs as generated, one larger (48x40, resized by the server), one
    grey (converted to RGB), one JPEG."""
    files = [sorted((shapes_data / "eval" / shape).glob("*.png"))[0] for shape in ("circle", "square", "triangle")]
    found = [f.read_bytes() for f in files]
    with Image.open(files[0]) as image:
        found += [encoded(image.resize((48, 40))), encoded(image.convert("L")), encoded(image, "JPEG")]
    return found


def infer(server: Running, inputs: list[dict[str, Any]]) -> requests.Response:
    return server.infer({"inputs": inputs}, model=NAME)


def answer(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    return np.asarray(output["data"]).reshape(output["shape"])


def base64_input(images: list[bytes], **parameters: Any) -> dict[str, Any]:
    found = {"name": "image", "shape": [len(images)], "datatype": "BYTES",
             "data": [base64.b64encode(i).decode() for i in images]}
    return {**found, "parameters": parameters} if parameters else found


def test_the_metadata_says_which_forms_the_image_input_takes(server: Running) -> None:
    found = requests.get(f"{server.url}/v2/models/{NAME}", timeout=5).json()
    (image,) = found["inputs"]
    assert (image["name"], image["datatype"], image["shape"]) == ("image", "UINT8", [-1, 32, 32, 3])
    assert image["parameters"]["modelci.image"]["resample"] == "bilinear"
    assert [form.split(" (")[0] for form in image["parameters"]["forms"]] == ["UINT8 [N, 32, 32, 3]", "BYTES [N]"]


def test_tritons_client_sends_pngs_and_pixels_and_gets_what_onnx_runtime_gives(
        server: Running, models: tuple[Path, Path], pngs: list[bytes]) -> None:
    expected = onnx_runtime(models[0], pngs)
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        as_bytes = triton.InferInput("image", [len(pngs)], "BYTES")
        as_bytes.set_data_from_numpy(np.array(pngs, dtype=object), binary_data=True)
        pixels = np.stack([load_pixels(png, SIZE, 3) for png in pngs])
        as_pixels = triton.InferInput("image", list(pixels.shape), "UINT8")
        as_pixels.set_data_from_numpy(pixels, binary_data=True)
        for given in (as_bytes, as_pixels):
            found = client.infer(NAME, [given], outputs=[triton.InferRequestedOutput("probabilities",
                                                                                      binary_data=True)])
            assert np.array_equal(found.as_numpy("probabilities"), expected.astype(np.float32))

        broken = triton.InferInput("image", [2], "BYTES")
        broken.set_data_from_numpy(np.array([pngs[0], pngs[1][:60]], dtype=object), binary_data=True)
        with pytest.raises(triton.InferenceServerException) as refused:
            client.infer(NAME, [broken])
        assert refused.value.status() == "400"
        assert "input 'image': element 1 does not decode as a PNG or JPEG image" in refused.value.message()
    finally:
        client.close()


def test_json_takes_base64_images_and_uint8_pixels(server: Running, models: tuple[Path, Path],
                                                   pngs: list[bytes]) -> None:
    expected = onnx_runtime(models[0], pngs)
    pixels = np.stack([load_pixels(png, SIZE, 3) for png in pngs])
    for given in (base64_input(pngs), base64_input(pngs, content_type="base64"),
                  {"name": "image", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.tolist()},
                  {"name": "image", "shape": list(pixels.shape), "datatype": "INT64",
                   "data": pixels.ravel().tolist()}):
        assert np.allclose(answer(infer(server, [given])), expected, atol=1e-6)


def pixels_input(shape: list[int], fill: Any = 0, datatype: str = "UINT8") -> dict[str, Any]:
    return {"name": "image", "shape": shape, "datatype": datatype, "data": [fill] * int(np.prod(shape))}


@pytest.mark.parametrize(("given", "reason"), [
    pytest.param(lambda p: base64_input([p[0], b"\x89PNG\r\n\x1a\n" + b"\0" * 40]),
                 "element 1 does not decode as a PNG or JPEG image", id="corrupt-png"),
    pytest.param(lambda p: base64_input([p[0], p[1][: len(p[1]) // 2]]),
                 "element 1 does not decode as a PNG or JPEG image", id="truncated-png"),
    pytest.param(lambda p: base64_input([b""]), "element 0 is empty (0 bytes)", id="empty"),
    pytest.param(lambda p: {**base64_input([p[0]]), "data": ["not base64!"]}, "element 0 is not base64",
                 id="not-base64"),
    pytest.param(lambda p: base64_input([p[0]], content_type="str"), "content_type \"str\"", id="content-type"),
    pytest.param(lambda p: pixels_input([1, 16, 16, 3]), "pixels of shape [1, 16, 16, 3]; this model takes UINT8 "
                 "[N, 32, 32, 3]", id="pixels-of-another-size"),
    pytest.param(lambda p: pixels_input([2, 32, 32, 3], 256, "INT32"),
                 "element 0 holds 256, not a pixel value", id="pixel-out-of-range"),
    pytest.param(lambda p: pixels_input([1, 32, 32, 3], 0.5, "FP32"), "datatype 'FP32'; this model takes images",
                 id="float-pixels"),
    pytest.param(lambda p: {**pixels_input([1, 32, 32, 3]), "data": [0, 1]}, "must hold 3072 whole numbers",
                 id="too-few-pixels"),
])
def test_an_image_that_does_not_decode_or_pixels_of_the_wrong_shape_are_a_400_naming_the_input(
        server: Running, pngs: list[bytes], given: Any, reason: str) -> None:
    refused = infer(server, [given(pngs)])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"].startswith("input 'image': ")
    assert reason in refused.json()["error"]
    assert infer(server, [base64_input(pngs[:1])]).status_code == 200  # and the server goes on


def test_concurrent_image_requests_are_batched_and_each_gets_its_own_answer(
        server: Running, models: tuple[Path, Path], pngs: list[bytes]) -> None:
    expected = onnx_runtime(models[0], pngs)
    batches = metric(server.url, "modelci_inference_batch_rows_count")
    with ThreadPoolExecutor(len(pngs) * 2) as pool:
        found = list(pool.map(lambda k: answer(infer(server, [base64_input([pngs[k % len(pngs)]])])),
                              range(len(pngs) * 4)))
    assert all(np.allclose(f[0], expected[k % len(pngs)], atol=1e-6) for k, f in enumerate(found))
    assert metric(server.url, "modelci_inference_batch_rows_count") - batches < len(found)  # some shared a batch


def test_a_hot_swap_and_a_deploy_of_an_image_artifact_pass_its_golden_samples(  # type: ignore[no-untyped-def]
        cli, models: tuple[Path, Path], pngs: list[bytes], tmp_path: Path) -> None:
    (a, b), registry = models, f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "a", a, a), parse_reference(f"{registry}:sha-a"), ["sha-a", "prod"], PASSED)
    second = push_files(artifact_of(tmp_path / "b", b, b), parse_reference(f"{registry}:sha-b"), ["sha-b"], PASSED)
    # the first model's golden samples do not match the second model's weights: no server takes it
    broken = push_files(artifact_of(tmp_path / "c", b, a), parse_reference(f"{registry}:sha-c"), ["sha-c"], PASSED)
    watching = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1", name=NAME)
    try:
        done = cli("deploy", f"{registry}:sha-b", "--server", watching.url, "--model-name", NAME, "--timeout", "30")
        assert done.code == 0, done.err
        assert done.out.strip() == second.digest
        versions = requests.get(f"{watching.url}/v2/models/{NAME}", timeout=5).json()["versions"]
        assert versions == [second.digest.split(":")[1][:12]]
        assert np.allclose(answer(infer(watching, [base64_input(pngs)])), onnx_runtime(b, pngs), atol=1e-6)

        began = time.monotonic()
        refused = cli("deploy", f"{registry}:sha-c", "--server", watching.url, "--model-name", NAME,
                      "--timeout", "60")
        assert refused.code == 1
        assert time.monotonic() - began < 30  # the server's refusal ends the wait
        assert f"{watching.url} refused {broken.digest}" in refused.err
        assert resolve(parse_reference(f"{registry}:prod")).digest == second.digest  # type: ignore[union-attr]
    finally:
        watching.process.send_signal(signal.SIGTERM)
        output = watching.process.communicate(timeout=30)[0]
    assert "does not reproduce its golden samples" in output


def profiled(repo: Path, folder: Path) -> Path:
    """The model with the training images' profile beside it, as in an artifact."""
    here = Path.cwd()
    os.chdir(repo)
    try:
        assert main(["data", "check", "--out", str(folder)]) == 0
    finally:
        os.chdir(here)
    shutil.copy(repo / ".modelci/out/model.onnx", folder / "model.onnx")
    return folder


def test_input_drift_of_images_is_measured_online_on_the_data_profiles_statistics(
        models: tuple[Path, Path], shapes_data: Path, tmp_path: Path) -> None:  # noqa: F811
    from test_serve import series

    folder = profiled(models[0], tmp_path / "artifact")
    training = [f.read_bytes() for f in sorted((shapes_data / "train").rglob("*.png"))]
    unchanged = (training * 9)[:500]  # as the training images: the same population

    def darker(png: bytes) -> bytes:  # a dimmer camera, and a larger picture
        with Image.open(io.BytesIO(png)) as image:
            return encoded(image.point(lambda v: v // 2).resize((48, 40)))

    monitored = start(folder, "--drift-images-per-second", "1e6", name=NAME)  # NOTE: every image measured
    try:
        for first in range(0, 500, 100):
            assert infer(monitored, [base64_input(unchanged[first:first + 100])]).status_code == 200
        # pixels sent as a tensor are not measured: they neither count nor look like a drift to empty values
        assert infer(monitored, [pixels_input([50, 32, 32, 3], fill=0)]).status_code == 200
        found = series(requests.get(f"{monitored.url}/metrics", timeout=5).text)
        assert found[f'modelci_input_drift_window_rows{{model="{NAME}"}}'] == 500
        drifted = {key for key, value in found.items() if key.startswith("modelci_input_drifted{") and value}
        measured = {key for key in found if key.startswith("modelci_input_drifted{")}
        assert len(measured) == 10  # width, height, channels, brightness and contrast per channel, sharpness
        assert drifted == set()

        for first in range(0, 500, 100):
            shifted = [darker(png) for png in unchanged[first:first + 100]]
            assert infer(monitored, [base64_input(shifted)]).status_code == 200
        found = series(requests.get(f"{monitored.url}/metrics", timeout=5).text)
        drifted = {key.split('column="')[1].split('"')[0] for key, value in found.items()
                   if key.startswith("modelci_input_drifted{") and value}
        assert {"image.width", "image.height", "image.brightness.red", "image.brightness.green",
                "image.brightness.blue"} <= drifted
        assert "image.channels" not in drifted
    finally:
        monitored.process.send_signal(signal.SIGTERM)
        monitored.process.wait(timeout=30)


def test_a_busy_server_measures_a_sample_of_the_images_for_drift(models: tuple[Path, Path], tmp_path: Path) -> None:
    from test_serve import series

    folder = profiled(models[0], tmp_path / "artifact")
    pngs = [encoded(Image.new("RGB", (32, 32), (i, 255 - i, 128))) for i in range(100)]
    monitored = start(folder, "--drift-images-per-second", "40", name=NAME)
    try:
        began = time.monotonic()
        for _ in range(4):
            assert infer(monitored, [base64_input(pngs)]).status_code == 200  # every image answered
        seconds = time.monotonic() - began
        found = series(requests.get(f"{monitored.url}/metrics", timeout=5).text)
        # a second's worth at once, then 40 a second: not the 400 images sent
        assert 40 <= found[f'modelci_input_drift_window_rows{{model="{NAME}"}}'] <= 40 + 40 * seconds + 1
    finally:
        monitored.process.send_signal(signal.SIGTERM)
        monitored.process.wait(timeout=30)
