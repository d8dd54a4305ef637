"""`modelci run`: the pull-request pipeline, each stage in order; `--publish` adds the main flow.

data check → train → export + parity → evaluate → compare with the baseline → report, and with
`--publish` the artifact is pushed as `sha-<commit>` and `main` is moved to it. The report is
written however far the pipeline got, and nothing is published unless every stage passed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    from modelci.config import Config

# Everything a run writes to the output folder; cleared at the start so no stale file from an
# earlier run can be mistaken for this run's.
# NOTE: and every framework adapter's checkpoint (`_clear`)
OUTPUTS = ("data-report.json", "data-profile.json", "model.pkl", "train-log.json", "model.onnx", "parity.json",
           "samples.json", "metrics.json", "comparison.json", "report.md",
           "report-full.md", "model-card.md", "train-rows.bloom")
EVIDENCE = ("data-report.json", "data-profile.json", "train-log.json", "parity.json", "samples.json", "metrics.json",
            "comparison.json", "report.md", "model-card.md", "train-rows.bloom")
# Of the files that differ from the commit: how many an error names, and how many the artifact records.
SHOWN, RECORDED = 10, 50


def _git(root: Path, *args: str) -> str | None:
    """git's output, or None where git is missing or says no (not a checkout)."""
    try:
        # NOTE: file names need not be UTF-8; surrogateescape keeps them readable instead of failing
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, errors="surrogateescape",
                              check=False)
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None


def git_revision(root: Path) -> str | None:
    found = _git(root, "rev-parse", "HEAD")
    return found.strip() if found is not None else None


def _changes(top: Path) -> list[tuple[str, str]]:
    """(status code, path from the repository's top) for each file `git status` reports; not ignored files."""
    from modelci.errors import UsageError

    found = _git(top, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if found is None:  # NOTE: never taken for a clean tree
        raise UsageError(f"`git status` failed in {top}, so --publish cannot tell whether the tree is the commit's",
                         hint="run `git status` there to see why (in a container whose files another user owns: "
                              "git config --global --add safe.directory DIR)")
    entries = found.split("\0")
    changes = []
    at = 0
    while at < len(entries) and entries[at]:
        entry = entries[at]
        at += 2 if entry[0] in "RC" else 1  # NOTE: a rename or copy is followed by its source path
        changes.append((entry[:2], entry[3:]))
    return changes


def _state(code: str) -> str:
    if code == "??":
        return "untracked"
    return next((name for letter, name in (("D", "deleted"), ("A", "added"), ("R", "renamed")) if letter in code),
                "modified")


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def _data_paths(config: Config) -> list[Path]:
    """The data the config reads: often fetched in CI rather than committed (its fingerprint is recorded)."""
    from modelci.data.tables import resolve_files
    from modelci.errors import DataError

    paths: list[Path] = []
    for path in (config.data.train, config.data.eval):
        if path is None:
            continue
        try:
            paths += [path] if path.is_dir() else resolve_files(path)
        except DataError:
            paths.append(path)
    return [p.resolve() for p in paths]


@dataclass(frozen=True)
class Change:
    path: str  # from the repository's top, as git names it
    state: str  # modified | added | deleted | renamed | untracked

    def __str__(self) -> str:
        return f"{self.path} ({self.state})"


def dirty_files(config: Config, out: Path) -> list[Change] | None:
    """The files where the working tree differs from HEAD; None outside a git checkout.

    Not counted: files .gitignore ignores, Python bytecode, modelci's output folder and embedded
    registry, and untracked data files the config reads.
    """
    from modelci.registry.reference import parse_reference

    top = _git(config.root, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    registry = parse_reference(config.registry, base=config.root).path
    own = [out.resolve(), *([registry.resolve()] if registry is not None else [])]
    data = _data_paths(config)
    dirty = []
    for code, name in _changes(Path(top.strip())):
        path = (Path(top.strip()) / name).resolve()
        if "__pycache__" in path.parts or _inside(path, own) or (code == "??" and _inside(path, data)):
            continue
        dirty.append(Change(name, _state(code)))
    return dirty


def _clear(out: Path) -> None:
    from modelci.compare.comparison import BASELINE_DIR
    from modelci.evaluate.seeds import SEEDS_DIR
    from modelci.frameworks import adapters

    for name in (*OUTPUTS, *(adapter.checkpoint for adapter in adapters())):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / BASELINE_DIR, ignore_errors=True)
    shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)


def require_clean(config: Config, out: Path, revision: str, allow_dirty: bool) -> list[Change] | None:
    """The files that differ from the commit the artifact is tagged with; refused unless `allow_dirty`."""
    from modelci.errors import UsageError

    dirty = dirty_files(config, out)
    if dirty is None:
        return dirty
    head = git_revision(config.root)
    elsewhere = head is not None and _commit(config.root, revision) != head
    if elsewhere:
        # NOTE: the tree is compared with HEAD: a --revision (or GITHUB_SHA) of another commit is no check at all
        dirty.insert(0, Change(f"HEAD is {str(head)[:12]}", "another commit"))
    if not dirty:
        return dirty
    shown = ", ".join(map(str, dirty[:SHOWN])) + (f" and {len(dirty) - SHOWN} more" if len(dirty) > SHOWN else "")
    files = len(dirty) - elsewhere
    counted = ["the checkout is another commit"] if elsewhere else []
    counted += [] if not files else ["1 file differs from it" if files == 1 else f"{files} files differ from it"]
    if not allow_dirty:
        raise UsageError(f"--publish tags the artifact with commit {revision[:12]}, but {' and '.join(counted)}: "
                         f"{shown}", hint="check out that commit and commit what differs (or add files that do not "
                                          "matter to .gitignore); or pass --allow-dirty to publish anyway, and the "
                                          "artifact records what differed")
    github.warning(f"publishing from a tree that differs from commit {revision[:12]} (--allow-dirty): {shown}")
    return dirty


