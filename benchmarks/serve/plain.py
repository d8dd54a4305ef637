"""The plain endpoint: FastAPI calling ONNX Runtime per request, as one writes it without a serving library.

    PLAIN_MODEL=model.onnx uvicorn plain:app --port 8081

One POST route takes the Open Inference Protocol's JSON body, builds ONNX Runtime's feeds from its
tensors and answers with the outputs: no batching, one `session.run` per request. The route is a
plain `def`, so FastAPI runs it in its thread pool and requests' `session.run` calls can overlap
(ONNX Runtime releases the GIL); the session has ONNX Runtime's default options, as modelci's does.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from fastapi import Body, FastAPI

session = ort.InferenceSession(os.environ["PLAIN_MODEL"], providers=["CPUExecutionProvider"])
DTYPES = {i.name: object if i.type == "tensor(string)" else np.float32 for i in session.get_inputs()}
OUTPUTS = [o.name for o in session.get_outputs()]
app = FastAPI()


@app.get("/v2/models/{name}/ready")
def ready(name: str) -> dict[str, Any]:
    return {"name": name, "ready": True}


@app.post("/v2/models/{name}/infer")
def infer(name: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    feeds = {}
    for tensor in body["inputs"]:
        dtype = DTYPES[tensor["name"]]
        values = tensor["data"] if dtype is object else [np.nan if v is None else v for v in tensor["data"]]
        feeds[tensor["name"]] = np.array(values, dtype=dtype).reshape(len(values), 1)
    results = session.run(OUTPUTS, feeds)
    outputs = [{"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
               for n, r in zip(OUTPUTS, results, strict=True)]
    return {"model_name": name, "id": body.get("id"), "outputs": outputs}
