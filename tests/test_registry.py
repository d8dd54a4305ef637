"""The embedded registry: references, the OCI Image Layout, and the model artifact."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from modelci.errors import RegistryError, UsageError
from modelci.registry import artifact
from modelci.registry.layout import REF_NAME, OciLayout
from modelci.registry.reference import Reference, parse_reference

WRITERS = 4
REVISION = "org.opencontainers.image.revision"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("oci:reg", Reference(path=Path("/base/reg")), id="layout"),
        pytest.param("oci:reg:main", Reference(path=Path("/base/reg"), tag="main"), id="layout-tag"),
        pytest.param("oci:/abs/reg:v1.2.3", Reference(path=Path("/abs/reg"), tag="v1.2.3"), id="absolute"),
        pytest.param("oci:./a.b/reg", Reference(path=Path("/base/a.b/reg")), id="dotted-folder"),
        pytest.param("oci:reg@sha256:" + "a" * 64, Reference(path=Path("/base/reg"), digest="sha256:" + "a" * 64),
                     id="layout-digest"),
        pytest.param("ghcr.io/acme/churn:main", Reference(host="ghcr.io", repository="acme/churn", tag="main"),
                     id="remote"),
        pytest.param("localhost:5000/churn", Reference(host="localhost:5000", repository="churn"), id="remote-port"),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text, base=Path("/base")) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("oci:", "names no folder", id="empty-path"),
        pytest.param("oci:reg:-bad", "not a valid tag", id="bad-tag"),
        pytest.param("oci:reg@sha256:abc", "not a sha256 digest", id="short-digest"),
        pytest.param("churn", "not a registry reference", id="no-host"),
        pytest.param("ghcr.io/Acme/churn", "not a registry reference", id="uppercase-repo"),
    ],
)
def test_invalid_reference(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_reference(text)


def make_artifact(folder: Path, weights: bytes = b"onnx-bytes") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(weights)
    (folder / "metrics.json").write_text('{"roc_auc": 0.9}')
    return sorted(folder.iterdir())


def test_push_then_pull_round_trip(tmp_path: Path) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    files = make_artifact(tmp_path / "src")
    pushed = artifact.push_files(files, registry, ["sha-abc", "main"], {"org.opencontainers.image.revision": "abc"})

    layout = OciLayout.open(tmp_path / "reg", create=False)
    assert json.loads((tmp_path / "reg" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert {tag: d.digest for tag, d in layout.tags().items()} == {"sha-abc": pushed.digest, "main": pushed.digest}

    manifest = json.loads(layout.read_bytes(pushed))
    assert manifest["artifactType"] == artifact.ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == artifact.CONFIG_MEDIA_TYPE
    assert [(layer["mediaType"], layer["annotations"][artifact.FILEPATH]) for layer in manifest["layers"]] == [
        (artifact.WEIGHT_MEDIA_TYPE, "model.onnx"), (artifact.DOC_MEDIA_TYPE, "metrics.json")]
    config = json.loads(layout.blob_path(manifest["config"]["digest"]).read_bytes())
    assert set(config) == {"descriptor", "config", "modelfs"}
    assert config["modelfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]

    pulled = artifact.pull(registry.with_tag("main"), tmp_path / "dest")
    assert pulled.digest == pushed.digest
    assert (tmp_path / "dest" / "model.onnx").read_bytes() == b"onnx-bytes"
    assert pulled.annotations["org.opencontainers.image.revision"] == "abc"


class Later(datetime):
    """The clock, a long time after the first push: a retry the next day."""

    @classmethod
    def now(cls, tz: Any = None) -> Later:
        return cls(2099, 1, 1, tzinfo=tz)


def _commit(folder: Path, when: str) -> str:
    env = {**os.environ, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit",
                                                "-qm", "model"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize("source", ["commit", "head", "source-date-epoch", "files"])
def test_the_same_inputs_pushed_later_make_the_same_artifact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """A push retried later (after an interruption, on another runner) gives the same digest: `created` is
    not the clock but SOURCE_DATE_EPOCH, the commit's time, or (outside git) the files' time."""
    files = make_artifact(tmp_path / "src")
    annotations: dict[str, str] = {}
    expected = None
    if source in ("commit", "head"):
        revision = _commit(tmp_path / "src", "2021-02-03T04:05:06+00:00")
        annotations = {REVISION: revision} if source == "commit" else {}
        expected = "2021-02-03T04:05:06Z"
    if source == "source-date-epoch":
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
        expected = "2020-09-13T12:26:40Z"
    first = artifact.push_files(files, parse_reference(f"oci:{tmp_path / 'reg'}"), ["v1.0.0"], annotations)
    monkeypatch.setattr(artifact, "datetime", Later)
    # NOTE: another registry, so that no tag there names the first push to take its time from
    again = artifact.push_files(files, parse_reference(f"oci:{tmp_path / 'retry'}"), ["v1.0.0"], annotations)
    assert again.digest == first.digest
    created = json.loads(OciLayout.open(tmp_path / "retry", create=False).read_bytes(again))["annotations"][
        artifact.CREATED]
    assert created == expected if expected else created.startswith("20")


def test_an_invalid_source_date_epoch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        artifact.push_files(make_artifact(tmp_path / "src"), parse_reference(f"oci:{tmp_path / 'reg'}"), ["x"], {})


def test_pushing_the_same_files_again_moves_no_version_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    files = make_artifact(tmp_path / "src")
    first = artifact.push_files(files, registry, ["v1.0.0"], {REVISION: "abc"})
    monkeypatch.setattr(artifact, "datetime", Later)
    (tmp_path / "src" / "metrics.json").touch()  # NOTE: a newer file time, the same content
    again = artifact.push_files(files, registry, ["v1.0.0"], {REVISION: "abc"})
    assert again.digest == first.digest  # the time of the artifact the tag names: no tag needs moving
    changed = artifact.push_files(files, registry, ["sha-def"], {REVISION: "def"})
    assert changed.digest != first.digest


def test_moving_a_tag_keeps_the_others(tmp_path: Path) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    first = artifact.push_files(make_artifact(tmp_path / "a", b"one"), registry, ["sha-1", "main"], {})
    second = artifact.push_files(make_artifact(tmp_path / "b", b"two"), registry, ["sha-2", "main"], {})
    tags = OciLayout.open(tmp_path / "reg", create=False).tags()
    assert {t: d.digest for t, d in tags.items()} == {"sha-1": first.digest, "sha-2": second.digest,
                                                      "main": second.digest}


def test_promote_tags_by_digest_and_version_tags_never_move(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    first = artifact.push_files(make_artifact(tmp_path / "a", b"one"), registry, ["sha-1"], {})
    second = artifact.push_files(make_artifact(tmp_path / "b", b"two"), registry, ["sha-2"], {})
    result = cli("promote", f"oci:{tmp_path / 'reg'}:sha-1", "v1.0.0", "prod")
    assert result.code == 0, result.err
    assert result.out.strip() == first.digest
    tags = OciLayout.open(tmp_path / "reg", create=False).tags()
    assert (tags["v1.0.0"].digest, tags["prod"].digest) == (first.digest, first.digest)

    moved = cli("promote", f"oci:{tmp_path / 'reg'}:sha-2", "v1.0.0", "prod")
    assert moved.code == 2
    assert "v1.0.0 already names " + first.digest in moved.err
    tags = OciLayout.open(tmp_path / "reg", create=False).tags()
    assert tags["prod"].digest == first.digest  # refused as a whole: no tag moved
    assert cli("promote", f"oci:{tmp_path / 'reg'}:sha-2", "prod").code == 0  # a moving tag moves
    assert cli("promote", f"oci:{tmp_path / 'reg'}:sha-2", "v1.0.0", "--force").code == 0
    assert OciLayout.open(tmp_path / "reg", create=False).tags()["v1.0.0"].digest == second.digest
    other = cli("promote", f"oci:{tmp_path / 'reg'}:sha-2", f"oci:{tmp_path / 'elsewhere'}:prod")
    assert other.code == 2
    assert "promote works within one registry" in other.err


def test_corrupt_blob_is_detected_and_destination_untouched(tmp_path: Path) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}:main")
    artifact.push_files(make_artifact(tmp_path / "old", b"old-bytes"), registry, ["old"], {})
    pushed = artifact.push_files(make_artifact(tmp_path / "src"), registry, ["main"], {})
    destination = tmp_path / "dest"
    artifact.pull(registry.with_tag("old"), destination)
    before = {p.name: p.read_bytes() for p in destination.iterdir()}
    layout = OciLayout.open(tmp_path / "reg", create=False)
    weights = json.loads(layout.read_bytes(pushed))["layers"][0]["digest"]
    blob = layout.blob_path(weights)
    blob.write_bytes(b"onnx-bytez")  # same size, one byte changed
    with pytest.raises(RegistryError, match="corrupt"):
        artifact.pull(registry, destination)
    assert {p.name: p.read_bytes() for p in destination.iterdir()} == before  # the earlier pull, as it was
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_folder_that_is_not_a_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "notes.txt").write_text("my files")
    with pytest.raises(UsageError, match="is not an OCI image layout"):
        artifact.push_files(make_artifact(tmp_path / "src"), parse_reference(f"oci:{tmp_path / 'reg'}"), ["x"], {})
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == ["notes.txt"]


def test_missing_tag_resolves_to_nothing(tmp_path: Path) -> None:
    assert artifact.resolve(parse_reference(f"oci:{tmp_path / 'absent'}:main")) is None
    artifact.push_files(make_artifact(tmp_path / "src"), parse_reference(f"oci:{tmp_path / 'reg'}"), ["v1"], {})
    assert artifact.resolve(parse_reference(f"oci:{tmp_path / 'reg'}:main")) is None
    with pytest.raises(UsageError, match="no such artifact"):
        artifact.pull(parse_reference(f"oci:{tmp_path / 'reg'}:main"), tmp_path / "dest")


def test_layer_path_outside_the_destination_is_refused(tmp_path: Path) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}:main")
    pushed = artifact.push_files(make_artifact(tmp_path / "src"), registry, ["main"], {})
    layout = OciLayout.open(tmp_path / "reg", create=False)
    manifest = json.loads(layout.read_bytes(pushed))
    manifest["layers"][1]["annotations"][artifact.FILEPATH] = "../../escape.txt"
    evil = layout.put_bytes(json.dumps(manifest).encode())
    tampered = type(pushed)(pushed.media_type, evil[0], evil[1], artifact_type=pushed.artifact_type)
    layout.set_tags(tampered, ["main"])
    with pytest.raises(RegistryError, match="unsafe"):
        artifact.pull(registry, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def _push_tag(args: tuple[str, int, Any]) -> str:
    root, i, barrier = args
    if i < WRITERS:
        barrier.wait()  # the first writers start together, racing to create the registry itself
    folder = Path(root) / f"src{i}"
    return artifact.push_files(make_artifact(folder, f"weights {i}".encode()),
                               parse_reference(f"oci:{root}/reg"), [f"t{i}"], {}).digest


def test_concurrent_writers_lose_no_tag(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(WRITERS) as pool:
        barrier = manager.Barrier(WRITERS)
        digests = pool.map(_push_tag, [(str(tmp_path), i, barrier) for i in range(12)], chunksize=1)
    tags = OciLayout.open(tmp_path / "reg", create=False).tags()
    assert {t: d.digest for t, d in tags.items()} == {f"t{i}": digests[i] for i in range(12)}


# NOTE: skipped only on a developer's machine without skopeo; in CI (CI=true) a missing skopeo fails.
@pytest.mark.skipif(shutil.which("skopeo") is None and os.environ.get("CI") != "true",
                    reason="skopeo (a Debian package) is missing; .ci/run installs it")
def test_another_oci_tool_reads_the_layout(tmp_path: Path) -> None:
    """skopeo, which knows nothing of modelci, reads the manifest and copies the artifact verbatim."""
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    pushed = artifact.push_files(make_artifact(tmp_path / "src"), registry, ["main"], {})
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'reg'}:main"],
                         check=True, capture_output=True).stdout
    assert json.loads(raw)["artifactType"] == artifact.ARTIFACT_TYPE
    subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{tmp_path / 'reg'}:main",
                    f"oci:{tmp_path / 'copy'}:main"], check=True, capture_output=True)
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"][0]
    assert (copied["digest"], copied["annotations"][REF_NAME]) == (pushed.digest, "main")


# -- pull never removes what it did not write ---------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> tuple[str, str]:
    """A registry holding two artifacts: its reference (oci:PATH) and the digest of :v2."""
    registry = f"oci:{tmp_path / 'reg'}"
    artifact.push_files(make_artifact(tmp_path / "one", b"one"), parse_reference(registry), ["v1"], {})
    second = artifact.push_files(make_artifact(tmp_path / "two", b"two"), parse_reference(registry), ["v2"], {})
    return registry, second.digest


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    """Staging or swapped-out folders a pull left behind it."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name", ["project", "."], ids=["folder", "cwd"])
def test_pull_into_a_folder_of_the_users_refuses_and_keeps_every_file(  # type: ignore[no-untyped-def]
        cli, published: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    work = tmp_path / "work"
    (work / "project").mkdir(parents=True)
    (work / "project" / "train.py").write_text("my code")
    (work / "notes.txt").write_text("my notes")
    monkeypatch.chdir(work)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    result = cli("pull", f"{published[0]}:v2", "-o", name)
    assert result.code == 2, result.err
    assert "not empty" in result.err
    assert "Traceback" not in result.err
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before
    assert _leftovers(work) == []
    assert _leftovers(work.parent) == []


def test_pull_into_a_file_is_refused(cli, published: tuple[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "model.txt").write_text("mine")
    result = cli("pull", f"{published[0]}:v2", "-o", str(tmp_path / "model.txt"))
    assert result.code == 2
    assert (tmp_path / "model.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="is not a folder"):
        artifact.pull(parse_reference(f"{published[0]}:v2"), tmp_path / "model.txt")
    with pytest.raises(UsageError, match="is not a folder"):
        artifact.pull(parse_reference(f"{published[0]}:v2"), tmp_path / "model.txt" / "inside")
    assert (tmp_path / "model.txt").read_text() == "mine"


def test_pull_replaces_an_earlier_pull_whole(  # type: ignore[no-untyped-def]
        cli, published: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("pull", f"{published[0]}:v1", "-o", str(out)).code == 0
    assert (out / "model.onnx").read_bytes() == b"one"
    again = cli("pull", f"{published[0]}:v2", "-o", str(out))
    assert again.code == 0, again.err
    assert again.out.strip() == published[1]
    assert (out / "model.onnx").read_bytes() == b"two"
    assert sorted(_listing(out)) == ["manifest.json", "metrics.json", "model.onnx"]
    assert _leftovers(tmp_path) == []


def test_pull_into_an_empty_folder_writes_into_it(  # type: ignore[no-untyped-def]
        cli, published: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("pull", f"{published[0]}:v2", "-o", ".")
    assert result.code == 0, result.err
    assert work.is_dir()
    assert Path.cwd() == work
    assert (work / "model.onnx").read_bytes() == b"two"
    assert _leftovers(work) == []
    assert _leftovers(tmp_path) == []
    assert cli("pull", f"{published[0]}:v1", "-o", str(work)).code == 2  # NOTE: the cwd itself is never swapped out


# NOTE: a tmpfs in a mount namespace of its own (tests run as root, as in test_exit_codes.py): pulled into twice,
# then once more after a byte of a file of the pull was changed (its size the same); what the mount point holds
# after each is printed
IN_A_MOUNT_POINT = """
mount -t tmpfs tmpfs "$0" || exit 99
"$1" -m modelci pull "$2:v1" -o "$0" > /dev/null || exit 11
"$1" -m modelci pull "$2:v2" -o "$0" || exit 12
ls -A "$0"; cat "$0/model.onnx"; echo
printf X | dd of="$0/model.onnx" bs=1 count=1 conv=notrunc 2> /dev/null
"$1" -m modelci pull "$2:v1" -o "$0"; echo "changed: $?"
ls -A "$0"; cat "$0/model.onnx"; echo
"""


@pytest.mark.skipif(sys.platform != "linux", reason="a tmpfs in a mount namespace of its own is Linux's")
def test_pull_replaces_an_earlier_pull_in_a_mount_point_in_place(published: tuple[str, str], tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare makes the mount point"
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    done = subprocess.run(["unshare", "--mount", "sh", "-c", IN_A_MOUNT_POINT, str(mount_point), sys.executable,
                           published[0]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [published[1], "manifest.json", "metrics.json", "model.onnx", "two"]  # nothing else left
    assert "changed: 2" in lines
    assert lines[-4:] == ["manifest.json", "metrics.json", "model.onnx", "Xwo"]  # the changed pull kept as it was
    assert "a file in it was changed since" in done.stderr
    assert "Traceback" not in done.stderr


def _earlier_pull_altered(folder: Path, how: str) -> None:
    if how == "file-added":
        (folder / "notes.txt").write_text("mine")
    elif how == "file-edited":
        (folder / "metrics.json").write_text('{"roc_auc": 0.5}')
    elif how == "only-the-marker":
        for name in ("model.onnx", "metrics.json"):
            (folder / name).unlink()
        (folder / "train.py").write_text("mine")
    elif how == "marker-edited":
        (folder / "manifest.json").write_text('{"layers": []}')
    elif how == "marker-alone":  # a manifest that names no file, and nothing beside it
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "layers": []}))
        for name in ("model.onnx", "metrics.json"):
            (folder / name).unlink()
    elif how == "link-outside":
        (folder / "metrics.json").unlink()
        (folder / "metrics.json").symlink_to(folder.parent / "one" / "metrics.json")


@pytest.mark.parametrize("how", ["file-added", "file-edited", "only-the-marker", "marker-edited", "marker-alone",
                                 "link-outside"])
def test_a_folder_that_only_looks_like_a_pull_is_refused(  # type: ignore[no-untyped-def]
        cli, published: tuple[str, str], tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    assert cli("pull", f"{published[0]}:v1", "-o", str(out)).code == 0
    _earlier_pull_altered(out, how)
    before = _listing(out)
    result = cli("pull", f"{published[0]}:v2", "-o", str(out))
    assert result.code == 2, result.err
    assert "not a folder `modelci pull` wrote" in result.err
    assert _listing(out) == before
    assert _leftovers(tmp_path) == []


def test_pull_through_a_symlink_to_a_folder(cli, published: tuple[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine, pulled = tmp_path / "mine", tmp_path / "pulled"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    (tmp_path / "to-mine").symlink_to(mine)
    assert cli("pull", f"{published[0]}:v2", "-o", str(tmp_path / "to-mine")).code == 2
    assert _listing(mine) == {"keep.txt": b"mine"}

    assert cli("pull", f"{published[0]}:v1", "-o", str(pulled)).code == 0
    (tmp_path / "to-pulled").symlink_to(pulled)
    result = cli("pull", f"{published[0]}:v2", "-o", str(tmp_path / "to-pulled"))
    assert result.code == 0, result.err
    assert (tmp_path / "to-pulled").is_symlink()  # the link is kept, the folder it names replaced
    assert (pulled / "model.onnx").read_bytes() == b"two"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert cli("pull", f"{published[0]}:v2", "-o", str(tmp_path / "dangling")).code == 2
    assert not (tmp_path / "nowhere").exists()


# -- version tags never move, even under concurrent writers ----------------------------------------------


@pytest.mark.parametrize(("tag", "version"), [
    ("v2.0.0", True), ("v2.0", True), ("V2.0.0", True), ("2.0.0", True), ("v2.0.0-rc.1", True), ("2.0.0rc1", True),
    ("1.2.3.post1", True), ("v1", False), ("2", False), ("main", False), ("prod", False), ("sha-0123abc", False),
])
def test_which_tags_are_versions(tag: str, version: bool) -> None:
    assert bool(artifact.VERSION_TAG.match(tag)) is version


def test_every_version_looking_tag_is_protected(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry = f"oci:{tmp_path / 'reg'}"
    artifact.push_files(make_artifact(tmp_path / "a", b"one"), parse_reference(registry), ["one"], {})
    artifact.push_files(make_artifact(tmp_path / "b", b"two"), parse_reference(registry), ["two"], {})
    tags = ["v2.0", "V2.0.0", "2.0.0", "v2.0.0-rc.1", "2.0.0rc1"]
    assert cli("promote", f"{registry}:one", *tags).code == 0
    for tag in tags:
        moved = cli("promote", f"{registry}:two", tag)
        assert moved.code == 2, tag
        assert f"{tag} already names" in moved.err
    assert cli("promote", f"{registry}:two", "v2").code == 0  # a bare major moves, as an action's @v1 does


def _race(args: tuple[str, str, int, int, Any]) -> str:
    """One of several writers of the same version tag, started together: the digest it tagged, or "lost"."""
    root, kind, round_, i, barrier = args
    registry = parse_reference(f"oci:{root}/reg")
    tag = f"v2.0.{round_}"
    files = make_artifact(Path(root) / f"src-{round_}-{i}", f"weights {round_} {i}".encode())
    if kind == "promote":
        source = artifact.push_files(files, registry, [f"sha-{round_}-{i}"], {})
    barrier.wait()
    try:
        if kind == "promote":
            return artifact.promote(registry.with_digest(source.digest), [tag]).digest
        return artifact.push_files(files, registry, [tag], {}).digest
    except UsageError:
        return "lost"


@pytest.mark.parametrize("kind", ["push", "promote"])
def test_concurrent_writers_of_a_version_tag_leave_one_winner(tmp_path: Path, kind: str) -> None:
    """Writers in separate processes race for each tag; the check and the write are one step, so one wins."""
    rounds = 6
    context = multiprocessing.get_context("spawn")
    artifact.push_files(make_artifact(tmp_path / "first"), parse_reference(f"oci:{tmp_path}/reg"), ["x"], {})
    with context.Manager() as manager, context.Pool(WRITERS) as pool:
        barrier = manager.Barrier(WRITERS)
        jobs = [(str(tmp_path), kind, r, i, barrier) for r in range(rounds) for i in range(WRITERS)]
        outcomes = pool.map_async(_race, jobs, chunksize=1).get(timeout=120)
    tags = OciLayout.open(tmp_path / "reg", create=False).tags()
    for r in range(rounds):
        digests = outcomes[r * WRITERS:(r + 1) * WRITERS]
        winners = [d for d in digests if d != "lost"]
        assert len(winners) == 1, f"v2.0.{r}: {digests}"
        assert tags[f"v2.0.{r}"].digest == winners[0]


# -- push publishes the folder's files, not what links point at --------------------------------------


def test_push_refuses_a_link_that_leads_out_of_the_folder(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "out"
    make_artifact(folder)
    (tmp_path / "hostname").write_text("build-host-7")
    (folder / "metrics.json").unlink()
    (folder / "metrics.json").symlink_to(tmp_path / "hostname")
    result = cli("push", str(folder), "--to", f"oci:{tmp_path / 'reg'}:v1")
    assert result.code == 2
    assert "metrics.json -> " in result.err
    assert "lead out of the folder" in result.err
    assert not (tmp_path / "reg").exists()

    (folder / "metrics.json").unlink()
    (folder / "real.json").write_text('{"roc_auc": 0.9}')
    (folder / "metrics.json").symlink_to("real.json")  # NOTE: a link within the folder is its file's content
    (tmp_path / "link-to-out").symlink_to(folder)
    pushed = cli("push", str(tmp_path / "link-to-out"), "--to", f"oci:{tmp_path / 'reg'}:v1")
    assert pushed.code == 0, pushed.err
    assert artifact.read_file(parse_reference(f"oci:{tmp_path / 'reg'}:v1"), "metrics.json") == b'{"roc_auc": 0.9}'
