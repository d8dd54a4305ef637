"""A registry kept on disk in the OCI Image Layout format (`oci-layout`, `index.json`, `blobs/`).

Blobs are content-addressed and written whole (temporary file, then rename), so they can never be
half-written. `index.json`, which maps tags to manifests, is rewritten under an exclusive lock on
the `oci-layout` file (which is never replaced), and replaced in one rename: two writers cannot
lose each other's tags, and a reader always sees a whole index. Tags that must never move (releases)
are checked under the same lock as the write, so two writers cannot both take one.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelci import atomic
from modelci.errors import RegistryError, UsageError

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        return cls(data["mediaType"], data["digest"], int(data["size"]),
                   dict(data.get("annotations") or {}), data.get("artifactType"))


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class TagTaken(UsageError):
    """A tag that never moves (a release) already names another manifest."""

    def __init__(self, tag: str, existing: str, store: object) -> None:
        super().__init__(f"{tag} already names {existing} in {store}; version tags never move",
                         hint="release a new version, or pass --force to move it anyway")
        self.tag, self.existing = tag, existing


class OciLayout:
    """One OCI Image Layout folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path, *, create: bool) -> OciLayout:
        """Open a layout; with `create`, make one in a missing or empty folder."""
        if not (root / LAYOUT_FILE).is_file():
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise UsageError(f"{root} is not an OCI image layout (no '{LAYOUT_FILE}' file in it)",
                                 hint="point the registry at an empty or new folder, or at an existing layout")
            if not create:
                raise UsageError(f"{root}: no registry here", hint="push an artifact first, or check the path")
            cls._create(root)
        layout = cls(root)
        layout._check_marker()
        return layout

    @classmethod
    def _create(cls, root: Path) -> None:
        """Build a new layout beside `root` and rename it into place whole.

        NOTE: the folder then never exists half-made, which another writer would take for a folder
        that is not a layout; when two writers create it at once, one rename wins and the other
        writer uses the winner's layout.
        """
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            os.chmod(staging, 0o777 & ~atomic.UMASK)
            atomic.write_json(staging / LAYOUT_FILE, {"imageLayoutVersion": "1.0.0"})
            cls(staging)._write_index([])
            os.rename(staging, root)  # replaces `root` only if it is missing or an empty folder
        except OSError:
            if not (root / LAYOUT_FILE).is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_marker(self) -> None:
        try:
            version = json.loads((self.root / LAYOUT_FILE).read_text())["imageLayoutVersion"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{self.root / LAYOUT_FILE} is not a valid oci-layout file") from None
        if version != "1.0.0":
            raise UsageError(f"{self.root}: unsupported OCI image layout version {version!r}")

    # -- blobs ------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64:
            raise RegistryError(f"unsupported digest {digest!r}")
        return self.root / "blobs" / algorithm / hex_digest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            atomic.write_bytes(self.blob_path(digest), data)
        return digest, len(data)

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy a file in as a blob, hashing while copying; one read of the source."""
        blobs = self.root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload.", dir=blobs)
        os.fchmod(fd, atomic.FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as target, source.open("rb") as handle:
                digest, size = atomic.stream_sha256(handle, target)
                target.flush()
                os.fsync(target.fileno())
            os.replace(tmp, self.blob_path(digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, size

    def read_bytes(self, descriptor: Descriptor) -> bytes:
        """A blob's content, verified against its digest and size."""
        buffer = io.BytesIO()
        self.copy_blob(descriptor, buffer)
        return buffer.getvalue()

    def copy_blob(self, descriptor: Descriptor, target: IO[bytes]) -> None:
        """Stream a blob into `target`, verifying it; raises before the caller commits the file."""
        try:
            with self.blob_path(descriptor.digest).open("rb") as handle:
                digest, size = atomic.stream_sha256(handle, target)
        except FileNotFoundError:
            raise RegistryError(f"{self.root}: blob {descriptor.digest} is missing") from None
        if size != descriptor.size or digest != descriptor.digest:
            raise RegistryError(f"{self.root}: blob {descriptor.digest} is corrupt (its content does not match "
                                "its digest)", hint="push the artifact again")

    # -- manifests: blobs here, as the image layout stores them -------------------------------------

    def __str__(self) -> str:
        return f"oci:{self.root}"

    def put_manifest(self, data: bytes, media_type: str, tags: list[str], *,
                     protected: Collection[str] = ()) -> Descriptor:
        """Store the manifest (its blobs must be here), then point the tags at it (see `set_tags`)."""
        digest, size = self.put_bytes(data)
        descriptor = Descriptor(media_type, digest, size)
        if tags:
            self.set_tags(descriptor, tags, protected=protected)
        return descriptor

    def manifest(self, digest: str) -> bytes | None:
        """A manifest's bytes, checked against its digest; None when it is not here."""
        if not self.has_blob(digest):
            return None
        data = self.blob_path(digest).read_bytes()
        if sha256_digest(data) != digest:
            raise RegistryError(f"{self.root}: manifest {digest} is corrupt", hint="push the artifact again")
        return data

    # -- the index: tags --------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / LAYOUT_FILE).open("rb") as marker:
            fcntl.flock(marker.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(marker.fileno(), fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            index = json.loads((self.root / INDEX_FILE).read_text())
            manifests = index["manifests"]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"{self.root / INDEX_FILE} is not a valid OCI index") from None
        if not isinstance(manifests, list):
            raise RegistryError(f"{self.root / INDEX_FILE}: 'manifests' is not a list")
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        atomic.write_json(self.root / INDEX_FILE, index)

    def tags(self) -> dict[str, Descriptor]:
        return {
            entry["annotations"][REF_NAME]: Descriptor.from_json(entry)
            for entry in self._read_index() if REF_NAME in (entry.get("annotations") or {})
        }

    def tag_names(self) -> list[str]:
        return list(self.tags())

    def resolve(self, tag: str) -> Descriptor | None:
        return self.tags().get(tag)

    def set_tags(self, descriptor: Descriptor, tags: list[str], *, protected: Collection[str] = ()) -> None:
        """Point each tag at the manifest, in one update of the index. The manifest must exist.

        A tag in `protected` that already names another manifest raises TagTaken and no tag moves.
        NOTE: checked under the lock of the write, so of two writers racing for one such tag, one loses.
        """
        if not self.has_blob(descriptor.digest):
            raise RegistryError(f"refusing to tag {descriptor.digest}: the manifest is not in {self.root}")
        with self._locked():
            current = self._read_index()
            for entry in current:
                tag = (entry.get("annotations") or {}).get(REF_NAME)
                if tag in protected and tag in tags and entry.get("digest") != descriptor.digest:
                    raise TagTaken(tag, str(entry.get("digest")), self)
            manifests = [m for m in current if (m.get("annotations") or {}).get(REF_NAME) not in tags]
            for tag in tags:
                tagged = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                                    {REF_NAME: tag}, descriptor.artifact_type)
                manifests.append(tagged.to_json())
            self._write_index(manifests)

