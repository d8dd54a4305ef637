"""Benchmark `modelci serve` under load against a plain FastAPI endpoint (and MLServer) on one model.

    python benchmarks/serve/run.py [--requests 10000] [--single 2000] [--rounds 2] [--mlserver PATH/bin/mlserver]

The churn example, trained for two epochs and exported, served over the Open Inference Protocol on
loopback by each of these, in a process of its own:

- modelci: `modelci serve` with `--max-delay-ms 0` (a batch takes what is queued) and with 2 ms;
- plain: `plain.py`, FastAPI with one sync route that parses the same JSON body, builds the feeds
  and calls `session.run` per request, under uvicorn;
- MLServer: its custom-runtime way for ONNX (`mlserver_runtime.py`), default settings; only when
  `--mlserver` names its executable (a separate venv: MLServer pins an older FastAPI).

The load generator, in this process on uvloop, holds one keep-alive HTTP/1.1 connection per
concurrent client and sends single-row infer requests (1,000 different rows of the evaluation data,
cycled) back to back: at concurrency 1, 16 and 64, a warm-up, then a fixed number of requests. It
records requests/s, p50 and p99 latency, and the CPU time per request of the server (its process
tree, and its event-loop thread alone) and of the load generator, which shares the machine's cores
with the server. The servers take turns at each concurrency, `--rounds` times; the faster round counts.
The in-process baseline is the p50 of `session.run` on one prepared row, here, in the same session
modelci serve builds. Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "churn"
MODEL = "churn"
INFER = f"/v2/models/{MODEL}/infer"
LEVELS = (1, 16, 64)
# the targets (issue 20): at c=64 vs the plain endpoint; at c=1 vs in-process; the tail at c=64; a shadow's cost at c=16
THROUGHPUT_RATIO, ADDED_P50_MS, TAIL_RATIO, SHADOW_P50_GROWTH = 4.0, 0.25, 3.0, 0.10
SHADOW = "modelci serve, shadow on"
ECHO = "bare ASGI echo"


def export_model(work: Path) -> tuple[Path, Any]:
    """The churn example trained for two epochs and exported; returns the ONNX file and the evaluation rows."""
    import pandas as pd

    for name in ("model.py", "modelci.yaml", "schema.yaml"):
        shutil.copy(EXAMPLE / name, work / name)
    sys.path.insert(0, str(EXAMPLE))
    from generate_data import generate

    (work / "data").mkdir()
    generate(5_000, 7).to_parquet(work / "data" / "train.parquet", index=False)
    generate(1_000, 8).to_parquet(work / "data" / "eval.parquet", index=False)
    quiet = {"cwd": work, "env": {**os.environ, "MODELCI_TRAIN_EPOCHS": "2"}, "check": True,
             "stdout": subprocess.DEVNULL}
    # NOTE: data check writes the training data's profile beside the model, so the server measures
    # input drift online as it does when it serves an artifact
    subprocess.run(["modelci", "data", "check"], **quiet)  # type: ignore[call-overload]
    subprocess.run(["modelci", "train"], **quiet)  # type: ignore[call-overload]
    subprocess.run(["modelci", "export"], **quiet)  # type: ignore[call-overload]
    return work / ".modelci" / "out" / "model.onnx", pd.read_parquet(work / "data" / "eval.parquet")


def request_bodies(frame: Any, path: Path) -> list[bytes]:
    """One Open Inference Protocol infer request per row, as JSON (FP64 numbers, null for empty; BYTES strings)."""
    import onnxruntime as ort
    import pandas as pd

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    bodies = []
    for _, row in frame.iterrows():
        inputs = []
        for spec in session.get_inputs():
            value = row[spec.name]
            if spec.type == "tensor(string)":
                inputs.append({"name": spec.name, "shape": [1, 1], "datatype": "BYTES", "data": [str(value)]})
            else:
                inputs.append({"name": spec.name, "shape": [1, 1], "datatype": "FP64",
                               "data": [None if pd.isna(value) else float(value)]})
        bodies.append(json.dumps({"inputs": inputs}).encode())
    return bodies


def in_process(path: Path, body: bytes, calls: int = 5000) -> tuple[float, np.ndarray]:
    """The p50 (ms) of `session.run` on one row prepared as modelci serve prepares it, in the session modelci
    serve builds; and that row's answer, which every server must give."""
    from modelci.serve import protocol
    from modelci.serve.app import load

    model = load(path, MODEL, "sha256:0")
    request = protocol.parse_infer(json.loads(body), model.inputs, model.outputs, 1)
    feeds = {spec.name: request.columns[spec.name][:, None] for spec in model.inputs}
    names = [spec.name for spec in model.outputs]
    for _ in range(500):
        model.session.run(names, feeds)
    times = []
    for _ in range(calls):
        began = time.perf_counter_ns()
        model.session.run(names, feeds)
        times.append(time.perf_counter_ns() - began)
    answer = model.session.run(names, feeds)[0].ravel().astype(np.float64)
    return float(np.median(times)) / 1e6, answer


