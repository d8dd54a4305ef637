"""`modelci serve` as a process: the Open Inference Protocol over real HTTP, its answers against
ONNX Runtime in-process, bad requests, batching under concurrency, metrics and a graceful stop."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from conftest import copy_example
from loopback import free_port, stop, wait_until_ready
from modelci.cli import main
from modelci.evaluate.onnx_model import OnnxModel

MODELCI = [sys.executable, "-m", "modelci"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """A trained and exported churn model, once for the module."""
    return train_and_export(tmp_path_factory.mktemp("serve") / "churn", small_data, seed=0)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """The same model trained with another seed: other weights, the same inputs."""
    return train_and_export(tmp_path_factory.mktemp("serve") / "churn", small_data, seed=1)


def train_and_export(repo: Path, small_data: Path, seed: int) -> Path:
    import os

    copy_example(repo, small_data, epochs=2)
    here = Path.cwd()
    os.chdir(repo)
    try:
        assert main(["train", "--seed", str(seed)]) == 0
        assert main(["export"]) == 0
    finally:
        os.chdir(here)
    return repo



class Running:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process, self.port, self.url = process, port, f"http://127.0.0.1:{port}"

    def infer(self, body: Any, model: str = "churn") -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(f"{self.url}/v2/models/{model}/infer", data=data, timeout=30)


def start(model: Path | str, *options: str, name: str = "churn", drain: str = "0") -> Running:
    """`modelci serve` on a free port, ready; with no drain on SIGTERM unless asked, so that stopping it is quick."""
    port = free_port()
    process = subprocess.Popen([*MODELCI, "serve", "--model", str(model), "--name", name, "--port", str(port),
                                "--drain-period", drain, *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_ready(process, f"http://127.0.0.1:{port}/v2/health/ready", "the server")
    return Running(process, port)


@pytest.fixture(scope="module")
def server(exported: Path) -> Iterator[Running]:
    running = start(exported / ".modelci/out/model.onnx", "--max-batch", "64")
    yield running
    running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
    running.process.wait(timeout=30)


def rows(exported: Path, count: int, start_row: int = 0) -> pd.DataFrame:
    return pd.read_parquet(exported / "data/eval.parquet").iloc[start_row:start_row + count].reset_index(drop=True)


def request_of(frame: pd.DataFrame, model: OnnxModel) -> dict[str, Any]:
    inputs = []
    for spec in model.inputs:
        column = frame[spec.name]
        if spec.kind == "string":
            inputs.append({"name": spec.name, "shape": [len(frame), 1], "datatype": "BYTES",
                           "data": column.astype(str).tolist()})
        else:
            values = [None if pd.isna(v) else float(v) for v in column]
            inputs.append({"name": spec.name, "shape": [len(frame), 1], "datatype": "FP64", "data": values})
    return {"id": "r1", "inputs": inputs}


def test_metadata_and_health(server: Running, exported: Path) -> None:
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{server.url}/v2", timeout=5).json()["name"] == "modelci"
    found = requests.get(f"{server.url}/v2/models/churn", timeout=5).json()
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    assert [i["name"] for i in found["inputs"]] == [i.name for i in model.inputs]
    assert found["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]
    version = found["versions"][0]
    assert requests.get(f"{server.url}/v2/models/churn/versions/{version}/ready", timeout=5).json()["ready"]


def test_answers_equal_onnx_runtime_in_process(server: Running, exported: Path) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    frame = rows(exported, 20)
    answer = server.infer(request_of(frame, model))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "r1"
    (output,) = body["outputs"]
    assert output["shape"] == [20, 2]
    np.testing.assert_allclose(np.array(output["data"]).reshape(20, 2), model.predict(frame), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("change", "status", "message"), [
    (lambda r: "{not json", 400, "the body is not JSON"),
    (lambda r: {**r, "inputs": r["inputs"][1:]}, 400, "missing input(s) tenure_months"),
    (lambda r: {**r, "inputs": [*r["inputs"], {**r["inputs"][0], "name": "extra"}]}, 400, "unknown input(s) extra"),
    (lambda r: {**r, "inputs": [{**r["inputs"][0], "datatype": "BYTES"}, *r["inputs"][1:]]}, 400,
     "input 'tenure_months': datatype 'BYTES'; this model takes a number type"),
    (lambda r: {**r, "inputs": [{**r["inputs"][0], "shape": [3, 1]}, *r["inputs"][1:]]}, 400,
     "input 'tenure_months': 2 values for shape [3, 1]"),
    (lambda r: {**r, "inputs": [{**r["inputs"][0], "data": ["x", 1]}, *r["inputs"][1:]]}, 400,
     "input 'tenure_months': row 0 holds \"x\", not a finite number"),
    (lambda r: {**r, "outputs": [{"name": "label"}]}, 400, "unknown output(s) label"),
])
def test_a_bad_request_is_a_400_that_says_what_is_wrong(server: Running, exported: Path, change: Any, status: int,
                                                        message: str) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    answer = server.infer(change(request_of(rows(exported, 2), model)))
    assert answer.status_code == status
    assert message in answer.json()["error"]


def with_input(request: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    return {**request, "inputs": [{**i, **fields} if i["name"] == name else i for i in request["inputs"]]}


def strict_json(text: str) -> Any:
    """JSON as its grammar says: NaN and Infinity, which Python writes and reads by default, are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(("change", "reason"), [
    pytest.param(lambda r: with_input(r, "contract", data=["\ud800", "Month-to-month"]),
                 "input 'contract': row 0 holds \"\\ud800\", with a lone UTF-16 surrogate", id="lone-surrogate"),
    pytest.param(lambda r: {**r, "id": "\udc00"}, "'id' holds \"\\udc00\", with a lone UTF-16 surrogate",
                 id="lone-surrogate-in-id"),
    pytest.param(lambda r: with_input(r, "tenure_months", data=[10 ** 400, 1]),
                 "input 'tenure_months': row 0 holds 1000000000", id="integer-beyond-any-float"),
    pytest.param(lambda r: with_input(r, "tenure_months", data=[1e39, 1]),
                 "input 'tenure_months': row 0 holds 1e+39, beyond the range of the model's FP32", id="beyond-fp32"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="FP16", data=[1, 70000]),
                 "row 1 holds 70000, beyond the range of FP16", id="beyond-the-datatype-sent"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="INT64", data=[1, 2 ** 63]),
                 "row 1 holds 9223372036854775808, outside INT64's range", id="beyond-int64"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="UINT8", data=[-1, 2]),
                 "row 0 holds -1, outside UINT8's range [0, 255]", id="negative-unsigned"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="INT64", data=[2 ** 24 + 1, 2]),
                 "row 0 holds 16777217, which the model's FP32 cannot hold exactly", id="int64-not-exact-in-fp32"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="INT64", data=[1.5, 2]),
                 "row 0 holds 1.5, not an integer", id="fraction-in-int64"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="BOOL", data=[True, False]),
                 "datatype 'BOOL'; this model takes a number type (FP32, or another whose values FP32 holds; true "
                 "and false are not numbers)", id="bool-datatype-for-a-number"),
    pytest.param(lambda r: with_input(r, "tenure_months", data=[True, 1]),
                 "row 0 holds true, not a finite number", id="boolean-value-for-a-number"),
    pytest.param(lambda r: with_input(r, "tenure_months", data=[float("nan"), 1]),
                 "row 0 holds NaN, not a finite number (null for empty)", id="nan-literal"),
    pytest.param(lambda r: with_input(r, "tenure_months", datatype="FLOAT"),
                 "datatype 'FLOAT' is not one of the protocol's (BOOL,", id="no-such-datatype"),
    pytest.param(lambda r: with_input(r, "tenure_months", shape=[2], data=[[1], [2]]),
                 "input 'tenure_months': 'data' is nested deeper than shape [2]", id="nested-deeper-than-1d-shape"),
    pytest.param(lambda r: with_input(r, "contract", data=[[["a"]], [["b"]]]),
                 "input 'contract': 'data' is nested deeper than shape [2, 1]", id="nested-deeper-than-2d-shape"),
    pytest.param(lambda r: '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}",
                 "the body nests arrays or objects deeper than", id="nested-deeper-than-json-is-read"),
])
def test_every_client_mistake_is_a_400_with_a_json_reason(server: Running, exported: Path, change: Any,
                                                         reason: str) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    answer = server.infer(change(request_of(rows(exported, 2), model)))
    assert (answer.status_code, answer.headers["content-type"]) == (400, "application/json"), answer.text
    assert reason in strict_json(answer.text)["error"]


