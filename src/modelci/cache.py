"""The content key: a hash of what determines the model, and the judged candidate it finds in the registry.

A pull request's run stages its candidate in `<out>/candidate/` and `modelci push-candidate` pushes
it under `key-<key>` and `pr-<number>` (in GitHub Actions, from a job of its own that never runs the
pull request's code: the job that does stays read-only on the registry); the merge to `main`
promotes that very digest when the merged tree has the same key and the candidate's gate passed, and
a local run with the same key reuses it. The key's parts travel with the artifact (annotations and
`content-key.json`), so a key that differs is explained part by part, never silently retrained.

The tree hashed is git's tree of the config's folder, not of the whole repository: the model's code,
config, schema and tuned parameters live there (the workflows' `working-directory`), while the rest
of a repository (docs, workflows, other models of a monorepo) moves on `main` between a pull
request's run and its merge without changing this model. A factory file outside the folder widens it
to the repository's whole tree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modelci
from modelci import atomic

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.registry.reference import Reference

KEY_FILE = "content-key.json"
# What `modelci run` stages for `modelci push-candidate`: the files to push, and CANDIDATE_FILE naming the rest.
CANDIDATE_DIR = "candidate"
CANDIDATE_FILE = "candidate.json"
CANDIDATE_VERSION = 1
# Annotations only push-candidate writes, from what it checks itself: never taken from the staged file.
CHECKED = ("verdict", "content-key", "content-key.parts", "pull-request")
KEY_VERSION = 1
KEY_TAG_HEX = 32  # NOTE: a tag holds the first 32 hex digits; the annotation holds the full key, checked on use
# Config fields that say where the artifact is stored, not what it is.
NOT_KEYED = ("registry", "registry_local_in_ci", "path", "tuned_from")
PARTS = {"tree": "the model's files (git tree)", "config": "the config (as resolved, tuned.yaml applied)",
         "data": "the data fingerprints", "modelci": "modelci's version", "environment": "the environment's lock",
         "device": "the device class"}


@dataclass(frozen=True)
class ContentKey:
    """What determines the model, part by part; `key` is their SHA-256."""

    tree: str
    config: str
    data: dict[str, str]
    modelci: str
    environment: str
    device: str
    version: int = KEY_VERSION

    @property
    def key(self) -> str:
        parts = json.dumps(self.parts(), sort_keys=True, separators=(",", ":"))
        return f"sha256:{hashlib.sha256(parts.encode()).hexdigest()}"

    @property
    def tag(self) -> str:
        return key_tag(self.key)

    def parts(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items() if name != "version"}

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "key": self.key, "parts": self.parts()}

    def differing(self, recorded: dict[str, Any]) -> list[str]:
        """The parts (named for a person) in which `recorded` differs from this key."""
        names = []
        for name, value in self.parts().items():
            if name == "data" and isinstance(recorded.get(name), dict):
                names += [f"the data fingerprint of {dataset}" for dataset in sorted({*value, *recorded[name]})
                          if value.get(dataset) != recorded[name].get(dataset)]
            elif recorded.get(name) != value:
                names.append(PARTS[name] + (f" ({recorded.get(name)} → {value})" if name in ("modelci", "device")
                                            else ""))
        return names


def key_tag(key: str) -> str:
    return f"key-{key.removeprefix('sha256:')[:KEY_TAG_HEX]}"


def _sha256(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _tree(config: Config) -> str | None:
    """git's tree hash of the config's folder at HEAD (the whole repository's when the factory lies outside)."""
    from modelci.pipeline import _git

    factory = config.model.factory.rpartition(":")[0]
    outside = bool(factory) and not (config.root / factory).resolve().is_relative_to(config.root.resolve())
    found = _git(config.root, "rev-parse", "HEAD^{tree}" if outside else "HEAD:./")
    return found.strip() if found else None


def _plain(value: Any, root: Path) -> Any:
    """A config value as JSON: paths relative to the model's root, so that the key is the same in any checkout."""
    if isinstance(value, Path):
        return value.relative_to(root).as_posix() if value.is_absolute() and value.is_relative_to(root) \
            else value.as_posix()
    return str(value)


def config_hash(config: Config) -> str:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in NOT_KEYED}
    plain = {name: dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type)
             else value for name, value in fields.items()}
    plain["gate"] = [dataclasses.asdict(rule) for rule in config.gate]
    if config.model.weights is not None:  # NOTE: the starting weights' content, wherever the file is
        from modelci.frameworks.weights import digest, weights_file

        plain["model"]["weights"] = digest(weights_file(config.model.weights))
    return _sha256(json.dumps(plain, sort_keys=True, default=lambda v: _plain(v, config.root.resolve())))