# --- the servers -------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    what: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int = 0
    metrics: bool = False  # modelci's /metrics: batch sizes
    ready_metric: str = ""  # NOTE: started once its /metrics holds this (a shadow loaded)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def echo_answer(path: Path, expected: np.ndarray) -> str:
    """The infer response to the first request, which the bare echo answers to every request."""
    import onnxruntime as ort

    (output, *_) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()
    return json.dumps({"model_name": MODEL, "model_version": "1", "outputs": [
        {"name": output.name, "datatype": "FP32", "shape": [1, len(expected)], "data": expected.tolist()}]})


def servers(path: Path, work: Path, mlserver: str | None, answer: str) -> list[Server]:
    found = []
    for delay in ("0", "2"):
        port = free_port()
        found.append(Server(f"modelci serve, max-delay {delay} ms",
                            f"`modelci serve --max-batch 256 --max-delay-ms {delay}`",
                            ["modelci", "serve", "--model", str(path), "--name", MODEL, "--port", str(port),
                             "--max-batch", "256", "--max-delay-ms", delay], port=port, metrics=True))
    found.append(shadowed(path, work))
    port = free_port()
    found.append(Server("plain FastAPI", "`plain.py`: FastAPI sync route, `session.run` per request, uvicorn",
                        [sys.executable, "-m", "uvicorn", "plain:app", "--port", str(port), "--log-level",
                         "warning", "--no-access-log"], env={"PLAIN_MODEL": str(path)}, cwd=HERE, port=port))
    port = free_port()
    found.append(Server(ECHO, "`echo.py`: a bare ASGI app under the same uvicorn answering a fixed response, no model "
                        "(the floor)", [sys.executable, "-m", "uvicorn", "echo:app", "--port", str(port), "--log-level",
                                        "warning", "--no-access-log"], env={"ECHO_ANSWER": answer}, cwd=HERE,
                        port=port))
    if mlserver:
        for name, batching in (("MLServer", {}), ("MLServer, adaptive batching",
                                                 {"max_batch_size": 64, "max_batch_time": 0.002})):
            folder = mlserver_folder(path, work / name.replace(" ", "-").replace(",", ""), batching)
            settings = json.loads((folder / "settings.json").read_text())
            what = "default settings" if not batching else \
                "adaptive batching on (`max_batch_size` 64, `max_batch_time` 0.002 s, as its docs show)"
            found.append(Server(name, f"MLServer, custom ONNX Runtime `MLModel`, {what}",
                                [mlserver, "start", str(folder)], cwd=folder, port=settings["http_port"]))
    return found


def shadowed(path: Path, work: Path) -> Server:
    """modelci serve watching `prod` of a registry whose `prod-shadow` names the same model published again (another
    digest): every batch is also scored by the shadow, in its own thread, and compared."""
    from modelci.registry.artifact import push_files
    from modelci.registry.reference import parse_reference

    registry = f"oci:{work / 'registry'}"
    files = [path, *(path.parent / name for name in ("samples.json", "data-profile.json"))]
    push_files([f for f in files if f.is_file()], parse_reference(f"{registry}:prod"), ["prod"], {})
    (work / "README.md").write_text("the same model, published again\n")
    push_files([*(f for f in files if f.is_file()), work / "README.md"], parse_reference(f"{registry}:prod-shadow"),
               ["prod-shadow"], {})
    port = free_port()
    return Server(SHADOW, "`modelci serve --watch` on `prod`, `prod-shadow` naming the same model published again: "
                  "every batch also scored by the shadow and compared, max-delay 0 ms",
                  ["modelci", "serve", "--model", f"{registry}:prod", "--watch", "--poll-interval", "0.2", "--name",
                   MODEL, "--port", str(port), "--max-batch", "256", "--max-delay-ms", "0"], port=port, metrics=True,
                  ready_metric='role="shadow"')


