"""Files are written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# NOTE: mkstemp creates files readable by their owner only; the files modelci writes (outputs,
# registry blobs) get the usual mode of a new file instead, so other users and tools can read them.
UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is not None:
            raise
        # NOTE: a failed write or flush (a full disk) names no file: name the one being written
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stream_sha256(source: IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    """Hash a stream in blocks, copying it into `sink` on the way; returns ("sha256:…", size)."""
    hasher, size = hashlib.sha256(), 0
    for block in iter(lambda: source.read(4 << 20), b""):
        hasher.update(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
    return f"sha256:{hasher.hexdigest()}", size


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON; dataclasses should be converted with `asdict` first."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