def environment_lock() -> list[str]:
    """Every installed distribution as NAME==VERSION, sorted."""
    found = {f"{(d.metadata['Name'] or '').lower().replace('_', '-')}=={d.version}"
             for d in importlib.metadata.distributions()}
    return sorted(found)


@functools.cache
def _cuda_name() -> str | None:
    # NOTE: torch (a second to import) only where it is installed and an NVIDIA driver is there: a scikit-learn
    # model's run, or one on a machine without a GPU, never pays for it
    driver = shutil.which("nvidia-smi") or os.path.exists("/proc/driver/nvidia")
    if importlib.util.find_spec("torch") is None or not driver:
        return None
    import torch

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def device_class(config: Config) -> str:
    """cpu, or the name of the CUDA device that training would use."""
    if config.train.device == "cpu":
        return "cpu"
    return _cuda_name() or "cpu"


def data_fingerprints(out: Path) -> dict[str, str]:
    """Each dataset's fingerprint, as the data check of this run recorded it in data-report.json."""
    from modelci.data.cli import DATA_REPORT

    report = json.loads((out / DATA_REPORT).read_text())
    return {d["name"]: d["fingerprint"] for d in report["datasets"]}


def content_key(config: Config, out: Path) -> ContentKey | None:
    """The key of the committed tree (the caller has checked it is clean); None outside a git checkout."""
    tree = _tree(config)
    if tree is None:
        return None
    return ContentKey(tree=tree, config=config_hash(config), data=data_fingerprints(out), modelci=modelci.__version__,
                      environment=_sha256("\n".join(environment_lock())), device=device_class(config))


def write_key(out: Path, key: ContentKey) -> None:
    atomic.write_json(out / KEY_FILE, key.to_json())


def key_annotations(key: ContentKey) -> dict[str, str]:
    from modelci.registry.artifact import ANNOTATION_PREFIX

    return {f"{ANNOTATION_PREFIX}content-key": key.key,
            f"{ANNOTATION_PREFIX}content-key.parts": json.dumps(key.parts(), sort_keys=True)}


# Where a pull request's number is found: the ref of a pull-request run, then the merge's commit subject.
PULL_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")
MERGE_SUBJECT = re.compile(r"^Merge pull request #(\d+)\b|\(#(\d+)\)\s*$")


def pull_request_number(given: int | None) -> int | None:
    """--pull-request, or the number in GITHUB_REF (refs/pull/N/merge), or the event's pull request."""
    if given is not None:
        return given
    found = PULL_REF.match(os.environ.get("GITHUB_REF", ""))
    if found:
        return int(found.group(1))
    number = _event().get("pull_request", {}).get("number")
    return number if isinstance(number, int) else None


def merged_pull_request(root: Path) -> int | None:
    """The pull request a merge commit names ("Merge pull request #N ..." or a squash's "... (#N)")."""
    from modelci.pipeline import _git

    subject = (_git(root, "log", "-1", "--format=%s") or "").strip()
    found = MERGE_SUBJECT.search(subject)
    return int(found.group(1) or found.group(2)) if found else None


def _event() -> dict[str, Any]:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def from_fork() -> bool:
    """Whether this run is a pull request from a fork (its head repository is not the base's)."""
    pull = _event().get("pull_request")
    if not isinstance(pull, dict):
        return False
    head = ((pull.get("head") or {}).get("repo") or {}).get("full_name")
    base = ((pull.get("base") or {}).get("repo") or {}).get("full_name") \
        or (_event().get("repository") or {}).get("full_name")
    return bool(head and base and head != base)


