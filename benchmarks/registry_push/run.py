"""Benchmark pushing a model artifact to a real registry against one monolithic upload of the same bytes with curl.

    python benchmarks/registry_push/run.py [--megabytes 100] [--repeat 5]

Starts the CNCF distribution registry (Debian's docker-registry) on loopback, then, taking turns:

- modelci: `push_files` of model.onnx (random bytes) and a small metrics.json to a new repository:
  hashing, HEAD, the upload (in chunks, as for any blob over 32 MB), the config, the manifest, the tag;
- curl: POST for an upload session, then one `curl -X PUT --data-binary @model.onnx` of the same
  bytes to a new repository, its digest computed beforehand (outside the timing);
- again: modelci pushing the unchanged artifact a second time (every blob is already there).

Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
# NOTE: one creation time for both pushes of a run: the same files then make the same artifact, as
# pushing one built artifact again (a retried workflow job, a promote) does.
CREATED = {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}


def start_registry(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (folder / "config.yml").write_text(
        "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: benchmark}}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    return process, f"127.0.0.1:{port}"


def curl_upload(host: str, repository: str, file: Path, digest: str) -> float:
    began = time.perf_counter()
    headers = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-X", "POST",
                              f"http://{host}/v2/{repository}/blobs/uploads/"],
                             check=True, capture_output=True, text=True).stdout
    location = next(line.split(":", 1)[1].strip() for line in headers.splitlines()
                    if line.lower().startswith("location:"))
    location = location if location.startswith("http") else f"http://{host}{location}"
    joiner = "&" if "?" in location else "?"
    code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                           "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{file}",
                           f"{location}{joiner}digest={digest}"], check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - began
    if code != "201":
        raise RuntimeError(f"curl's upload answered {code}")
    return seconds


def _size(body: Any) -> int:
    if isinstance(body, bytes):
        return len(body)
    if isinstance(body, io.BytesIO):
        return body.getbuffer().nbytes
    return os.fstat(body.fileno()).st_size


def uploaded_bytes_during(action: Any) -> tuple[float, int]:
    """Seconds `action` takes, and how many request body bytes it sends in POST, PATCH and PUT of blobs."""
    sent = 0
    original = requests.Session.request

    def counting(self: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
        nonlocal sent
        body = kwargs.get("data")
        if method in ("PATCH", "PUT", "POST") and "/blobs/" in url and body is not None:
            sent += _size(body)
        return original(self, method, url, **kwargs)

    requests.Session.request = counting  # type: ignore[method-assign]
    try:
        began = time.perf_counter()
        action()
        return time.perf_counter() - began, sent
    finally:
        requests.Session.request = original  # type: ignore[method-assign]


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    return describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from modelci.registry.artifact import push_files
    from modelci.registry.reference import parse_reference

    with tempfile.TemporaryDirectory(prefix="modelci-push-bench-") as scratch:
        folder = Path(scratch)
        (folder / "registry").mkdir()
        process, host = start_registry(folder / "registry")
        try:
            model = folder / "artifact" / "model.onnx"
            model.parent.mkdir()
            model.write_bytes(os.urandom(args.megabytes << 20))
            (folder / "artifact" / "metrics.json").write_text('{"metrics": {"roc_auc": 0.85}}')
            files = sorted((folder / "artifact").iterdir())
            digest = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
            runs: dict[str, list[float]] = {"modelci": [], "curl": [], "again": []}
            again_bytes = []
            for i in range(args.repeat):
                reference = parse_reference(f"{host}/bench/modelci-{i}:v1")
                seconds, _ = uploaded_bytes_during(lambda r=reference: push_files(files, r, ["v1"], CREATED))
                runs["modelci"].append(seconds)
                runs["curl"].append(curl_upload(host, f"bench/curl-{i}", model, digest))
                seconds, sent = uploaded_bytes_during(lambda r=reference: push_files(files, r, ["v1"], CREATED))
                runs["again"].append(seconds)
                again_bytes.append(sent)
                print(f"  run {i + 1}: modelci {runs['modelci'][-1]:.2f} s, curl {runs['curl'][-1]:.2f} s, "
                      f"again {runs['again'][-1] * 1000:.0f} ms ({sent} bytes of blobs)", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=10)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratio = medians["modelci"] / medians["curl"]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "megabytes": args.megabytes, "seconds": runs, "median_seconds": medians,
              "again_blob_bytes": again_bytes,
              "targets": [{"target": "push within 1.3× of one monolithic curl upload", "value": f"{ratio:.2f}×",
                           "pass": ratio <= 1.3},
                          {"target": "pushing an unchanged artifact: no blob bytes, under 100 ms",
                           "value": f"{medians['again'] * 1000:.0f} ms, {max(again_bytes)} bytes",
                           "pass": medians["again"] < 0.1 and max(again_bytes) == 0}]}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m = result["machine"]
    lines = ["# registry_push benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; the CNCF "
             f"distribution registry (Debian's docker-registry) on loopback, storing on the local disk. A "
             f"{args.megabytes} MB model.onnx of random bytes; median of {args.repeat} runs taking turns. "
             "Generated by `run.py`.", "",
             "| measurement | median |", "|---|---:|",
             f"| modelci push (hash, HEAD, chunked upload, config, manifest, tag) | {medians['modelci']:.2f} s |",
             f"| curl: POST, then one PUT of the same bytes | {medians['curl']:.2f} s |",
             f"| modelci push of the unchanged artifact again | {medians['again'] * 1000:.0f} ms |", "",
             "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'pass' if t['pass'] else '**FAIL**'} |" for t in result["targets"]]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
