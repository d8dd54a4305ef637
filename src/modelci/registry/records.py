"""Records: small OCI artifacts that hold only annotations, beside the models in the same repository.

A deploy's history is records (`TAG-history-TIME-XXXX`, read by `modelci delivery`). A canary tag (`prod-canary`)
names a record that says which model the servers answer a share of requests with, and what share; a rolling
deploy's tag (`prod-rollout`) one that says which servers serve which model before the tag does. A record holds no
model of its own, so a server still pulls the model it names by its digest and verifies it as it verifies the main
tag's. A record is an OCI 1.1 artifact: its own artifactType, the empty config, one empty layer (what the image
spec asks of an artifact without content), its fields as annotations.
"""

from __future__ import annotations

import json

from modelci.errors import RegistryError
from modelci.registry.artifact import ANNOTATION_PREFIX, MANIFEST_MEDIA_TYPE, open_layout, resolve
from modelci.registry.layout import Descriptor
from modelci.registry.reference import Reference

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def push_record(reference: Reference, tags: list[str], kind: str, fields: dict[str, str]) -> Descriptor:
    """A record of `kind` (e.g. `canary`) holding `fields`, tagged with each of `tags`; its descriptor."""
    layout = open_layout(reference, create=True)
    digest, size = layout.put_bytes(EMPTY)
    empty = Descriptor(EMPTY_MEDIA_TYPE, digest, size).to_json()
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": artifact_type(kind),
                "config": empty, "layers": [empty],
                "annotations": {f"{ANNOTATION_PREFIX}{kind}.{key}": value for key, value in fields.items()}}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return layout.put_manifest(data, MANIFEST_MEDIA_TYPE, tags)


def read_record(reference: Reference, kind: str) -> dict[str, str] | None:
    """The fields of the record `reference` names; None when the tag does not exist. Raises `RegistryError`
    when it names something else (a model, say)."""
    descriptor = resolve(reference)
    if descriptor is None:
        return None
    data = open_layout(reference, create=False).manifest(descriptor.digest)
    manifest = json.loads(data) if data is not None else {}
    if manifest.get("artifactType") != artifact_type(kind):
        raise RegistryError(f"{reference} names {descriptor.digest}, which is not a {kind} record "
                            f"(artifactType {manifest.get('artifactType')!r})")
    prefix = f"{ANNOTATION_PREFIX}{kind}."
    return {key[len(prefix):]: value for key, value in (manifest.get("annotations") or {}).items()
            if key.startswith(prefix)}


def artifact_type(kind: str) -> str:
    return f"application/vnd.modelci.{kind}.v1+json"


def list_records(reference: Reference, kind: str, prefix: str) -> tuple[list[dict[str, str]], list[str]]:
    """The fields of every record of `kind` whose tag starts with `prefix`, and a note for each such tag that
    names something else (a foreign tag among them: skipped, not an error)."""
    layout = open_layout(reference, create=False)
    found, skipped = [], []
    for tag in sorted(name for name in layout.tag_names() if name.startswith(prefix)):
        try:
            fields = read_record(reference.with_tag(tag), kind)
        except (RegistryError, ValueError) as exc:
            skipped.append(f"{tag}: {exc}")
            continue
        if fields is not None:
            found.append(fields)
    return found, skipped
