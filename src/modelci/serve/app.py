"""`modelci serve`: an Open Inference Protocol server for one ONNX model, as a plain ASGI application.

No web framework sits between the socket (uvicorn) and the model: routing is a handful of paths,
and every request is read, checked and answered here, so the protocol's cost stays small next to
ONNX Runtime's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import github
from modelci.evaluate.extensions import inference_session
from modelci.evaluate.onnx_model import META_TASK
from modelci.serve import binary, protocol
from modelci.serve.batching import Batcher, Columns, Run
from modelci.serve.candidates import Canary, Shadow, predicted_classes, scores
from modelci.serve.drift import OnlineDrift, read_profile
from modelci.serve.images import Sample, image_input, statistics
from modelci.serve.metrics import Metrics
from modelci.serve.protocol import BadRequest, TensorSpec
from modelci.serve.texts import statistics as text_statistics
from modelci.serve.texts import text_input, word_columns

if TYPE_CHECKING:
    from modelci.serve.swap import Wanted, Watcher

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_BODY = 16 << 20  # bytes of one request; a larger one is refused (413) before it is read whole
JSON = [(b"content-type", b"application/json")]
ANSWERED_BY = "modelci.version"  # NOTE: the scope key that says which version answered a request
OCTETS = b"application/octet-stream"  # NOTE: a body of JSON and binary tensor data, as the extension's examples say


@dataclass(frozen=True)
class Encoded:
    """A response body that is not one JSON document: an infer response with binary tensor data."""

    body: bytes
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Loaded:
    """A model ready to serve: its ONNX Runtime session, name, version and tensors."""

    name: str
    version: str  # the artifact's digest, shortened; or the file's content digest
    digest: str
    session: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    drift: OnlineDrift | None = None  # against the training data's profile, when the artifact carries one
    threshold: float | None = None  # a binary model's classification threshold, from its metadata (export's)
    task: str | None = None  # binary, multiclass or regression (export's metadata); None for an ONNX file of one's own

    def run(self, columns: Columns) -> Columns:
        # NOTE: a table input's column is [rows]; an image input's is already the model's [rows, H, W, C]
        feeds = {spec.name: columns[spec.name] if spec.image else columns[spec.name][:, None] for spec in self.inputs}
        names = [spec.name for spec in self.outputs]
        return dict(zip(names, self.session.run(names, feeds), strict=True))


def load(path: Path, name: str, digest: str) -> Loaded:
    """An ONNX model in ONNX Runtime, its inputs described as the protocol does (a batch of rows)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # NOTE: idle ONNX Runtime threads spin by default, taking the core the event loop needs between
    # batches: off, the server does 10-15% more requests at concurrency 64 (benchmarks/serve/)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = inference_session(str(path), options)
    meta = session.get_modelmeta().custom_metadata_map
    inputs = [_input(i, meta) for i in session.get_inputs()]
    outputs = [TensorSpec(o.name, _datatype(o), (-1, *o.shape[1:])) for o in session.get_outputs()]
    profile = read_profile(path.parent)
    drift = _online_drift(profile, inputs, meta) if profile else None
    if drift is not None:  # NOTE: an image's or a text's statistics are measured only when their drift is
        inputs = [_measured(spec, drift, text_input(spec.name, meta)) for spec in inputs]
    return Loaded(name, version_of(digest), digest, session, inputs, outputs, drift, _threshold(session, path),
                  meta.get(META_TASK))


def _online_drift(profile: dict[str, Any], inputs: list[TensorSpec], meta: dict[str, str]) -> OnlineDrift | None:
    """The drift of the inputs the profile describes: columns as they come, an image's statistics (those of the
    encoded images sent: the rest are not measured), a text model's texts' lengths and words."""
    text = {spec.name: spec.datatype == "BYTES" for spec in inputs if spec.image is None}
    measured = {column for spec in inputs if spec.image is not None for column in statistics(spec.name)}
    text |= dict.fromkeys(measured, False)
    texts = [spec.name for spec in inputs if spec.image is None and text_input(spec.name, meta)]
    text |= {column: words for name in texts for column, words in text_statistics(name).items()}
    return OnlineDrift.of_profile(profile, text, sampled=measured,
                                  lists={column for name in texts for column in word_columns(name)})


def _input(tensor: Any, meta: dict[str, str]) -> TensorSpec:
    """An input as the protocol describes it: a column of rows, or images (uint8 [N, H, W, C])."""
    image = image_input(tensor, meta)
    if image is None:
        return TensorSpec(tensor.name, _datatype(tensor), (-1, 1))
    return TensorSpec(tensor.name, "UINT8", (-1, *image.size, image.channels), image)


