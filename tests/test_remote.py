"""The remote registry client against a real registry: the CNCF distribution registry (Debian's docker-registry)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from loopback import free_port
from modelci.errors import RegistryError
from modelci.registry.artifact import pull, push_files, read_file, resolve
from modelci.registry.reference import parse_reference
from modelci.registry.remote import RemoteRepository

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
# NOTE: skipped on a laptop without the registry, never in CI, where .ci/run installs it.
pytestmark = pytest.mark.skipif(not Path(REGISTRY_BINARY).exists() and os.environ.get("CI") != "true",
                                reason="needs Debian's docker-registry (apt-get install docker-registry)")


@dataclass(frozen=True)
class Served:
    host: str
    storage: Path  # the registry's own files


def _serve(folder: Path, auth: str = "") -> Iterator[Served]:
    port = free_port()
    (folder / "config.yml").write_text(
        "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: fixed-test-secret}}\n{auth}")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(folder / "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield Served(f"127.0.0.1:{port}", folder / "data")
    finally:
        process.terminate()  # NOTE: by its PID, never by name
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A registry without authentication, for the session."""
    yield from _serve(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def registry(served: Served) -> str:
    return served.host


@pytest.fixture(scope="session")
def locked_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry with basic authentication: user `ci`, password `secret`."""
    folder = tmp_path_factory.mktemp("locked-registry")
    hashed = subprocess.run(["htpasswd", "-Bbn", "ci", "secret"], check=True, capture_output=True, text=True).stdout
    (folder / "htpasswd").write_text(hashed)
    auth = f"auth: {{htpasswd: {{realm: modelci-test, path: {folder / 'htpasswd'}}}}}\n"
    yield from (served.host for served in _serve(folder, auth))


@dataclass
class TokenServer:
    """The token server, and the Authorization header of every request it got (None where there was none)."""

    server: ThreadingHTTPServer
    authorizations: list[str | None]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


def _token_server(key: Any, certificate: Any, issuer: str, service: str) -> TokenServer:
    """A token server like Docker Hub's or GHCR's: basic credentials in, a signed JWT for the scope asked out."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    authorizations: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # NOTE: reached through an HTTP proxy, the path is the whole URL; urlparse reads the query all the same
            query = parse_qs(urlparse(self.path).query)
            authorizations.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"ci:secret").decode():
                self.send_response(401)
                self.end_headers()
                return
            now = int(time.time())
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            der = certificate.public_bytes(serialization.Encoding.DER)
            header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
            claims = {"iss": issuer, "sub": "ci", "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now,
                      "jti": str(now), "access": access}
            signed = f"{encode(header)}.{encode(claims)}"
            signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": f"{signed}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return TokenServer(server, authorizations)


def _token_registry(folder: Path, realm_host: str) -> Iterator[tuple[str, TokenServer]]:
    """A registry that wants bearer tokens from a token server, named `http://<realm_host>:<its port>/token`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelci-test-token")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    (folder / "token.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    tokens = _token_server(key, certificate, "modelci-test-issuer", "modelci-test")
    auth = (f"auth: {{token: {{realm: 'http://{realm_host}:{tokens.port}/token', service: modelci-test, "
            f"issuer: modelci-test-issuer, rootcertbundle: {folder / 'token.pem'}}}}}\n")
    try:
        yield from ((served.host, tokens) for served in _serve(folder, auth))
    finally:
        tokens.server.shutdown()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry that wants bearer tokens from a token server on loopback, as GHCR and Docker Hub do."""
    yield from (host for host, _ in _token_registry(tmp_path_factory.mktemp("token-registry"), "127.0.0.1"))


FAR_REALM = "tokens.example.test"  # NOTE: neither loopback nor resolvable: reached only through an HTTP proxy


@pytest.fixture(scope="session")
def far_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenServer]]:
    """A registry whose token service is on another host, over plain HTTP: `http://tokens.example.test:<port>/token`."""
    yield from _token_registry(tmp_path_factory.mktemp("far-token-registry"), FAR_REALM)


def artifact_files(folder: Path, size: int = 300_000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"roc_auc": 0.85}}))
    return [folder / "model.onnx", folder / "metrics.json"]


