"""The model artifact: an OCI manifest in the CNCF ModelPack format.

`model.onnx` is the weight layer; every other file is a doc layer (metrics, data report, parity,
golden samples, schema, report), each named by the `org.cncf.model.filepath` annotation. modelci's
own facts travel as manifest annotations. The order of writing makes a tag safe to trust: blobs
first, then the config and the manifest, and only then the tags.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelci.errors import RegistryError, UsageError
from modelci.registry.layout import Descriptor, OciLayout, sha256_digest
from modelci.registry.reference import Reference, parse_reference
from modelci.registry.remote import RemoteRepository

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_MEDIA_TYPE = "application/vnd.cncf.model.weight.v1.raw"
DOC_MEDIA_TYPE = "application/vnd.cncf.model.doc.v1.raw"
FILEPATH = "org.cncf.model.filepath"
CREATED = "org.opencontainers.image.created"
WEIGHT_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"  # written beside the files by pull
# modelci's own manifest annotations.
ANNOTATION_PREFIX = "io.modelci."
VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")  # a release: never moved once set


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
    annotations = {CREATED: _created(layout, tags, layers, annotations)} | annotations
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
    _check_version_tags(layout, sha256_digest(data), tags, force=force)
    stored = layout.put_manifest(data, MANIFEST_MEDIA_TYPE, tags)
    return Descriptor(MANIFEST_MEDIA_TYPE, stored.digest, stored.size, artifact_type=ARTIFACT_TYPE)


def _created(store: Store, tags: list[str], layers: list[Descriptor], annotations: dict[str, str]) -> str:
    """Now; or, when one of the tags already names these very files with these annotations, that
    artifact's creation time, so that pushing it again makes the same artifact: the same digest,
    nothing sent, no version tag moved."""
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
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_version_tags(store: Store, digest: str, tags: list[str], *, force: bool) -> None:
    """A version tag (v1.2.3) that names another manifest is never moved, unless `force`: a release must
    keep meaning what it meant. Checked for every tag before any moves."""
    for tag in tags:
        if VERSION_TAG.match(tag) and not force:
            existing = store.resolve(tag)
            if existing is not None and existing.digest != digest:
                raise UsageError(f"{tag} already names {existing.digest} in {store}; version tags never move",
                                 hint="release a new version, or pass --force to move it anyway")


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
    for reference, tags in by_store.values():
        target_store = open_layout(reference, create=False)
        _check_version_tags(target_store, descriptor.digest, tags, force=force)
        if reference.repository == source.repository:
            target_store.set_tags(descriptor, tags)
        else:
            _mount(store, target_store, descriptor, tags)
    return descriptor


def _mount(source: Store, target: Store, descriptor: Descriptor, tags: list[str]) -> None:
    """Tag the artifact in another repository of the same registry, its blobs mounted rather than copied."""
    assert isinstance(source, RemoteRepository)
    assert isinstance(target, RemoteRepository)
    data = source.manifest(descriptor.digest)
    assert data is not None
    manifest = json.loads(data)
    for blob in [manifest["config"], *manifest["layers"]]:
        target.mount(Descriptor.from_json(blob), source)
    target.put_manifest(data, descriptor.media_type, tags)


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


def _manifest_as_stored(layout: Store, descriptor: Descriptor) -> tuple[bytes, dict[str, Any]]:
    """A model artifact's manifest: its bytes, whose digest is the artifact's, and what they say."""
    data = layout.manifest(descriptor.digest)
    if data is None:
        raise RegistryError(f"{layout}: manifest {descriptor.digest} is missing")
    manifest = json.loads(data)
    config_type = manifest.get("config", {}).get("mediaType")
    if manifest.get("artifactType") != ARTIFACT_TYPE and config_type != CONFIG_MEDIA_TYPE:
        raise RegistryError(f"{descriptor.digest} is not a model artifact (artifactType "
                            f"{manifest.get('artifactType')!r})")
    return data, dict(manifest)


def _safe_name(layer: dict[str, Any]) -> str:
    name = str((layer.get("annotations") or {}).get(FILEPATH, ""))
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        # NOTE: a layer must never write outside the destination folder.
        raise RegistryError(f"layer {layer.get('digest')} has an unsafe or missing file path {name!r}")
    return name


def pull(reference: Reference, destination: Path) -> Pulled:
    """Pull an artifact into `destination`, replacing it whole only after every blob verified."""
    descriptor = resolve(reference)
    if descriptor is None:
        raise UsageError(f"{reference}: no such artifact", hint="check the tag; `modelci push` creates it")
    layout = open_layout(reference, create=False)
    data, manifest = _manifest_as_stored(layout, descriptor)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        names = []
        for layer in manifest["layers"]:
            name = _safe_name(layer)
            with (staging / name).open("wb") as handle:
                layout.copy_blob(Descriptor.from_json(layer), handle)
            names.append(name)
        # NOTE: as stored, so that its digest is still the artifact's (a server serving the folder reports it)
        (staging / MANIFEST_FILE).write_bytes(data)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Pulled(reference.with_digest(descriptor.digest), descriptor.digest,
                  dict(manifest.get("annotations") or {}), names)


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