def _measured(spec: TensorSpec, drift: OnlineDrift, text: bool) -> TensorSpec:
    if text and set(text_statistics(spec.name)) & set(drift.rules):
        return replace(spec, measured_text=True)
    if spec.image is None or not set(statistics(spec.name)) & set(drift.rules):
        return spec
    return replace(spec, image=replace(spec.image, measured=True))


def _threshold(session: Any, path: Path) -> float | None:
    """The threshold at which the binary model's clients should call a row positive: the one its figures were
    computed at (0.5 for a model exported before thresholds were recorded); None for any other model."""
    from modelci.evaluate.onnx_model import threshold_of

    meta = session.get_modelmeta().custom_metadata_map
    return threshold_of(meta, path) if meta.get(META_TASK) == "binary" else None


def _datatype(tensor: Any) -> str:
    """The protocol's datatype of an ONNX Runtime input or output; one it has none for cannot be served."""
    found = protocol.ONNX_DATATYPES.get(tensor.type)
    if found is None:
        raise ValueError(f"'{tensor.name}' is a {tensor.type}, which the Open Inference Protocol cannot carry")
    return found


def version_of(digest: str) -> str:
    """The version a server reports for a model: its digest, shortened as git shortens a commit."""
    return digest.split(":")[-1][:12]


