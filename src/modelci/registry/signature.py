"""Signatures of model artifacts with a key pair, in the format cosign makes and verifies.

What is signed is cosign's Simple Signing payload: a small JSON naming the artifact's manifest
digest (which covers every file of the artifact and its annotations), with the gate's verdict and
the commit in its `optional` claims, so the verdict is signed as well. The signature is ECDSA P-256
over SHA-256 (DER, base64), the scheme every cosign implementation supports. It is stored beside the
artifact as cosign stores it: an OCI image manifest tagged `sha256-<hex>.sig` whose layer is the
payload and whose layer annotation is the signature (cosign's tag-based discovery, which the on-disk
layout and every registry have). The manifest also names the artifact as its `subject`, so that a
registry with the OCI 1.1 referrers API lists it among the artifact's referrers. A second key's
signature is another layer of the same manifest, as with cosign.

So `cosign verify --key modelci.pub --insecure-ignore-tlog REPO@DIGEST` verifies what `modelci sign`
wrote (a key pair needs no transparency log; by reading cosign's code: cosign is not installed where
modelci is tested), and `modelci verify` what cosign signed with a P-256 key in this classic format
(cosign 2, or cosign 3 with `--new-bundle-format=false`; cosign 3's default bundles are not read).

Keys are PEM: a PKCS#8 or SEC 1 EC private key (encrypted with MODELCI_SIGNING_PASSWORD when it is
encrypted) and its public key, given as a path or as `env://NAME`, an environment variable holding
the PEM text (a CI secret), as cosign takes them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci.errors import CheckFailed, ModelciError, UsageError
from modelci.registry import artifact, attestation
from modelci.registry.layout import Descriptor

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

    from modelci.registry.artifact import Store
    from modelci.registry.reference import Reference

PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
VERDICT = f"{artifact.ANNOTATION_PREFIX}verdict"
PASSWORD_VARIABLE = "MODELCI_SIGNING_PASSWORD"
MAX_PAYLOAD = 1 << 20  # NOTE: a Simple Signing payload is a few hundred bytes; a larger layer is not read
KEY_HINT = ("make a key pair with openssl: openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 "
            "-nocrypt -out modelci.key && openssl ec -in modelci.key -pubout -out modelci.pub")
SIGN_HINT = ("sign it: modelci sign REF --key KEY (main's workflow signs what it publishes when given the "
             "signing-key secret)")


class NotVerified(CheckFailed):
    """The artifact has no signature that the key verifies for its digest."""


@dataclass(frozen=True)
class Verified:
    """An artifact whose signature the key verified, and the claims signed with it."""

    digest: str
    claims: dict[str, str]

    @property
    def verdict(self) -> str | None:
        return self.claims.get(VERDICT)


def signature_tag(digest: str) -> str:
    """Where cosign looks for the signatures of `digest`: sha256:abc… → sha256-abc….sig."""
    return f"{digest.replace(':', '-')}.sig"


# -- keys -----------------------------------------------------------------------------------------

def _pem(spec: str, what: str) -> bytes:
    """The PEM text a key option names: a file, or env://NAME."""
    if "\n" in spec or "-----BEGIN" in spec:
        # NOTE: the key itself, given as the value: never repeated in a message, which a CI log keeps
        raise UsageError(f"the {what} was given as its text; give a file or env://NAME",
                         hint="e.g. --key env://MODELCI_SIGNING_KEY with the PEM text in that variable (a secret)")
    if spec.startswith("env://"):
        name = spec.removeprefix("env://")
        value = os.environ.get(name, "")
        if not value.strip():
            raise UsageError(f"{what} {spec}: the environment variable {name} is empty or not set",
                             hint="set it to the PEM text of the key (in a workflow, from a secret)")
        return value.encode()
    try:
        return Path(spec).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {spec}: {exc.strerror}", hint="name a PEM file, or env://NAME") from None


