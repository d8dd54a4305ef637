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


TENSOR = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                            "INT64", "FP16", "FP32", "FP64", "BYTES"]},
    "parameters": {"type": "object"}, "data": {"type": "array"}}}
SPEC = {"type": "object", "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                         "shape": {"type": "array", "items": {"type": "integer"}}}}


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
        paths[f"{base}/infer"] = {"post": {
            "summary": "Inference", "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/InferRequest"}}}},
            "responses": {"200": _json("InferResponse", "The outputs"), "400": ERROR, "404": ERROR, "413": ERROR,
                          "500": ERROR}}}
    for path, item in paths.items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        for operation in item.values():
            operation["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for n in names]
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
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": TENSOR},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                       "properties": {"name": {"type": "string"}}}}}},
            "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": TENSOR}}},
        }},
    }
