"""Check every `uses:` of this repository's actions and workflows.

    python scripts/check_references.py     (from the repository root; exits 1 on a problem)

This repository's own actions and workflows (modelci/modelci...) must be referenced at the
release ref, so that a caller who pins a release gets every part of that release; every other
action must be pinned to a full commit hash, so that what runs cannot change under a tag.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

RELEASE_REF = "v1"
SELF = "modelci/modelci"
FULL_HASH = re.compile(r"^[0-9a-f]{40}$")


def files(root: Path) -> list[Path]:
    return sorted([root / "action.yml", *root.glob("actions/*/action.yml"), *root.glob(".github/workflows/*.yml"),
                   *root.glob("examples/workflows/*.yml")])


def uses(document: object) -> Iterator[str]:
    """Every `uses:` value anywhere in a parsed workflow or action."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "uses" and isinstance(value, str):
                yield value
            else:
                yield from uses(value)
    elif isinstance(document, list):
        for item in document:
            yield from uses(item)


def problem(reference: str) -> str | None:
    if reference.startswith("./"):
        return None
    if reference.startswith("docker://"):
        return None if "@sha256:" in reference else f"{reference} must be pinned to an image digest (@sha256:...)"
    target, _, ref = reference.partition("@")
    if target == SELF or target.startswith(f"{SELF}/"):
        return None if ref == RELEASE_REF else f"this repository's {target} must be used at @{RELEASE_REF}"
    return None if FULL_HASH.match(ref) else f"{target} must be pinned to a full commit hash, not @{ref or '(none)'}"


def main() -> int:
    root = Path.cwd()
    found = [(path, reference, problem(reference)) for path in files(root)
             for reference in uses(yaml.safe_load(path.read_text(encoding="utf-8")))]
    problems = [f"{path.relative_to(root)}: uses {reference}: {why}" for path, reference, why in found if why]
    print("\n".join(problems) or f"{len(found)} references checked: every one at the release ref or a full hash")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
