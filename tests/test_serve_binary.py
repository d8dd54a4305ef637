"""`modelci serve` and the binary tensor data extension: Triton's own HTTP client against a real server, its answers
against ONNX Runtime in-process, malformed binary bodies (each a 400 that names the problem), and batching."""

from __future__ import annotations

import json
import signal
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import serialize_byte_tensor

from modelci.evaluate.onnx_model import OnnxModel
from test_serve import Running, exported, metric, request_of, rows, start  # noqa: F401  (the module's model, a fixture)

Tensor = tuple[dict[str, Any], bytes]  # an input's JSON and its binary data
NO_HEADER = -1  # `post` sends no Inference-Header-Content-Length


@pytest.fixture(scope="module")
def model(exported: Path) -> OnnxModel:  # noqa: F811
    return OnnxModel(exported / ".modelci/out/model.onnx")


@pytest.fixture(scope="module")
def server(exported: Path) -> Iterator[Running]:  # noqa: F811
    # NOTE: a batch waits 20 ms for more requests, so that concurrent ones share it (the last test counts them)
    running = start(exported / ".modelci/out/model.onnx", "--max-batch", "64", "--max-delay-ms", "20")
    yield running
    running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
    running.process.wait(timeout=30)


def triton_inputs(model: OnnxModel, frame: pd.DataFrame, binary: Callable[[int], bool]) -> list[triton.InferInput]:
    """The rows as Triton's client sends them: each input binary, or JSON, as `binary(its position)` says."""
    inputs = []
    for i, (name, column) in enumerate(model.feeds(frame).items()):
        tensor = triton.InferInput(name, list(column.shape), "BYTES" if column.dtype == np.object_ else "FP32")
        tensor.set_data_from_numpy(column, binary_data=binary(i))
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize(("binary", "outputs", "binary_out"), [
    pytest.param(lambda i: True, None, True, id="binary-in-binary-out-by-binary_data_output"),
    pytest.param(lambda i: True, [False], False, id="binary-in-json-out"),
    pytest.param(lambda i: i % 2 == 0, [True], True, id="mixed-in-binary-out"),
    pytest.param(lambda i: False, [True], True, id="json-in-binary-out"),
])
def test_tritons_client_gets_what_onnx_runtime_gives(server: Running, model: OnnxModel, exported: Path,  # noqa: F811
                                                     binary: Callable[[int], bool], outputs: list[bool] | None,
                                                     binary_out: bool) -> None:
    frame = rows(exported, 12)
    if not all(binary(i) for i in range(len(model.inputs))):
        frame = frame.dropna().reset_index(drop=True)  # NOTE: JSON has no NaN, which Triton's client would write
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        asked = None if outputs is None else [triton.InferRequestedOutput("probabilities", binary_data=b)
                                              for b in outputs]
        result = client.infer("churn", triton_inputs(model, frame, binary), outputs=asked, request_id="b1")
    finally:
        client.close()
    np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict(frame), rtol=1e-6, atol=1e-7)
    (output,) = result.get_response()["outputs"]
    assert result.get_response()["id"] == "b1"
    if binary_out:
        assert output["parameters"] == {"binary_data_size": len(frame) * 2 * 4}
        assert "data" not in output
    else:
        assert "parameters" not in output
        assert len(output["data"]) == len(frame) * 2


def encoded(model: OnnxModel, frame: pd.DataFrame) -> list[Tensor]:
    """Each input as the extension sends it, built by hand: its JSON, with binary_data_size, and its bytes."""
    tensors = []
    for name, column in model.feeds(frame).items():
        strings = column.dtype == np.object_
        data = serialize_byte_tensor(column).item() if strings else column.astype("<f4").tobytes()
        tensors.append(({"name": name, "shape": [len(frame), 1], "datatype": "BYTES" if strings else "FP32",
                         "parameters": {"binary_data_size": len(data)}}, data))
    return tensors


def post(server: Running, tensors: list[Tensor], length: int | str | None = None, tail: bytes = b"",
         **request: Any) -> requests.Response:
    """The request as one body: the JSON, then the inputs' bytes in order (and `tail`); Inference-Header-Content-Length
    is the JSON's length unless `length` says otherwise (NO_HEADER: none)."""
    header = json.dumps({"inputs": [t for t, _ in tensors], **request}).encode()
    length = len(header) if length is None else length
    headers = {} if length == NO_HEADER else {"Inference-Header-Content-Length": str(length)}
    return requests.post(f"{server.url}/v2/models/churn/infer", data=header + b"".join(d for _, d in tensors) + tail,
                         headers=headers, timeout=30)