@pytest.mark.parametrize(("datatype", "data"), [
    pytest.param("INT64", [2 ** 24, 3], id="int64-fp32-holds-exactly"),
    pytest.param("INT8", [-5, 7], id="int8"),
    pytest.param("UINT64", [2 ** 63, 0], id="uint64-a-power-of-two"),
    pytest.param("FP32", [0.1, None], id="fp32-and-null"),
    pytest.param("FP16", [1.5, 2], id="fp16"),
])
def test_numbers_of_another_datatype_go_in_when_the_models_type_holds_them(
        server: Running, exported: Path, datatype: str, data: list[Any]) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    request = request_of(rows(exported, 2), model)
    converted = server.infer(with_input(request, "tenure_months", datatype=datatype, data=data))
    as_fp64 = server.infer(with_input(request, "tenure_months", datatype="FP64",
                                      data=[None if v is None else float(v) for v in data]))
    assert converted.status_code == 200, converted.text
    assert strict_json(converted.text)["outputs"] == strict_json(as_fp64.text)["outputs"]


def test_too_many_rows_an_oversized_body_and_unknown_models(server: Running, exported: Path) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    big = server.infer(request_of(rows(exported, 65), model))
    assert (big.status_code, big.json()["error"]) == (400, "65 rows in one request; this server takes at most 64")
    huge = server.infer(b'{"inputs": [' + b" " * (17 << 20) + b"]}")
    assert huge.status_code == 413
    assert server.infer(request_of(rows(exported, 1), model), model="other").status_code == 404
    wrong = requests.get(f"{server.url}/v2/models/churn/versions/0000/ready", timeout=5)
    assert wrong.status_code == 404
    assert "it is at" in wrong.json()["error"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(exported: Path) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    batched = start(exported / ".modelci/out/model.onnx", "--max-delay-ms", "20")
    try:
        frames = [rows(exported, 3, start_row=3 * i) for i in range(32)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda f: batched.infer(request_of(f, model)), frames))
        for frame, answer in zip(frames, answers, strict=True):
            got = np.array(answer.json()["outputs"][0]["data"]).reshape(3, 2)
            np.testing.assert_allclose(got, model.predict(frame), rtol=1e-6, atol=1e-7)
        metrics = requests.get(f"{batched.url}/metrics", timeout=5).text
        batches = float(next(line.split()[-1] for line in metrics.splitlines()
                             if line.startswith("modelci_inference_batch_rows_count")))
        assert batches < 32  # several requests shared a batch
        assert 'modelci_inference_requests_total{model="churn",status="200"' in metrics
        assert "modelci_model_info{" in metrics
    finally:
        batched.process.send_signal(signal.SIGTERM)
        batched.process.wait(timeout=30)


