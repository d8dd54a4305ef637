"""The model artifact: an OCI manifest in the CNCF ModelPack format.

`model.onnx` is the weight layer; every other file is a doc layer (metrics, data report, parity,
golden samples, schema, report), each named by the `org.cncf.model.filepath` annotation. modelci's
own facts travel as manifest annotations. The order of writing makes a tag safe to trust: blobs
first, then the config and the manifest, and only then the tags. A tag that reads as a version is a
release and never moves (see `_put_remote` for what that takes on a remote registry). The same files
and annotations make the same artifact, to the byte: `created` comes from the commit, not the clock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelci.errors import RegistryError, UsageError
from modelci.registry import destination as destinations
from modelci.registry.destination import MANIFEST_FILE
from modelci.registry.layout import Descriptor, OciLayout, TagTaken, sha256_digest
from modelci.registry.reference import Reference, parse_reference
from modelci.registry.remote import RemoteRepository

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_MEDIA_TYPE = "application/vnd.cncf.model.weight.v1.raw"
DOC_MEDIA_TYPE = "application/vnd.cncf.model.doc.v1.raw"
FILEPATH = "org.cncf.model.filepath"
CREATED = "org.opencontainers.image.created"
REVISION = "org.opencontainers.image.revision"
WEIGHT_FILE = "model.onnx"
# modelci's own manifest annotations.
ANNOTATION_PREFIX = "io.modelci."
# A release, never moved once set: every tag that reads as a version (v1.2.3, V1.2, 1.2.3, v2.0.0-rc.1, 2.0.0rc1).
# NOTE: not a bare major (v1), which by convention moves with each release, as an action's @v1 does.
VERSION_TAG = re.compile(r"^[vV]?\d+(?:\.\d+)+(?:[-._]?[0-9A-Za-z][0-9A-Za-z._-]*)?$")
# NOTE: how long a remote registry is given to settle before a version tag is read back (`_confirm`)
SETTLE_SECONDS = 1.0
COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")


class TagLost(UsageError):
    """Another run wrote the same version tag at the same time, and its write came last."""


@dataclass(frozen=True)
class Pulled:
    reference: Reference
    digest: str
    annotations: dict[str, str]
    files: list[str]


Store = OciLayout | RemoteRepository


def open_layout(reference: Reference, *, create: bool) -> Store:
    """Where the reference's artifacts live: a folder in OCI Image Layout, or a remote repository."""
    if reference.path is None:
        assert reference.host is not None
        assert reference.repository is not None
        return RemoteRepository(reference.host, reference.repository)
    return OciLayout.open(reference.path, create=create)


def _model_config(layers: list[Descriptor], annotations: dict[str, str]) -> dict[str, Any]:
    descriptor = {"createdAt": annotations.get(CREATED)}
    if "org.opencontainers.image.revision" in annotations:
        descriptor["revision"] = annotations["org.opencontainers.image.revision"]
    if "org.opencontainers.image.title" in annotations:
        descriptor["name"] = annotations["org.opencontainers.image.title"]
    return {
        "descriptor": {k: v for k, v in descriptor.items() if v},
        "config": {"format": "onnx", "precision": "fp32"},
        # NOTE: raw (uncompressed) layers: a layer's DiffID is its digest.
        "modelfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }


def _layer(layout: Store, file: Path) -> Descriptor:
    digest, size = layout.put_file(file)
    media_type = WEIGHT_MEDIA_TYPE if file.name == WEIGHT_FILE else DOC_MEDIA_TYPE
    return Descriptor(media_type, digest, size, {FILEPATH: file.name})


def push_files(files: list[Path], reference: Reference, tags: list[str], annotations: dict[str, str], *,
               force: bool = False) -> Descriptor:
    """Push the files as one artifact and point every tag at it; returns the manifest descriptor."""
    if not any(f.name == WEIGHT_FILE for f in files):
        raise UsageError(f"an artifact needs a {WEIGHT_FILE}", hint="run `modelci export` first")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"cannot push missing files: {', '.join(missing)}")
    layout = open_layout(reference, create=True)
    layers = [_layer(layout, f) for f in sorted(files, key=lambda f: (f.name != WEIGHT_FILE, f.name))]
    annotations = {CREATED: _created(layout, tags, files, layers, annotations)} | annotations
    config_bytes = json.dumps(_model_config(layers, annotations), sort_keys=True).encode()
    config_digest, config_size = layout.put_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size).to_json(),
        "layers": [layer.to_json() for layer in layers],
        "annotations": annotations,
    }
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    if isinstance(layout, OciLayout):
        stored = layout.put_manifest(data, MANIFEST_MEDIA_TYPE, tags, protected=_protected(tags, force))
    else:
        stored = _put_remote(layout, data, MANIFEST_MEDIA_TYPE, tags, force=force)
    return Descriptor(MANIFEST_MEDIA_TYPE, stored.digest, stored.size, artifact_type=ARTIFACT_TYPE)