def changed(tensors: list[Tensor], name: str, raw: bytes | None = None, **fields: Any) -> list[Tensor]:
    """`tensors` with input `name`'s JSON fields replaced, and its bytes (`raw`, with their binary_data_size)."""
    if raw is not None:
        fields = {"parameters": {"binary_data_size": len(raw)}, **fields}
    return [({**t, **fields}, d if raw is None else raw) if t["name"] == name else (t, d) for t, d in tensors]


def sized(tensors: list[Tensor], name: str, size: Any) -> list[Tensor]:
    return changed(tensors, name, parameters={"binary_data_size": size})


def strings(*elements: bytes, length: int | None = None) -> bytes:
    return b"".join(struct.pack("<I", len(e) if length is None else length) + e for e in elements)


@pytest.mark.parametrize(("change", "reason"), [
    pytest.param(lambda t: (changed(t, "tenure_months", shape=[3, 1]), {}),
                 "input 'tenure_months': binary_data_size is 8 bytes; 3 FP32 value(s) take 12", id="size-vs-shape"),
    pytest.param(lambda t: (changed(t, "tenure_months", datatype="FP64"), {}),
                 "input 'tenure_months': binary_data_size is 8 bytes; 2 FP64 value(s) take 16",
                 id="size-vs-datatype"),
    pytest.param(lambda t: (t, {"length": 10 ** 6}),
                 "the Inference-Header-Content-Length header says 1000000 bytes of JSON, past the end of the",
                 id="header-length-past-the-body"),
    pytest.param(lambda t: (t, {"length": "-5"}), "the Inference-Header-Content-Length header is '-5', not a length",
                 id="negative-header-length"),
    pytest.param(lambda t: (t, {"length": "12.5"}), "the Inference-Header-Content-Length header is '12.5', not a",
                 id="non-integer-header-length"),
    pytest.param(lambda t: (sized(t, "tenure_months", -8), {}),
                 "input 'tenure_months': binary_data_size is -8, not a size in bytes", id="negative-size"),
    pytest.param(lambda t: (sized(t, "tenure_months", 8.5), {}),
                 "input 'tenure_months': binary_data_size is 8.5, not a size in bytes", id="non-integer-size"),
    pytest.param(lambda t: (sized(t, "tenure_months", "8"), {}),
                 "input 'tenure_months': binary_data_size is \"8\", not a size in bytes", id="size-as-a-string"),
    pytest.param(lambda t: (changed(t, "contract", raw=strings(b"one-year", b"x", length=1000)), {}),
                 "input 'contract': row 0 is 1000 bytes long, past the end of the input's 17 bytes",
                 id="bytes-element-past-its-buffer"),
    pytest.param(lambda t: (changed(t, "contract", raw=strings(b"one-year") + b"\x05\x00"), {}),
                 "input 'contract': row 1's 4-byte length runs past the end of the input's 14 bytes",
                 id="bytes-length-prefix-cut"),
    pytest.param(lambda t: (changed(t, "contract", raw=strings(b"one-year", b"two-year") + b"??"), {}),
                 "input 'contract': 2 byte(s) are left after the 2 element(s) the shape holds",
                 id="bytes-left-over"),
    pytest.param(lambda t: (changed(t, "contract", raw=strings(b"\xff\xfe", b"one-year")), {}),
                 "input 'contract': row 0 is not UTF-8 text", id="bytes-not-utf8"),
    pytest.param(lambda t: (sized(t, "num_products", 4096), {}),
                 "input 'num_products': binary_data_size 4096 runs past the end of the body", id="sizes-past-the-body"),
    pytest.param(lambda t: (t, {"tail": b"\0" * 3}),
                 "3 byte(s) of binary data after the JSON header belong to no input", id="bytes-for-no-input"),
    pytest.param(lambda t: (changed(t, "tenure_months", data=[1, 2]), {}),
                 "input 'tenure_months': both 'data' and binary_data_size", id="data-and-binary"),
    pytest.param(lambda t: (t, {"length": NO_HEADER}),
                 "binary data after the JSON needs the Inference-Header-Content-Length header", id="no-header"),
    pytest.param(lambda t: (changed(t, "tenure_months", raw=np.array([np.inf, 1], dtype="<f4").tobytes()), {}),
                 "input 'tenure_months': row 0 holds inf, not a finite number", id="infinity"),
    pytest.param(lambda t: (changed(t, "tenure_months", parameters=[8]), {}),
                 "input 'tenure_months': 'parameters' must be an object", id="parameters-not-an-object"),
    pytest.param(lambda t: (t, {"outputs": [{"name": "probabilities", "parameters": {"binary_data": "yes"}}]}),
                 "output 'probabilities': the parameter binary_data is \"yes\"; it must be true or false",
                 id="binary_data-not-a-boolean"),
])
def test_every_malformed_binary_request_is_a_400_with_a_json_reason(
        server: Running, model: OnnxModel, exported: Path, change: Any, reason: str) -> None:  # noqa: F811
    tensors, options = change(encoded(model, rows(exported, 2)))
    answer = post(server, tensors, **options)
    assert (answer.status_code, answer.headers["content-type"]) == (400, "application/json"), answer.text
    assert reason in answer.json()["error"]


