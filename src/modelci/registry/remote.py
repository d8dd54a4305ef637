"""A repository on a remote registry (GHCR, Docker Hub, Harbor, ECR, distribution), over the OCI Distribution API.

It offers what the on-disk layout offers (blobs in, blobs out verified, manifests, tags), so the
artifact code is the same for both. Blobs the registry already has are not sent again (HEAD
first). Every blob and manifest read is checked against its digest before it is used. Requests
that fail with 429 or a 5xx, or lose their connection, are retried with backoff that honours
`Retry-After`, within a bounded budget. Authentication: anonymous, basic, or the bearer-token flow
the registry asks for in `WWW-Authenticate` (the token is fetched for the scope asked, cached, and
fetched again once when a request is refused with 401). Credentials go only over HTTPS, or to this
machine: a registry that names a token service over plain HTTP elsewhere is refused, by name. They
are put on each request to the registry's own scheme, host and port, never on the session, so an
upload `Location` on another host gets none.
Large blobs go up in chunks of the size the registry takes (see `_send_chunks`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests

from modelci import atomic
from modelci.errors import RegistryError
from modelci.registry.layout import Descriptor, sha256_digest

# NOTE: Docker's types too, so that a container image's manifest is fetched and then refused by name
# ("not a model artifact") rather than reported missing.
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")
LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRIES = 5
RETRY_BUDGET_SECONDS = 60.0  # the longest a request waits in all, over its retries
CHUNK = 1 << 20
CHUNKED_FROM = 32 << 20  # larger blobs go up in chunks that resume after a broken connection
UPLOAD_CHUNK = 16 << 20  # made smaller for a registry that refuses it (GHCR takes at most 4 MiB a request)
SMALLEST_CHUNK = 1 << 20  # a registry that refuses this too gets the blob in one PUT
LARGEST_CHUNK = 128 << 20  # a chunk is held in memory: a registry that asks for larger ones gets one PUT
TIMEOUT = (10, 300)  # connect, read


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


_given: Credentials | None = None  # from the command line's --username and --password-stdin


def use_credentials(credentials: Credentials) -> None:
    """Credentials given on the command line, used before any other source."""
    global _given
    _given = credentials


def credentials_for(host: str) -> Credentials | None:
    """Credentials from the command line, MODELCI_REGISTRY_USERNAME/PASSWORD, GITHUB_TOKEN for ghcr.io, or
    ~/.docker/config.json (`docker login`), in that order."""
    import json

    if _given is not None:
        return _given
    user, password = os.environ.get("MODELCI_REGISTRY_USERNAME"), os.environ.get("MODELCI_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, password)
    if host == "ghcr.io" and os.environ.get("GITHUB_TOKEN"):
        return Credentials(os.environ.get("GITHUB_ACTOR", "modelci"), os.environ["GITHUB_TOKEN"])
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(config.read_text(encoding="utf-8")).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    entry = auths.get(host) or auths.get(f"https://{host}") or {}
    encoded = entry.get("auth") if isinstance(entry, dict) else None
    if not encoded:
        return None
    user, _, password = base64.b64decode(encoded).decode("utf-8", "replace").partition(":")
    return Credentials(user, password)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme of a WWW-Authenticate header and its parameters."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def may_carry_credentials(url: str) -> bool:
    """Whether credentials may be sent to `url`: over HTTPS, or over plain HTTP to this machine only."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    # NOTE: netloc, not hostname: `user@127.0.0.1` or `127.0.0.1.example.test` is not this machine
    return parts.scheme == "http" and LOOPBACK.match(parts.netloc) is not None


def _chunk_min_length(answer: requests.Response) -> int:
    """The smallest chunk the registry takes but for the last (`OCI-Chunk-Min-Length` on the answer that opens an
    upload); 0 when it does not say."""
    value = answer.headers.get("OCI-Chunk-Min-Length", "").strip()
    return int(value) if value.isdigit() else 0


def _bytes_held(upload_range: str) -> int | None:
    """How many bytes an upload's Range (`0-<last byte>`; `bytes=0-<last byte>` from older registries) says the
    registry holds; None when it says nothing usable.

    `0-0` counts as none: distribution (and the spec's example) answers it for an empty upload as well as
    for one byte. Resending the first byte to a registry that has it is refused (416) and found out,
    where starting at byte 1 of an empty upload is refused every time (or, by a registry that does not
    check Content-Range, leaves a hole)."""
    found = re.fullmatch(r"(?:bytes=)?0-(\d+)", upload_range.strip())
    if found is None:
        return None
    last = int(found[1])
    return last + 1 if last else 0


