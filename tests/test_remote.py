"""The remote registry client against a real registry: the CNCF distribution registry (Debian's docker-registry)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from modelci.errors import RegistryError
from modelci.registry.artifact import pull, push_files, read_file, resolve
from modelci.registry.reference import parse_reference
from modelci.registry.remote import RemoteRepository

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
pytestmark = pytest.mark.skipif(not Path(REGISTRY_BINARY).exists(),
                                reason="needs Debian's docker-registry (apt-get install docker-registry)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    host: str
    storage: Path  # the registry's own files


def _serve(folder: Path, auth: str = "") -> Iterator[Served]:
    port = _free_port()
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


def artifact_files(folder: Path, size: int = 300_000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"roc_auc": 0.85}}))
    return [folder / "model.onnx", folder / "metrics.json"]


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
    sent: list[str] = []
    original = requests.Session.request

    def counting(self, method, url, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(f"{method} {url.split('/v2/')[-1].split('?')[0]}")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counting)
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
    sent: list[str] = []
    original = requests.Session.request

    def recording(self, method, url, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(f"{method} {url.split('/v2/')[-1]}")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    result = cli("promote", f"{registry}/acme/staging:sha-1", "v2.0.0", f"{registry}/acme/prod:prod")
    assert result.code == 0, result.err
    assert resolve(parse_reference(f"{registry}/acme/staging:v2.0.0")).digest == pushed.digest  # type: ignore[union-attr]
    assert resolve(parse_reference(f"{registry}/acme/prod:prod")).digest == pushed.digest  # type: ignore[union-attr]
    uploads = [s for s in sent if s.startswith(("POST", "PATCH")) or (s.startswith("PUT") and "/blobs/" in s)]
    assert len(uploads) == 3  # the config and two layers,
    assert all("mount=" in s for s in uploads)  # each mounted from staging, none sent again
    pulled = pull(parse_reference(f"{registry}/acme/prod:prod"), tmp_path / "pulled")
    assert pulled.digest == pushed.digest
