"""The Open Inference Protocol (KServe V2) over HTTP: a model's metadata, and infer requests read and
checked against the model's inputs before anything reaches ONNX Runtime. A request's tensors come as JSON or with
the binary tensor data extension (serve/binary.py), or a mix of both; either way they are checked by the same rules.

A request that is wrong in any way is a `BadRequest` whose message says what and where; it never
touches the model, so it cannot hurt the requests beside it in a batch. Each input's values become the
model's type only where that type holds them (the rule is in the README, next to `modelci serve`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from modelci.serve import binary

if TYPE_CHECKING:
    from modelci.serve.images import ImageInput

# The protocol's datatypes, as numpy holds them (BYTES: Python strings in an object array)
DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(kind) for name, kind in [
    ("BOOL", np.bool_), ("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32), ("UINT64", np.uint64),
    ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32), ("INT64", np.int64), ("FP16", np.float16),
    ("FP32", np.float32), ("FP64", np.float64), ("BYTES", np.object_)]}
ONNX_DATATYPES = {"tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
                  "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
                  "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
                  "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
                  "tensor(string)": "BYTES"}
OUTPUT_TYPES = {dtype: name for name, dtype in DTYPES.items()}
INT_RANGE = {name: (int(np.iinfo(t).min), int(np.iinfo(t).max)) for name, t in DTYPES.items() if t.kind in "iu"}
FLOAT_MAX = {name: float(np.finfo(t).max) for name, t in DTYPES.items() if t.kind == "f"}
NUMBERS: set[type] = {int, float, type(None)}  # NOTE: exact types: a JSON true is a bool, never a number


class BadRequest(Exception):
    """A request the protocol or the model cannot take: answered 400 with this message."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # one of DTYPES
    shape: tuple[int, ...]  # -1 for the batch
    image: ImageInput | None = None  # an image input (uint8 [N, H, W, C]): the forms it takes (serve/images.py)
    measured_text: bool = False  # a text model's texts, measured for drift (serve/texts.py)


@dataclass(frozen=True)
class Request:
    """An infer request, checked: one column of `rows` values per model input."""

    id: str | None
    columns: dict[str, NDArray[Any]]
    rows: int
    outputs: tuple[str, ...]  # the outputs asked for; all of them when the request names none
    binary: frozenset[str] = frozenset()  # those of `outputs` to answer as binary data


def parse_infer(body: Any, inputs: list[TensorSpec], outputs: list[TensorSpec], max_rows: int,
                data: memoryview | None = None, sample: Callable[[], bool] | None = None) -> Request:
    """The request's tensors, as one column per model input; every problem is a `BadRequest`. `data`: the binary
    tensor data after the JSON (`binary.split`); `sample`: which encoded images to measure for drift
    (`images.Sample`; all of them when not given)."""
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
    raw = _binary_inputs(body["inputs"], data if data is not None else memoryview(b""))
    columns: dict[str, NDArray[Any]] = {}
    for name, spec in expected.items():
        if spec.image is not None:
            from modelci.serve.images import image_columns

            # NOTE: and its statistics, for drift
            columns.update(image_columns(given[name], spec, raw.get(name), sample))
        else:
            columns[name] = _column(given[name], spec, raw.get(name))
            if spec.measured_text:
                from modelci.serve.texts import text_columns

                columns.update(text_columns(name, columns[name]))  # NOTE: for drift
    rows = {len(column) for column in columns.values()}
    if len(rows) > 1:
        raise BadRequest(f"the inputs hold different numbers of rows: {sorted(rows)}")
    count = rows.pop() if rows else 0
    if count == 0:
        raise BadRequest("the request holds no rows")
    if count > max_rows:
        raise BadRequest(f"{count} rows in one request; this server takes at most {max_rows}")
    return Request(_request_id(body), columns, count, *_outputs(body, outputs))


def _request_id(body: dict[str, Any]) -> str | None:
    found = body.get("id")
    if found is not None and not isinstance(found, str):
        raise BadRequest("'id' must be a string")
    if found is not None and not is_text(found):
        raise BadRequest(f"'id' holds {_shown(found)}, with a lone UTF-16 surrogate, which is not text")
    return found


