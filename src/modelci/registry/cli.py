"""`modelci push | pull`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelci import github
from modelci.options import config_option

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from modelci.registry.reference import Reference

FORCE_HELP = "Move a version tag (v1.2.3, 1.2, v2.0.0-rc.1: any tag that reads as a version) naming another artifact."


def credentials(function: Any) -> Any:
    """--username and --password-stdin, for every command that talks to a registry."""
    function = click.option("--password-stdin", is_flag=True,
                            help="Read the registry password (or token) from standard input.")(function)
    return click.option("--username", default=None, help="The registry user name (with --password-stdin).")(function)


def _use(username: str | None, password_stdin: bool) -> None:
    from modelci.errors import UsageError
    from modelci.registry.remote import Credentials, use_credentials

    if username is None and not password_stdin:
        return
    if username is None or not password_stdin:
        raise UsageError("--username and --password-stdin go together",
                         hint="e.g. echo $TOKEN | modelci push ... --username me --password-stdin")
    use_credentials(Credentials(username, sys.stdin.read().strip()))


KEY_HELP = "A PEM file, or env://NAME for an environment variable holding the PEM text (a secret)."


def sign_key_option(function: Any) -> Any:
    return click.option("--sign-key", default=None, metavar="KEY",
                        help=f"Sign the artifact with this ECDSA P-256 private key, as cosign does. {KEY_HELP}",
                        )(function)


def verify_option(function: Any) -> Any:
    return click.option("--verify", "verify_key", default=None, metavar="KEY",
                        help="Refuse an artifact without a signature this public key verifies (`modelci sign`, "
                             "cosign), or whose signed verdict is not a pass. KEY: a PEM file or env://NAME; or "
                             "github:OWNER/REPO, the GitHub attestations main.yml made for it (needs gh).")(function)


def set_repository_output(reference: Reference) -> None:
    """The `repository` output: HOST/REPOSITORY of a remote registry, which GitHub's attestations name (the
    actions/attest step); empty for a folder on disk."""
    github.set_output("repository", "" if reference.is_layout else f"{reference.host}/{reference.repository}")


def sign_artifact(reference: Reference, key: EllipticCurvePrivateKey) -> str:
    """Sign the artifact `reference` names with `key`; the signature's tag, logged and set as an output."""
    from modelci.registry.signature import sign

    digest, tag = sign(reference, key)
    github.set_output("signature", str(reference.with_tag(tag)))
    github.log(f"signed {digest}: {reference.with_tag(tag)}")
    return tag


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "target", required=True, help="Where to push, with its tag: oci:PATH:TAG or HOST/REPO:TAG.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@sign_key_option
@credentials
def push(directory: Path, target: str, force: bool, sign_key: str | None, username: str | None,
         password_stdin: bool) -> None:
    """Push the files of DIRECTORY (model.onnx and its evidence) as one model artifact.

    Links that lead out of DIRECTORY are refused. The same files make the same artifact (its `created`
    time is SOURCE_DATE_EPOCH, else the commit's), so a retried push gives the same digest."""
    _use(username, password_stdin)
    from modelci.errors import UsageError
    from modelci.registry.artifact import folder_files, push_files
    from modelci.registry.reference import parse_reference
    from modelci.registry.signature import load_signing_key

    reference = parse_reference(target)
    if not reference.tag:
        raise UsageError(f"{target}: name the tag to push to", hint="e.g. --to oci:.modelci/registry:v1")
    # NOTE: a key that cannot sign is refused before anything is pushed
    key = load_signing_key(sign_key) if sign_key is not None else None
    files = folder_files(directory)
    descriptor = push_files(files, reference, [reference.tag], {}, force=force)
    github.set_output("digest", descriptor.digest)
    github.log(f"pushed {len(files)} files to {reference} = {descriptor.digest}")
    if key is not None:
        sign_artifact(reference.with_digest(descriptor.digest), key)
    click.echo(descriptor.digest)


@click.command()
@click.argument("source", metavar="REF")
@click.option("--key", "key_spec", required=True, metavar="KEY",
              help=f"The ECDSA P-256 private key to sign with. {KEY_HELP}")