def test_a_request_with_a_lone_surrogate_fails_alone_among_concurrent_clients(exported: Path) -> None:
    """Eight clients ask at once, in waves, so that each batch holds one bad request beside seven good ones."""
    import threading

    model = OnnxModel(exported / ".modelci/out/model.onnx")
    good = request_of(rows(exported, 2), model)
    bad = with_input(good, "contract", data=["Month-to-month\udfff", "Month-to-month"])
    batched = start(exported / ".modelci/out/model.onnx", "--max-delay-ms", "50")
    waves, clients = 4, 8
    together = threading.Barrier(clients, timeout=30)

    def client(which: int) -> list[int]:
        statuses = []
        for _ in range(waves):
            together.wait()
            statuses.append(batched.infer(bad if which == 0 else good).status_code)
        return statuses

    try:
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(client, range(clients)))
        batches = metric(batched.url, "modelci_inference_batch_rows_count")
    finally:
        stop(batched.process)
    assert answers[1:] == [[200] * waves] * (clients - 1)  # not one good request failed beside a bad one
    assert answers[0] == [400] * waves
    assert batches < waves * clients  # the bad requests were batched with good ones


def test_sigterm_lets_a_request_in_flight_finish(exported: Path) -> None:
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    slow = start(exported / ".modelci/out/model.onnx", "--max-delay-ms", "500")  # each batch waits half a second
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.infer, request_of(rows(exported, 2), model))
        time.sleep(0.2)
        slow.process.send_signal(signal.SIGTERM)
        assert pending.result().status_code == 200
    assert slow.process.wait(timeout=30) == 143  # stopped by SIGTERM, as the README's exit codes say