@dataclass(frozen=True)
class Candidate:
    """An artifact pushed under a content key, pinned by its digest."""

    reference: Reference
    digest: str
    annotations: dict[str, str]

    def get(self, name: str) -> str | None:
        from modelci.registry.artifact import ANNOTATION_PREFIX

        return self.annotations.get(f"{ANNOTATION_PREFIX}{name}")

    @property
    def passed(self) -> bool:
        return self.get("verdict") == "passed"

    @property
    def pull_request(self) -> str | None:
        return self.get("pull-request")

    def recorded_parts(self) -> dict[str, Any] | None:
        text = self.get("content-key.parts")
        try:
            parts = json.loads(text) if text else None
        except ValueError:
            return None
        return parts if isinstance(parts, dict) else None


def find(registry: Reference, tag: str) -> Candidate | None:
    """The artifact a tag of the registry names, with its annotations; None when the tag does not exist."""
    from modelci.registry.artifact import annotations_of, resolve

    descriptor = resolve(registry.with_tag(tag))
    if descriptor is None:
        return None
    pinned = registry.with_digest(descriptor.digest)
    return Candidate(pinned, descriptor.digest, annotations_of(pinned))


@dataclass(frozen=True)
class Lookup:
    """The candidate under the key (when one has exactly this full key), or why there is none to use."""

    candidate: Candidate | None
    reason: str


def look_up(registry: Reference, key: ContentKey, pull_request: int | None) -> Lookup:
    """The judged candidate with this key; else why not, naming the parts that differ from the pull request's."""
    found = find(registry, key.tag)
    if found is not None and found.get("content-key") == key.key:
        return Lookup(found, "")
    if found is not None:
        reason = (f"{registry.with_tag(key.tag)} = {found.digest} records another full key "
                  f"({found.get('content-key')}, not {key.key})")
    else:
        reason = f"no candidate with this key ({key.tag})"
    return Lookup(None, reason + _differs_from_pull_request(registry, key, pull_request))


def _differs_from_pull_request(registry: Reference, key: ContentKey, pull_request: int | None) -> str:
    if pull_request is None:
        return ""
    theirs = find(registry, f"pr-{pull_request}")
    if theirs is None:
        return f"; pull request #{pull_request} pushed no candidate"
    recorded = theirs.recorded_parts()
    if recorded is None:
        return f"; pull request #{pull_request}'s candidate {theirs.digest} has no content key"
    differing = key.differing(recorded)
    what = ", ".join(differing) if differing else "nothing that the key records (another pull request's key)"
    return f"; pull request #{pull_request}'s candidate {theirs.digest} differs in {what}"


def stage_candidate(out: Path, files: list[Path], registry: str, annotations: dict[str, str]) -> Path:
    """`<out>/candidate/`: the files to push (hard links where the file system allows) and candidate.json."""
    staged = out / CANDIDATE_DIR
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for file in files:
        try:
            os.link(file, staged / file.name)
        except OSError:  # NOTE: another file system, or one without hard links
            shutil.copy2(file, staged / file.name)
    atomic.write_json(staged / CANDIDATE_FILE, {"version": CANDIDATE_VERSION, "registry": registry,
                                                "files": sorted(f.name for f in files), "annotations": annotations})
    return staged


def _read_json(path: Path, what: str) -> Any:
    from modelci.errors import UsageError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} is missing: the folder holds no {what}",
                         hint="run `modelci run` first, from a committed tree (a dirty tree has no content key)"
                         ) from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON ({exc})", hint="run `modelci run` again") from None


def checked_key(staged: Path) -> ContentKey:
    """The key recorded in content-key.json, recomputed from its recorded parts; refused when they disagree."""
    from modelci.errors import UsageError

    recorded = _read_json(staged / KEY_FILE, "content key")
    try:
        key = ContentKey(**recorded["parts"])
        matches = key.key == recorded["key"]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{staged / KEY_FILE} is not a content key ({exc!r} is missing or wrong)",
                         hint="run `modelci run` again") from None
    if not matches:
        raise UsageError(f"{staged / KEY_FILE} records the key {recorded['key']}, but its parts hash to {key.key}",
                         hint="the folder was changed after `modelci run` wrote it: run it again")
    return key