def load_signing_key(spec: str) -> EllipticCurvePrivateKey:
    """The private key `spec` names (a PEM file or env://NAME); exit 2 naming what is wrong with it."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _pem(spec, "signing key")
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise UsageError(f"signing key {spec} is in cosign's own encrypted format, which modelci does not read",
                         hint=f"use a PEM key pair (cosign verifies its signatures with the public key): {KEY_HINT}")
    password = os.environ.get(PASSWORD_VARIABLE)
    try:
        try:
            key = load_pem_private_key(data, None)
        except TypeError:  # NOTE: an encrypted key; the password is asked only of one
            if not password:
                raise UsageError(f"signing key {spec} is encrypted",
                                 hint=f"set {PASSWORD_VARIABLE} to its password") from None
            key = load_pem_private_key(data, password.encode())
    except ValueError as exc:
        raise UsageError(f"signing key {spec} is not a PEM private key modelci can read ({exc})",
                         hint=KEY_HINT) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError(f"signing key {spec} is not an ECDSA P-256 key, the scheme cosign's signatures use",
                         hint=KEY_HINT)
    return key


def load_public_key(spec: str) -> EllipticCurvePublicKey:
    """The public key `spec` names (a PEM file or env://NAME); exit 2 naming what is wrong with it."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _pem(spec, "public key")
    if b"PRIVATE KEY" in data:
        raise UsageError(f"{spec} is a private key; verifying takes the public key",
                         hint="openssl ec -in KEY -pubout -out modelci.pub, and keep the private key off servers")
    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"public key {spec} is not a PEM public key ({exc})", hint=KEY_HINT) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise UsageError(f"public key {spec} is not an ECDSA P-256 key, the scheme cosign's signatures use",
                         hint=KEY_HINT)
    return key


# -- signing --------------------------------------------------------------------------------------