def folder_files(directory: Path) -> list[Path]:
    """The files of a folder that `modelci push` publishes: its files, not hidden ones nor subfolders.

    A link to a file outside the folder is refused, not followed: what it points at would be published."""
    root = directory.resolve()
    files, leaving = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            leaving.append(f"{path.name} -> {os.readlink(path)}")
        files.append(path)
    if leaving:
        raise UsageError(f"{directory}: links that lead out of the folder would publish what they point at: "
                         f"{', '.join(leaving)}", hint="copy those files into the folder, or remove the links")
    return files


def _created(store: Store, tags: list[str], files: list[Path], layers: list[Descriptor],
             annotations: dict[str, str]) -> str:
    """When the artifact was made, the same for the same inputs, so that pushing them again (a retry, a
    rerun) makes the same artifact: the same digest, nothing sent, no version tag moved.

    The creation time of the artifact a tag already names, when it has these very files and annotations;
    else SOURCE_DATE_EPOCH; else the commit's time (the revision annotation, or the HEAD of the checkout
    that holds the files), as reproducible builds do; else the newest file's modification time."""
    earlier = _created_earlier(store, tags, layers, annotations)
    if earlier is not None:
        return earlier
    seconds = _source_date_epoch()
    if seconds is None:
        seconds = _commit_time(files[0].resolve().parent, annotations.get(REVISION))
    if seconds is None:
        seconds = int(max(f.stat().st_mtime for f in files))
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _created_earlier(store: Store, tags: list[str], layers: list[Descriptor],
                     annotations: dict[str, str]) -> str | None:
    wanted = [layer.to_json() for layer in layers]
    for tag in tags:
        existing = store.resolve(tag)
        data = store.manifest(existing.digest) if existing is not None else None
        if data is None:
            continue
        manifest = json.loads(data)
        earlier = dict(manifest.get("annotations") or {})
        created = earlier.pop(CREATED, None)
        if isinstance(created, str) and manifest.get("layers") == wanted and earlier == annotations:
            return created
    return None


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds since 1970",
                         hint="e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct), or unset it")
    return int(value)


def _commit_time(folder: Path, revision: str | None) -> int | None:
    """The committer time of the revision (HEAD when none is named) in the git checkout holding `folder`."""
    commit = revision or "HEAD"
    if commit != "HEAD" and not COMMIT.match(commit):  # NOTE: nothing that git could take for an option
        return None
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%ct", commit, "--"], cwd=folder, capture_output=True,
                              text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    seconds = done.stdout.strip()
    return int(seconds) if done.returncode == 0 and seconds.isdigit() else None


def _protected(tags: list[str], force: bool) -> list[str]:
    """The tags that must not move: every version tag, unless `force`."""
    return [] if force else [tag for tag in tags if VERSION_TAG.match(tag)]


def _check_version_tags(store: Store, digest: str, tags: list[str]) -> None:
    """Refuse a protected tag that names another manifest (see `_protected`)."""
    for tag in tags:
        existing = store.resolve(tag)
        if existing is not None and existing.digest != digest:
            raise TagTaken(tag, existing.digest, store)


