"""`modelci serve` when something goes wrong around one request: a request the model fails on, in a batch
with others; a stop by SIGTERM under keep-alive load; clients that hold connections open. Real server
processes on loopback, a real ONNX model made here (a table lookup that ONNX Runtime refuses for an index
out of range), real signals and sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from loopback import stop
from test_serve import MODELCI, Running, series, start

TABLE = np.arange(10, dtype=np.float32) * 10  # value = TABLE[index] + x


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model with an INT64, an FP32 and a BYTES input: value = TABLE[index] + x, and the word back."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def tensor(name: str, kind: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, kind, ["batch", 1])

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["looked_up"], axis=0),
         helper.make_node("Add", ["looked_up", "x"], ["value"]),
         helper.make_node("Identity", ["word"], ["word_back"])],
        "lookup", [tensor("index", TensorProto.INT64), tensor("x", TensorProto.FLOAT),
                   tensor("word", TensorProto.STRING)],
        [tensor("value", TensorProto.FLOAT), tensor("word_back", TensorProto.STRING)],
        [numpy_helper.from_array(TABLE, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("lookup") / "model.onnx"
    onnx.save(model, str(path))
    return path


def ask(index: int, x: float = 0.5) -> dict[str, Any]:
    return {"inputs": [{"name": "index", "shape": [1, 1], "datatype": "INT64", "data": [index]},
                       {"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]},
                       {"name": "word", "shape": [1, 1], "datatype": "BYTES", "data": ["w"]}]}


@contextmanager
def serving(model: Path, *options: str, drain: str = "0") -> Iterator[Running]:
    running = start(model, *options, name="lookup", drain=drain)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            stop(running.process)


def test_a_request_the_model_fails_on_fails_alone_and_its_batch_is_answered(lookup: Path) -> None:
    """Index 12 passes every check (a valid INT64) and fails in ONNX Runtime; eight clients ask at once, one
    with it, so that it shares a batch with seven good requests each time."""
    waves, clients = 4, 8
    together = threading.Barrier(clients, timeout=30)

    def client(server: Running, which: int) -> list[requests.Response]:
        answers = []
        for _ in range(waves):
            together.wait()
            answers.append(server.infer(ask(12 if which == 0 else which), model="lookup"))
        return answers

    with serving(lookup, "--max-delay-ms", "100") as server, ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda which: client(server, which), range(clients)))
        found = series(requests.get(f"{server.url}/metrics", timeout=5).text)
    for failed in answers[0]:
        assert failed.status_code == 500
        assert "indices element out of data bounds" in failed.json()["error"]
    for which, mine in enumerate(answers[1:], start=1):
        assert [a.status_code for a in mine] == [200] * waves
        assert [a.json()["outputs"][0]["data"] for a in mine] == [[TABLE[which] + 0.5]] * waves
    # some runs held several requests (the batches), so the bad request had neighbours to fail
    assert found["modelci_inference_batch_rows_count"] > found['modelci_inference_batch_rows_bucket{le="1.0"}']
    assert sum(v for k, v in found.items() if k.startswith('modelci_inference_requests_total{model="lookup",'
                                                           'status="500"')) == waves


def send_half(port: int, body: bytes) -> socket.socket:
    """An infer request whose headers and first half of the body are sent: taken by the server, not complete."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST /v2/models/lookup/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    connection.sendall(head + body[:len(body) // 2])
    return connection


def finish(connection: socket.socket, body: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send the rest and read the answer to the end of the connection: (status line, headers, body)."""
    connection.sendall(body[len(body) // 2:])
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    connection.close()
    head, _, answer = received.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, answer


def refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_sigterm_drains_then_closes_and_keep_alive_clients_lose_nothing(lookup: Path) -> None:
    """Four keep-alive clients ask without a pause; SIGTERM: readiness turns 503 at once while every request
    is still answered (each saying Connection: close), then the listener closes, and a request taken before
    it closed still gets its answer."""
    drain = 1.5
    with serving(lookup, "--max-delay-ms", "50", drain=str(drain)) as server:
        drained_under_load(server, drain)


def drained_under_load(serving: Running, drain: float) -> None:
    ready = f"{serving.url}/v2/health/ready"
    began = time.monotonic()
    signalled = began + 0.5
    clients_stop = signalled + drain - 0.4  # NOTE: the load balancer has moved away by the drain's end
    answers: list[tuple[float, float, int, str]] = []  # (when sent, when answered, status, Connection header)

    def client() -> None:
        with requests.Session() as session:
            while (sent := time.monotonic()) < clients_stop:
                answer = session.post(f"{serving.url}/v2/models/lookup/infer", data=json.dumps(ask(3)), timeout=10)
                answers.append((sent, time.monotonic(), answer.status_code, answer.headers.get("connection", "")))

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(client) for _ in range(4)]
        time.sleep(signalled - time.monotonic())
        serving.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
        readiness = []
        while time.monotonic() < clients_stop:
            readiness.append(requests.get(ready, timeout=5).status_code)
            time.sleep(0.05)
        body = json.dumps(ask(4)).encode()
        taken = send_half(serving.port, body)
        for client_done in running:
            client_done.result()  # NOTE: a connection error in a client fails the test here
    closed = None
    while closed is None and time.monotonic() < signalled + drain + 5:
        closed = time.monotonic() if refused(ready) else None
        time.sleep(0.05)
    status, headers, answer = finish(taken, body)

    assert readiness
    assert set(readiness) == {503}
    assert closed is not None
    assert closed - signalled >= drain - 0.1
    assert [s for _, _, s, _ in answers] == [200] * len(answers)
    assert {c for _, t, _, c in answers if t < signalled} == {""}  # keep-alive before SIGTERM
    assert {c for t, _, _, c in answers if t > signalled + 0.1} == {"close"}  # told to leave during the drain
    assert len([t for t, _, _, _ in answers if t > signalled + 0.1]) >= 8
    assert (status, headers["connection"]) == ("HTTP/1.1 200 OK", "close")  # taken before the close: answered
    assert json.loads(answer)["outputs"][0]["data"] == [TABLE[4] + 0.5]
    assert serving.process.wait(timeout=30) == 143  # stopped by SIGTERM, as the README's exit codes say


def test_connections_are_limited_and_a_client_slow_with_its_headers_is_cut_off(lookup: Path) -> None:
    with serving(lookup, "--max-connections", "4", "--header-timeout", "0.5") as server:
        slow_clients_are_cut_off(server)


def slow_clients_are_cut_off(serving: Running) -> None:
    live = f"{serving.url}/v2/health/live"
    slow = [socket.create_connection(("127.0.0.1", serving.port), timeout=5) for _ in range(4)]
    try:
        for connection in slow:
            connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0")  # and never the rest
        time.sleep(0.1)
        assert requests.get(live, timeout=5).status_code == 503  # the limit: answered at once, not queued
        began = time.monotonic()
        assert [connection.recv(1024) for connection in slow] == [b""] * 4  # closed by the server
        assert time.monotonic() - began < 2
        assert requests.get(live, timeout=5).status_code == 200
    finally:
        for connection in slow:
            connection.close()


def test_a_port_another_process_holds_is_exit_2_saying_so(lookup: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([*MODELCI, "serve", "--model", str(lookup), "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"modelci serve cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "another process holds that port" in done.stderr