def _staged_registry(recorded: Any, given: str | None) -> Reference:
    from modelci import github
    from modelci.errors import UsageError
    from modelci.registry.reference import parse_reference

    if given is None and not isinstance(recorded, str):
        raise UsageError("candidate.json names no registry", hint="pass --registry, or run `modelci run` again")
    registry = parse_reference(given or recorded)
    if given is None and registry.path is not None and github.in_actions():
        # NOTE: the folder comes from the pull request's run; a folder it names on a runner is not pushed to
        raise UsageError(f"candidate.json names a folder on this runner ({registry}) as the registry",
                         hint="pass --registry explicitly for a registry on a self-hosted runner's disk")
    return registry


def check_tree(key: ContentKey, checkout: Path) -> None:
    """Refuse a key whose tree is not the tree of the commit checked out at `checkout` (the model's folder).

    NOTE: the parts of a key are what the run wrote, and that run executed the pull request's code, which
    could record the parts of another tree (one a later, harmless commit will have) for a model it made up.
    The tree binds the candidate to the code that made it: the commit the run judged, checked out by a job
    that runs none of it. (Either tree `_tree` may record: the folder's, or the repository's.)"""
    from modelci.errors import UsageError
    from modelci.pipeline import _git

    trees = {(_git(checkout, "rev-parse", ref) or "").strip() for ref in ("HEAD:./", "HEAD^{tree}")} - {""}
    if not trees:
        raise UsageError(f"--tree-from {checkout}: not a git checkout", hint="check out the commit the run judged")
    if key.tree not in trees:
        raise UsageError(f"the candidate's content key records the tree {key.tree}, and the commit checked out at "
                         f"{checkout} has {' or '.join(sorted(trees))}: it was not made from this commit; not pushed",
                         hint="run `modelci run` again on this commit")


def push_candidate(out: Path, pull_request: int | None, registry: str | None,
                   tree_from: Path | None = None) -> Candidate | None:
    """Push `<out>/candidate/` under key-<key> and pr-<number>, with the verdict comparison.json records.

    What it trusts: the files come from the pull request's run (in GitHub Actions, a collaborator's code
    ran there), so neither the model nor its verdict is taken as true here. What it checks is that the
    content key is the hash of its recorded parts, and it writes only `key-*` and `pr-*` tags, never
    `main`, `sha-*` or a version. Such a tag is only ever promoted by `main` (`modelci run --publish`)
    when the merged tree's own recomputed key equals it and the verdict annotation says passed. With
    `tree_from` (pull-request.yml passes a checkout of the commit the run judged), the key's tree must be
    that commit's, so a run cannot push a candidate under another tree's key (`check_tree`). What a run
    can still claim is what the reviewed code itself makes it claim: the metrics and verdict of the
    commit that is merged, as when `main` trains it. Signing (`main.yml`) vouches that `main` published
    the artifact, not that its numbers are true. The pull request's number comes from the option or the
    runner's event, never from the folder. None, with why, when a fork's pull request is the one that ran.
    """
    from modelci import github
    from modelci.registry.artifact import ANNOTATION_PREFIX, push_files

    staged = out / CANDIDATE_DIR
    key = checked_key(staged)
    if tree_from is not None:
        check_tree(key, tree_from)
    passed = _read_json(staged / "comparison.json", "verdict (comparison.json)").get("passed") is True
    described = _read_json(staged / CANDIDATE_FILE, "staged candidate")
    if from_fork():
        github.log("==> no candidate pushed: a pull request from a fork cannot write to the registry; "
                   "its candidate is rebuilt on main")
        return None
    number = pull_request_number(pull_request)
    annotations = {name: str(value) for name, value in (described.get("annotations") or {}).items()
                   if name.removeprefix(ANNOTATION_PREFIX) not in CHECKED}
    annotations |= {f"{ANNOTATION_PREFIX}verdict": "passed" if passed else "failed", **key_annotations(key),
                    **({f"{ANNOTATION_PREFIX}pull-request": str(number)} if number is not None else {})}
    files = [staged / Path(name).name for name in described.get("files") or []]
    target = _staged_registry(described.get("registry"), registry)
    tags = [key.tag, *([f"pr-{number}"] if number is not None else [])]
    descriptor = push_files(files, target, tags, annotations)
    github.log(f"==> candidate pushed: {target} :{' :'.join(tags)} = {descriptor.digest}")
    github.set_output("digest", descriptor.digest)
    return Candidate(target.with_digest(descriptor.digest), descriptor.digest, annotations)