def _put_remote(store: RemoteRepository, data: bytes, media_type: str, tags: list[str], *,
                force: bool) -> Descriptor:
    """Put the manifest under each tag of a remote repository; version tags first, and confirmed.

    NOTE: a registry has no compare-and-swap for tags, so two runs can both find a version tag free
    and both write it. The check comes immediately before the write, and after the write the tag is
    read back once the registry has settled: the run whose digest it does not name has lost. Where
    a registry has immutable tags (ECR, Harbor), they close the gap for good.
    """
    versions = [tag for tag in tags if VERSION_TAG.match(tag)]
    if not versions:
        return store.put_manifest(data, media_type, tags)
    _check_version_tags(store, sha256_digest(data), _protected(versions, force))
    descriptor = store.put_manifest(data, media_type, versions)
    _confirm(store, descriptor.digest, versions)
    others = [tag for tag in tags if tag not in versions]
    if others:
        store.put_manifest(data, media_type, others)
    return descriptor


def _confirm(store: RemoteRepository, digest: str, tags: list[str]) -> None:
    """Read each tag back once the registry has settled; name every tag this run lost and every one it holds."""
    time.sleep(SETTLE_SECONDS)
    named = {tag: store.resolve(tag) for tag in tags}
    lost = {tag: "nothing" if found is None else found.digest for tag, found in named.items()
            if found is None or found.digest != digest}
    if not lost:
        return
    held = [tag for tag in tags if tag not in lost]
    taken = "; ".join(f"{tag} names {other}" for tag, other in lost.items())
    holds = f"tagged {', '.join(held)} (which this run did move)" if held else "not tagged"
    them = "it" if len(lost) == 1 else "them"
    raise TagLost(f"{taken} in {store}: another run wrote {them} at the same time, and its write came last; this run's "
                  f"artifact {digest} is stored, {holds}, not tagged {', '.join(lost)}; no other tag moved",
                  hint="version tags never move: release a new version; turn on the registry's immutable tags "
                       "where it has them (ECR, Harbor)")


def promote(source: Reference, targets: list[str], *, force: bool = False) -> Descriptor:
    """Tag the artifact `source` names (resolved to its digest once) as each target, moving no blob.

    A target is a tag of the same repository, or a full reference to another repository of the same
    registry; a remote registry then mounts the blobs across repositories instead of copying them.
    """
    descriptor = resolve(source)
    if descriptor is None:
        raise UsageError(f"{source}: no such artifact", hint="check the tag or digest")
    store = open_layout(source, create=False)
    by_store: dict[str, tuple[Reference, list[str]]] = {}
    for target in targets:
        reference = source.with_tag(target) if ":" not in target and "/" not in target else parse_reference(target)
        if not reference.tag:
            raise UsageError(f"{target}: name a tag to promote to", hint="e.g. prod, v1.2.3 or HOST/REPO:prod")
        if (reference.path, reference.host) != (source.path, source.host):
            raise UsageError(f"{target}: promote works within one registry",
                             hint="pull the artifact and push it to the other registry")
        key = str(reference.path or reference.repository)
        by_store.setdefault(key, (reference, []))[1].append(reference.tag)
    stores = [(open_layout(reference, create=False), reference, tags) for reference, tags in by_store.values()]
    for target_store, _, tags in stores:  # NOTE: refused as a whole, before any tag moves
        _check_version_tags(target_store, descriptor.digest, _protected(tags, force))
    for target_store, reference, tags in stores:
        if isinstance(target_store, OciLayout):
            # NOTE: checked again under the lock of the write: of two runs racing for a tag, one loses
            target_store.set_tags(descriptor, tags, protected=_protected(tags, force))
            continue
        data = _stored(store, descriptor)
        if reference.repository != source.repository:
            _mount(store, target_store, json.loads(data))
        _put_remote(target_store, data, descriptor.media_type, tags, force=force)
    return descriptor


def _mount(source: Store, target: RemoteRepository, manifest: dict[str, Any]) -> None:
    """Link the manifest's blobs into another repository of the same registry, rather than copying them."""
    assert isinstance(source, RemoteRepository)
    for blob in [manifest["config"], *manifest["layers"]]:
        target.mount(Descriptor.from_json(blob), source)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def resolve(reference: Reference) -> Descriptor | None:
    """The manifest a reference names, or None when its tag does not exist (yet)."""
    if reference.path is not None and (not reference.path.exists() or _is_empty_dir(reference.path)):
        return None  # no registry yet: nothing was ever published
    layout = open_layout(reference, create=False)
    if reference.digest:
        data = layout.manifest(reference.digest)
        return None if data is None else Descriptor(MANIFEST_MEDIA_TYPE, reference.digest, len(data))
    return layout.resolve(reference.tag or "latest")


