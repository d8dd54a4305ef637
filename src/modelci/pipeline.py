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
from modelci.options import common, out_option, prepare
from modelci.registry.cli import set_repository_output, sign_artifact, sign_key_option

if TYPE_CHECKING:
    from modelci.cache import Candidate, ContentKey
    from modelci.config import Config
    from modelci.registry.layout import Descriptor
    from modelci.registry.reference import Reference

# Everything a run writes to the output folder; cleared at the start so no stale file from an
# earlier run can be mistaken for this run's.
# NOTE: and every framework adapter's checkpoint (`_clear`)
OUTPUTS = ("data-report.json", "data-profile.json", "model.pkl", "train-log.json", "model.onnx", "parity.json",
           "samples.json", "metrics.json", "comparison.json", "report.md",
           "report-full.md", "model-card.md", "train-rows.bloom", "content-key.json")
EVIDENCE = ("data-report.json", "data-profile.json", "train-log.json", "parity.json", "samples.json", "metrics.json",
            "comparison.json", "report.md", "model-card.md", "train-rows.bloom")
# NOTE: the content key's parts (cache.KEY_FILE) travel too, when the tree had a key
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
    from modelci import cache
    from modelci.evaluate.seeds import SEEDS_DIR
    from modelci.frameworks import adapters
    from modelci.outputs import BASELINE_DIR

    for name in (*OUTPUTS, *(adapter.checkpoint for adapter in adapters())):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / BASELINE_DIR, ignore_errors=True)
    shutil.rmtree(out / SEEDS_DIR, ignore_errors=True)
    shutil.rmtree(out / cache.CANDIDATE_DIR, ignore_errors=True)  # NOTE: a stale one would be pushed as this run's


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