def record_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request modelci sends from now on, as "METHOD path?query" below /v2/."""
    sent: list[str] = []
    original = requests.Session.request

    def recording(self, method, url, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(f"{method} {url.split('/v2/')[-1]}")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    return sent


def test_push_then_pull_gives_the_same_files(registry: str, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model")
    reference = parse_reference(f"{registry}/acme/churn:v1")
    pushed = push_files(files, reference, ["v1", "main"], {"io.modelci.verdict": "passed"})
    assert resolve(reference) == resolve(parse_reference(f"{registry}/acme/churn:main"))
    assert resolve(reference).digest == pushed.digest  # type: ignore[union-attr]
    pulled = pull(parse_reference(f"{registry}/acme/churn@{pushed.digest}"), tmp_path / "pulled")
    assert pulled.annotations["io.modelci.verdict"] == "passed"
    for file in files:
        assert (tmp_path / "pulled" / file.name).read_bytes() == file.read_bytes()
    assert read_file(reference, "metrics.json") == files[1].read_bytes()
    assert resolve(parse_reference(f"{registry}/acme/churn:nothing")) is None


def test_pushing_again_uploads_no_blob(registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = artifact_files(tmp_path / "model")
    reference = parse_reference(f"{registry}/acme/again:v1")
    push_files(files, reference, ["v1"], {})
    sent = record_requests(monkeypatch)
    push_files(files, reference, ["v1"], {})
    assert not [s for s in sent if s.startswith(("POST", "PATCH"))]  # HEAD found every blob: nothing uploaded


def test_a_corrupt_blob_is_refused_and_nothing_is_written(served: Served, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model", size=300_001)  # NOTE: content no other test pushes
    reference = parse_reference(f"{served.host}/acme/corrupt:v1")
    pushed = push_files(files, reference, ["v1"], {})
    layer = json.loads(RemoteRepository(served.host, "acme/corrupt").manifest(pushed.digest) or b"{}")["layers"][0]
    hex_digest = layer["digest"].removeprefix("sha256:")
    blob = served.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
    content = bytearray(blob.read_bytes())
    content[1000] ^= 0xFF  # NOTE: one byte flipped in the registry's own storage
    blob.write_bytes(bytes(content))
    with pytest.raises(RegistryError, match="arrived corrupt"):
        pull(reference, tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_basic_authentication(locked_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = artifact_files(tmp_path / "model", size=2000)
    reference = parse_reference(f"{locked_registry}/acme/locked:v1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    with pytest.raises(RegistryError, match="refused \\(401\\) without credentials; pulling needs read access"):
        push_files(files, reference, ["v1"], {})
    monkeypatch.setenv("MODELCI_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "wrong")
    with pytest.raises(RegistryError, match="refused \\(401\\) as ci"):
        push_files(files, reference, ["v1"], {})
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "secret")
    pushed = push_files(files, reference, ["v1"], {})
    assert resolve(reference).digest == pushed.digest  # type: ignore[union-attr]


@pytest.mark.slow
def test_run_publishes_to_a_remote_registry_and_compares_with_it(  # type: ignore[no-untyped-def]
        cli, repo: Path, registry: str) -> None:
    target = f"{registry}/acme/pipeline"
    first = cli("run", "--publish", "--registry", target)
    assert first.code == 0, first.err
    published = resolve(parse_reference(f"{target}:main"))
    assert published is not None
    second = cli("run", "--registry", target)
    assert second.code == 0, second.err
    comparison = json.loads((repo / ".modelci/out/comparison.json").read_text())
    assert comparison["baseline_status"] == "compared"
    assert comparison["baseline_digest"] == published.digest


def test_promote_across_repositories_mounts_and_uploads_no_blob(  # type: ignore[no-untyped-def]
        cli, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = parse_reference(f"{registry}/acme/staging:sha-1")
    pushed = push_files(artifact_files(tmp_path / "model", size=5000), staging, ["sha-1"], {})
    sent = record_requests(monkeypatch)
    result = cli("promote", f"{registry}/acme/staging:sha-1", "v2.0.0", f"{registry}/acme/prod:prod")
    assert result.code == 0, result.err
    assert resolve(parse_reference(f"{registry}/acme/staging:v2.0.0")).digest == pushed.digest  # type: ignore[union-attr]
    assert resolve(parse_reference(f"{registry}/acme/prod:prod")).digest == pushed.digest  # type: ignore[union-attr]
    uploads = [s for s in sent if s.startswith(("POST", "PATCH")) or (s.startswith("PUT") and "/blobs/" in s)]
    assert len(uploads) == 3  # the config and two layers,
    assert all("mount=" in s for s in uploads)  # each mounted from staging, none sent again
    pulled = pull(parse_reference(f"{registry}/acme/prod:prod"), tmp_path / "pulled")
    assert pulled.digest == pushed.digest


def test_bearer_token_flow(token_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = artifact_files(tmp_path / "model", size=3000)
    reference = parse_reference(f"{token_registry}/acme/tokened:v1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    with pytest.raises(RegistryError, match="refused \\(401\\) without credentials"):
        push_files(files, reference, ["v1"], {})
    monkeypatch.setenv("MODELCI_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "secret")
    pushed = push_files(files, reference, ["v1"], {})
    pulled = pull(reference, tmp_path / "pulled")
    assert pulled.digest == pushed.digest
    assert (tmp_path / "pulled" / "model.onnx").read_bytes() == files[0].read_bytes()


class FaultProxy:
    """An HTTP proxy on loopback in front of the registry that breaks the requests a test picks.

    Each fault is (method, path fragment, kind) and is used once, by the first request that matches
    (`half-patch` passes half of an upload chunk to the registry, then hangs up on the client);
    `429` answers Too Many Requests with Retry-After: 1; `500` answers a server error; `drop-request`
    reads half the request body and hangs up; `drop-response` sends half the answer and hangs up;
    `corrupt` flips a byte of the answer; `lie-digest` sends a wrong Docker-Content-Digest header.

    It can also stand for a registry that limits a chunk's size, as the OCI distribution spec lets it
    ("Pushing a blob in chunks"): with `chunk_cap`, a PATCH whose body is larger is refused, as GHCR
    refuses one over 4 MiB: 416 with the upload's Location and the Range the registry holds (asked of
    the registry behind), or, with `cap_status=413`, 413 Payload Too Large and nothing else, as a web
    server in front of a registry does (nginx's client_max_body_size); with `chunk_min`, every POST
    that opens an upload is answered with `OCI-Chunk-Min-Length`, and a chunk sent after a shorter
    one (only the last may be shorter) is refused with 416. The sizes of the chunks passed on are in
    `chunks`, those refused in `refused`.

    With `relocate`, every `Location` it answers names that host instead (an upload sent elsewhere).
    The Authorization header of each request it got is in `authorizations`.
    """

    def __init__(self, upstream: str, *, chunk_cap: int | None = None, chunk_min: int | None = None,
                 cap_status: int = 416, relocate: str | None = None) -> None:
        self.upstream, self.faults, self.seen = upstream, [], []  # type: ignore[var-annotated]
        self.relocate = relocate
        self.authorizations: list[str | None] = []
        self.chunk_cap, self.chunk_min, self.cap_status = chunk_cap, chunk_min, cap_status
        self.chunks: list[int] = []
        self.refused: list[int] = []
        self.closing: list[int] = []  # the sizes of the bodies of the PUTs that close uploads
        self._short: set[str] = set()  # uploads that have had a chunk shorter than chunk_min
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        # NOTE: polled often, so that close() does not wait half a second
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def add(self, method: str, fragment: str, kind: str) -> None:
        self.faults.append((method, fragment, kind))

    def _fault(self, method: str, path: str) -> str | None:
        for fault in self.faults:
            if fault[0] == method and fault[1] in path:
                self.faults.remove(fault)
                return fault[2]
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        method, path = request.command, request.path
        length = int(request.headers.get("Content-Length") or 0)
        fault = self._fault(method, path)
        self.seen.append((method, path, fault))
        self.authorizations.append(request.headers.get("Authorization"))
        if fault == "drop-request":
            request.rfile.read(length // 2)
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        body = request.rfile.read(length) if length else None
        if method == "PUT" and "/blobs/uploads/" in path:
            self.closing.append(len(body or b""))
        if method == "PATCH" and self._refuses_chunk(path, body or b""):
            if self.cap_status == 413:
                request.send_response(413)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            self._refuse(request, path)
            return
        if fault == "half-patch" and body:
            # NOTE: the registry gets the first half of the chunk, the client a broken connection
            start = int(request.headers["Content-Range"].partition("-")[0])
            half = body[: len(body) // 2]
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "connection")}
            headers["Content-Range"] = f"{start}-{start + len(half) - 1}"
            requests.request(method, f"http://{self.upstream}{path}", headers=headers, data=half, timeout=30)
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("429", "500"):
            request.send_response(int(fault))
            request.send_header("Retry-After", "1")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "connection")}
        answer = requests.request(method, f"http://{self.upstream}{path}", headers=headers, data=body,
                                  allow_redirects=False, timeout=30)
        content = answer.content
        if fault == "corrupt" and content:
            content = content[:10] + bytes([content[10] ^ 0xFF]) + content[11:]
        request.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                continue
            if key.lower() == "docker-content-digest" and fault == "lie-digest":
                value = "sha256:" + "0" * 64
            if key.lower() == "location" and self.relocate:
                value = f"http://{self.relocate}{urlparse(value).path}?{urlparse(value).query}"
            request.send_header(key, value)
        if method == "POST" and answer.status_code == 202 and self.chunk_min is not None:
            request.send_header("OCI-Chunk-Min-Length", str(self.chunk_min))
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        if method == "HEAD":
            return
        if fault == "drop-response":
            request.wfile.write(content[: len(content) // 2])
            request.wfile.flush()
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        request.wfile.write(content)

    def _refuses_chunk(self, path: str, body: bytes) -> bool:
        upload = urlparse(path).path  # NOTE: distribution's upload URL changes its query (`_state`) at every chunk
        if (self.chunk_cap is not None and len(body) > self.chunk_cap) or upload in self._short:
            self.refused.append(len(body))
            return True
        if self.chunk_min is not None and len(body) < self.chunk_min:
            self._short.add(upload)
        self.chunks.append(len(body))
        return False

    def _refuse(self, request: BaseHTTPRequestHandler, path: str) -> None:
        """416, with the Location and Range of the upload as the registry behind has it."""
        status = requests.get(f"http://{self.upstream}{path}", timeout=30)
        body = json.dumps({"errors": [{"code": "BLOB_UPLOAD_INVALID", "detail": None, "message":
                                       "the request body is too large and exceeds the maximum permissible limit"}]})
        request.send_response(416)
        for key in ("Location", "Range", "Docker-Upload-UUID"):
            if key in status.headers:
                request.send_header(key, status.headers[key])
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body.encode())

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def proxy(registry: str) -> Iterator[FaultProxy]:
    faults = FaultProxy(registry)
    yield faults
    faults.close()


CREATED = {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}  # the same manifest from the same files


def test_a_push_through_faults_ends_as_the_same_artifact_as_a_clean_one(  # type: ignore[no-untyped-def]
        proxy: FaultProxy, registry: str, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model", size=200_003)
    clean = push_files(files, parse_reference(f"{registry}/acme/clean:v1"), ["v1"], CREATED)
    proxy.add("POST", "/blobs/uploads/", "429")
    proxy.add("PUT", "/blobs/uploads/", "drop-request")
    proxy.add("PUT", "/manifests/", "500")
    began = time.monotonic()
    faulty = push_files(files, parse_reference(f"{proxy.host}/acme/faulty:v1"), ["v1"], CREATED)
    assert faulty.digest == clean.digest
    assert time.monotonic() - began >= 1  # Retry-After was honoured
    assert not proxy.faults  # every fault was met on the way
    pulled = pull(parse_reference(f"{registry}/acme/faulty:v1"), tmp_path / "pulled")
    assert (tmp_path / "pulled" / "model.onnx").read_bytes() == files[0].read_bytes()
    assert pulled.digest == clean.digest


def test_a_pull_through_a_broken_connection_and_a_lying_header(  # type: ignore[no-untyped-def]
        proxy: FaultProxy, registry: str, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model", size=200_005)
    pushed = push_files(files, parse_reference(f"{registry}/acme/pulled:v1"), ["v1"], CREATED)
    proxy.add("GET", "/manifests/v1", "lie-digest")
    proxy.add("GET", "/blobs/sha256:", "drop-response")
    pulled = pull(parse_reference(f"{proxy.host}/acme/pulled:v1"), tmp_path / "pulled")
    assert pulled.digest == pushed.digest  # computed from the manifest itself, not taken from the header
    assert (tmp_path / "pulled" / "model.onnx").read_bytes() == files[0].read_bytes()
    assert not proxy.faults


def test_a_corrupted_byte_is_refused_and_a_failed_push_leaves_no_tag(  # type: ignore[no-untyped-def]
        proxy: FaultProxy, registry: str, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model", size=200_007)
    push_files(files, parse_reference(f"{registry}/acme/bytes:v1"), ["v1"], CREATED)
    for _ in range(2):
        proxy.add("GET", "/blobs/sha256:", "corrupt")
    with pytest.raises(RegistryError, match="arrived corrupt"):
        pull(parse_reference(f"{proxy.host}/acme/bytes:v1"), tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()

    for _ in range(6):  # NOTE: more failures than retries: the push gives up
        proxy.add("PUT", "/blobs/uploads/", "500")
    other = artifact_files(tmp_path / "other", size=200_009)
    with pytest.raises(RegistryError, match="answered 500"):
        push_files(other, parse_reference(f"{proxy.host}/acme/never:v1"), ["v1"], CREATED)
    assert resolve(parse_reference(f"{registry}/acme/never:v1")) is None  # no tag on an incomplete artifact


def test_a_large_blob_goes_up_in_chunks_and_survives_broken_chunks(  # type: ignore[no-untyped-def]
        proxy: FaultProxy, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelci.registry import remote

    monkeypatch.setattr(remote, "CHUNKED_FROM", 100_000)
    monkeypatch.setattr(remote, "UPLOAD_CHUNK", 64_000)
    files = artifact_files(tmp_path / "model", size=300_011)
    clean = push_files(files, parse_reference(f"{registry}/acme/chunks-clean:v1"), ["v1"], CREATED)
    proxy.add("PATCH", "/blobs/uploads/", "half-patch")
    proxy.add("PATCH", "/blobs/uploads/", "drop-request")
    pushed = push_files(files, parse_reference(f"{proxy.host}/acme/chunks:v1"), ["v1"], CREATED)
    assert pushed.digest == clean.digest
    assert not proxy.faults
    patches = [s for s in proxy.seen if s[0] == "PATCH"]
    assert len(patches) >= 6  # 300,011 bytes in 64,000-byte chunks, two of them sent again
    # NOTE: asked the registry how much it had; this registry cannot say once a chunk broke off, so
    # the upload started again (a registry that reports its Range is resumed where it stopped)
    assert any(method == "GET" and "/blobs/uploads/" in path for method, path, _ in proxy.seen)
    assert sum(method == "POST" for method, _, _ in proxy.seen) >= 4  # 3 blobs, and one upload restarted
    pull(parse_reference(f"{registry}/acme/chunks:v1"), tmp_path / "pulled")
    assert (tmp_path / "pulled" / "model.onnx").read_bytes() == files[0].read_bytes()


def test_credentials_from_the_command_line(  # type: ignore[no-untyped-def]
        cli, locked_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from modelci.registry import remote

    monkeypatch.setattr(remote, "_given", None)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    artifact_files(tmp_path / "model", size=1000)
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    result = cli("push", str(tmp_path / "model"), "--to", f"{locked_registry}/acme/flags:v1", "--username", "ci",
                 "--password-stdin")
    assert result.code == 0, result.err
    half = cli("pull", f"{locked_registry}/acme/flags:v1", "-o", str(tmp_path / "x"), "--username", "ci")
    assert half.code == 2
    assert "--username and --password-stdin go together" in half.err


def test_a_container_image_is_named_as_not_a_model(cli, registry: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    RemoteRepository(registry, "acme/image").put_bytes(config)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest,
                           "size": len(config)}, "layers": []}
    answer = requests.put(f"http://{registry}/v2/acme/image/manifests/latest", data=json.dumps(manifest),
                          headers={"Content-Type": manifest["mediaType"]}, timeout=10)
    assert answer.status_code == 201
    result = cli("pull", f"{registry}/acme/image:latest", "-o", str(tmp_path / "pulled"))
    assert result.code == 3
    assert "is not a model artifact" in result.err
    assert not (tmp_path / "pulled").exists()


# -- a registry that limits a chunk's size -------------------------------------------------------------------------

SCALE = 64  # NOTE: the client's sizes and the registries' limits below are the real ones divided by this, to stay fast
LARGE = 600_013  # over 500,000 bytes (32 MB / 64): goes up in chunks
CAP = (4 << 20) // SCALE  # GHCR's 4 MiB


def scale_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs over 500,000 bytes go up in 256 KiB chunks (16 MiB), never made smaller than 16 KiB (1 MiB)."""
    from modelci.registry import remote

    monkeypatch.setattr(remote, "CHUNKED_FROM", (32 << 20) // SCALE)
    monkeypatch.setattr(remote, "UPLOAD_CHUNK", (16 << 20) // SCALE)
    monkeypatch.setattr(remote, "SMALLEST_CHUNK", (1 << 20) // SCALE)


def push_through(limits: FaultProxy, registry: str, files: list[Path], repository: str, tmp_path: Path) -> None:
    """Push through the proxy; pull from the registry itself, every blob checked against its digest, and compare."""
    pushed = push_files(files, parse_reference(f"{limits.host}/{repository}:v1"), ["v1"], CREATED)
    pulled = pull(parse_reference(f"{registry}/{repository}:v1"), tmp_path / "pulled")
    assert pulled.digest == pushed.digest
    for file in files:
        assert (tmp_path / "pulled" / file.name).read_bytes() == file.read_bytes()


def two_large_files(folder: Path) -> list[Path]:
    files = artifact_files(folder, size=LARGE)
    (folder / "weights.bin").write_bytes(os.urandom(LARGE + 4))
    return [*files, folder / "weights.bin"]


@pytest.mark.parametrize("status", [416, 413])
def test_a_registry_that_caps_a_chunk_gets_chunks_it_takes(  # type: ignore[no-untyped-def]
        registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    scale_chunks(monkeypatch)
    files = two_large_files(tmp_path / "model")
    capping = FaultProxy(registry, chunk_cap=CAP, cap_status=status)
    try:
        push_through(capping, registry, files, f"acme/capped-{status}", tmp_path)
    finally:
        capping.close()
    full = (16 << 20) // SCALE
    # NOTE: a 416 may come from a replica that lags, so a size is sent twice before it is halved; a 413
    # says the body is too large; the size the registry took is kept, so the second blob is not refused
    sizes = [full, full // 2] if status == 413 else [full, full, full // 2, full // 2]
    assert capping.refused == sizes
    assert max(capping.chunks) == CAP
    assert sum(capping.chunks) == 2 * LARGE + 4


def test_chunks_are_as_large_as_the_registry_asks(  # type: ignore[no-untyped-def]
        registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scale_chunks(monkeypatch)
    files = artifact_files(tmp_path / "model", size=LARGE)
    least = 300_000  # above the client's own chunk
    asking = FaultProxy(registry, chunk_min=least)
    try:
        push_through(asking, registry, files, "acme/least", tmp_path)
    finally:
        asking.close()
    assert not asking.refused
    assert all(size >= least for size in asking.chunks[:-1])
    assert sum(asking.chunks) == LARGE


@pytest.mark.parametrize(("cap", "least", "last_tried"), [
    (8 << 10, None, (1 << 20) // SCALE),  # down to the smallest chunk the client sends
    (CAP, 100_000, (8 << 20) // SCALE),  # half of it would be below the registry's minimum
], ids=["no chunk small enough", "the cap below the minimum"])
def test_a_registry_that_takes_no_chunk_the_client_can_send_gets_the_blob_in_one_put(  # type: ignore[no-untyped-def]
        registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int, least: int | None,
        last_tried: int) -> None:
    scale_chunks(monkeypatch)
    files = artifact_files(tmp_path / "model", size=LARGE + 2)
    limits = FaultProxy(registry, chunk_cap=cap, chunk_min=least)
    try:
        push_through(limits, registry, files, f"acme/one-put-{cap}", tmp_path)
    finally:
        limits.close()
    assert not limits.chunks  # every chunk refused
    assert limits.refused[-2:] == [last_tried, last_tried]
    assert LARGE + 2 in limits.closing  # then the blob, whole, in the PUT that closes a new upload


def test_a_push_over_32_mb_to_a_registry_that_caps_a_chunk_at_4_mib(  # type: ignore[no-untyped-def]
        registry: str, tmp_path: Path) -> None:
    files = artifact_files(tmp_path / "model", size=(32 << 20) + 1_000_003)  # NOTE: the client's own sizes
    capping = FaultProxy(registry, chunk_cap=4 << 20)
    try:
        push_through(capping, registry, files, "acme/ghcr-like", tmp_path)
    finally:
        capping.close()
    assert max(capping.chunks) == 4 << 20


# -- where credentials go ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "sent"), [
    ("https://auth.docker.io/token", True),
    ("https://ghcr.io/token", True),
    ("http://127.0.0.1:5001/token", True),
    ("http://localhost/token", True),
    ("http://[::1]:5001/token", True),
    ("http://ghcr.io/token", False),
    ("http://127.0.0.1.example.test/token", False),
    ("http://localhost.example.test:5001/token", False),
    ("http://ci:secret@127.0.0.1/token", False),
    ("ftp://auth.example.test/token", False),
], ids=lambda value: str(value))
def test_credentials_go_only_over_https_or_to_loopback(url: str, sent: bool) -> None:
    from modelci.registry.remote import may_carry_credentials

    assert may_carry_credentials(url) is sent


def test_no_credentials_go_to_a_plain_http_token_service_on_another_host(  # type: ignore[no-untyped-def]
        far_token_registry: tuple[str, TokenServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host, tokens = far_token_registry
    files = artifact_files(tmp_path / "model", size=3000)
    reference = parse_reference(f"{host}/acme/far:v1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # NOTE: the realm's host cannot be resolved here; a proxy is the way to it, and it is the token server
    # itself, which then sees whatever the client sends to that host
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{tokens.port}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    tokens.authorizations.clear()
    with pytest.raises(RegistryError, match="refused \\(401\\) without credentials"):
        push_files(files, reference, ["v1"], {})
    assert tokens.authorizations == [None]  # without credentials the token is asked for: the way there works

    monkeypatch.setenv("MODELCI_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "secret")
    with pytest.raises(RegistryError, match=f"{host} asks for your credentials to be sent to {FAR_REALM}") as refused:
        push_files(files, reference, ["v1"], {})
    assert "plain HTTP" in str(refused.value)
    assert tokens.authorizations == [None]  # nothing more reached it: no credentials were sent


@pytest.mark.parametrize(("fixture", "scheme"), [("locked_registry", "Basic "), ("token_registry", "Bearer ")],
                         ids=["basic", "bearer"])
def test_credentials_go_only_to_the_registry_not_to_an_upload_location_elsewhere(  # type: ignore[no-untyped-def]
        request: pytest.FixtureRequest, fixture: str, scheme: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # NOTE: another loopback port, reached over plain HTTP: loopback may carry credentials, but only the
    # registry's own host, scheme and port gets them (and its tokens)
    registry = request.getfixturevalue(fixture)
    elsewhere = FaultProxy(registry)
    front = FaultProxy(registry, relocate=elsewhere.host)
    monkeypatch.setenv("MODELCI_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "secret")
    try:
        with pytest.raises(RegistryError, match=f"{elsewhere.host} \\(http\\) asks for your credentials") as refused:
            push_files(artifact_files(tmp_path / "model", size=4000), parse_reference(f"{front.host}/acme/moved:v1"),
                       ["v1"], {})
    finally:
        front.close()
        elsewhere.close()
    assert f"they go only to the registry itself ({front.host})" in str(refused.value)
    assert any(header and header.startswith(scheme) for header in front.authorizations)  # the registry got them
    assert elsewhere.seen  # the upload went there
    assert elsewhere.authorizations == [None] * len(elsewhere.seen)  # with no credentials


def test_a_deploy_history_on_a_real_registry_is_read_back(cli, registry: str,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    # NOTE: distribution 2.8 gives every tag in one answer (it pages tag lists from 3.0, which modelci follows by
    # the Link header, as the distribution spec says)
    for name, size in (("a", 300_000), ("b", 200_000)):
        push_files(artifact_files(tmp_path / name, size), parse_reference(f"{registry}/acme/delivered:sha-{name}"),
                   [f"sha-{name}"], {"io.modelci.verdict": "passed"})
    for name in ("a", "b", "a", "a"):  # NOTE: the last changes nothing, and is no deploy
        assert cli("deploy", f"{registry}/acme/delivered:sha-{name}").code == 0
    found = cli("delivery", f"{registry}/acme/delivered", "--out", str(tmp_path / "out"))
    assert found.code == 0, found.err
    figures = json.loads((tmp_path / "out" / "delivery.json").read_text())
    assert (figures["deploys"], figures["attempts"], figures["failures"]) == (3, 3, 0)
    assert figures["notes"] == []