class Server:
    """The ASGI application."""

    def __init__(self, model: Loaded, max_batch: int, max_delay_s: float, drift_images_per_second: float,
                 instance: str, shadow_rows_per_second: float) -> None:
        self.max_batch, self.instance, self.shadow_rows_per_second = max_batch, instance, shadow_rows_per_second
        self.sample = Sample(drift_images_per_second)  # NOTE: the encoded images measured for drift
        self.metrics = Metrics()
        self.metrics.drift.source = self._drift_source
        self.batcher = Batcher(max_batch, max_delay_s, on_batch=self.metrics.batch)
        self.ready = False
        self.draining = False  # NOTE: set on SIGTERM (serve.listener): ready answers 503, infer still works
        self.watchers: list[Watcher] = []
        self.canary: Canary | None = None
        self.shadow: Shadow | None = None
        self.main = model  # NOTE: the model the main tag names
        self.rolled: Loaded | None = None  # NOTE: the model a rolling deploy moved this server to before the main tag
        self.serving: tuple[Loaded, Run] = (model, self._monitored(model))
        self.metrics.loaded(model.name, model.version, model.digest)
        self.metrics.server(instance)

    def swap(self, model: Loaded | None, wanted: Wanted | None = None) -> None:
        """The main tag's model is `model` from now on, served unless a rolling deploy moved this server to
        another. A canary or shadow of that very model ends: it is the model served now."""
        if model is None:
            return  # NOTE: the main tag always names a model
        # NOTE: a move of the main tag replaces any roll: the roll ends with one, and a server must never go back
        # from the rolled model to the main tag's previous one when the roll's record is cleared
        self.main, self.rolled = model, None
        self._serve(model)
        if self.canary is not None and self.canary.model.digest == model.digest:
            self.start_canary(None)
        if self.shadow is not None and self.shadow.model.digest == model.digest:
            self.start_shadow(None)

    def roll(self, model: Loaded | None, wanted: Wanted | None = None) -> None:
        """A rolling deploy's step for this server: serve `model` before the main tag names it; None: the main
        tag's model again (the roll ended, or was stopped)."""
        self.rolled = model
        self._serve(model or self.main)

    def _serve(self, model: Loaded) -> None:
        """Serve `model` from now on; the requests already taken finish on the model they started with."""
        if model.digest == self.model.digest:
            return
        if self.model.drift is not None and model.drift is not None:
            model.drift.continue_from(self.model.drift)
        # NOTE: one assignment, so a request never pairs one model's checks with another's run
        self.serving = (model, self._monitored(model))
        self.metrics.loaded(model.name, model.version, model.digest)

    def start_canary(self, model: Loaded | None, wanted: Wanted | None = None) -> None:
        """Answer `wanted.percent` of the requests with `model` from now on; None: none (the canary ended)."""
        if model is None or wanted is None or model.digest == self.model.digest:
            self.canary = None
            self.metrics.candidate_ended("canary")
            return
        self.canary = Canary(model, self._monitored(model, stable=False), wanted.percent)
        self.metrics.candidate_loaded(model.name, model.version, model.digest, "canary", wanted.percent)
        github.log(f"the canary {model.version} answers {wanted.percent:g}% of the requests")

    def start_shadow(self, model: Loaded | None, wanted: Wanted | None = None) -> None:
        """Score a copy of the requests with `model` from now on; None: none."""
        ended, self.shadow = self.shadow, None
        if ended is not None:
            ended.stop()  # NOTE: on the event loop: it tells the thread to stop and does not wait for it
        self.metrics.candidate_ended("shadow")
        if model is None or model.digest == self.model.digest:
            return
        self.shadow = Shadow(model, self.model, self.metrics, self.shadow_rows_per_second)
        self.metrics.candidate_loaded(model.name, model.version, model.digest, "shadow", 0.0)

    @property
    def model(self) -> Loaded:
        return self.serving[0]

    def _drift_source(self) -> tuple[str, OnlineDrift | None]:
        model = self.model  # NOTE: once: a swap in between must not pair one model's name with another's window
        return model.name, model.drift

    def _monitored(self, model: Loaded, stable: bool = True) -> Run:
        """`model.run`, timing it, counting its predictions, keeping its inputs for drift and copying the batch to
        the shadow (the stable model's): once per batch, in the batch's worker thread, off the event loop."""
        def run(columns: Columns) -> Columns:
            began = time.perf_counter()
            outputs = model.run(columns)
            try:
                self.metrics.run(model.name, model.version, time.perf_counter() - began)
                predicted = scores(outputs)
                if predicted is not None:
                    self.metrics.prediction.observe((model.name, model.version), predicted)
                if model.task == "multiclass":
                    self._count_classes(model, outputs)
                if stable and model.drift is not None:
                    model.drift.add(columns)
                shadow = self.shadow
                if stable and shadow is not None:
                    shadow.offer(columns, outputs)
            except Exception as exc:  # NOTE: the batch is answered; what watches it must never fail it
                github.warning_once(f"monitoring {model.name} {model.version} failed on a batch: {exc}")
            return outputs

        return run

    def _count_classes(self, model: Loaded, outputs: Columns) -> None:
        classes = predicted_classes(model, outputs)
        if classes is not None and len(classes):
            for index, rows in enumerate(np.bincount(classes).tolist()):
                if rows:
                    self.metrics.classes.labels(model.name, model.version, str(index)).inc(rows)

    def refused(self, digest: str) -> None:
        """A model the watcher did not swap in: counted, and named, so that `modelci deploy` knows at once."""
        self.metrics.refused_model(self.model.name, digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        began = time.perf_counter()
        status, body, headers = await self._route(scope, receive)
        headers = [*headers, (b"content-length", str(len(body)).encode())]  # NOTE: one body, not chunks
        if self.draining:  # NOTE: a keep-alive client leaves this connection while the listener is still open
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if scope["path"].endswith("/infer"):
            # NOTE: counted for the version that answered (a canary's, or the stable model's); none for a request
            # refused before a model was chosen (unreadable, too large), which a canary must not be judged on
            self.metrics.request(self.model.name, scope.get(ANSWERED_BY, ""), status, time.perf_counter() - began)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.batcher.start()
                for watcher in self.watchers:
                    watcher.start()
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                for watcher in self.watchers:
                    await watcher.stop()
                await self.batcher.stop()
                ended, self.shadow = self.shadow, None
                if ended is not None:
                    await asyncio.get_running_loop().run_in_executor(None, ended.stop, True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method, parts = scope["method"], [p for p in scope["path"].split("/") if p]
        try:
            if parts == ["metrics"] and method == "GET":
                # NOTE: in a thread: measuring drift takes milliseconds the event loop owes to requests
                exposition = await asyncio.get_running_loop().run_in_executor(None, self.metrics.exposition)
                return 200, exposition, [(b"content-type", self.metrics.content_type.encode())]
            if parts == ["openapi.json"] and method == "GET":
                from modelci.serve.openapi import document

                return 200, json.dumps(document(_version())).encode(), JSON
            if parts[:1] != ["v2"]:
                raise _NotFound(f"no such endpoint: {scope['path']}")
            found = await self._v2(method, parts[1:], scope, receive)
            if isinstance(found, Encoded):
                return 200, found.body, found.headers
            return 200, json.dumps(found).encode(), JSON
        except BadRequest as exc:
            return 400, _error(str(exc)), JSON
        except _NotFound as exc:
            return 404, _error(str(exc)), JSON
        except _TooLarge as exc:
            return 413, _error(str(exc)), JSON
        except _Unavailable as exc:
            return 503, _error(str(exc)), JSON
        except Exception as exc:  # NOTE: the model failed on a batch: this request fails, the server goes on
            return 500, _error(f"inference failed: {exc}"), JSON

    async def _v2(self, method: str, parts: list[str], scope: Scope, receive: Receive) -> Any:
        if parts == [] and method == "GET":
            return {"name": "modelci", "version": _version(), "extensions": [binary.EXTENSION]}
        if parts in (["health", "live"], ["health", "ready"]) and method == "GET":
            return {"live": True} if parts[1] == "live" else self._ready()
        if parts[:1] != ["models"] or len(parts) < 2:
            raise _NotFound("no such endpoint")
        name, rest = parts[1], parts[2:]
        if name != self.model.name:
            raise _NotFound(f"no model named '{name}'; this server has '{self.model.name}'")
        version = None
        if rest[:1] == ["versions"]:
            canary = self.canary
            if len(rest) < 2 or rest[1] not in (self.model.version, canary.model.version if canary else None):
                raise _NotFound(f"model '{name}' has no version '{rest[1] if len(rest) > 1 else ''}'; it is at "
                                f"'{self.model.version}'")
            version, rest = rest[1], rest[2:]
        if rest == [] and method == "GET":
            canary = self.canary  # NOTE: once: a swap in between must not pair one model's tensors with another's
            model = canary.model if canary is not None and version == canary.model.version else self.model
            return protocol.metadata(name, model.version, model.inputs, model.outputs, model.threshold)
        if rest == ["ready"] and method == "GET":
            return {"name": name, "ready": self.ready}
        if rest == ["infer"] and method == "POST":
            return await self._infer(scope, receive, version)
        raise _NotFound("no such endpoint")

    def _ready(self) -> dict[str, bool]:
        if self.draining:
            raise _Unavailable("stopping: requests are still served while load balancers move away")
        if not self.ready:
            raise _Unavailable("not ready")
        return {"ready": True}

    async def _infer(self, scope: Scope, receive: Receive, version: str | None) -> dict[str, Any] | Encoded:
        length = _header(scope, binary.HEADER)
        document, data = _document(await _read(receive), length)
        model, run = self._answering(scope, document, version)
        scope[ANSWERED_BY] = model.version
        check = (model.inputs, model.outputs, self.max_batch, data, self.sample)
        if any(spec.image or spec.measured_text for spec in model.inputs):
            # NOTE: decoding and resizing images, or measuring texts, takes milliseconds the event loop owes to other
            # requests
            request = await asyncio.get_running_loop().run_in_executor(None, protocol.parse_infer, document, *check)
        else:
            request = protocol.parse_infer(document, *check)
        results = await self.batcher.infer(run, request.columns, request.rows)
        found, outputs = protocol.response(model.name, model.version, request, results)
        if not outputs:
            return found  # NOTE: all JSON, with no Inference-Header-Content-Length, as Triton answers
        header = json.dumps(found).encode()
        return Encoded(b"".join([header, *outputs]),
                       [(b"content-type", OCTETS), (binary.HEADER, str(len(header)).encode())])


    def _answering(self, scope: Scope, document: Any, version: str | None) -> tuple[Loaded, Run]:
        """The model that checks and answers this request: the canary for its share of them (or when the request
        names its version), else the model served now."""
        canary = self.canary  # NOTE: once: a canary that ends in between must not answer half of a request
        if canary is not None and version in (None, canary.model.version):
            given = document.get("id") if isinstance(document, dict) else None
            request_id = (given if isinstance(given, str) else "") or \
                (_header(scope, b"x-request-id") or b"").decode("latin-1") or None
            if version == canary.model.version or canary.takes(request_id):
                return canary.model, canary.run
        return self.serving


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def _document(body: bytes, length: bytes | None) -> tuple[Any, memoryview]:
    """The request's JSON, and the binary tensor data after it: `length` (the Inference-Header-Content-Length
    header) says where the JSON ends; without it, the whole body is JSON."""
    try:
        header, data = binary.split(body, length)
        return json.loads(header), data
    except binary.Malformed as exc:
        raise BadRequest(str(exc)) from None
    except ValueError as exc:
        hint = ("; binary data after the JSON needs the Inference-Header-Content-Length header"
                if length is None and b'"binary_data_size"' in body else "")
        raise BadRequest(f"the body is not JSON: {exc}{hint}") from None
    except RecursionError:
        raise BadRequest("the body nests arrays or objects deeper than Python's JSON reader goes; "
                         "an infer request's data is [rows, 1] at most") from None


class _NotFound(Exception):
    pass


class _TooLarge(Exception):
    pass


class _Unavailable(Exception):
    pass


async def _read(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge(f"the request is over {MAX_BODY // (1 << 20)} MB; send fewer rows per request")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _version() -> str:
    from modelci import __version__

    return __version__