@config_option
@credentials
def sign(source: str, key_spec: str, config_path: Path | None, username: str | None, password_stdin: bool) -> None:
    """Sign the artifact REF (or :TAG of the config's registry) by digest, as cosign signs with a key pair.

    The signed payload names the manifest digest, which covers every file and annotation, and carries the
    gate's verdict and the commit; it is stored beside the artifact as cosign stores signatures (the tag
    sha256-<hex>.sig). Prints the signature's reference."""
    _use(username, password_stdin)
    from modelci.registry.signature import load_signing_key

    reference = source_reference(source, config_path)
    click.echo(str(reference.with_tag(sign_artifact(reference, load_signing_key(key_spec)))))


@click.command()
@click.argument("source", metavar="REF")
@click.option("--key", "key_spec", required=True, metavar="KEY",
              help=f"The public key to verify with ({KEY_HELP}), or github:OWNER/REPO for the GitHub attestations "
                   "main.yml made for that repository (needs gh).")
@config_option
@credentials
def verify(source: str, key_spec: str, config_path: Path | None, username: str | None, password_stdin: bool) -> None:
    """Verify that the artifact REF (or :TAG of the config's registry) is signed with KEY's private key.

    Exit 1, saying why, when no signature of its digest verifies. Prints the digest and the signed verdict."""
    _use(username, password_stdin)
    from modelci.registry.signature import verifier

    verified = verifier(key_spec)(source_reference(source, config_path))
    github.set_output("digest", verified.digest)
    github.set_output("verdict", verified.verdict or "")
    github.log(f"verified {verified.digest}: signed, verdict {verified.verdict or 'none'}")
    click.echo(verified.digest)


@click.command()
@click.argument("reference_text", metavar="REF")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the artifact's files to: a new or empty folder, or an earlier pull (replaced "
                   "whole). A folder with other files is refused.")
@credentials
def pull(reference_text: str, output: Path, username: str | None, password_stdin: bool) -> None:
    """Pull the model artifact REF into a folder, verifying every file against its digest."""
    _use(username, password_stdin)
    from modelci.registry.artifact import pull as pull_artifact
    from modelci.registry.reference import parse_reference

    pulled = pull_artifact(parse_reference(reference_text), output)
    github.set_output("digest", pulled.digest)
    github.log(f"pulled {reference_text} = {pulled.digest} into {output}: {', '.join(pulled.files)}")
    click.echo(pulled.digest)


@click.command()
@click.argument("source", metavar="REF")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@verify_option
@config_option
@credentials
def promote(source: str, tags: tuple[str, ...], force: bool, verify_key: str | None, config_path: Path | None,
            username: str | None, password_stdin: bool) -> None:
    """Tag the artifact REF as each TAG (a tag, or HOST/REPO:TAG in the same registry), by digest, moving no blob.

    REF may be :TAG, a tag of the config's registry (e.g. :sha-COMMIT in a release workflow). With --verify,
    an artifact that does not verify, or whose signed verdict is not a pass, gets no tag (exit 1)."""
    _use(username, password_stdin)
    from modelci.registry.artifact import promote as promote_artifact

    reference = source_reference(source, config_path)
    if verify_key:
        from modelci.registry.signature import verifier, verify_passed

        # NOTE: the digest verified is the one tagged, whatever the source tag names by then
        reference = reference.with_digest(verify_passed(reference, verifier(verify_key)).digest)
    descriptor = promote_artifact(reference, list(tags), force=force)
    github.set_output("digest", descriptor.digest)
    set_repository_output(reference)
    github.log(f"promoted {reference} = {descriptor.digest} to {', '.join(tags)}")
    click.echo(descriptor.digest)


def source_reference(source: str, config_path: Path | None) -> Reference:
    """REF as written; or for `:TAG`, that tag of the config's registry (`:sha-COMMIT` in a workflow), and for
    `@DIGEST` that digest of it (a digest a step before verified)."""
    from modelci.errors import UsageError
    from modelci.registry.reference import DIGEST, configured_registry, parse_reference

    if not source.startswith((":", "@")):
        return parse_reference(source)
    from modelci.config import load_config

    registry = configured_registry(load_config(config_path))
    if source.startswith(":"):
        return registry.with_tag(source[1:])
    if not DIGEST.match(source[1:]):
        raise UsageError(f"{source}: not a digest", hint="@sha256: and 64 hex digits, or :TAG")
    return registry.with_digest(source[1:])