def test_other_datatypes_and_nan_go_in_as_json_values_do(server: Running, model: OnnxModel,
                                                          exported: Path) -> None:  # noqa: F811
    """FP64 bytes for an FP32 input go in by the rule JSON numbers follow; NaN is the binary form's empty value."""
    frame = rows(exported, 2)
    tensors = changed(encoded(model, frame), "tenure_months", np.array([7, 30], dtype="<f8").tobytes(),
                      datatype="FP64")
    tensors = changed(tensors, "total_charges", np.array([np.nan, 12.5], dtype="<f4").tobytes())
    answer = post(server, tensors, outputs=[{"name": "probabilities"}])
    assert answer.status_code == 200, answer.text
    assert "inference-header-content-length" not in answer.headers  # JSON outputs: a plain JSON answer
    as_json = request_of(frame.assign(tenure_months=[7, 30], total_charges=[None, 12.5]), model)
    assert answer.json()["outputs"] == server.infer(as_json).json()["outputs"]


def test_a_binary_answer_is_the_json_then_the_outputs_bytes(server: Running, model: OnnxModel,
                                                            exported: Path) -> None:  # noqa: F811
    frame = rows(exported, 3)
    answer = post(server, encoded(model, frame), parameters={"binary_data_output": True})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.content[:length])
    assert header["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [3, 2],
                                  "parameters": {"binary_data_size": 24}}]
    got = np.frombuffer(answer.content[length:], dtype="<f4").reshape(3, 2)
    np.testing.assert_allclose(got, model.predict(frame), rtol=1e-6, atol=1e-7)


def concurrently(server: Running, model: OnnxModel, binary: list[pd.DataFrame],
                 json_frames: list[pd.DataFrame]) -> tuple[list[np.ndarray], float]:
    """`binary` sent at once by Triton's client, `json_frames` at the same time as JSON; the answers in order,
    and how many batches the server ran for them."""
    before = metric(server.url, "modelci_inference_batch_rows_count")
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}", concurrency=len(binary))
    try:
        with ThreadPoolExecutor(max(len(json_frames), 1)) as pool:
            pending = [client.async_infer("churn", triton_inputs(model, f, lambda i: True)) for f in binary]
            answers = list(pool.map(lambda f: server.infer(request_of(f, model)), json_frames))
            found = [p.get_result().as_numpy("probabilities") for p in pending]
    finally:
        client.close()
    for answer in answers:
        assert answer.status_code == 200, answer.text
    found += [np.array(a.json()["outputs"][0]["data"]).reshape(-1, 2) for a in answers]
    return found, metric(server.url, "modelci_inference_batch_rows_count") - before


@pytest.mark.parametrize("json_requests", [0, 8], ids=["binary", "binary-and-json"])
def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
        server: Running, model: OnnxModel, exported: Path, json_requests: int) -> None:  # noqa: F811
    frames = [rows(exported, 3, start_row=3 * i) for i in range(16 + json_requests)]
    answers, batches = concurrently(server, model, frames[:16], frames[16:])
    for frame, got in zip(frames, answers, strict=True):
        np.testing.assert_allclose(got, model.predict(frame), rtol=1e-6, atol=1e-7)
    assert batches < len(frames)  # several requests shared a batch