def _annotations(config: Config, out: Path, revision: str, verdict: str, dirty: list[Change] | None,
                 key: ContentKey | None) -> dict[str, str]:
    from modelci import cache
    from modelci.registry.artifact import ANNOTATION_PREFIX

    metrics = json.loads((out / "metrics.json").read_text())
    data = json.loads((out / "data-report.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    return {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.title": config.root.name,
        f"{ANNOTATION_PREFIX}task": config.task,
        f"{ANNOTATION_PREFIX}verdict": verdict,
        f"{ANNOTATION_PREFIX}metrics": json.dumps(metrics["metrics"], sort_keys=True),
        f"{ANNOTATION_PREFIX}data.fingerprint": data["datasets"][0]["fingerprint"],
        f"{ANNOTATION_PREFIX}baseline": comparison["baseline_digest"] or "",
        **_source_annotations(dirty),
        **(cache.key_annotations(key) if key is not None else {}),
    }


def _files(config: Config, out: Path) -> list[Path]:
    from modelci.cache import KEY_FILE

    files = [out / "model.onnx", *(out / name for name in EVIDENCE)]
    if (out / KEY_FILE).is_file():
        files.append(out / KEY_FILE)
    if config.data.schema is not None:
        files.append(config.data.schema)
    return files


def publish(config: Config, out: Path, revision: str, dirty: list[Change] | None = None,
            key: ContentKey | None = None) -> str:
    """Push the artifact as sha-<revision> and move `main` to it, in one index update.

    `dirty`: the files that differed from the commit (--allow-dirty), recorded in the annotations.
    """
    from modelci.compare.cli import BASELINE_TAG
    from modelci.registry.artifact import push_files
    from modelci.registry.reference import configured_registry

    annotations = _annotations(config, out, revision, "passed", dirty, key)
    registry = configured_registry(config)
    with github.group(f"Publish to {registry}"):
        descriptor = push_files(_files(config, out), registry, [f"sha-{revision}", BASELINE_TAG], annotations)
        github.log(f"    {registry.with_tag(f'sha-{revision}')} and :{BASELINE_TAG} = {descriptor.digest}")
    github.set_output("digest", descriptor.digest)
    return descriptor.digest


@dataclass(frozen=True)
class Judging:
    """How a run uses the content key: use a judged candidate (unless no_cache); the pull request it merges."""

    use_cache: bool = True
    pull_request: int | None = None


def _keyed(config: Config, out: Path, dirty: list[Change] | None) -> ContentKey | None:
    """The content key of the committed tree, written to content-key.json; None, and why, when there is none."""
    from modelci import cache

    if dirty is None:
        github.log("    content key: none, not a git checkout (a judged candidate is neither used nor pushed)")
        return None
    if dirty:
        shown = ", ".join(map(str, dirty[:SHOWN])) + (f" and {len(dirty) - SHOWN} more" if len(dirty) > SHOWN else "")
        github.log(f"    content key: none, the tree differs from the commit ({shown}); training")
        return None
    key = cache.content_key(config, out)
    if key is None:
        github.log("    content key: none, git has no tree for this folder (no commit yet?)")
        return None
    cache.write_key(out, key)
    github.log(f"    content key: {key.key}")
    return key


def _take(candidate: Candidate, out: Path) -> None:
    """The candidate's model and evidence in `out`, verified against their digests, in place of this run's."""
    from modelci import cache
    from modelci.registry.artifact import pull

    staging = out / ".judged"
    shutil.rmtree(staging, ignore_errors=True)
    pulled = pull(candidate.reference, staging)
    for name in pulled.files:
        if name in OUTPUTS or name == cache.KEY_FILE:
            (staging / name).replace(out / name)
    shutil.rmtree(staging, ignore_errors=True)


def _whose(candidate: Candidate) -> str:
    number = candidate.pull_request
    return f"the judged candidate {candidate.digest}" + (f" of pull request #{number}" if number else "")


def _promote_judged(config: Config, out: Path, key: ContentKey, revision: str,
                    pull_request: int | None) -> str | None:
    """Promote the passed candidate with this key to sha-<revision> and main; its digest, or None (and why) when
    there is none."""
    from modelci import cache
    from modelci.compare.cli import BASELINE_TAG
    from modelci.registry.artifact import promote
    from modelci.registry.reference import configured_registry

    found = cache.look_up(configured_registry(config), key, pull_request)
    candidate = found.candidate
    if candidate is None:
        github.log(f"==> training: {found.reason}")
        return None
    if not candidate.passed:
        github.warning(f"{_whose(candidate)} has this content key but its gate said {candidate.get('verdict')!r}: "
                       "a failed verdict is never promoted; training")
        return None
    _take(candidate, out)
    promote(candidate.reference, [f"sha-{revision}", BASELINE_TAG])
    github.log(f"==> promoted {_whose(candidate)}: no training ({key.tag}, to sha-{revision} and {BASELINE_TAG})")
    github.set_output("digest", candidate.digest)
    return candidate.digest


def _reuse(config: Config, out: Path, key: ContentKey, baseline: str | None) -> bool:
    """A run with the key of a judged candidate against the same baseline reports that candidate's verdict.

    NOTE: its stored verdict, not a new comparison: the same key and the same baseline make the same
    judgement, and a baseline that has moved since is judged anew, by training.
    """
    from modelci import cache
    from modelci.errors import CheckFailed
    from modelci.registry.reference import configured_registry

    candidate = cache.look_up(configured_registry(config), key, None).candidate
    if candidate is None:
        return False
    if (candidate.get("baseline") or None) != baseline:
        github.log(f"==> training: {_whose(candidate)} was judged against baseline "
                   f"{candidate.get('baseline') or 'none'}, and the baseline is now {baseline or 'none'}")
        return False
    _take(candidate, out)
    github.log(f"==> reused {_whose(candidate)}: same content key and baseline, no training "
               f"(its verdict: {candidate.get('verdict')}; --no-cache trains again)")
    if not candidate.passed:
        raise CheckFailed(f"{_whose(candidate)}, reused for its content key, failed its gate",
                          hint="see report.md; or run with --no-cache to train and judge again")
    return True


def _stage_candidate(config: Config, out: Path, key: ContentKey | None, revision: str) -> None:
    """Stage the judged candidate, whatever its verdict, for `modelci push-candidate` (<out>/candidate/).

    NOTE: staged, not pushed: in GitHub Actions this run is the pull request's code, in a job that may only
    read the registry; a job of its own that runs none of it pushes the staged folder (pull-request.yml).
    """
    from modelci import cache
    from modelci.registry.reference import configured_registry

    if key is None or not (out / "comparison.json").is_file():
        why = "no content key" if key is None else "the run stopped before the gate"
        github.log(f"==> no candidate staged: {why}")
        return
    passed = json.loads((out / "comparison.json").read_text())["passed"]
    annotations = _annotations(config, out, revision, "passed" if passed else "failed", None, key)
    staged = cache.stage_candidate(out, _files(config, out), str(configured_registry(config)), annotations)
    github.log(f"==> candidate staged in {staged} ({key.tag}): `modelci push-candidate` pushes it")


def run_pipeline(config: Config, out: Path, baseline: str | None, revision: str | None,
                 github_comment: bool = False, dirty: list[Change] | None = None,
                 judging: Judging = Judging()) -> str | None:
    """Every stage in order; the report (and the pull-request comment) is written however far the run got.

    `revision` publishes (promoting the judged candidate of the same content key when there is one): the digest
    published is returned, None without `revision`.
    """
    from modelci.compare import cli as compare_cli
    from modelci.data import cli as data_cli
    from modelci.registry.artifact import resolve
    from modelci.report import cli as report_cli

    _clear(out)
    # NOTE: the baseline's tag is resolved once; drift and the comparison both use that digest,
    # even if `main` moves while this runs.
    reference = compare_cli.baseline_reference(config, baseline)
    descriptor = resolve(reference)
    pinned = reference.with_digest(descriptor.digest) if descriptor is not None else reference
    key: ContentKey | None = None
    judged: str | bool | None = None
    try:
        data_cli.stage(config, out, pinned)
        key = _keyed(config, out, dirty if revision is not None else dirty_files(config, out))
        judged = _judged(config, out, key, revision, descriptor, judging) if key and judging.use_cache else None
        if not judged:
            _train_and_judge(config, out, pinned)
    finally:
        report_cli.stage(out, config.root.name)
        if github_comment:
            report_cli.comment(out)
        if revision is None:
            _stage_candidate(config, out, key, git_revision(config.root) or "")
    if revision is None:
        return None
    return judged if isinstance(judged, str) else publish(config, out, revision, dirty, key)


def _judged(config: Config, out: Path, key: ContentKey, revision: str | None, baseline: Descriptor | None,
            judging: Judging) -> str | bool | None:
    """Whether a judged candidate with this key stands for this run, no training then: the digest promoted (with
    `revision`), or whether it was reused."""
    from modelci import cache

    if revision is not None:
        number = cache.pull_request_number(judging.pull_request) or cache.merged_pull_request(config.root)
        return _promote_judged(config, out, key, revision, number)
    return _reuse(config, out, key, baseline.digest if baseline is not None else None)


def _train_and_judge(config: Config, out: Path, baseline: Reference) -> None:
    from modelci.compare import cli as compare_cli
    from modelci.data import cli as data_cli
    from modelci.data.tables import load_datasets
    from modelci.evaluate import cli as evaluate_cli
    from modelci.export import cli as export_cli
    from modelci.train import cli as train_cli

    datasets = load_datasets(config)
    data_cli.record_cleaning(out, datasets.cleaning)
    train_cli.stage(config, out, datasets)
    export_cli.stage(config, out, datasets.eval, datasets.validation)
    evaluate_cli.stage(config, out, datasets)
    compare_cli.stage(config, out, datasets.eval, baseline)


@click.command()
@common
@click.option("--baseline", default=None, help="The baseline artifact.  [default: REGISTRY:main]")
@click.option("--registry", default=None, help="Overrides `registry` in the config, e.g. oci:PATH.")
@click.option("--publish", "do_publish", is_flag=True,
              help="Also push the artifact as sha-<commit> and move main; a passed candidate with the tree's content "
                   "key is promoted instead, without training.")
@click.option("--pull-request", type=click.IntRange(min=1), default=None,
              help="The pull request's number.  [default: from GITHUB_REF refs/pull/N/merge, or the merge commit]")
@click.option("--no-cache", is_flag=True, help="Train even when a judged candidate has this tree's content key.")
@click.option("--revision", default=None, envvar="GITHUB_SHA",
              help="The commit the artifact is tagged with.  [default: git rev-parse HEAD]")
@click.option("--allow-dirty", is_flag=True,
              help="Publish even when files differ from the commit (uncommitted changes); the artifact records them.")
@click.option("--github-comment", is_flag=True, envvar="MODELCI_GITHUB_COMMENT",
              help="Also create or update modelci's comment on the pull request (GitHub Actions, with GITHUB_TOKEN).")
@sign_key_option
def run(config_path: Path | None, out: Path, baseline: str | None, registry: str | None, do_publish: bool,
        pull_request: int | None, no_cache: bool, revision: str | None, allow_dirty: bool,
        github_comment: bool, sign_key: str | None) -> None:
    """Run the whole pull-request pipeline: data check, train, export, evaluate, compare, report.

    With --publish and --sign-key, the artifact published (trained, or the judged candidate promoted) is signed."""
    from modelci.errors import UsageError
    from modelci.registry.reference import configured_registry
    from modelci.registry.signature import load_signing_key

    if sign_key is not None and not do_publish:
        raise UsageError("--sign-key signs what --publish publishes, and --publish is not given",
                         hint="add --publish, or sign an artifact with `modelci sign REF --key KEY`")
    # NOTE: a key that cannot sign is refused before any training
    key = load_signing_key(sign_key) if sign_key is not None else None
    config = prepare(config_path, out).with_registry(registry)
    dirty = None
    if do_publish:
        revision = revision or git_revision(config.root)
        if not revision:
            raise UsageError(f"--publish needs the commit to tag the artifact with, and {config.root} is not a git "
                             "checkout", hint="pass --revision SHA (in GitHub Actions, GITHUB_SHA is used)")
        # NOTE: checked before any stage runs, so a refusal costs no training
        dirty = require_clean(config, out, revision, allow_dirty)
    digest = run_pipeline(config, out, baseline, revision if do_publish else None, github_comment, dirty,
                          Judging(not no_cache, pull_request))
    if digest is not None:
        published = configured_registry(config)
        set_repository_output(published)  # NOTE: with the comparison record, what main.yml attests
        github.set_output("comparison", str((out / "comparison.json").resolve()))
        if key is not None:
            # NOTE: by the digest this run published, never its tag again, which anyone who may push can move
            sign_artifact(published.with_digest(digest), key)


@click.command("push-candidate")
@out_option
@click.option("--pull-request", type=click.IntRange(min=1), default=None,
              help="The pull request's number.  [default: from GITHUB_REF refs/pull/N/merge, or the event]")
@click.option("--registry", default=None,
              help="Where to push.  [default: the registry the run recorded in candidate/candidate.json]")
@click.option("--tree-from", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A checkout of the commit the run judged, at the model's folder: the key's tree must be its tree.")
def push_candidate(out: Path, pull_request: int | None, registry: str | None, tree_from: Path | None) -> None:
    """Push the candidate `modelci run` staged in OUT/candidate/ as key-<content key> and pr-<number>.

    Checks the content key against its recorded parts (and, with --tree-from, its tree against that
    checkout's) and writes no other tag; what it trusts is said in `modelci.cache.push_candidate`. In
    GitHub Actions it runs in a job that runs none of the pull request's code (pull-request.yml), so the
    job that does never needs to write to the registry.
    """
    from modelci import cache

    cache.push_candidate(out, pull_request, registry, tree_from)