def payload(reference: Reference, digest: str, claims: dict[str, str]) -> bytes:
    """cosign's Simple Signing payload for the artifact `digest` of `reference`'s repository."""
    repository = str(reference.with_digest(digest)).rpartition("@")[0]
    document = {"critical": {"identity": {"docker-reference": repository},
                             "image": {"docker-manifest-digest": digest},
                             "type": SIGNATURE_TYPE},
                "optional": claims or None}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def sign(reference: Reference, key: EllipticCurvePrivateKey) -> tuple[str, str]:
    """Sign the artifact `reference` names (resolved to its digest once); (its digest, the signature's tag).

    The claims signed are the artifact's verdict and commit. Signing again with the same key adds nothing.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    descriptor = _resolve(reference)
    pinned = reference.with_digest(descriptor.digest)
    annotations = artifact.annotations_of(pinned)
    claims = {name: annotations[name] for name in (VERDICT, artifact.REVISION) if annotations.get(name)}
    store = artifact.open_layout(reference, create=False)
    tag = signature_tag(descriptor.digest)
    layers = _signature_layers(store, tag)
    if any(_verifies(store, layer, key.public_key(), descriptor.digest) for layer in layers):
        return descriptor.digest, tag
    signed = payload(reference, descriptor.digest, claims)
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    digest, size = store.put_bytes(signed)
    layer = Descriptor(PAYLOAD_MEDIA_TYPE, digest, size, {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})
    _put_signatures(store, tag, descriptor, [*layers, layer.to_json()])
    return descriptor.digest, tag


def _put_signatures(store: Store, tag: str, subject: Descriptor, layers: list[dict[str, Any]]) -> None:
    """The signature manifest, as cosign writes it (plus `subject`), under `tag`.

    NOTE: its config is the one an empty image with these layers has, which is what cosign's is.
    """
    config = {"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z", "os": "",
              "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}
    config_digest, config_size = store.put_bytes(json.dumps(config, separators=(",", ":")).encode())
    manifest = {"schemaVersion": 2, "mediaType": artifact.MANIFEST_MEDIA_TYPE,
                "config": Descriptor(IMAGE_CONFIG_MEDIA_TYPE, config_digest, config_size).to_json(),
                "layers": layers,
                "subject": Descriptor(artifact.MANIFEST_MEDIA_TYPE, subject.digest, subject.size).to_json()}
    store.put_manifest(json.dumps(manifest, indent=2).encode(), artifact.MANIFEST_MEDIA_TYPE, [tag])


# -- verifying ------------------------------------------------------------------------------------

def verify(reference: Reference, key: EllipticCurvePublicKey) -> Verified:
    """The artifact `reference` names, when a signature of its digest verifies with `key`; NotVerified (exit 1)
    saying why when none does."""
    descriptor = _resolve(reference)
    store = artifact.open_layout(reference, create=False)
    tag = signature_tag(descriptor.digest)
    layers = _signature_layers(store, tag)
    what = f"{reference} = {descriptor.digest}" if reference.digest is None else str(reference)
    if not layers:
        raise NotVerified(f"{what} is not signed (no signature at :{tag})", hint=SIGN_HINT)
    reasons = []
    for layer in layers:
        reason = _why_not(store, layer, key, descriptor.digest)
        if isinstance(reason, Verified):
            return reason
        reasons.append(reason)
    raise NotVerified(f"{what} has {len(layers)} signature(s), and the key verifies none: {'; '.join(reasons)}",
                      hint="verify with the public key of the key main's workflow signs with; an artifact "
                           "changed after it was signed is a new digest, which no one signed")


Verifier = Callable[["Reference"], Verified]


def verifier(spec: str) -> Verifier:
    """What --verify names: a public key (a PEM file or env://NAME), whose signature an artifact must carry; or
    github:OWNER/REPO[@BRANCH], the GitHub attestations main.yml makes for that repository on that branch (main
    unless named; `attestation`)."""
    if spec.startswith(attestation.PREFIX):
        repository, branch = attestation.identity_of(spec)
        return lambda reference: _attested(reference, repository, branch)
    key = load_public_key(spec)
    return lambda reference: verify(reference, key)


def _attested(reference: Reference, repository: str, branch: str) -> Verified:
    digest = _resolve(reference).digest
    return Verified(digest, attestation.verify(reference.with_digest(digest), repository, branch))


def verify_passed(reference: Reference, check: Verifier) -> Verified:
    """As `check`, and the signed verdict is a pass: what a server watching a tag with --verify takes."""
    verified = check(reference)
    if verified.verdict != "passed":
        raise NotVerified(f"{reference}: its signature verifies, and the verdict signed with it is "
                          f"{verified.verdict or 'none'}, not passed", hint="deploy an artifact whose gate passed")
    return verified


def _resolve(reference: Reference) -> Descriptor:
    descriptor = artifact.resolve(reference)
    if descriptor is None:
        raise UsageError(f"{reference}: no such artifact", hint="check the tag or digest")
    return descriptor


def _signature_layers(store: Store, tag: str) -> list[dict[str, Any]]:
    """The signature layers stored under `tag`; none when there is no such tag."""
    found = store.resolve(tag)
    data = store.manifest(found.digest) if found is not None else None
    if data is None:
        return []
    layers = json.loads(data).get("layers") or []
    return [layer for layer in layers if isinstance(layer, dict) and layer.get("mediaType") == PAYLOAD_MEDIA_TYPE]


def _verifies(store: Store, layer: dict[str, Any], key: EllipticCurvePublicKey, digest: str) -> bool:
    return isinstance(_why_not(store, layer, key, digest), Verified)


def _folded(document: dict[str, Any]) -> dict[str, Any]:
    """The fields of a JSON object by their lower-case names, as cosign (Go's JSON decoding) reads its payload: the
    spec's own example writes `Docker-manifest-digest`."""
    return {str(name).lower(): value for name, value in document.items()}


def _why_not(store: Store, layer: dict[str, Any], key: EllipticCurvePublicKey, digest: str) -> Verified | str:
    """The verified claims of one signature layer, or why it does not verify `digest` with `key`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        signature = base64.b64decode((layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, ""), validate=True)
    except (ValueError, TypeError):
        return "a signature that is not base64"
    try:
        if int(layer.get("size", MAX_PAYLOAD + 1)) > MAX_PAYLOAD:
            return f"a payload of more than {MAX_PAYLOAD:,} bytes"
        signed = store.read_bytes(Descriptor.from_json(layer))  # NOTE: checked against its digest
    except (ModelciError, KeyError, TypeError, ValueError) as exc:
        return f"a payload that cannot be read ({exc})"  # NOTE: one bad layer never hides a good one after it
    try:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "one made with another key (or altered)"
    try:
        document = _folded(json.loads(signed))
        critical = _folded(document["critical"])
        named, kind = _folded(critical["image"])["docker-manifest-digest"], critical["type"]
        claims = document.get("optional") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return "a signed payload that is not cosign's Simple Signing JSON"
    if kind != SIGNATURE_TYPE:
        return f"a signature of type {kind!r}, not {SIGNATURE_TYPE!r}"
    if named != digest:
        return f"a signature of {named}, another artifact (this one was changed after signing, or the signature copied)"
    return Verified(digest, {str(k): str(v) for k, v in claims.items()} if isinstance(claims, dict) else {})
