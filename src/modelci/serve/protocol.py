"""The Open Inference Protocol (KServe V2) over HTTP: a model's metadata, and infer requests read and
checked against the model's inputs before anything reaches ONNX Runtime.

A request that is wrong in any way is a `BadRequest` whose message says what and where; it never
touches the model, so it cannot hurt the requests beside it in a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# The protocol's datatypes a float input accepts; strings are BYTES
NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"}
OUTPUT_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
                np.dtype(np.int32): "INT32", np.dtype(np.bool_): "BOOL"}


class BadRequest(Exception):
    """A request the protocol or the model cannot take: answered 400 with this message."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # FP32 | BYTES for inputs; the output's element type
    shape: tuple[int, ...]  # -1 for the batch


@dataclass(frozen=True)
class Request:
    """An infer request, checked: one column of `rows` values per model input."""

    id: str | None
    columns: dict[str, NDArray[Any]]
    rows: int
    outputs: tuple[str, ...]  # the outputs asked for; all of them when the request names none


def parse_infer(body: Any, inputs: list[TensorSpec], outputs: list[TensorSpec], max_rows: int) -> Request:
    """The request's tensors, as one column per model input; every problem is a `BadRequest`."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest("expected a JSON object with an 'inputs' list, as the Open Inference Protocol says")
    given: dict[str, dict[str, Any]] = {}
    for tensor in body["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest("every input needs a 'name'")
        if tensor["name"] in given:
            raise BadRequest(f"input '{tensor['name']}' is given twice")
        given[tensor["name"]] = tensor
    expected = {spec.name: spec for spec in inputs}
    unknown = sorted(set(given) - set(expected))
    missing = [name for name in expected if name not in given]
    if unknown or missing:
        raise BadRequest("; ".join(filter(None, [
            f"unknown input(s) {', '.join(unknown)}" if unknown else "",
            f"missing input(s) {', '.join(missing)}" if missing else ""])) + f"; the model takes {', '.join(expected)}")
    columns = {name: _column(given[name], spec) for name, spec in expected.items()}
    rows = {len(column) for column in columns.values()}
    if len(rows) > 1:
        raise BadRequest(f"the inputs hold different numbers of rows: {sorted(rows)}")
    count = rows.pop() if rows else 0
    if count == 0:
        raise BadRequest("the request holds no rows")
    if count > max_rows:
        raise BadRequest(f"{count} rows in one request; this server takes at most {max_rows}")
    return Request(_request_id(body), columns, count, _outputs(body, outputs))


def _request_id(body: dict[str, Any]) -> str | None:
    found = body.get("id")
    if found is not None and not isinstance(found, str):
        raise BadRequest("'id' must be a string")
    return found


def _outputs(body: dict[str, Any], outputs: list[TensorSpec]) -> tuple[str, ...]:
    asked = body.get("outputs")
    names = [spec.name for spec in outputs]
    if asked is None:
        return tuple(names)
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    wanted = tuple(o["name"] for o in asked)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise BadRequest(f"unknown output(s) {', '.join(unknown)}; the model gives {', '.join(names)}")
    return wanted


def _column(tensor: dict[str, Any], spec: TensorSpec) -> NDArray[Any]:
    """One input's values as a column: float32 for a numeric input (null is an empty value, NaN),
    object strings for BYTES."""
    name, shape, datatype, data = spec.name, tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of sizes, e.g. [rows, 1]")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"input '{name}': shape {shape}; this model takes [rows, 1] (or [rows])")
    want = "BYTES" if spec.datatype == "BYTES" else "a number type (FP32, FP64, INT64, ...)"
    if (spec.datatype == "BYTES") != (datatype == "BYTES") or (datatype != "BYTES" and datatype not in NUMERIC):
        raise BadRequest(f"input '{name}': datatype {datatype!r}; this model takes {want}")
    values = _flatten(data, name)
    if len(values) != shape[0]:
        raise BadRequest(f"input '{name}': {len(values)} values for shape {shape}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise BadRequest(f"input '{name}': BYTES data must be strings")
        return np.array(values, dtype=object)
    return _numbers(values, name)


def _flatten(data: Any, name: str) -> list[Any]:
    """The protocol allows data flat or nested by the shape; either gives the values in row order."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    if data and isinstance(data[0], list):
        if not all(isinstance(row, list) and len(row) == 1 for row in data):
            raise BadRequest(f"input '{name}': nested 'data' must hold one value per row")
        return [row[0] for row in data]
    return data


def _numbers(values: list[Any], name: str) -> NDArray[np.float32]:
    out = np.empty(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan  # NOTE: JSON has no NaN; null is an empty value, which the model fills
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[i] = value
        elif isinstance(value, bool):
            out[i] = float(value)
        else:
            raise BadRequest(f"input '{name}': row {i} holds {value!r}, not a finite number (null for empty)")
    return out


def response(model: str, version: str, request: Request, results: dict[str, NDArray[Any]]) -> dict[str, Any]:
    outputs = [{"name": name, "datatype": OUTPUT_TYPES.get(results[name].dtype, "FP32"),
                "shape": list(results[name].shape), "data": results[name].ravel().tolist()}
               for name in request.outputs]
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    return body


def metadata(model: str, version: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict[str, Any]:
    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]
    return {"name": model, "versions": [version], "platform": "onnxruntime_onnx",
            "inputs": tensors(inputs), "outputs": tensors(outputs)}
