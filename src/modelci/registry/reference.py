"""Registry references: `oci:PATH[:tag|@digest]` (on disk) and `host[:port]/repo[:tag|@digest]`."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelci.errors import UsageError

if TYPE_CHECKING:
    from modelci.config import Config

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
HOST = re.compile(r"^(?:localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]|[A-Za-z0-9-]+:\d+)(?::\d+)?$")
OCI_PREFIX = "oci:"


@dataclass(frozen=True)
class Reference:
    """Where an artifact lives: a layout folder (`path`) or a remote repository, plus tag or digest."""

    path: Path | None = None
    host: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def is_layout(self) -> bool:
        return self.path is not None

    def with_tag(self, tag: str) -> Reference:
        return dataclasses.replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return dataclasses.replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        base = f"{OCI_PREFIX}{self.path}" if self.path is not None else f"{self.host}/{self.repository}"
        return base + (f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else "")


def validate_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise UsageError(f"'{tag}' is not a valid tag",
                         hint="a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
    return tag


def _split_suffix(text: str) -> tuple[str, str | None, str | None]:
    """Split off '@digest' or a ':tag' that comes after the last '/'."""
    if "@" in text:
        base, _, digest = text.rpartition("@")
        if not DIGEST.match(digest):
            raise UsageError(f"'{digest}' is not a sha256 digest", hint="write it as sha256:<64 hex digits>")
        return base, None, digest
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        return text[:colon], validate_tag(text[colon + 1:]), None
    return text, None, None


def parse_reference(text: str, *, base: Path | None = None) -> Reference:
    """Parse a reference; a relative `oci:` path is taken relative to `base` (default: cwd)."""
    text = text.strip()
    if text.startswith(OCI_PREFIX):
        location, tag, digest = _split_suffix(text[len(OCI_PREFIX):])
        if not location:
            raise UsageError(f"'{text}' names no folder", hint="write oci:PATH, e.g. oci:.modelci/registry")
        path = Path(location)
        return Reference(path=path if path.is_absolute() or base is None else base / path, tag=tag, digest=digest)
    location, tag, digest = _split_suffix(text)
    host, _, repository = location.partition("/")
    if not repository or not HOST.match(host) or not REPOSITORY.match(repository):
        raise UsageError(
            f"'{text}' is not a registry reference",
            hint="use oci:PATH[:tag] for a folder, or HOST/REPOSITORY[:tag] such as ghcr.io/acme/churn:main",
        )
    return Reference(host=host, repository=repository, tag=tag, digest=digest)


def configured_registry(config: Config) -> Reference:
    """The config's registry (or --registry's); in GitHub Actions never a folder on the runner's disk, which a
    hosted runner empties after every job (every pull request would find no baseline), unless the config says
    that the disk persists (`registry_local_in_ci: true`, a self-hosted runner)."""
    from modelci import github

    reference = parse_reference(config.registry, base=config.root)
    if reference.path is not None and github.in_actions() and not config.registry_local_in_ci:
        repository = os.environ.get("GITHUB_REPOSITORY", "OWNER/REPO").lower()
        raise UsageError(f"registry: {config.registry} is a folder on this runner's disk, which GitHub empties after "
                         "every job: no pull request would find the model on main to compare with",
                         hint=f"put `registry: ghcr.io/{repository}-model` (or another OCI registry) in "
                              f"{config.path.name}, or leave `registry` out to get that one; on a self-hosted runner "
                              "whose disk persists, set `registry_local_in_ci: true`")
    return reference