def _manifest(layout: Store, descriptor: Descriptor) -> dict[str, Any]:
    return _manifest_as_stored(layout, descriptor)[1]


def _stored(layout: Store, descriptor: Descriptor) -> bytes:
    data = layout.manifest(descriptor.digest)
    if data is None:
        raise RegistryError(f"{layout}: manifest {descriptor.digest} is missing")
    return data


def _manifest_as_stored(layout: Store, descriptor: Descriptor) -> tuple[bytes, dict[str, Any]]:
    """A model artifact's manifest: its bytes, whose digest is the artifact's, and what they say."""
    data = _stored(layout, descriptor)
    return data, _model_manifest(data, descriptor.digest)


def _model_manifest(data: bytes, digest: str) -> dict[str, Any]:
    manifest = json.loads(data)
    config_type = manifest.get("config", {}).get("mediaType")
    if manifest.get("artifactType") != ARTIFACT_TYPE and config_type != CONFIG_MEDIA_TYPE:
        raise RegistryError(f"{digest} is not a model artifact (artifactType {manifest.get('artifactType')!r})")
    return dict(manifest)


def _safe_name(layer: dict[str, Any]) -> str:
    name = str((layer.get("annotations") or {}).get(FILEPATH, ""))
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        # NOTE: a layer must never write outside the destination folder.
        raise RegistryError(f"layer {layer.get('digest')} has an unsafe or missing file path {name!r}")
    return name


def _files_of(data: bytes) -> dict[str, Descriptor]:
    """The files a model artifact's manifest names, by file name."""
    files: dict[str, Descriptor] = {}
    for layer in _model_manifest(data, sha256_digest(data))["layers"]:
        name = _safe_name(layer)
        if name in files or name == MANIFEST_FILE:
            raise RegistryError(f"layer {layer.get('digest')} has the file path {name!r} of another file")
        files[name] = Descriptor.from_json(layer)
    return files


def pull(reference: Reference, destination: Path) -> Pulled:
    """Pull an artifact into `destination`: a new or empty folder, or an earlier pull, which is replaced whole
    once every blob is verified; never a folder with files of anyone else's (see `destination.inspect`)."""
    target = destinations.inspect(destination, _files_of)
    descriptor = resolve(reference)
    if descriptor is None:
        raise UsageError(f"{reference}: no such artifact", hint="check the tag; `modelci push` creates it")
    layout = open_layout(reference, create=False)
    data, manifest = _manifest_as_stored(layout, descriptor)
    files = _files_of(data)
    with destinations.staged(target) as staging:
        for name, layer in files.items():
            with (staging / name).open("xb") as handle:
                layout.copy_blob(layer, handle)
        # NOTE: as stored, so that its digest is still the artifact's (a server serving the folder reports it)
        (staging / MANIFEST_FILE).write_bytes(data)
    return Pulled(reference.with_digest(descriptor.digest), descriptor.digest,
                  dict(manifest.get("annotations") or {}), list(files))


def annotations_of(reference: Reference) -> dict[str, str]:
    """The manifest annotations of the artifact `reference` names; none when it does not exist."""
    descriptor = resolve(reference)
    if descriptor is None:
        return {}
    return dict(_manifest(open_layout(reference, create=False), descriptor).get("annotations") or {})


def read_file(reference: Reference, name: str) -> bytes | None:
    """One file of an artifact, verified; None when the artifact, or that file in it, does not exist."""
    descriptor = resolve(reference)
    if descriptor is None:
        return None
    layout = open_layout(reference, create=False)
    for layer in _manifest(layout, descriptor)["layers"]:
        if (layer.get("annotations") or {}).get(FILEPATH) == name:
            return layout.read_bytes(Descriptor.from_json(layer))
    return None