class RemoteRepository:
    """One repository of a registry: blobs, manifests and tags."""

    def __init__(self, host: str, repository: str, *, credentials: Credentials | None = None,
                 plain_http: bool = False) -> None:
        self.host, self.repository = host, repository
        scheme = "http" if plain_http or LOOPBACK.match(host) else "https"
        self.base = f"{scheme}://{host}/v2/{repository}"
        self.credentials = credentials if credentials is not None else credentials_for(host)
        self.session = requests.Session()
        self._token: str | None = None
        self._basic = False  # the registry asked for basic credentials
        # NOTE: learned from a registry that refused larger chunks, so the next blob is not refused again
        self._chunk_cap: int | None = None
        # NOTE: by digest, so never stale: resolving a tag fetches its manifest whole, and what follows
        # (reading the manifest, tagging it) needs it again
        self._manifests: dict[str, bytes] = {}

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"

    # -- requests: retries and authentication ------------------------------------------------------

    def _request(self, method: str, url: str, *, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        url = url if url.startswith("http") else f"{self.base}{url}"
        began, retried_auth = time.monotonic(), False
        extra = kwargs.pop("headers", None)
        for attempt in range(RETRIES + 1):
            body = kwargs.get("data")
            if isinstance(body, io.IOBase):
                body.seek(0)  # NOTE: a retried upload sends the whole body again
            try:
                response = self.session.request(method, url, headers=self._headers(url, extra), timeout=TIMEOUT,
                                                **kwargs)
            except requests.ConnectionError as exc:
                if attempt == RETRIES or not self._wait(attempt, None, began):
                    raise RegistryError(f"{self.host}: cannot connect ({exc.__class__.__name__})",
                                        hint="check the registry's address and the network") from None
                continue
            if response.status_code == 401 and not retried_auth and self._authenticate(response):
                retried_auth = True
                continue
            if response.status_code in RETRY_STATUS and attempt < RETRIES and self._wait(
                    attempt, response.headers.get("Retry-After"), began):
                continue
            if response.status_code in ok:
                return response
            raise self._refused(method, url, response)
        raise RegistryError(f"{self.host}: {method} {url} kept failing")  # NOTE: not reached; for the type checker

    def _headers(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if not self._own(url):
            return headers  # NOTE: an upload Location may name another host: nothing of ours goes there
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._basic and self.credentials:
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        return headers

    def _own(self, url: str) -> bool:
        """Whether `url` is on the registry's own scheme, host and port, and may carry credentials there."""
        here, there = urlsplit(self.base), urlsplit(url)
        return (here.scheme, here.netloc) == (there.scheme, there.netloc) and may_carry_credentials(url)

    @staticmethod
    def _wait(attempt: int, retry_after: str | None, began: float) -> bool:
        """Sleep before the next try; False when that would go past the budget."""
        delay = min(2.0 ** attempt * 0.5, 16.0)
        if retry_after and retry_after.isdigit():
            delay = float(retry_after)
        if time.monotonic() - began + delay > RETRY_BUDGET_SECONDS:
            return False
        time.sleep(delay)
        return True

    def _authenticate(self, response: requests.Response) -> bool:
        """Answer a 401's challenge: basic credentials, or a bearer token for the scope asked."""
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        basic = (self.credentials.username, self.credentials.password) if self.credentials else None
        if basic and not self._own(response.url):
            raise self._asked_elsewhere(response.url)
        if scheme == "basic" and basic and not self._basic:
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {k: params[k] for k in ("service", "scope") if k in params}
        query.setdefault("scope", f"repository:{self.repository}:pull,push")
        if basic and not may_carry_credentials(params["realm"]):
            raise self._realm_refused(params["realm"])
        answer = requests.get(params["realm"], params=query, auth=basic, timeout=TIMEOUT)
        if answer.status_code != 200:
            return False
        body = answer.json()
        self._token = body.get("token") or body.get("access_token")
        return bool(self._token)

    def _asked_elsewhere(self, url: str) -> RegistryError:
        parts = urlsplit(url)
        return RegistryError(f"{parts.netloc} ({parts.scheme}) asks for your credentials for {self}; refused: they go "
                             f"only to the registry itself ({urlsplit(self.base).netloc}), over HTTPS or to this "
                             "machine", hint=f"check that {self.host} is the registry you meant, and reach it over "
                                             "https://")

    def _realm_refused(self, realm: str) -> RegistryError:
        parts = urlsplit(realm)
        how = "over plain HTTP" if parts.scheme == "http" else f"over {parts.scheme or 'no scheme'}"
        return RegistryError(f"{self.host} asks for your credentials to be sent to {parts.hostname or realm} {how} "
                             f"(token service {realm}); refused: credentials go only over HTTPS, or to this machine",
                             hint=f"check that {self.host} is the registry you meant; its token service must be "
                                  "https://")

    def _refused(self, method: str, url: str, response: requests.Response) -> RegistryError:
        code = response.status_code
        detail = response.text.strip()[:300]
        if code in (401, 403):
            who = f"as {self.credentials.username}" if self.credentials else "without credentials"
            return RegistryError(f"{self}: {method} refused ({code}) {who}; pulling needs read access to the "
                                 f"repository, pushing and tagging need write access. {detail}",
                                 hint="set MODELCI_REGISTRY_USERNAME and MODELCI_REGISTRY_PASSWORD (in a GitHub "
                                      "workflow, GITHUB_TOKEN with `packages: write`), or docker login")
        return RegistryError(f"{self}: {method} {url} answered {code}: {detail}")

    # -- blobs ---------------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return self._request("HEAD", f"/blobs/{digest}", ok=(200, 404)).status_code == 200

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            self._upload(io.BytesIO(data), digest)
        return digest, len(data)

    def put_file(self, source: Path) -> tuple[str, int]:
        with source.open("rb") as handle:
            digest, size = atomic.stream_sha256(handle)
        if not self.has_blob(digest):
            with source.open("rb") as handle:
                self._upload(handle, digest)
        return digest, size

    def _upload(self, body: IO[bytes], digest: str) -> None:
        """Send a small blob in one PUT, a large one in chunks that resume; one PUT too where the registry takes no
        chunk this client can send."""
        location, least = self._start_upload()
        size = body.seek(0, io.SEEK_END)
        body.seek(0)
        rest: IO[bytes] | bytes = body
        if size > CHUNKED_FROM and least <= LARGEST_CHUNK:
            chunked = self._send_chunks(location, least, body, size)
            if chunked is None:
                location, _ = self._start_upload()
            else:
                location = chunked
                rest = b""  # NOTE: bytes, so the closing PUT says Content-Length: 0 rather than chunking nothing
        joiner = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{joiner}digest={digest}", ok=(201,), data=rest,
                      headers={"Content-Type": "application/octet-stream"})

    def _start_upload(self) -> tuple[str, int]:
        """A new upload's location, and the smallest chunk the registry takes (0: any)."""
        started = self._request("POST", "/blobs/uploads/", ok=(202,))
        return self._absolute(started.headers.get("Location", "")), _chunk_min_length(started)

    def _absolute(self, location: str) -> str:
        return location if location.startswith("http") else f"{self.base.split('/v2/')[0]}{location}"

    def _chunk_size(self, least: int) -> int:
        """UPLOAD_CHUNK, or less where the registry refused it, or more where it asks for more."""
        size = UPLOAD_CHUNK if self._chunk_cap is None else min(UPLOAD_CHUNK, self._chunk_cap)
        return max(size, least)

    def _shrink(self, least: int) -> bool:
        """Send chunks half the size from now on; False when that is below SMALLEST_CHUNK or the registry's least."""
        smaller = self._chunk_size(least) // 2
        if smaller < max(SMALLEST_CHUNK, least):
            return False
        self._chunk_cap = smaller
        return True

    def _send_chunks(self, location: str, least: int, body: IO[bytes], size: int) -> str | None:
        """PATCH the blob chunk by chunk; the upload's location to close it at, or None when the registry takes no
        chunk this client can send.

        When a chunk breaks off, or the registry is out of step (416, or 404 for an upload whose state
        moved on), ask the registry how much it has (the upload's Range) and go on from there; a registry
        that cannot say gets the blob again in a new upload. A chunk refused twice at the very offset the
        registry named was refused for what it is, not for where it starts: too large for the registry (which
        says so with 413, or, as GHCR does over 4 MiB, with 416), or sent after a `0-0` that meant one byte:
        a new upload, in chunks half the size."""
        offset, setbacks = 0, 0
        named: int | None = None  # the offset the registry last said to go on from
        while offset < size:
            body.seek(offset)
            chunk = body.read(self._chunk_size(least))
            answer = self._request("PATCH", location, ok=(202, 404, 413, 416), data=chunk,
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            if answer.status_code == 202:
                location, offset = self._absolute(answer.headers.get("Location", location)), offset + len(chunk)
                continue
            setbacks += 1
            if setbacks > RETRIES:
                raise RegistryError(f"{self}: the upload kept falling out of step with the registry")
            status = self._upload_status(location, size)
            if answer.status_code == 413 or (status is not None and status[1] == offset == named):
                if not self._shrink(least):
                    return None
                setbacks, status = 0, None  # NOTE: halving ends by itself, so it does not count as a setback
            if status is None:
                (location, least), offset, named = self._start_upload(), 0, None
            else:
                (location, offset), named = status, status[1]
        return location

    def _upload_status(self, location: str, size: int) -> tuple[str, int] | None:
        """The upload's location and the offset to go on from, as the registry says; None when it cannot say."""
        status = self._request("GET", location, ok=(204, 404))
        held = _bytes_held(status.headers.get("Range", "")) if status.status_code == 204 else None
        if held is None or held > size:
            return None
        return self._absolute(status.headers.get("Location", location)), held

    def mount(self, descriptor: Descriptor, source: RemoteRepository) -> None:
        """Link a blob of another repository of this registry here; copied only if the registry will not mount."""
        if self.has_blob(descriptor.digest):
            return
        answer = self._request("POST", f"/blobs/uploads/?mount={descriptor.digest}&from={source.repository}",
                               ok=(201, 202))
        if answer.status_code == 201:
            return
        with tempfile.TemporaryFile() as spool:  # NOTE: not mounted (another registry's policy): copy it
            source.copy_blob(descriptor, spool)
            self._upload(spool, descriptor.digest)

    def read_bytes(self, descriptor: Descriptor) -> bytes:
        buffer = io.BytesIO()
        self.copy_blob(descriptor, buffer)
        return buffer.getvalue()

    def copy_blob(self, descriptor: Descriptor, target: IO[bytes]) -> None:
        """Stream a blob into `target` through a temporary file, writing only once it is verified."""
        with tempfile.TemporaryFile() as spool:
            began = time.monotonic()
            for attempt in range(RETRIES + 1):
                try:
                    digest, size = self._download(descriptor.digest, spool)
                    break
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                    # NOTE: the connection broke in the middle of the blob: fetch it again from the start
                    if attempt == RETRIES or not self._wait(attempt, None, began):
                        raise RegistryError(f"{self}: the connection kept breaking while reading blob "
                                            f"{descriptor.digest} ({exc.__class__.__name__})") from None
            if digest != descriptor.digest or size != descriptor.size:
                raise RegistryError(f"{self}: blob {descriptor.digest} arrived corrupt (its content does not match "
                                    "its digest); nothing was written", hint="pull again; if it persists, push again")
            spool.seek(0)
            while chunk := spool.read(CHUNK):
                target.write(chunk)

    def _download(self, digest: str, spool: IO[bytes]) -> tuple[str, int]:
        spool.seek(0)
        spool.truncate()
        response = self._request("GET", f"/blobs/{digest}", ok=(200,), stream=True)
        hasher, size = hashlib.sha256(), 0
        for chunk in response.iter_content(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        return f"sha256:{hasher.hexdigest()}", size

    # -- manifests and tags -----------------------------------------------------------------------

    def tag_names(self) -> list[str]:
        """Every tag of the repository, page by page as the distribution spec's tag list gives them."""
        names: list[str] = []
        url: str | None = f"{self.base}/tags/list?n=1000"
        while url:
            response = self._request("GET", url, ok=(200, 404))
            if response.status_code == 404:
                return names  # NOTE: a repository nothing was pushed to yet
            names += response.json().get("tags") or []
            following = response.links.get("next", {}).get("url")
            url = urljoin(self.base, following) if following else None
        return names

    def put_manifest(self, data: bytes, media_type: str, tags: list[str]) -> Descriptor:
        """Put the manifest (its blobs must be there) under each tag, or under its digest when untagged."""
        digest = sha256_digest(data)
        for reference in tags or [digest]:
            self._request("PUT", f"/manifests/{reference}", ok=(201,), data=data, headers={"Content-Type": media_type})
        return Descriptor(media_type, digest, len(data))

    def manifest(self, digest: str) -> bytes | None:
        """A manifest's bytes, checked against its digest; None when the registry does not have it."""
        if digest not in self._manifests:
            self._get_manifest(digest)
        return self._manifests.get(digest)

    def _get_manifest(self, reference: str) -> tuple[bytes, str] | None:
        """A manifest's bytes and media type, checked against the digest when named by one; None if absent."""
        response = self._request("GET", f"/manifests/{reference}", ok=(200, 404),
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        data = response.content
        if reference.startswith("sha256:") and sha256_digest(data) != reference:
            raise RegistryError(f"{self}: manifest {reference} arrived corrupt (its content does not match its "
                                "digest)", hint="pull again")
        self._manifests[sha256_digest(data)] = data
        return data, response.headers.get("Content-Type", MANIFEST_TYPES[0]).split(";")[0]

    def resolve(self, tag: str) -> Descriptor | None:
        """The manifest a tag points at (its digest computed here, never taken from a header), or None."""
        found = self._get_manifest(tag)
        return None if found is None else Descriptor(found[1], sha256_digest(found[0]), len(found[0]))

    def set_tags(self, descriptor: Descriptor, tags: list[str]) -> None:
        """Point each tag at a manifest that is already in the repository."""
        data = self.manifest(descriptor.digest)
        if data is None:
            raise RegistryError(f"refusing to tag {descriptor.digest}: the manifest is not in {self}")
        self.put_manifest(data, descriptor.media_type, tags)

