"""The OpenAPI 3.1 document of the server's endpoints (GET /openapi.json), after the Open Inference
Protocol's REST specification."""

from __future__ import annotations

from typing import Any

ERROR = {"description": "What was wrong",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _get(summary: str, schema: str, *errors: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": _json(schema, summary), **{e: ERROR for e in errors}}}}


# NOTE: the binary tensor data extension: a tensor with parameters.binary_data_size has no 'data'; its bytes follow
# the JSON in the body (OpenAPI cannot describe a JSON document followed by bytes: see BINARY)
BINARY_SIZE = {"type": "object", "properties": {"binary_data_size": {
    "type": "integer", "minimum": 0, "description": "The tensor's bytes after the JSON (binary tensor data extension): "
    "its values in row-major order, little-endian; a BYTES element as a 4-byte little-endian length and its bytes"}}}
TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                            "INT64", "FP16", "FP32", "FP64", "BYTES"]},
    "parameters": BINARY_SIZE, "data": {"type": "array"}},
    "description": "Its values in 'data', or as binary data (parameters.binary_data_size), never both"}
BINARY = ("The binary tensor data extension (binary_tensor_data, as Triton's HTTP client sends it): the JSON "
          "document, then the binary data of the tensors that have parameters.binary_data_size, in the order the "
          "JSON lists them; the Inference-Header-Content-Length header gives the JSON's length in bytes")
HEADER_LENGTH = {"description": "The length in bytes of the JSON document at the start of a body with binary tensor "
                 "data", "schema": {"type": "integer", "minimum": 0}}
SPEC = {"type": "object", "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                         "shape": {"type": "array", "items": {"type": "integer"}}}}


def _infer() -> dict[str, Any]:
    """The infer operation: a JSON body, or one with binary tensor data (application/octet-stream, the JSON then
    the tensors' bytes), and its answer in the same two forms."""
    binary_body = {"schema": {"type": "string", "format": "binary", "description": BINARY}}
    return {
        "summary": "Inference", "description": f"JSON, or JSON with binary tensor data. {BINARY}.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": binary_body}},
        "responses": {"200": {
            "description": "The outputs: JSON, or (when an output is asked for as binary data) the JSON then the "
                           "outputs' binary data",
            "headers": {"Inference-Header-Content-Length": HEADER_LENGTH},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                        "application/octet-stream": binary_body}},
            "400": ERROR, "404": ERROR, "413": ERROR, "500": ERROR}}


def document(version: str) -> dict[str, Any]:
    model = "/v2/models/{model_name}"
    versioned = "/v2/models/{model_name}/versions/{model_version}"
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", "ServerMetadata"),
        "/v2/health/live": _get("The server is live", "Live"),
        "/v2/health/ready": _get("The server is ready for requests (503: starting, or draining after SIGTERM)",
                                 "Ready", "503"),
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "The exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    for base in (model, versioned):
        paths[base] = _get("Model metadata", "ModelMetadata", "404")
        paths[f"{base}/ready"] = _get("The model is ready", "ModelReady", "404")
        paths[f"{base}/infer"] = {"post": _infer()}
    for path, item in paths.items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        for operation in item.values():
            operation["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for n in names]
            if path.endswith("/infer"):
                operation["parameters"].append({"name": "Inference-Header-Content-Length", "in": "header",
                                                "required": False, **HEADER_LENGTH})
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelci serve: the Open Inference Protocol (KServe V2)", "version": version},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
            "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            "ServerMetadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}},
            "ModelMetadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"}, "inputs": {"type": "array", "items": SPEC},
                "outputs": {"type": "array", "items": SPEC},
                "parameters": {"type": "object", "description": "modelci.threshold: a binary model's classification "
                               "threshold (positive at or above it)", "properties": {
                                   "modelci.threshold": {"type": "number", "exclusiveMinimum": 0,
                                                         "exclusiveMaximum": 1}}}}},
            "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
            "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object", "properties": {"binary_data_output": {
                    "type": "boolean", "description": "Every output as binary data, unless its own binary_data "
                    "says otherwise"}}},
                "inputs": {"type": "array", "items": TENSOR},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "parameters": {"type": "object", "properties": {"binary_data": {
                        "type": "boolean", "description": "This output as binary data"}}}}}}}},
            "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": TENSOR}}},
        }},
    }
