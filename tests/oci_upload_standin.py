"""A stand-in for an OCI registry's blob endpoints on loopback, as the OCI distribution spec describes them.

It serves what modelci's upload uses, and holds to the spec's rules for it ("Pushing a blob in
chunks", "upload status"): `GET /v2/` (200); HEAD and GET of a blob (200, or 404 BLOB_UNKNOWN);
POST `/v2/<name>/blobs/uploads/` opens an upload (202, `Location`, `Range: 0-0`); PATCH on the
upload takes a chunk only when its `Content-Range` (`^[0-9]+-[0-9]+$`, as long as the body) starts
where what the registry holds ends, and answers 202 with `Location` and `Range: 0-<last byte>`,
else 416 with the `Range` of what it holds; GET on the upload answers 204 with `Location` and
`Range`; PUT `?digest=` appends its body and closes the upload: 201 when the digest is that of
everything received, else 400 DIGEST_INVALID (and the upload is gone, as distribution cancels it);
an unknown upload is 404 BLOB_UPLOAD_UNKNOWN. Like distribution (and the spec's own example), an
empty upload reports `Range: 0-0`, the same as one that holds one byte.

Faults a test scripts, each met once, by the first chunk sent from byte `at`: `drop_chunk(at,
after)` reads `after` bytes of its body, keeps them (as a registry that streams to storage does)
and closes the connection without an answer (with `after` the chunk's length: the chunk is taken
and its answer lost); `refuse_chunk(at)` answers 416 without taking its bytes, its Range still
true (a registry that refuses a chunk it could have taken, as a replica that lags behind a load
balancer may). `report_range = False` makes the status GET answer without a Range. Every request
is in `seen`, in order.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from loopback import LoopbackServer

# The spec's grammar of a repository name, and of a chunk's Content-Range.
NAME = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
UPLOADS = re.compile(rf"^/v2/(?P<name>{NAME})/blobs/uploads/$")
UPLOAD = re.compile(rf"^/v2/(?P<name>{NAME})/blobs/uploads/(?P<id>[^/]+)$")
BLOB = re.compile(rf"^/v2/(?P<name>{NAME})/blobs/(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$")
CONTENT_RANGE = re.compile(r"^(?P<start>[0-9]+)-(?P<end>[0-9]+)$")
PIECE = 4096  # a chunk's body is read in pieces of this size, and each piece kept as it arrives


@dataclass(frozen=True)
class Seen:
    """One request and what the stand-in answered."""

    method: str
    path: str  # with its query
    content_range: str | None
    status: int | None  # None: the connection was closed without an answer
    range: str | None  # the Range header of the answer

    @property
    def start(self) -> int:
        """Where the chunk of a PATCH begins."""
        return int((self.content_range or "").partition("-")[0])


@dataclass
class _Upload:
    name: str
    data: bytearray


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


def _error(status: int, code: str, message: str) -> _Answer:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    return _Answer(status, {"Content-Type": "application/json"}, body)


class Registry(LoopbackServer):
    """The stand-in: `with Registry() as registry:` serves on `registry.host` until the block ends."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}  # (repository, digest) -> content
        self.uploads: dict[str, _Upload] = {}
        self.seen: list[Seen] = []
        self.report_range = True
        self._drops: dict[int, int] = {}  # a chunk's first byte -> how much of it is read before hanging up
        self._refusals: set[int] = set()  # the first bytes of chunks to refuse
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # NOTE: keep-alive, as a registry has, so a dropped connection is noticed

            def _any(self) -> None:
                standin._handle(self)

            do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.host = f"127.0.0.1:{self.port}"

    def blob(self, name: str, digest: str) -> bytes | None:
        """A blob of a repository as the registry stored it, or None."""
        return self.blobs.get((name, digest))

    # -- faults ---------------------------------------------------------------------------------------

    def drop_chunk(self, at: int, after: int) -> None:
        """The chunk from byte `at` breaks off after `after` bytes of its body, which the registry keeps."""
        self._drops[at] = after

    def refuse_chunk(self, at: int) -> None:
        """The chunk from byte `at` is answered 416, its bytes not taken, with the Range of what the registry holds."""
        self._refusals.add(at)

    # -- the protocol ---------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        method, target = request.command, request.path
        path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
        content_range = request.headers.get("Content-Range")
        with self._lock:
            if method == "PATCH" and (upload := UPLOAD.match(path)):
                answer = self._patch(request, upload["name"], upload["id"], content_range)
            else:
                body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
                answer = self._route(method, path, query, body, content_range)
            self.seen.append(Seen(method, target, content_range, None if answer is None else answer.status,
                                  None if answer is None else answer.headers.get("Range")))
        if answer is None:  # NOTE: closed without an answer, the bytes read so far kept
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        request.send_response(answer.status)
        for key, value in answer.headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(answer.body)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(answer.body)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
               content_range: str | None) -> _Answer:
        if path == "/v2/" and method == "GET":
            return _Answer(200, {"Docker-Distribution-API-Version": "registry/2.0"}, b"{}")
        if (found := BLOB.match(path)) and method in ("GET", "HEAD"):
            content = self.blobs.get((found["name"], found["digest"]))
            if content is None:
                return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return _Answer(200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": found["digest"]},
                           content)
        if (found := UPLOADS.match(path)) and method == "POST":
            # NOTE: a mount or a one-request upload (?mount=, ?digest=) is not offered: 202, an upload begins
            return self._start(found["name"])
        if found := UPLOAD.match(path):
            upload = self.uploads.get(found["id"])
            if upload is None or upload.name != found["name"]:
                return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
            if method == "GET":
                return _Answer(204, self._progress(found["id"], include_range=self.report_range))
            if method == "PUT":
                if content_range is not None and not self._in_step(upload, content_range, len(body)):
                    return self._out_of_step(found["id"])
                return self._close(found["id"], upload, query.get("digest", []), body)
            if method == "DELETE":
                del self.uploads[found["id"]]
                return _Answer(204, {})
        return _error(405, "UNSUPPORTED", f"{method} {path} is not offered by this stand-in")

    def _start(self, name: str) -> _Answer:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = _Upload(name, bytearray())
        return _Answer(202, self._progress(upload_id))

    def _progress(self, upload_id: str, *, include_range: bool = True) -> dict[str, str]:
        """Location and Range of an upload: `0-<last byte>`, and `0-0` when it holds nothing, as distribution says."""
        upload = self.uploads[upload_id]
        headers = {"Location": f"/v2/{upload.name}/blobs/uploads/{upload_id}", "Docker-Upload-UUID": upload_id}
        if include_range:
            headers["Range"] = f"0-{max(len(upload.data) - 1, 0)}"
        return headers

    def _patch(self, request: BaseHTTPRequestHandler, name: str, upload_id: str,
               content_range: str | None) -> _Answer | None:
        length = int(request.headers.get("Content-Length") or 0)
        upload = self.uploads.get(upload_id)
        if upload is None or upload.name != name:
            request.rfile.read(length)
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        held = len(upload.data)  # NOTE: where a chunk in step starts, and so how a fault finds its chunk
        in_step = self._in_step(upload, content_range or "", length)
        if not in_step or held in self._refusals:
            if in_step:
                self._refusals.remove(held)
            request.rfile.read(length)
            return self._out_of_step(upload_id)
        drop = self._drops.pop(held, None)
        limit, taken = (length if drop is None else min(drop, length)), 0
        while taken < limit:  # NOTE: each piece kept as it arrives, as a registry that streams to storage does
            piece = request.rfile.read(min(PIECE, limit - taken))
            if not piece:  # the client hung up
                return None
            upload.data += piece
            taken += len(piece)
        return None if drop is not None else _Answer(202, self._progress(upload_id))

    @staticmethod
    def _in_step(upload: _Upload, content_range: str, length: int) -> bool:
        """A chunk's range is well formed, as long as its body, and starts where what the registry holds ends."""
        found = CONTENT_RANGE.match(content_range)
        return (found is not None and int(found["start"]) == len(upload.data)
                and int(found["end"]) - int(found["start"]) + 1 == length)

    def _out_of_step(self, upload_id: str) -> _Answer:
        """416, with the Range the client should go on from."""
        body = _error(416, "BLOB_UPLOAD_INVALID", "chunk out of order, or its Content-Range invalid").body
        return _Answer(416, self._progress(upload_id) | {"Content-Type": "application/json"}, body)

    def _close(self, upload_id: str, upload: _Upload, digests: list[str], body: bytes) -> _Answer:
        """The closing PUT: its body is the last chunk; the digest is checked against everything received."""
        del self.uploads[upload_id]  # NOTE: gone, closed or refused, as distribution cancels a refused upload
        content = bytes(upload.data + body)
        if len(digests) != 1 or not digests[0].startswith("sha256:"):
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        if "sha256:" + hashlib.sha256(content).hexdigest() != digests[0]:
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs[(upload.name, digests[0])] = content
        return _Answer(201, {"Location": f"/v2/{upload.name}/blobs/{digests[0]}", "Docker-Content-Digest": digests[0]})
