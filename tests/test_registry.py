"""The embedded registry: references, the OCI Image Layout, and the model artifact."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from modelci.errors import RegistryError, UsageError
from modelci.registry import artifact
from modelci.registry.layout import REF_NAME, OciLayout
from modelci.registry.reference import Reference, parse_reference

WRITERS = 4


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


def test_pushing_the_same_files_later_makes_the_same_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = parse_reference(f"oci:{tmp_path / 'reg'}")
    files = make_artifact(tmp_path / "src")
    first = artifact.push_files(files, registry, ["v1.0.0"], {"org.opencontainers.image.revision": "abc"})

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Later:
            return cls(2099, 1, 1, tzinfo=tz)

    monkeypatch.setattr(artifact, "datetime", Later)
    again = artifact.push_files(files, registry, ["v1.0.0"], {"org.opencontainers.image.revision": "abc"})
    assert again.digest == first.digest  # so the version tag needs no moving
    changed = artifact.push_files(files, registry, ["sha-def"], {"org.opencontainers.image.revision": "def"})
    assert changed.digest != first.digest
    manifest = json.loads(OciLayout.open(tmp_path / "reg", create=False).read_bytes(changed))
    assert manifest["annotations"][artifact.CREATED] == "2099-01-01T00:00:00Z"


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
    pushed = artifact.push_files(make_artifact(tmp_path / "src"), registry, ["main"], {})
    destination = tmp_path / "dest"
    destination.mkdir()
    (destination / "keep.txt").write_text("earlier pull")
    layout = OciLayout.open(tmp_path / "reg", create=False)
    weights = json.loads(layout.read_bytes(pushed))["layers"][0]["digest"]
    blob = layout.blob_path(weights)
    blob.write_bytes(b"onnx-bytez")  # same size, one byte changed
    with pytest.raises(RegistryError, match="corrupt"):
        artifact.pull(registry, destination)
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


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
