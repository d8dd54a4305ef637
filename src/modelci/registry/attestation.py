"""Verifying the GitHub artifact attestations main.yml makes (`--verify github:OWNER/REPO`), with GitHub's CLI.

main.yml attests the artifact it publishes with `actions/attest-build-provenance` (SLSA provenance)
and the gate's comparison record (comparison.json) as an attestation of its own predicate type, both
keyless: signed with a short-lived certificate that Sigstore's CA issues for the workflow's OIDC
identity. Checking that certificate chain and the transparency log is what `gh attestation verify`
does, so modelci asks it rather than re-implementing Sigstore's verification: the artifact's digest
must carry both attestations, made by modelci's main.yml (the reusable workflow is the signer)
running for OWNER/REPO. It needs `gh` (on GitHub's runners) and a token it can read attestations
with (GH_TOKEN; in a workflow, the job's token).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

from modelci.errors import RegistryError, UsageError
from modelci.registry.reference import Reference

PREFIX = "github:"
SIGNER_WORKFLOW = "modelci/modelci/.github/workflows/main.yml"
VERDICT_PREDICATE = "https://modelci.dev/attestation/verdict/v1"
PROVENANCE_PREDICATE = "https://slsa.dev/provenance/v1"
OWNER_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
BRANCH = re.compile(r"^[A-Za-z0-9_./-]+$")
DEFAULT_BRANCH = "main"
TIMEOUT_S = 120


def identity_of(spec: str) -> tuple[str, str]:
    """(OWNER/REPO, branch) from `github:OWNER/REPO[@BRANCH]` (the branch main.yml ran on, `main` unless named);
    exit 2 when it is not one."""
    repository, _, branch = spec.removeprefix(PREFIX).partition("@")
    branch = branch or DEFAULT_BRANCH
    if not OWNER_REPO.match(repository) or not BRANCH.match(branch) or branch.startswith("-"):
        raise UsageError(f"--verify {spec}: name the repository whose main.yml attested the model, and its branch "
                         "when it is not main", hint="e.g. --verify github:my-org/churn-model or "
                                                     "github:my-org/churn-model@master")
    return repository, branch


def verify(reference: Reference, repository: str, branch: str = DEFAULT_BRANCH) -> dict[str, str]:
    """The verdict of the artifact `reference` names (pinned to a digest), from its GitHub attestations made by
    main.yml on `branch` (a run of it on any other branch or trigger does not count); raises
    `signature.NotVerified` (exit 1) with gh's reason when they do not verify."""
    from modelci.registry.signature import VERDICT

    if reference.is_layout or reference.digest is None:
        raise UsageError(f"{reference}: GitHub's attestations are of an artifact in a remote registry, by digest",
                         hint="verify an artifact main.yml published to ghcr.io (or another OCI registry)")
    subject = f"oci://{reference.host}/{reference.repository}@{reference.digest}"
    _attestations(subject, repository, branch, PROVENANCE_PREDICATE)
    verdicts = [_passed(found) for found in _attestations(subject, repository, branch, VERDICT_PREDICATE)]
    return {VERDICT: "passed" if verdicts and all(verdicts) else "failed"}


def _attestations(subject: str, repository: str, branch: str, predicate_type: str) -> list[Any]:
    """`gh attestation verify`'s verified attestations of one predicate type; NotVerified with gh's reason."""
    from modelci.registry.signature import NotVerified

    gh = shutil.which("gh")
    if gh is None:
        raise UsageError("--verify github:... checks GitHub's attestations with GitHub's CLI, gh, which is not "
                         "installed", hint="install gh (https://cli.github.com), or verify a key's signature instead")
    command = [gh, "attestation", "verify", subject, "--repo", repository, "--signer-workflow", SIGNER_WORKFLOW,
               "--source-ref", f"refs/heads/{branch}", "--predicate-type", predicate_type, "--format", "json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"gh attestation verify {subject} did not answer within {TIMEOUT_S} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise NotVerified(f"{subject} has no {predicate_type} attestation that main.yml of {repository} made on "
                          f"{branch}: {why}")
    try:
        found = json.loads(done.stdout)
    except ValueError:
        raise RegistryError(f"gh attestation verify {subject} printed no JSON") from None
    return found if isinstance(found, list) else []


def _passed(found: Any) -> bool:
    """Whether one verified verdict attestation says the gate passed (its predicate is comparison.json)."""
    try:
        return found["verificationResult"]["statement"]["predicate"]["passed"] is True
    except (KeyError, TypeError):
        return False