def mlserver_folder(path: Path, folder: Path, batching: dict[str, Any]) -> Path:
    folder.mkdir()
    shutil.copy(HERE / "mlserver_runtime.py", folder / "mlserver_runtime.py")
    settings = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port(),
                "host": "127.0.0.1"}
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_runtime.OnnxRuntimeModel", "parameters": {"uri": str(path)},
        **batching}))
    return folder


def start(server: Server) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(server.command, cwd=server.cwd, env={**os.environ, **server.env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/v2/models/{MODEL}/ready", timeout=1):
                if not server.ready_metric:
                    return process
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=1) as metrics:
                if server.ready_metric in metrics.read().decode():
                    return process
            time.sleep(0.1)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{server.name} did not start: {process.communicate()[1].decode()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # NOTE: by its PID; MLServer stops its workers on SIGINT
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def answers(server: Server, body: bytes) -> np.ndarray:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{INFER}", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return np.array(json.loads(response.read())["outputs"][0]["data"], dtype=np.float64)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds so far of the server's process tree, and of its main thread (the event loop)."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    main = next(t for t in process.threads() if t.id == pid)
    return total, main.user_time + main.system_time


def batch_rows(server: Server) -> tuple[float, float]:
    """modelci's batches so far: (rows, batches), from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {line.split()[0]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith(("modelci_inference_batch_rows_", "modelci_input_drift_window_rows"))}
    if not any(name.startswith("modelci_input_drift_window_rows") and rows > 0 for name, rows in values.items()):
        raise RuntimeError(f"{server.name} measures no input drift: the benchmark is meant with it on")
    return values.get("modelci_inference_batch_rows_sum", 0.0), values.get("modelci_inference_batch_rows_count", 0.0)


# --- the load generator ------------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time: the smallest client, so that little of
    the shared CPU goes to the load generator."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        if b"content-length:" in head:
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
        elif not self.buffer.endswith(b"\r\n0\r\n\r\n"):  # NOTE: chunked; one response at a time, JSON has no CRLF
            return
        self.buffer.clear()
        self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def send(self, request: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.waiter


def http_requests(port: int, bodies: list[bytes]) -> list[bytes]:
    head = f"POST {INFER} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
    return [f"{head}content-length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


async def load(port: int, requests: list[bytes], concurrency: int, count: int) -> tuple[list[int], int, float]:
    """`count` requests over `concurrency` connections: (latencies in ns, errors, seconds)."""
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(concurrency)]
    latencies: list[int] = []
    errors = 0
    sent = 0

    async def client(connection: Connection) -> None:
        nonlocal sent, errors
        while sent < count:
            request = requests[sent % len(requests)]
            sent += 1
            began = time.perf_counter_ns()
            status = await connection.send(request)
            latencies.append(time.perf_counter_ns() - began)
            errors += status != 200

    began = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    seconds = time.perf_counter() - began
    for c in connections:
        assert c.transport is not None
        c.transport.close()
    return latencies, errors, seconds


def run_level(server: Server, pid: int, requests: list[bytes], concurrency: int, count: int) -> dict[str, Any]:
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(load(server.port, requests, concurrency, max(200, count // 10)))  # warm-up
        rows_before = batch_rows(server) if server.metrics else (0.0, 0.0)
        (server_cpu, loop_cpu), client_cpu = cpu_seconds(pid), time.process_time()
        latencies, errors, seconds = loop.run_until_complete(load(server.port, requests, concurrency, count))
        (server_after, loop_after), client_cpu = cpu_seconds(pid), time.process_time() - client_cpu
        server_cpu, loop_cpu = server_after - server_cpu, loop_after - loop_cpu
    finally:
        loop.close()
    ms = np.array(latencies) / 1e6
    found = {"concurrency": concurrency, "requests": count, "errors": errors, "seconds": round(seconds, 3),
             "rps": round(count / seconds, 1), "p50_ms": round(float(np.percentile(ms, 50)), 3),
             "p99_ms": round(float(np.percentile(ms, 99)), 3),
             "server_cpu_us": round(server_cpu / count * 1e6, 1), "loop_cpu_us": round(loop_cpu / count * 1e6, 1),
             "client_cpu_us": round(client_cpu / count * 1e6, 1)}
    if server.metrics:
        rows_after = batch_rows(server)
        found["mean_batch"] = round((rows_after[0] - rows_before[0]) / max(1.0, rows_after[1] - rows_before[1]), 1)
    return found


def measure(chosen: list[Server], bodies: list[bytes], expected: np.ndarray, counts: dict[int, int],
            rounds: int) -> dict[str, list[list[dict[str, Any]]]]:
    """Every server started and checked against ONNX Runtime in-process, then, at each concurrency, the
    servers take turns, `rounds` times: each (server, concurrency) gets `rounds` runs."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for server in chosen:
            processes.append(start(server))
            got = answers(server, bodies[0])
            if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
                raise RuntimeError(f"{server.name} answered {got}, ONNX Runtime in-process {expected}")
        runs: dict[str, list[list[dict[str, Any]]]] = {s.name: [[] for _ in LEVELS] for s in chosen}
        for _ in range(rounds):
            for i, concurrency in enumerate(LEVELS):
                for server, process in zip(chosen, processes, strict=True):
                    found = run_level(server, process.pid, http_requests(server.port, bodies), concurrency,
                                      counts[concurrency])
                    runs[server.name][i].append(found)
                    print(f"{server.name:30} c={concurrency:<3} {found}", flush=True)
        return runs
    finally:
        for process in processes:
            stop(process)


def best(runs: dict[str, list[list[dict[str, Any]]]]) -> dict[str, list[dict[str, Any]]]:
    """Per server and concurrency, the run with the highest throughput: the one the rest of the machine
    disturbed least (the same rule for every server; all runs are in results.json)."""
    return {name: [max(level, key=lambda x: x["rps"]) for level in levels] for name, levels in runs.items()}


# --- results -----------------------------------------------------------------------------------------------


def targets(results: dict[str, list[dict[str, Any]]], in_process_ms: float) -> list[dict[str, Any]]:
    def level(name: str, concurrency: int) -> dict[str, Any]:
        return next(x for x in results[name] if x["concurrency"] == concurrency)

    modelci = [name for name in results if name.startswith("modelci serve, max-delay")]
    fastest = max(modelci, key=lambda name: level(name, 64)["rps"])
    quickest = min(modelci, key=lambda name: level(name, 1)["p50_ms"])
    ratio = level(fastest, 64)["rps"] / level("plain FastAPI", 64)["rps"]
    added = level(quickest, 1)["p50_ms"] - in_process_ms
    tail = level(fastest, 64)["p99_ms"] / level(fastest, 64)["p50_ms"]
    found = [{"target": f"at concurrency 64, at least {THROUGHPUT_RATIO:g}x the plain endpoint's throughput",
              "value": f"{ratio:.2f}x ({fastest}: {level(fastest, 64)['rps']:,.0f} req/s, plain: "
                       f"{level('plain FastAPI', 64)['rps']:,.0f} req/s)", "pass": ratio >= THROUGHPUT_RATIO},
             {"target": f"at concurrency 64, p99 at most {TAIL_RATIO:g}x p50",
              "value": f"{tail:.2f}x ({fastest}: p99 {level(fastest, 64)['p99_ms']:.2f} ms, p50 "
                       f"{level(fastest, 64)['p50_ms']:.2f} ms)", "pass": tail <= TAIL_RATIO},
             {"target": f"at concurrency 1, at most {ADDED_P50_MS:g} ms added to the p50 of ONNX Runtime in-process",
              "value": f"+{added:.3f} ms ({quickest}: p50 {level(quickest, 1)['p50_ms']:.3f} ms, in-process "
                       f"{in_process_ms:.3f} ms)", "pass": added <= ADDED_P50_MS}]
    if SHADOW in results:
        alone, shadowed_p50 = level("modelci serve, max-delay 0 ms", 16)["p50_ms"], level(SHADOW, 16)["p50_ms"]
        growth = shadowed_p50 / alone - 1
        found.append({"target": f"with a shadow on, the p50 at concurrency 16 grows by at most "
                                f"{SHADOW_P50_GROWTH:.0%}",
                      "value": f"{growth:+.1%} ({shadowed_p50:.3f} ms against {alone:.3f} ms without)",
                      "pass": growth <= SHADOW_P50_GROWTH})
    return found


def round_ratios(runs: dict[str, list[list[dict[str, Any]]]]) -> list[float]:
    at64 = {name: levels[LEVELS.index(64)] for name, levels in runs.items()}
    plain = at64["plain FastAPI"]
    return [max(at64[name][i]["rps"] for name in at64 if name.startswith("modelci serve, max-delay")) /
            plain[i]["rps"]
            for i in range(len(plain))]


def versions(mlserver: str | None) -> dict[str, str]:
    from importlib.metadata import version

    found = {name: version(name) for name in ("modelci", "onnxruntime", "uvicorn", "uvloop", "httptools", "fastapi")}
    found["python"] = sys.version.split()[0]
    if mlserver:
        said = subprocess.run([mlserver, "--version"], capture_output=True, text=True).stdout.split()
        found["mlserver"] = said[-1] if said else "?"
    return found


def write(result: dict[str, Any], chosen: list[Server]) -> None:
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m, counts = result["machine"], result["counts"]
    lines = ["# serve benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}. "
             "The churn example's MLP (2 epochs), modelci serving it with its training data's profile beside it, "
             "so its prediction histogram and online input drift are on; single-row Open Inference Protocol "
             "requests over loopback, one "
             f"HTTP/1.1 keep-alive connection per concurrent client; {counts['1']:,} requests at concurrency 1 and "
             f"{counts['16']:,} at 16 and 64, after a warm-up. The servers take turns at each concurrency, "
             f"{result['rounds']} rounds; the table shows each one's faster round (all runs in results.json). "
             "Generated by `run.py`.", "",
             "**The load generator runs on the same cores as the server** (a minimal asyncio client on uvloop; "
             "its CPU per request is the `client CPU` column), so no server has the whole machine, and the faster "
             "the server, the larger the client's share of the cores.", "",
             f"ONNX Runtime in-process, `session.run` on one prepared row: p50 **{result['in_process_p50_ms']:.3f} "
             "ms**.", "",
             "| server | concurrency | req/s | p50 ms | p99 ms | server CPU µs/req | its event-loop thread µs/req | "
             "client CPU µs/req | mean batch | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, levels in result["servers"].items():
        for x in levels:
            lines.append(f"| {name} | {x['concurrency']} | {x['rps']:,.0f} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | "
                         f"{x['server_cpu_us']:.0f} | {x['loop_cpu_us']:.0f} | {x['client_cpu_us']:.0f} | "
                         f"{x.get('mean_batch', '')} | {x['errors']} |")
    lines += ["", "| server | what runs |", "|---|---|"]
    lines += [f"| {s.name} | {s.what} |" for s in chosen]
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'pass' if t['pass'] else '**FAIL**'} |" for t in result["targets"]]
    per_round = round_ratios(result["runs"])
    lines += ["", f"The throughput ratio at concurrency 64 round by round (modelci's better setting in that round over "
              f"the plain endpoint in that round): {', '.join(f'{r:.2f}x' for r in per_round)}."]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + "."]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests at concurrency 16 and 64")
    parser.add_argument("--single", type=int, default=2_000, help="requests at concurrency 1")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every (server, concurrency), taking turns")
    parser.add_argument("--mlserver", default=shutil.which("mlserver"),
                        help="MLServer's executable (in a venv of its own); without it, MLServer is left out")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    counts = {1: args.single, 16: args.requests, 64: args.requests}
    with tempfile.TemporaryDirectory(prefix="modelci-serve-bench-") as folder:
        work = Path(folder)
        path, frame = export_model(work)
        bodies = request_bodies(frame, path)
        in_process_ms, expected = in_process(path, bodies[0])
        in_process_ms = round(in_process_ms, 3)
        chosen = servers(path, work, args.mlserver, echo_answer(path, expected))
        runs = measure(chosen, bodies, expected, counts, args.rounds)
    results = best(runs)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "versions": versions(args.mlserver), "counts": counts, "rounds": args.rounds,
              "in_process_p50_ms": in_process_ms, "servers": results,
              "targets": targets(results, in_process_ms), "runs": runs}
    write(json.loads(json.dumps(result)), chosen)


if __name__ == "__main__":
    main()
