"""`modelci sign` and `modelci verify`: cosign's signature format, checked by hand with the key, on disk
and in a real registry; another key, an unsigned artifact, a changed one, and every bad key file."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from modelci.registry.artifact import ANNOTATION_PREFIX, REVISION, open_layout, push_files, resolve
from modelci.registry.layout import Descriptor
from modelci.registry.reference import parse_reference
from modelci.registry.signature import PAYLOAD_MEDIA_TYPE, SIGNATURE_ANNOTATION, signature_tag
from test_registry import make_artifact
from test_remote import Served, served  # noqa: F401  (the session's registry, as a fixture here)

PASSED = {f"{ANNOTATION_PREFIX}verdict": "passed", REVISION: "c0ffee"}


def key_pair(folder: Path, name: str = "modelci", password: bytes | None = None) -> tuple[Path, Path]:
    """An ECDSA P-256 key pair as PEM files, as `openssl ecparam -name prime256v1 -genkey` makes one."""
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(params=["on disk", "registry"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "on disk":
        return f"oci:{tmp_path / 'registry'}"
    host = request.getfixturevalue("served").host
    return f"{host}/signed/{tmp_path.name.lower().replace('_', '-')}"


def push(repository: str, folder: Path, tag: str, weights: bytes = b"onnx-bytes",
         annotations: dict[str, str] | None = None) -> str:
    files = make_artifact(folder, weights)
    return push_files(files, parse_reference(f"{repository}:{tag}"), [tag], PASSED if annotations is None
                      else annotations).digest


def signature_manifest(repository: str, digest: str) -> dict[str, Any]:
    reference = parse_reference(f"{repository}:{signature_tag(digest)}")
    store, found = open_layout(reference, create=False), resolve(reference)
    assert found is not None
    return dict(json.loads(store.manifest(found.digest) or b"{}"))


def test_a_signature_is_cosigns_and_verifies_with_the_key_pair(cli, repository: str,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    digest = push(repository, tmp_path / "a", "sha-a")
    signed = cli("sign", f"{repository}:sha-a", "--key", str(private))
    assert signed.code == 0, signed.err
    assert signed.out.strip() == f"{repository}:sha256-{digest.split(':')[1]}.sig"

    # cosign's layout: an image manifest under sha256-<hex>.sig, one Simple Signing layer, the signature on it
    manifest = signature_manifest(repository, digest)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == PAYLOAD_MEDIA_TYPE
    assert manifest["subject"]["digest"] == digest  # a referrer of the artifact, for registries with that API
    store = open_layout(parse_reference(repository), create=False)
    payload = store.read_bytes(Descriptor.from_json(layer))
    document = json.loads(payload)
    assert document["critical"]["image"]["docker-manifest-digest"] == digest
    assert document["critical"]["type"] == "cosign container image signature"
    assert document["optional"] == {"io.modelci.verdict": "passed", REVISION: "c0ffee"}  # the verdict is signed
    # checked by hand as cosign checks it: ECDSA P-256 over SHA-256 of the payload, DER, base64 in the annotation
    key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]), payload, ec.ECDSA(hashes.SHA256()))

    verified = cli("verify", f"{repository}:sha-a", "--key", str(public))
    assert verified.code == 0, verified.err
    assert verified.out.strip() == digest
    assert "signed, verdict passed" in verified.err

    # signing again with the same key adds nothing; another key adds its own signature beside it
    assert cli("sign", f"{repository}:sha-a", "--key", str(private)).code == 0
    assert len(signature_manifest(repository, digest)["layers"]) == 1
    other_private, other_public = key_pair(tmp_path, "other")
    assert cli("sign", f"{repository}@{digest}", "--key", str(other_private)).code == 0
    assert len(signature_manifest(repository, digest)["layers"]) == 2
    assert cli("verify", f"{repository}:sha-a", "--key", str(public)).code == 0
    assert cli("verify", f"{repository}:sha-a", "--key", str(other_public)).code == 0


def test_another_key_an_unsigned_artifact_and_a_changed_one_do_not_verify(cli, repository: str,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    _, stranger = key_pair(tmp_path, "stranger")
    digest = push(repository, tmp_path / "a", "sha-a")
    unsigned = cli("verify", f"{repository}:sha-a", "--key", str(public))
    assert unsigned.code == 1
    assert f"{repository}:sha-a = {digest} is not signed (no signature at :{signature_tag(digest)})" in unsigned.err
    assert "hint: sign it: modelci sign REF --key KEY" in unsigned.err

    assert cli("sign", f"{repository}:sha-a", "--key", str(private)).code == 0
    wrong = cli("verify", f"{repository}:sha-a", "--key", str(stranger))
    assert wrong.code == 1
    assert "has 1 signature(s), and the key verifies none: one made with another key (or altered)" in wrong.err

    # someone who may push changes the model and copies the signature to the new digest: it names the old one
    changed = push(repository, tmp_path / "b", "sha-a", weights=b"other-bytes")
    store = open_layout(parse_reference(repository), create=False)
    copied = resolve(parse_reference(f"{repository}:{signature_tag(digest)}"))
    assert copied is not None
    store.put_manifest(store.manifest(copied.digest) or b"", copied.media_type, [signature_tag(changed)])
    tampered = cli("verify", f"{repository}:sha-a", "--key", str(public))
    assert tampered.code == 1
    assert f"a signature of {digest}, another artifact (this one was changed after signing" in tampered.err


def test_bad_keys_are_refused_with_what_to_do(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    repository = f"oci:{tmp_path / 'registry'}"
    push(repository, tmp_path / "a", "sha-a")
    private, public = key_pair(tmp_path)
    locked, _ = key_pair(tmp_path, "locked", password=b"s3cret")
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cosign_key = tmp_path / "cosign.key"
    cosign_key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n"
                          "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    (tmp_path / "notes.txt").write_text("not a key")
    monkeypatch.delenv("MODELCI_SIGNING_PASSWORD", raising=False)
    monkeypatch.setenv("EMPTY_KEY", "")
    cases = {
        ("sign", private.read_text()): "the signing key was given as its text; give a file or env://NAME",
        ("sign", str(tmp_path / "missing.key")): "signing key",
        ("sign", str(tmp_path / "notes.txt")): "is not a PEM private key modelci can read",
        ("sign", str(rsa_key)): "is not an ECDSA P-256 key, the scheme cosign's signatures use",
        ("sign", str(locked)): "is encrypted\n  hint: set MODELCI_SIGNING_PASSWORD to its password",
        ("sign", str(cosign_key)): "is in cosign's own encrypted format, which modelci does not read",
        ("sign", "env://EMPTY_KEY"): "the environment variable EMPTY_KEY is empty or not set",
        ("verify", str(private)): "is a private key; verifying takes the public key",
        ("verify", str(tmp_path / "notes.txt")): "is not a PEM public key",
    }
    for (command, key), message in cases.items():
        refused = cli(command, f"{repository}:sha-a", "--key", key)
        assert (refused.code, message in refused.err) == (2, True), (key, refused.err)
        assert "PRIVATE KEY" not in refused.err  # a key given as its text is never repeated into a log
    assert resolve(parse_reference(f"{repository}:sha256-x.sig")) is None  # nothing was written by a refusal

    monkeypatch.setenv("MODELCI_SIGNING_PASSWORD", "s3cret")
    assert cli("sign", f"{repository}:sha-a", "--key", str(locked)).code == 0
    monkeypatch.setenv("SIGNING_KEY", private.read_text())  # a CI secret, as cosign's env:// takes one
    monkeypatch.setenv("PUBLIC_KEY", public.read_text())
    assert cli("sign", f"{repository}:sha-a", "--key", "env://SIGNING_KEY").code == 0
    assert cli("verify", f"{repository}:sha-a", "--key", "env://PUBLIC_KEY").code == 0


def test_push_signs_what_it_pushed_and_a_bad_key_pushes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repository = f"oci:{tmp_path / 'registry'}"
    private, public = key_pair(tmp_path)
    make_artifact(tmp_path / "a")
    refused = cli("push", str(tmp_path / "a"), "--to", f"{repository}:v1", "--sign-key", str(tmp_path / "nope.key"))
    assert refused.code == 2
    assert not (tmp_path / "registry").exists()
    pushed = cli("push", str(tmp_path / "a"), "--to", f"{repository}:v1", "--sign-key", str(private))
    assert pushed.code == 0, pushed.err
    assert cli("verify", f"{repository}:v1", "--key", str(public)).code == 0


def test_run_signs_only_what_it_publishes(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    private, _ = key_pair(tmp_path)
    refused = cli("run", "--sign-key", str(private))
    assert refused.code == 2
    assert "--sign-key signs what --publish publishes, and --publish is not given" in refused.err


GH_STANDIN = """#!/usr/bin/env python3
# GitHub's CLI, standing in for `gh attestation verify`: records its arguments, answers as told
import json, os, sys
with open(os.environ["GH_CALLS"], "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
kind = "verdict" if "https://modelci.dev/attestation/verdict/v1" in sys.argv else "provenance"
answer = json.loads(os.environ["GH_ANSWERS"])[kind]
if answer is None:
    sys.exit("Error: verifying with issuer \\"sigstore.dev\\": no matching attestations found")
print(json.dumps([{"verificationResult": {"statement": {"predicate": answer}}}]))
"""


def gh_standin(folder: Path, monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any]) -> Path:
    """`gh` on PATH, standing in for GitHub's CLI (which needs the internet); returns the file of its calls."""
    (folder / "bin").mkdir(exist_ok=True)
    gh = folder / "bin" / "gh"
    gh.write_text(GH_STANDIN)
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("GH_CALLS", str(folder / "calls.jsonl"))
    monkeypatch.setenv("GH_ANSWERS", json.dumps(answers))
    return folder / "calls.jsonl"


def test_github_attestations_are_verified_with_gh_for_main_yml_of_the_repository(  # type: ignore[no-untyped-def]
        cli, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    repository = f"{served.host}/attested/churn"
    digest = push(repository, tmp_path / "a", "sha-a")
    calls = gh_standin(tmp_path, monkeypatch, {"provenance": {"buildDefinition": {}}, "verdict": {"passed": True}})
    verified = cli("verify", f"{repository}:sha-a", "--key", "github:team/churn")
    assert verified.code == 0, verified.err
    assert "verdict passed" in verified.err
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    subject = f"oci://{repository}@{digest}"  # by digest: the tag is resolved once
    common = ["attestation", "verify", subject, "--repo", "team/churn",
              "--signer-workflow", "modelci/modelci/.github/workflows/main.yml",  # the reusable workflow signs
              "--source-ref", "refs/heads/main"]  # run on main: not on a branch anyone may push
    assert made == [[*common, "--predicate-type", "https://slsa.dev/provenance/v1", "--format", "json"],
                    [*common, "--predicate-type", "https://modelci.dev/attestation/verdict/v1", "--format", "json"]]

    gh_standin(tmp_path, monkeypatch, {"provenance": {}, "verdict": {"passed": False}})
    failed = cli("deploy", f"{repository}:sha-a", "--verify", "github:team/churn")
    assert failed.code == 1
    assert "did not pass the gate (signed verdict: failed)" in failed.err
    gh_standin(tmp_path, monkeypatch, {"provenance": None, "verdict": {"passed": True}})
    unattested = cli("deploy", f"{repository}:sha-a", "--verify", "github:team/churn")
    assert unattested.code == 1
    assert f"{subject} has no https://slsa.dev/provenance/v1 attestation that main.yml of team/churn made on main: " \
           "Error: verifying with issuer" in unattested.err
    assert resolve(parse_reference(f"{repository}:prod")) is None

    gh_standin(tmp_path, monkeypatch, {"provenance": {}, "verdict": {"passed": True}})
    assert cli("verify", f"{repository}:sha-a", "--key", "github:team/churn@master").code == 0
    made = json.loads(calls.read_text().splitlines()[-1])
    assert made[made.index("--source-ref") + 1] == "refs/heads/master"

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    without_gh = cli("verify", f"{repository}:sha-a", "--key", "github:team/churn")
    assert without_gh.code == 2
    assert "checks GitHub's attestations with GitHub's CLI, gh, which is not installed" in without_gh.err


def test_github_verification_needs_a_repository_and_a_remote_registry(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_disk = f"oci:{tmp_path / 'registry'}"
    push(on_disk, tmp_path / "a", "sha-a")
    assert "name the repository whose main.yml attested" in cli("verify", f"{on_disk}:sha-a", "--key",
                                                                 "github:churn").err
    assert "GitHub's attestations are of an artifact in a remote registry" in \
        cli("verify", f"{on_disk}:sha-a", "--key", "github:team/churn").err


def test_a_layer_that_cannot_be_read_does_not_hide_a_good_signature_and_cosigns_capitals_are_read(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repository = f"oci:{tmp_path / 'registry'}"
    private, public = key_pair(tmp_path)
    digest = push(repository, tmp_path / "a", "sha-a")
    assert cli("sign", f"{repository}:sha-a", "--key", str(private)).code == 0
    store = open_layout(parse_reference(repository), create=False)
    manifest = signature_manifest(repository, digest)
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # cosign's spec writes the digest's key as Docker-manifest-digest; Go's JSON decoding reads it either way
    spec_payload = json.dumps({"Critical": {"Identity": {"docker-reference": ""}, "Image": {
        "Docker-manifest-digest": digest}, "Type": "cosign container image signature"}, "Optional": None}).encode()
    written, size = store.put_bytes(spec_payload)
    spec_layer = {"mediaType": PAYLOAD_MEDIA_TYPE, "digest": written, "size": size, "annotations": {
        SIGNATURE_ANNOTATION: base64.b64encode(key.sign(spec_payload, ec.ECDSA(hashes.SHA256()))).decode()}}
    junk = {"mediaType": PAYLOAD_MEDIA_TYPE, "digest": "sha256:" + "0" * 64, "size": 10,
            "annotations": {SIGNATURE_ANNOTATION: "AAAA"}}  # a blob that is not there
    manifest["layers"] = [junk, spec_layer]
    store.put_manifest(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json",
                       [signature_tag(digest)])
    verified = cli("verify", f"{repository}:sha-a", "--key", str(public))
    assert verified.code == 0, verified.err
    manifest["layers"] = [junk]
    store.put_manifest(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json",
                       [signature_tag(digest)])
    refused = cli("verify", f"{repository}:sha-a", "--key", str(public))
    assert refused.code == 1
    assert "a payload that cannot be read" in refused.err