def test_a_model_that_does_not_exist_or_is_not_onnx_stops_at_start(tmp_path: Path) -> None:
    missing = subprocess.run([*MODELCI, "serve", "--model", f"oci:{tmp_path}/reg:prod"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    broken = subprocess.run([*MODELCI, "serve", "--model", str(not_onnx)], capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2
    assert "not a model ONNX Runtime can load" in broken.stderr


def test_the_openapi_document_is_valid_and_covers_every_endpoint(server: Running) -> None:
    from openapi_spec_validator import validate

    found = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    validate(found)
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}", "/v2/models/{model_name}/ready",
            "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer",
            "/metrics"} <= set(found["paths"])


def artifact_of(folder: Path, model: Path, samples: Path) -> list[Path]:
    folder.mkdir()
    shutil.copy(model / ".modelci/out/model.onnx", folder / "model.onnx")
    shutil.copy(samples / ".modelci/out/samples.json", folder / "samples.json")
    return sorted(folder.iterdir())


def series(exposition: str) -> dict[str, float]:
    """Every sample of a Prometheus exposition, by its name and labels as written."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines() if line and not line.startswith("#")}


def metric(url: str, name: str) -> float:
    lines = requests.get(f"{url}/metrics", timeout=5).text.splitlines()
    return float(next((line.split()[-1] for line in lines if line.startswith(name)), "0"))


def test_watch_swaps_a_new_model_in_under_load_and_never_a_broken_one(exported: Path, retrained: Path,
                                                                      tmp_path: Path) -> None:
    import threading

    from modelci.registry.artifact import push_files
    from modelci.registry.reference import parse_reference

    prod = parse_reference(f"oci:{tmp_path / 'registry'}:prod")
    push_files(artifact_of(tmp_path / "a", exported, exported), prod, ["prod"], {})
    first, second = (OnnxModel(m / ".modelci/out/model.onnx") for m in (exported, retrained))
    frame = rows(exported, 4)
    expected = [first.predict(frame), second.predict(frame)]
    watching = start(f"oci:{tmp_path / 'registry'}:prod", "--watch", "--poll-interval", "0.1")
    try:
        version = requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"][0]
        stop = threading.Event()
        answers: list[list[requests.Response]] = [[] for _ in range(4)]  # each client's, in the order it asked

        def keep_asking(mine: list[requests.Response]) -> None:
            while not stop.is_set():
                mine.append(watching.infer(request_of(frame, first)))

        clients = [threading.Thread(target=keep_asking, args=(mine,)) for mine in answers]
        for client in clients:
            client.start()
        time.sleep(0.3)
        push_files(artifact_of(tmp_path / "b", retrained, retrained), prod, ["prod"], {})
        for _ in range(200):
            swapped = requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"][0]
            if swapped != version:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for client in clients:
            client.join()
        assert swapped != version
        for mine in answers:
            assert [a.status_code for a in mine] == [200] * len(mine)  # not one request failed
            served = [np.array(a.json()["outputs"][0]["data"]).reshape(4, 2) for a in mine]
            which = [next(i for i, e in enumerate(expected) if np.allclose(got, e, atol=1e-6)) for got in served]
            assert which[0] == 0
            assert which[-1] == 1
            assert which == sorted(which)  # once a client got the new model, never the old one again

        # the old model's samples do not match the new weights: loaded beside, refused, counted
        push_files(artifact_of(tmp_path / "broken", exported, retrained), prod, ["prod"], {})
        for _ in range(200):
            if metric(watching.url, 'modelci_model_loads_total{outcome="failed"}') == 1:
                break
            time.sleep(0.05)
        assert metric(watching.url, 'modelci_model_loads_total{outcome="failed"}') == 1
        assert requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"] == [swapped]
        assert watching.infer(request_of(frame, first)).status_code == 200
    finally:
        watching.process.send_signal(signal.SIGTERM)
        output = watching.process.communicate(timeout=30)[0]
    assert "is not swapped in, the model served stays" in output
    assert "does not reproduce its golden samples" in output


def test_predictions_and_input_drift_are_measured_online_and_promtool_accepts_the_metrics(
        exported: Path, tmp_path: Path) -> None:
    import os

    model = OnnxModel(exported / ".modelci/out/model.onnx")
    folder = tmp_path / "artifact"
    here = Path.cwd()
    os.chdir(exported)
    try:  # the training data's profile, beside the model as in an artifact
        assert main(["data", "check", "--out", str(folder)]) == 0
    finally:
        os.chdir(here)
    shutil.copy(exported / ".modelci/out/model.onnx", folder / "model.onnx")
    monitored = start(folder, "--max-batch", "128")
    try:
        unchanged = rows(exported, 500)  # as the training data: another sample of the same population
        for start_row in range(0, 500, 100):
            assert monitored.infer(request_of(unchanged.iloc[start_row:start_row + 100], model)).status_code == 200
        exposition = requests.get(f"{monitored.url}/metrics", timeout=5).text
        promtool = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True,
                                  text=True, check=False)
        assert promtool.returncode == 0, promtool.stdout + promtool.stderr

        found = series(exposition)
        predicted = model.predict(unchanged)[:, 1]
        version = requests.get(f"{monitored.url}/v2/models/churn", timeout=5).json()["versions"][0]
        labels = f'model="churn",version="{version}"'
        assert found[f"modelci_prediction_count{{{labels}}}"] == 500
        assert found[f'modelci_prediction_bucket{{le="0.5",{labels}}}'] == (predicted <= 0.5).sum()
        assert found[f"modelci_prediction_sum{{{labels}}}"] == pytest.approx(predicted.sum(), rel=1e-6)
        assert found[f"modelci_model_run_duration_seconds_count{{{labels}}}"] == 5
        assert found['modelci_input_drift_window_rows{model="churn"}'] == 500
        inputs = [spec.name for spec in model.inputs]
        assert [found[f'modelci_input_drifted{{column="{c}",model="churn"}}'] for c in inputs] == [0] * len(inputs)

        shifted = unchanged.assign(monthly_charges=unchanged["monthly_charges"] * 1.5)  # a price rise
        for start_row in range(0, 500, 100):
            assert monitored.infer(request_of(shifted.iloc[start_row:start_row + 100], model)).status_code == 200
        found = series(requests.get(f"{monitored.url}/metrics", timeout=5).text)
        assert {c for c in inputs if found[f'modelci_input_drifted{{column="{c}",model="churn"}}']} == \
            {"monthly_charges"}
        assert found['modelci_input_drift{column="monthly_charges",method="psi",model="churn"}'] > 0.2
        assert found['modelci_input_drift_window_rows{model="churn"}'] == 1000
    finally:
        stop(monitored.process)


def test_a_pulled_artifact_reports_its_digest_and_a_changed_model_its_own(exported: Path, tmp_path: Path) -> None:
    import hashlib

    from modelci.registry.artifact import pull, push_files
    from modelci.registry.reference import parse_reference
    from modelci.serve.cli import _digest_of

    reference = parse_reference(f"oci:{tmp_path / 'registry'}:v1")
    pushed = push_files(artifact_of(tmp_path / "artifact", exported, exported), reference, ["v1"], {})
    pull(reference, tmp_path / "pulled")  # as KServe's storage initializer does, for `serve --model FOLDER`
    assert _digest_of(tmp_path / "pulled" / "model.onnx") == pushed.digest
    changed = tmp_path / "pulled" / "model.onnx"
    changed.write_bytes(changed.read_bytes() + b"\0")  # no longer the file the manifest names
    assert _digest_of(changed) == "sha256:" + hashlib.sha256(changed.read_bytes()).hexdigest()


def test_an_artifact_the_registry_cannot_give_yet_is_tried_again_not_refused(exported: Path, retrained: Path,
                                                                              tmp_path: Path) -> None:
    from modelci.registry.artifact import WEIGHT_FILE, promote, push_files
    from modelci.registry.layout import OciLayout
    from modelci.registry.reference import parse_reference

    registry = f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:prod"), ["prod"], {})
    second = push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:next"),
                        ["next"], {})
    # the new model's weights are not in the registry (yet): a push still under way, or a store that failed a read
    layout = OciLayout(tmp_path / "registry")
    manifest = json.loads(layout.manifest(second.digest) or b"{}")
    (weights,) = [layer for layer in manifest["layers"]
                  if layer["annotations"]["org.cncf.model.filepath"] == WEIGHT_FILE]
    blob = layout.blob_path(weights["digest"])
    blob.rename(tmp_path / "weights")
    watching = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    try:
        first = requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"]
        promote(parse_reference(f"{registry}:next"), ["prod"])
        time.sleep(1.0)  # several looks at the tag
        assert requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"] == first
        assert metric(watching.url, 'modelci_model_loads_total{outcome="failed"}') == 0  # not refused
        (tmp_path / "weights").rename(blob)  # the blob arrives: the next look swaps the model in
        for _ in range(100):
            if requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"] != first:
                break
            time.sleep(0.1)
        assert requests.get(f"{watching.url}/v2/models/churn", timeout=5).json()["versions"] == \
            [second.digest.split(":")[1][:12]]
    finally:
        watching.process.send_signal(signal.SIGTERM)
        output = watching.process.communicate(timeout=30)[0]
    assert "could not be read, tried again at the next look (the model served stays)" in output


def test_a_fast_models_lone_small_batch_runs_on_the_event_loop_and_a_slow_ones_never_does() -> None:
    import asyncio
    import threading

    from modelci.serve.batching import Batcher

    def model(seconds: float) -> tuple[Any, list[str]]:
        ran_on: list[str] = []

        def run(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            ran_on.append(threading.current_thread().name)
            if seconds:
                time.sleep(seconds)
            return {"y": columns["x"] * 2}

        return run, ran_on

    async def ask(run: Any, times: int, rows: int = 1) -> None:
        batcher = Batcher(64)
        batcher.start()
        try:
            for _ in range(times):
                found = await batcher.infer(run, {"x": np.arange(rows, dtype=np.float64)}, rows)
                assert found["y"].tolist() == [2.0 * i for i in range(rows)]
        finally:
            await batcher.stop()

    fast, fast_ran_on = model(0.0)
    asyncio.run(ask(fast, 3))
    assert fast_ran_on[0].startswith("modelci-onnxruntime")  # timed first, in the worker thread
    assert fast_ran_on[1:] == [threading.main_thread().name] * 2
    slow, slow_ran_on = model(0.002)  # NOTE: 2 ms a batch: the event loop owes that time to other requests
    asyncio.run(ask(slow, 3))
    assert all(name.startswith("modelci-onnxruntime") for name in slow_ran_on)
    big, big_ran_on = model(0.0)
    asyncio.run(ask(big, 2, rows=16))
    assert all(name.startswith("modelci-onnxruntime") for name in big_ran_on)


def test_requests_of_two_models_that_alternate_in_the_queue_go_in_one_batch_per_model() -> None:
    # a canary's requests among the stable model's: two full batches, not one per run of one model's requests
    import asyncio

    from modelci.serve.batching import Batcher

    batches: dict[str, list[int]] = {"stable": [], "canary": []}

    def model(name: str) -> Any:
        def run(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            batches[name].append(len(columns["x"]))
            return {"y": columns["x"] + (0 if name == "stable" else 100)}

        return run

    stable, canary = model("stable"), model("canary")

    async def ask() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(64)
        asking = [asyncio.ensure_future(batcher.infer(stable if i % 2 == 0 else canary,
                                                      {"x": np.array([float(i)])}, 1)) for i in range(8)]
        await asyncio.sleep(0)  # NOTE: every request queued before the batcher looks
        batcher.start()
        try:
            return await asyncio.gather(*asking)
        finally:
            await batcher.stop()

    answers = asyncio.run(ask())
    assert [float(a["y"][0]) for a in answers] == [0, 101, 2, 103, 4, 105, 6, 107]  # each its own model's answer
    assert batches == {"stable": [4], "canary": [4]}