def _outputs(body: dict[str, Any], outputs: list[TensorSpec]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for, and those of them to answer as binary data: the request's `binary_data_output`,
    unless an output's own `binary_data` says otherwise."""
    every = _flag(body, "binary_data_output", "the request") is True
    asked = body.get("outputs")
    names = [spec.name for spec in outputs]
    if asked is None:
        return tuple(names), frozenset(names if every else ())
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    wanted = tuple(o["name"] for o in asked)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise BadRequest(f"unknown output(s) {', '.join(unknown)}; the model gives {', '.join(names)}")
    chosen = [(o["name"], _flag(o, "binary_data", f"output '{o['name']}'")) for o in asked]
    return wanted, frozenset(name for name, flag in chosen if (every if flag is None else flag))


def _parameters(tensor: dict[str, Any], where: str) -> dict[str, Any]:
    found = tensor.get("parameters", {})
    if not isinstance(found, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return found


def _flag(tensor: dict[str, Any], key: str, where: str) -> bool | None:
    found = _parameters(tensor, where).get(key)
    if found is not None and not isinstance(found, bool):
        raise BadRequest(f"{where}: the parameter {key} is {_shown(found)}; it must be true or false")
    return found


def _binary_inputs(tensors: list[dict[str, Any]], data: memoryview) -> dict[str, memoryview]:
    """Each binary input's bytes (those with a `binary_data_size`), from `data`."""
    sizes = [(t["name"], _binary_size(t)) for t in tensors if "parameters" in t]
    if not sizes and not data:
        return {}  # NOTE: the usual JSON request, at no cost
    try:
        return binary.slices([(name, size) for name, size in sizes if size is not None], data)
    except binary.Malformed as exc:
        raise BadRequest(str(exc)) from None


def _binary_size(tensor: dict[str, Any]) -> int | None:
    name = tensor["name"]
    size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"input '{name}': binary_data_size is {_shown(size)}, not a size in bytes (a whole "
                         "number, 0 or more)")
    return size


def _column(tensor: dict[str, Any], spec: TensorSpec, raw: memoryview | None = None) -> NDArray[Any]:
    """One input's values (JSON, or its binary data `raw`) as a column of the model's type, by the rule the README
    gives (null is an empty value, NaN); anything else is a `BadRequest` that names the input and the row."""
    name, shape, datatype, data = spec.name, tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of sizes, e.g. [rows, 1]")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"input '{name}': shape {shape}; this model takes [rows, 1] (or [rows])")
    if datatype not in DTYPES:
        raise BadRequest(f"input '{name}': datatype {datatype!r} is not one of the protocol's ({', '.join(DTYPES)})")
    if _kind(datatype) != _kind(spec.datatype):
        raise BadRequest(f"input '{name}': datatype {datatype!r}; this model takes {_wanted(spec.datatype)}")
    if raw is not None:
        if data is not None:
            raise BadRequest(f"input '{name}': both 'data' and binary_data_size; send its values in one or the other")
        fast, values = _binary_values(raw, datatype, spec, shape)
        if fast is not None:
            return fast
    else:
        values = _flatten(data, shape, name)
    if len(values) != shape[0]:
        raise BadRequest(f"input '{name}': {len(values)} values for shape {shape}")
    if datatype == "BYTES":
        return _strings(values, name, shape)
    if datatype == "BOOL":
        return _booleans(values, name, shape)
    if datatype.startswith(("INT", "UINT")):
        return _integers(values, datatype, spec, shape)
    return _floats(values, datatype, spec, shape)


def _binary_values(raw: memoryview, sent: str, spec: TensorSpec, shape: list[int]) -> tuple[NDArray[Any] | None,
                                                                                          list[Any]]:
    """An input's binary data: the column itself when it is already the model's type (checked here, at C speed),
    else its values for the rules JSON values go through (NaN, the binary form's empty value, as null)."""
    try:
        if sent == "BYTES":
            return None, binary.texts(binary.elements(raw, shape[0]))
        values = binary.fixed(raw, DTYPES[sent], sent, shape[0])
    except binary.Malformed as exc:
        raise BadRequest(f"input '{spec.name}': {exc} (shape {shape})") from None
    if sent == spec.datatype:
        infinite = np.flatnonzero(np.isinf(values)) if values.dtype.kind == "f" else np.array([], dtype=np.intp)
        if len(infinite):
            raise BadRequest(f"input '{spec.name}': row {infinite[0]} holds {values[infinite[0]]}, not a finite "
                             "number (NaN for empty)")
        return values, []
    listed = values.tolist()
    return None, [None if v != v else v for v in listed] if values.dtype.kind == "f" else listed


def _kind(datatype: str) -> str:
    return datatype if datatype in ("BYTES", "BOOL") else "number"


def _wanted(datatype: str) -> str:
    if datatype in ("BYTES", "BOOL"):
        return datatype
    return f"a number type ({datatype}, or another whose values {datatype} holds; true and false are not numbers)"


def _flatten(data: Any, shape: list[int], name: str) -> list[Any]:
    """The protocol allows data flat or nested by the shape; either gives the values in row order."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    if len(shape) == 2 and data and all(isinstance(row, list) for row in data):
        if not all(len(row) == 1 for row in data):
            raise BadRequest(f"input '{name}': nested 'data' must hold one value per row")
        return [row[0] for row in data]
    return data


def _refused(name: str, row: int, value: Any, wanted: str, shape: list[int]) -> BadRequest:
    if isinstance(value, (list, dict)):
        return BadRequest(f"input '{name}': 'data' is nested deeper than shape {shape}; send it flat "
                          "([v, v, ...]) or nested as the shape says ([[v], [v], ...])")
    return BadRequest(f"input '{name}': row {row} holds {_shown(value)}, not {wanted}")


def _shown(value: Any) -> str:
    text = json.dumps(value)  # NOTE: as the client wrote it, and ASCII, so a lone surrogate shows as \\udXXX
    return text if len(text) <= 60 else text[:57] + "..."


def _strings(values: list[Any], name: str, shape: list[int]) -> NDArray[Any]:
    if set(map(type, values)) <= {str} and "".join(values).isascii():  # NOTE: the usual case, at C speed
        return np.array(values, dtype=object)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise _refused(name, i, value, "a string (BYTES data must be strings)", shape)
        if not value.isascii() and not is_text(value):
            raise BadRequest(f"input '{name}': row {i} holds {_shown(value)}, with a lone UTF-16 surrogate, which "
                             "is not text; encode the whole character (a surrogate pair) or the UTF-8 itself")
    return np.array(values, dtype=object)


def is_text(value: str) -> bool:
    """Whether `value` is valid Unicode: JSON's \\udXXX escapes can make a lone surrogate, which no encoding
    (and not ONNX Runtime) takes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _booleans(values: list[Any], name: str, shape: list[int]) -> NDArray[np.bool_]:
    for i, value in enumerate(values):
        if not isinstance(value, bool):
            raise _refused(name, i, value, "true or false", shape)
    return np.array(values, dtype=np.bool_)


def _integers(values: list[Any], sent: str, spec: TensorSpec, shape: list[int]) -> NDArray[Any]:
    """Integers fit for `sent`, as the model's type: an integer input takes those in its range, a floating-point
    input those it holds exactly (FP32: every one up to 2**24)."""
    name, (low, high) = spec.name, INT_RANGE[sent]
    for i, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _refused(name, i, value, f"an integer, which {sent} data holds", shape)
        if not low <= value <= high:
            raise BadRequest(f"input '{name}': row {i} holds {value}, outside {sent}'s range [{low}, {high}]")
    if spec.datatype in INT_RANGE:
        low, high = INT_RANGE[spec.datatype]
        for i, value in enumerate(values):
            if not low <= value <= high:
                raise BadRequest(f"input '{name}': row {i} holds {value}, outside the model's {spec.datatype} "
                                 f"range [{low}, {high}]")
        return np.array(values, dtype=DTYPES[spec.datatype])
    column = np.array(values, dtype=DTYPES[spec.datatype])
    for i, (held, value) in enumerate(zip(column.tolist(), values, strict=True)):
        if not math.isfinite(held) or int(held) != value:
            raise BadRequest(f"input '{name}': row {i} holds {value}, which the model's {spec.datatype} cannot "
                             f"hold exactly; send it as {spec.datatype} data to have it rounded")
    return column


def _floats(values: list[Any], sent: str, spec: TensorSpec, shape: list[int]) -> NDArray[Any]:
    """Numbers fit for `sent` (null: empty), rounded to the model's floating-point type within its range."""
    if spec.datatype in INT_RANGE:
        return _whole(values, sent, spec, shape)
    limit = min(FLOAT_MAX[sent], FLOAT_MAX[spec.datatype])
    # NOTE: numpy's checks cost a few microseconds each, more than the loop below on a few values (the
    # single-row requests of benchmarks/serve/)
    fast = _plain_floats(values, limit) if len(values) > 16 else None
    if fast is not None:
        return fast.astype(DTYPES[spec.datatype])
    name, column = spec.name, []
    for i, value in enumerate(values):
        if value is None:
            column.append(math.nan)  # NOTE: JSON has no NaN; null is an empty value, which the model fills
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refused(name, i, value, "a finite number (null for empty)", shape)
        if not -limit <= value <= limit:  # NOTE: compares an integer beyond any float exactly, too
            raise _beyond(name, i, value, sent, spec.datatype)
        column.append(value)
    return np.array(column, dtype=DTYPES[spec.datatype])


def _plain_floats(values: list[Any], limit: float) -> NDArray[np.float64] | None:
    """The usual case at C speed: numbers and nulls only, every number within ±`limit`; else None, and the
    loop in `_floats` says what is wrong."""
    if not set(map(type, values)) <= NUMBERS:
        return None
    try:
        column = np.array(values, dtype=np.float64)  # NOTE: None is NaN
    except OverflowError:  # NOTE: an integer beyond any float
        return None
    empty = np.isnan(column)
    if int(empty.sum()) != values.count(None) or not (np.abs(column[~empty]) <= limit).all():
        return None  # NOTE: a NaN or Infinity that Python's JSON reader took, or a number out of range
    return column


def _beyond(name: str, row: int, value: int | float, sent: str, model: str) -> BadRequest:
    if isinstance(value, float) and not math.isfinite(value):
        return BadRequest(f"input '{name}': row {row} holds {_shown(value)}, not a finite number (null for empty)")
    which = sent if FLOAT_MAX[sent] <= FLOAT_MAX[model] else f"the model's {model}"
    return BadRequest(f"input '{name}': row {row} holds {_shown(value)}, beyond the range of {which}")


def _whole(values: list[Any], sent: str, spec: TensorSpec, shape: list[int]) -> NDArray[Any]:
    """Floating-point data for an integer input: whole numbers in its range go in exactly; null has no integer."""
    low, high = INT_RANGE[spec.datatype]
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refused(spec.name, i, value, f"a whole number, which the model's {spec.datatype} "
                           "holds", shape)
        if not -FLOAT_MAX[sent] <= value <= FLOAT_MAX[sent]:
            raise _beyond(spec.name, i, value, sent, sent)
        if not float(value).is_integer() or not low <= value <= high:
            raise BadRequest(f"input '{spec.name}': row {i} holds {_shown(value)}, not a whole number in the "
                             f"model's {spec.datatype} range [{low}, {high}]; send {spec.datatype} data")
    return np.array(values, dtype=DTYPES[spec.datatype])


def response(model: str, version: str, request: Request,
             results: dict[str, NDArray[Any]]) -> tuple[dict[str, Any], list[bytes]]:
    """The infer response's JSON, and the binary data of the outputs asked for as binary, to follow it in order."""
    outputs, data = [], []
    for name in request.outputs:
        output: dict[str, Any] = {"name": name, "datatype": OUTPUT_TYPES.get(results[name].dtype, "FP32"),
                                  "shape": list(results[name].shape)}
        if name in request.binary:
            data.append(binary.encode(results[name]))
            output["parameters"] = {"binary_data_size": len(data[-1])}
        else:
            output["data"] = _json_values(results[name])
        outputs.append(output)
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    return body, data


def _json_values(result: NDArray[Any]) -> list[Any]:
    """The values in row order; NaN and infinities, which JSON cannot hold, as null (an empty value, as in requests)."""
    values = result.ravel()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return [v if math.isfinite(v) else None for v in values.tolist()]
    return values.tolist()  # type: ignore[no-any-return]  # NOTE: numpy types tolist() as Any


THRESHOLD_PARAMETER = "modelci.threshold"  # the model metadata's parameter: the binary model's threshold


def metadata(model: str, version: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
             threshold: float | None = None) -> dict[str, Any]:
    """The model metadata response; a binary model's threshold (at or above it a row's positive probability calls
    it positive) in its optional `parameters`, as implementations of the protocol such as MLServer carry them; an
    image input's own `parameters` say which forms it takes (serve/images.py)."""
    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape),
                 **({"parameters": s.image.parameters()} if s.image is not None else {})} for s in specs]
    found: dict[str, Any] = {"name": model, "versions": [version], "platform": "onnxruntime_onnx",
                             "inputs": tensors(inputs), "outputs": tensors(outputs)}
    if threshold is not None:
        found["parameters"] = {THRESHOLD_PARAMETER: threshold}
    return found
