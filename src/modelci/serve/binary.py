"""The Open Inference Protocol's binary tensor data extension, which Triton's HTTP client uses by default: a
body is the JSON request (or response) followed by the tensors' raw bytes.

The `Inference-Header-Content-Length` HTTP header gives the JSON's length in bytes; each binary tensor's
`parameters.binary_data_size` its own, in the order the JSON lists the tensors. A tensor's bytes are its values
in row-major order, little-endian, without padding; a BYTES element is a 4-byte little-endian length, then that
many bytes. Nothing here knows the tensors' names: `Malformed` says what is wrong, and protocol.py says where.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

HEADER = b"inference-header-content-length"  # NOTE: lower case, as ASGI gives header names
EXTENSION = "binary_tensor_data"  # its name in the server metadata's extensions, as Triton reports it
LENGTH = struct.Struct("<I")  # a BYTES element's length prefix


class Malformed(ValueError):
    """Binary data that is not what the JSON says it is."""


def split(body: bytes, length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it; with no `length` (no such HTTP header), all JSON."""
    if length is None:
        return body, memoryview(b"")
    text = length.decode("latin-1").strip()
    if not re.fullmatch(r"[0-9]+", text):  # NOTE: not isdigit(), which takes '²' and other digits
        raise Malformed(f"the Inference-Header-Content-Length header is {text[:40]!r}, not a length in bytes (a "
                        "whole number from 0 to the body's length)")
    size = int(text)
    if size > len(body):
        raise Malformed(f"the Inference-Header-Content-Length header says {size} bytes of JSON, past the end of "
                        f"the {len(body)}-byte body")
    return body[:size], memoryview(body)[size:]


def fixed(raw: memoryview, dtype: np.dtype[Any], datatype: str, count: int) -> NDArray[Any]:
    """`count` values of a fixed-size datatype, in the machine's byte order."""
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise Malformed(f"binary_data_size is {len(raw)} bytes; {count} {datatype} value(s) take {expected}")
    values = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    if datatype == "BOOL":
        bad = np.flatnonzero(values.view(np.uint8) > 1)
        if len(bad):
            raise Malformed(f"row {bad[0]} holds the byte {values.view(np.uint8)[bad[0]]}; BOOL data is 0 or 1")
    return values.astype(dtype)  # NOTE: a copy, writable and in native byte order


def elements(raw: memoryview, count: int) -> list[bytes]:
    """`count` BYTES elements, each after its 4-byte length; every byte of `raw` must belong to one."""
    found, offset = [], 0
    for row in range(count):
        if offset + LENGTH.size > len(raw):
            raise Malformed(f"row {row}'s 4-byte length runs past the end of the input's {len(raw)} bytes "
                            f"(binary_data_size); the shape holds {count} element(s)")
        (size,) = LENGTH.unpack_from(raw, offset)
        offset += LENGTH.size
        if offset + size > len(raw):
            raise Malformed(f"row {row} is {size} bytes long, past the end of the input's {len(raw)} bytes "
                            "(binary_data_size)")
        found.append(bytes(raw[offset:offset + size]))
        offset += size
    if offset != len(raw):
        raise Malformed(f"{len(raw) - offset} byte(s) are left after the {count} element(s) the shape holds; "
                        f"binary_data_size is {len(raw)}")
    return found


def slices(sizes: list[tuple[str, int]], data: memoryview) -> dict[str, memoryview]:
    """Each binary input's bytes, by name: they follow one another in the order of `sizes` (the order the request
    lists its inputs, with their `binary_data_size`), and together they must take all of `data`."""
    found, offset = {}, 0
    for name, size in sizes:
        if offset + size > len(data):
            raise Malformed(f"input '{name}': binary_data_size {size} runs past the end of the body: "
                            f"{len(data) - offset} byte(s) of binary data are left for it after the JSON header "
                            "(Inference-Header-Content-Length) and the binary inputs before it")
        found[name] = data[offset:offset + size]
        offset += size
    if offset != len(data):
        raise Malformed(f"{len(data) - offset} byte(s) of binary data after the JSON header belong to no input: "
                        f"the inputs' binary_data_size add up to {offset}, and {len(data)} byte(s) follow the "
                        "header (Inference-Header-Content-Length)")
    return found


def texts(elements: list[bytes]) -> list[str]:
    """BYTES elements as the strings a model takes: UTF-8 text, each."""
    found = []
    for row, element in enumerate(elements):
        try:
            found.append(element.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise Malformed(f"row {row} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return found


def encode(values: NDArray[Any]) -> bytes:
    """A tensor's binary data: its values in row-major order, little-endian; BYTES as length-prefixed elements."""
    if values.dtype == np.object_:
        parts = []
        for value in values.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts += [LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
