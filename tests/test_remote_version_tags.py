"""Version tags on a real remote registry (Debian's docker-registry): writers racing for one tag, one wins.

A registry has no compare-and-swap for tags; modelci checks immediately before the write and reads
the tag back once the registry has settled, so of several writers started together exactly one
exits 0, and the tag names its artifact.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelci.errors import UsageError
from modelci.registry.artifact import promote, push_files, resolve
from modelci.registry.reference import parse_reference
from modelci.registry.remote import RemoteRepository
from test_remote import _serve, artifact_files
from test_remote import pytestmark as pytestmark  # NOTE: the same condition: never skipped in CI

ROUNDS, WRITERS = 5, 3


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for served in _serve(tmp_path_factory.mktemp("registry")):
        yield served.host


def _write(kind: str, host: str, repository: str, folder: Path, tag: str, barrier: threading.Barrier) -> str:
    """One writer: the digest it tagged, or "lost" with the reason."""
    files = artifact_files(folder, size=2000)
    # NOTE: every file of its own: writers uploading one new blob at once are another race (the registry's)
    files[0].write_bytes(folder.name.encode() + files[0].read_bytes())
    files[1].write_text(f'{{"writer": "{folder.name}"}}')
    reference = parse_reference(f"{host}/{repository}:{tag}")
    source = push_files(files, reference, [f"sha-{folder.name}"], {}) if kind == "promote" else None
    barrier.wait(timeout=30)
    try:
        if source is not None:
            return promote(reference.with_digest(source.digest), [tag]).digest
        return push_files(files, reference, [tag], {}).digest
    except UsageError as exc:
        return f"lost: {exc.message}"


@pytest.mark.parametrize("kind", ["push", "promote"])
def test_writers_racing_for_a_version_tag_leave_one_winner(registry: str, tmp_path: Path, kind: str) -> None:
    repository = f"acme/race-{uuid.uuid4().hex[:8]}"
    barriers = [threading.Barrier(WRITERS) for _ in range(ROUNDS)]
    outcomes: dict[tuple[int, int], str] = {}

    def writer(r: int, i: int) -> None:
        outcomes[r, i] = _write(kind, registry, repository, tmp_path / f"w{r}{i}", f"v2.0.{r}", barriers[r])

    threads = [threading.Thread(target=writer, args=(r, i)) for r in range(ROUNDS) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == ROUNDS * WRITERS  # every writer ended
    for r in range(ROUNDS):
        results = [outcomes[r, i] for i in range(WRITERS)]
        winners = [result for result in results if not result.startswith("lost")]
        assert len(winners) == 1, f"v2.0.{r}: {results}"
        tagged = resolve(parse_reference(f"{registry}/{repository}:v2.0.{r}"))
        assert tagged is not None
        assert tagged.digest == winners[0]
        losses = [result for result in results if result.startswith("lost")]
        assert all("already names" in loss or "another run wrote it at the same time" in loss for loss in losses)


def test_a_version_tag_taken_before_is_refused_and_nothing_moves(  # type: ignore[no-untyped-def]
        cli, registry: str, tmp_path: Path) -> None:
    repository = f"{registry}/acme/taken-{uuid.uuid4().hex[:8]}"
    first = push_files(artifact_files(tmp_path / "a", size=1000), parse_reference(f"{repository}:v3.1"),
                       ["v3.1"], {})
    push_files(artifact_files(tmp_path / "b", size=1001), parse_reference(f"{repository}:sha-b"), ["sha-b"], {})
    refused = cli("promote", f"{repository}:sha-b", "prod", "v3.1")
    assert refused.code == 2
    assert f"v3.1 already names {first.digest}" in refused.err
    assert resolve(parse_reference(f"{repository}:prod")) is None  # refused as a whole


def test_a_run_that_loses_one_of_two_version_tags_says_which_it_holds(registry: str, tmp_path: Path) -> None:
    name = f"acme/split-{uuid.uuid4().hex[:8]}"
    rival = push_files(artifact_files(tmp_path / "rival", size=1500), parse_reference(f"{registry}/{name}:sha-r"),
                       ["sha-r"], {})
    store = RemoteRepository(registry, name)

    def overwrite_once_written() -> None:
        # NOTE: another run whose write of v1.2 comes after this run's, within the time the registry settles
        deadline = time.monotonic() + 20
        while store.resolve("v1.2") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        store.set_tags(rival, ["v1.2"])

    other = threading.Thread(target=overwrite_once_written)
    other.start()
    try:
        with pytest.raises(UsageError) as lost:
            push_files(artifact_files(tmp_path / "ours", size=1600), parse_reference(f"{registry}/{name}:v1.2.3"),
                       ["v1.2.3", "v1.2", "main"], {})
    finally:
        other.join(timeout=30)
    ours = resolve(parse_reference(f"{registry}/{name}:v1.2.3"))
    assert ours is not None
    assert ours.digest != rival.digest  # this run's write of v1.2.3 stands
    assert resolve(parse_reference(f"{registry}/{name}:v1.2")).digest == rival.digest  # type: ignore[union-attr]
    assert resolve(parse_reference(f"{registry}/{name}:main")) is None  # nothing after the version tags moved
    message = lost.value.message
    assert f"v1.2 names {rival.digest}" in message
    assert f"this run's artifact {ours.digest} is stored, tagged v1.2.3 (which this run did move), not tagged " \
           "v1.2; no other tag moved" in message
