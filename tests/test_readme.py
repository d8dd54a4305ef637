"""The README's examples are files the tests run: the inference request answered by a real server."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import requests

from test_serve import exported, start  # noqa: F401  (the module's model, as a fixture)

ROOT = Path(__file__).resolve().parents[1]
REQUEST = ROOT / "examples" / "churn" / "request.json"


def test_the_readme_request_is_answered_by_the_server(exported: Path) -> None:  # noqa: F811
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = json.loads(REQUEST.read_text(encoding="utf-8"))
    for name in ("tenure_months", "contract"):  # the lines the README shows of it
        line = next(line for line in REQUEST.read_text().splitlines() if f'"name": "{name}"' in line)
        assert line.rstrip(",") in readme
    assert "-d @request.json" in readme

    running = start(exported / ".modelci/out/model.onnx", name="model")
    try:
        metadata = requests.get(f"{running.url}/v2/models/model", timeout=10).json()
        assert sorted(i["name"] for i in body["inputs"]) == sorted(i["name"] for i in metadata["inputs"])
        answer = requests.post(f"{running.url}/v2/models/model/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert answer.json()["id"] == "two-customers"
        assert outputs["probabilities"]["shape"] == [2, 2]
        rows = outputs["probabilities"]["data"]
        assert abs(sum(rows[:2]) - 1) < 1e-5
        assert abs(sum(rows[2:]) - 1) < 1e-5
    finally:
        running.process.send_signal(signal.SIGTERM)  # NOTE: by its PID
        running.process.wait(timeout=30)