def _commit(root: Path, revision: str) -> str | None:
    """The full hash `revision` names in the checkout; None when it names no commit there."""
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return found.strip() if found else None


def _source_annotations(dirty: list[Change] | None) -> dict[str, str]:
    """Whether the tree the artifact was built from differed from its commit, and where; nothing when unknown."""
    from modelci.registry.artifact import ANNOTATION_PREFIX

    if dirty is None:
        return {}
    found = {f"{ANNOTATION_PREFIX}source.dirty": "true" if dirty else "false"}
    if dirty:
        found[f"{ANNOTATION_PREFIX}source.dirty.files"] = json.dumps([c.path for c in dirty[:RECORDED]])
    return found


def publish(config: Config, out: Path, revision: str, dirty: list[Change] | None = None) -> str:
    """Push the artifact as sha-<revision> and move `main` to it, in one index update.

    `dirty`: the files that differed from the commit (--allow-dirty), recorded in the annotations.
    """
    from modelci.compare.cli import BASELINE_TAG
    from modelci.registry.artifact import ANNOTATION_PREFIX, push_files
    from modelci.registry.reference import configured_registry

    metrics = json.loads((out / "metrics.json").read_text())
    data = json.loads((out / "data-report.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    annotations = {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.title": config.root.name,
        f"{ANNOTATION_PREFIX}task": config.task,
        f"{ANNOTATION_PREFIX}verdict": "passed",
        f"{ANNOTATION_PREFIX}metrics": json.dumps(metrics["metrics"], sort_keys=True),
        f"{ANNOTATION_PREFIX}data.fingerprint": data["datasets"][0]["fingerprint"],
        f"{ANNOTATION_PREFIX}baseline": comparison["baseline_digest"] or "",
        **_source_annotations(dirty),
    }
    files = [out / "model.onnx", *(out / name for name in EVIDENCE)]
    if config.data.schema is not None:
        files.append(config.data.schema)
    registry = configured_registry(config)
    with github.group(f"Publish to {registry}"):
        descriptor = push_files(files, registry, [f"sha-{revision}", BASELINE_TAG], annotations)
        github.log(f"    {registry.with_tag(f'sha-{revision}')} and :{BASELINE_TAG} = {descriptor.digest}")
    github.set_output("digest", descriptor.digest)
    return descriptor.digest


def run_pipeline(config: Config, out: Path, baseline: str | None, revision: str | None,
                 github_comment: bool = False, dirty: list[Change] | None = None) -> None:
    """Every stage in order; the report (and the pull-request comment) is written however far the run got."""
    from modelci.compare import cli as compare_cli
    from modelci.data import cli as data_cli
    from modelci.data.tables import load_datasets
    from modelci.evaluate import cli as evaluate_cli
    from modelci.export import cli as export_cli
    from modelci.registry.artifact import resolve
    from modelci.report import cli as report_cli
    from modelci.train import cli as train_cli

    _clear(out)
    # NOTE: the baseline's tag is resolved once; drift and the comparison both use that digest,
    # even if `main` moves while this runs.
    reference = compare_cli.baseline_reference(config, baseline)
    descriptor = resolve(reference)
    pinned = reference.with_digest(descriptor.digest) if descriptor is not None else reference
    try:
        data_cli.stage(config, out, pinned)
        datasets = load_datasets(config)
        data_cli.record_cleaning(out, datasets.cleaning)
        train_cli.stage(config, out, datasets)
        export_cli.stage(config, out, datasets.eval)
        evaluate_cli.stage(config, out, datasets)
        compare_cli.stage(config, out, datasets.eval, pinned)
    finally:
        report_cli.stage(out, config.root.name)
        if github_comment:
            report_cli.comment(out)
    if revision is not None:
        publish(config, out, revision, dirty)


@click.command()
@common
@click.option("--baseline", default=None, help="The baseline artifact.  [default: REGISTRY:main]")
@click.option("--registry", default=None, help="Overrides `registry` in the config, e.g. oci:PATH.")
@click.option("--publish", "do_publish", is_flag=True, help="Also push the artifact as sha-<commit> and move main.")
@click.option("--revision", default=None, envvar="GITHUB_SHA",
              help="The commit the artifact is tagged with.  [default: git rev-parse HEAD]")
@click.option("--allow-dirty", is_flag=True,
              help="Publish even when files differ from the commit (uncommitted changes); the artifact records them.")
@click.option("--github-comment", is_flag=True, envvar="MODELCI_GITHUB_COMMENT",
              help="Also create or update modelci's comment on the pull request (GitHub Actions, with GITHUB_TOKEN).")
def run(config_path: Path | None, out: Path, baseline: str | None, registry: str | None, do_publish: bool,
        revision: str | None, allow_dirty: bool, github_comment: bool) -> None:
    """Run the whole pull-request pipeline: data check, train, export, evaluate, compare, report."""
    from modelci.errors import UsageError

    config = prepare(config_path, out).with_registry(registry)
    dirty = None
    if do_publish:
        revision = revision or git_revision(config.root)
        if not revision:
            raise UsageError(f"--publish needs the commit to tag the artifact with, and {config.root} is not a git "
                             "checkout", hint="pass --revision SHA (in GitHub Actions, GITHUB_SHA is used)")
        # NOTE: checked before any stage runs, so a refusal costs no training
        dirty = require_clean(config, out, revision, allow_dirty)
    run_pipeline(config, out, baseline, revision if do_publish else None, github_comment, dirty)
