"""The plain image endpoint: FastAPI decoding each image with Pillow and calling ONNX Runtime per request.

    PLAIN_MODEL=model.onnx uvicorn plain_images:app --port 8081

One POST route takes the Open Inference Protocol request the benchmark's client sends to modelci too: BYTES
elements as base64 in JSON, or raw (each after its 4-byte length) with the binary tensor data extension. It
decodes each image with Pillow, converts it to RGB, resizes it (bilinear) when it is not the model's size,
stacks the pixels and calls `session.run` once per request: no batching across requests. The route is a
plain `def`, so FastAPI runs it in its thread pool and requests' decoding and `session.run` can overlap (both
release the GIL); the session has ONNX Runtime's default options, as modelci's does.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from fastapi import Depends, FastAPI, Request
from PIL import Image

session = ort.InferenceSession(os.environ["PLAIN_MODEL"], providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0]
HEIGHT, WIDTH = int(INPUT.shape[1]), int(INPUT.shape[2])
OUTPUTS = [o.name for o in session.get_outputs()]
app = FastAPI()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    if rgb.size != (WIDTH, HEIGHT):
        rgb = rgb.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def elements(data: bytes) -> list[bytes]:
    """BYTES elements of the binary extension: each a 4-byte little-endian length, then that many bytes."""
    found, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from("<I", data, at)
        found.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return found


async def raw(request: Request) -> tuple[bytes, str | None]:
    return await request.body(), request.headers.get("inference-header-content-length")


@app.get("/v2/models/{name}/ready")
def ready(name: str) -> dict[str, Any]:
    return {"name": name, "ready": True}


@app.post("/v2/models/{name}/infer")
def infer(name: str, received: Annotated[tuple[bytes, str | None], Depends(raw)]) -> dict[str, Any]:
    body, header = received
    if header is None:
        request = json.loads(body)
        images = [base64.b64decode(element) for element in request["inputs"][0]["data"]]
    else:
        request = json.loads(body[:int(header)])
        images = elements(body[int(header):])
    results = session.run(OUTPUTS, {INPUT.name: np.stack([decode(image) for image in images])})
    outputs = [{"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
               for n, r in zip(OUTPUTS, results, strict=True)]
    return {"model_name": name, "id": request.get("id"), "outputs": outputs}
