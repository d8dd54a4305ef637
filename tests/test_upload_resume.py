"""A chunked upload that is set back resumes where the registry says it stopped (the OCI spec's upload Range).

The CNCF distribution registry in test_remote.py cannot say once a chunk broke off (it answers
404), so these run against oci_upload_standin.py, which answers as the spec says, keeps the bytes
of a chunk that broke off, and reports `0-0` for an empty upload, as distribution does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from modelci.registry import remote
from modelci.registry.layout import sha256_digest
from modelci.registry.remote import RemoteRepository
from oci_upload_standin import Registry, Seen

CHUNK = 64 << 10
SIZE = 300_011  # five chunks, the last one short
BLOB = random.Random(7).randbytes(SIZE)
DIGEST = sha256_digest(BLOB)
NAME = "acme/resume"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The stand-in, with blobs over 100,000 bytes sent in 64 KiB chunks (halved down to 16 KiB for a registry that
    refuses them), and no sleeping before a retry."""
    monkeypatch.setattr(remote, "CHUNKED_FROM", 100_000)
    monkeypatch.setattr(remote, "UPLOAD_CHUNK", CHUNK)
    monkeypatch.setattr(remote, "SMALLEST_CHUNK", CHUNK // 4)
    # NOTE: the backoff before a request is sent again is not what these test; it would cost half a second a break
    monkeypatch.setattr(remote, "time", SimpleNamespace(monotonic=time.monotonic, sleep=lambda _: None))
    with Registry() as standin:
        yield standin


def push(registry: Registry) -> list[Seen]:
    """Push the blob; the requests on its uploads (POST included), in order."""
    assert RemoteRepository(registry.host, NAME).put_bytes(BLOB) == (DIGEST, SIZE)
    assert registry.blob(NAME, DIGEST) == BLOB  # NOTE: the stand-in checked the digest too; this compares the bytes
    return [s for s in registry.seen if "/blobs/uploads/" in s.path]


def status_at(seen: list[Seen], which: int = 0) -> int:
    """Where a status GET is (the first, unless told); the request the client sent next is at the index after."""
    return [i for i, s in enumerate(seen) if s.method == "GET"][which]


def starts(seen: list[Seen]) -> list[int]:
    return [s.start for s in seen if s.method == "PATCH"]


def posts(seen: list[Seen]) -> int:
    return sum(s.method == "POST" for s in seen)


def test_an_undisturbed_upload_goes_in_five_chunks(registry: Registry) -> None:
    seen = push(registry)
    assert [s.content_range for s in seen if s.method == "PATCH"] == [
        f"{i}-{min(i + CHUNK, SIZE) - 1}" for i in range(0, SIZE, CHUNK)]
    assert [s.method for s in seen] == ["POST", *["PATCH"] * 5, "PUT"]


def test_a_chunk_that_breaks_off_resumes_from_the_range_the_registry_reports(registry: Registry) -> None:
    registry.drop_chunk(at=CHUNK, after=10_000)  # the second chunk; the registry keeps its first 10,000 bytes
    seen = push(registry)
    kept = CHUNK + 10_000
    at = status_at(seen)
    status, following = seen[at], seen[at + 1]
    assert (status.status, status.range) == (204, f"0-{kept - 1}")
    assert (following.method, following.start, following.status) == ("PATCH", kept, 202)  # neither 0 nor CHUNK
    # the broken chunk, sent again by the retry and refused (the registry has more), then the rest from `kept`
    assert starts(seen) == [0, CHUNK, CHUNK, *range(kept, SIZE, CHUNK)]
    assert posts(seen) == 1  # resumed, not started over


def test_a_registry_that_holds_nothing_yet_is_resumed_from_the_first_byte(registry: Registry) -> None:
    registry.refuse_chunk(at=0)  # NOTE: the registry holds nothing, and says `0-0`, as for one byte
    seen = push(registry)
    at = status_at(seen)
    status, following = seen[at], seen[at + 1]
    assert status.range == "0-0"
    assert (following.method, following.start, following.status) == ("PATCH", 0, 202)  # byte 0 not skipped
    assert starts(seen) == [0, *range(0, SIZE, CHUNK)]
    assert posts(seen) == 1


def test_a_registry_that_holds_one_byte_also_says_0_0_and_the_upload_still_ends(registry: Registry) -> None:
    registry.drop_chunk(at=0, after=1)  # NOTE: the registry keeps one byte, and says `0-0`, as for none
    seen = push(registry)
    at = status_at(seen)
    first, following = seen[at], seen[at + 1]
    assert (first.range, following.method, following.start, following.status) == ("0-0", "PATCH", 0, 416)
    # asked again, it says `0-0` again for the byte it would not take at 0: its word cannot be followed, and
    # the chunk may as well be too large (a 416 says no more): a new upload, in chunks half the size
    again = status_at(seen, 1)
    assert seen[again].range == "0-0"
    assert seen[again + 1].method == "POST"
    fresh = seen[again + 1:]
    assert starts(fresh) == list(range(0, SIZE, CHUNK // 2))
    assert all(s.status == 202 for s in fresh if s.method == "PATCH")


@pytest.mark.parametrize("fault", ["answer lost", "chunk refused"])
def test_a_registry_out_of_step_answers_416_and_is_asked_for_its_range(registry: Registry, fault: str) -> None:
    if fault == "answer lost":
        registry.drop_chunk(at=CHUNK, after=CHUNK)  # the whole second chunk kept, its 202 never sent
    else:
        registry.refuse_chunk(at=CHUNK)
    seen = push(registry)
    held = 2 * CHUNK if fault == "answer lost" else CHUNK  # what the registry has when it answers 416
    refused = [s for s in seen if s.status == 416]
    assert [(s.method, s.start, s.range) for s in refused] == [("PATCH", CHUNK, f"0-{held - 1}")]
    at = status_at(seen)
    status, following = seen[at], seen[at + 1]
    assert status.range == f"0-{held - 1}"
    assert (following.method, following.start, following.status) == ("PATCH", held, 202)
    assert posts(seen) == 1


def test_a_registry_that_cannot_say_gets_the_blob_again_in_a_new_upload(registry: Registry) -> None:
    registry.report_range = False
    registry.drop_chunk(at=CHUNK, after=10_000)
    seen = push(registry)
    at = status_at(seen)
    assert (seen[at].status, seen[at].range) == (204, None)
    assert seen[at + 1].method == "POST"  # started over
    fresh = seen[at + 1:]
    assert starts(fresh) == list(range(0, SIZE, CHUNK))
    old_upload = seen[1].path
    assert all(s.path != old_upload for s in fresh)  # on the new upload's URL
