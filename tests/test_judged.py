"""The judged artifact: a pull request's run stages its candidate, `modelci push-candidate` pushes it under
its content key and pr-<n> (checking the key against its parts), and
the merge promotes that very digest without training when the merged tree has the same key and the
candidate passed; otherwise it trains and says why. Against the embedded registry, on the example."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import copy_example, git
from modelci.cli import main
from modelci.registry.artifact import annotations_of, pull, push_files
from modelci.registry.layout import OciLayout
from modelci.registry.reference import parse_reference

OUT = Path(".modelci/out")
REGISTRY = Path(".modelci/registry")
PULL = 7
GITHUB = ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_SHA", "GITHUB_REF", "GITHUB_EVENT_PATH")


def tags(repo: Path) -> dict[str, str]:
    return {name: d.digest for name, d in OciLayout.open(repo / REGISTRY, create=True).tags().items()}


def candidate_tags(repo: Path) -> dict[str, str]:
    return {name: digest for name, digest in tags(repo).items() if name.startswith(("key-", "pr-"))}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """The example, committed, after a pull request's run (#7) pushed its passed candidate: trained once."""
    repo = copy_example(tmp_path_factory.mktemp("judged") / "churn", small_data, epochs=1)
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("min: 0.75", "min: 0.6"))  # NOTE: one epoch, for speed
    git(repo, "init", "-q")
    git(repo, "add", "model.py", "schema.yaml", "modelci.yaml")
    git(repo, "commit", "-qm", "model")
    with pytest.MonkeyPatch.context() as patch:
        for name in GITHUB:
            patch.delenv(name, raising=False)
        patch.chdir(repo)
        assert main(["run"]) == 0
        assert not tags(repo)  # the run itself pushes nothing: in Actions it may only read the registry
        assert main(["push-candidate", "--pull-request", str(PULL)]) == 0
    return repo


@pytest.fixture
def repo(judged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A copy of the judged repository (its registry too), the cwd; the pull request merged as a new commit."""
    capsys.readouterr()
    copy = tmp_path / "churn"
    shutil.copytree(judged, copy)
    for name in GITHUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(copy)
    git(copy, "commit", "--allow-empty", "-qm", f"Merge pull request #{PULL} from team/change")
    return copy


def key() -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / "content-key.json").read_text())


def test_the_pull_request_pushed_its_candidate_under_its_key_and_number_only(judged: Path) -> None:
    found = tags(judged)
    recorded = json.loads((judged / OUT / "content-key.json").read_text())
    tag = "key-" + recorded["key"].removeprefix("sha256:")[:32]
    assert set(found) == {tag, f"pr-{PULL}"}  # never main, never sha-*
    assert found[tag] == found[f"pr-{PULL}"]
    annotations = annotations_of(parse_reference(f"oci:{REGISTRY}:{tag}", base=judged))
    assert annotations["io.modelci.verdict"] == "passed"
    assert annotations["io.modelci.content-key"] == recorded["key"]
    assert json.loads(annotations["io.modelci.content-key.parts"]) == recorded["parts"]
    assert annotations["io.modelci.pull-request"] == str(PULL)
    assert set(recorded["parts"]) == {"tree", "config", "data", "modelci", "environment", "device"}
    assert set(recorded["parts"]["data"]) == {"train", "eval"}
    assert recorded["key"] in (judged / OUT / "report.md").read_text()


def test_the_merge_promotes_the_judged_digest_without_training(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    trained = (OUT / "train-log.json").read_bytes()
    candidate = candidate_tags(repo)[f"pr-{PULL}"]
    result = cli("run", "--publish")
    assert result.code == 0, result.err
    assert f"promoted the judged candidate {candidate} of pull request #{PULL}: no training" in result.err
    found = tags(repo)
    assert found["main"] == found[f"sha-{git(repo, 'rev-parse', 'HEAD')}"] == candidate
    assert (OUT / "train-log.json").read_bytes() == trained  # the candidate's, not a new training's
    assert "Training" not in result.err


def test_a_changed_config_trains_and_names_the_part_that_differed(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("lr: 0.002", "lr: 0.003"))
    git(repo, "commit", "-qam", f"a faster learning rate (#{PULL})")
    candidate = candidate_tags(repo)[f"pr-{PULL}"]
    result = cli("run", "--publish")
    assert result.code == 0, result.err
    assert f"training: no candidate with this key (key-{key()['key'][7:39]}); pull request #{PULL}'s candidate " \
           f"{candidate} differs in the model's files (git tree), the config (as resolved, tuned.yaml applied)" \
           in result.err
    assert tags(repo)["main"] != candidate


def test_a_failed_verdict_under_the_key_is_never_promoted(cli, repo: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tag = next(name for name in candidate_tags(repo) if name.startswith("key-"))
    pulled = pull(parse_reference(f"oci:{REGISTRY}:{tag}", base=repo), tmp_path / "candidate")
    failed = push_files(sorted(tmp_path / "candidate" / name for name in pulled.files),
                        parse_reference(f"oci:{REGISTRY}", base=repo), [tag],
                        {**pulled.annotations, "io.modelci.verdict": "failed"}).digest
    result = cli("run", "--publish")
    assert result.code == 0, result.err
    assert f"the judged candidate {failed} of pull request #{PULL} has this content key but its gate said " \
           "'failed': a failed verdict is never promoted; training" in result.err
    assert tags(repo)["main"] not in (failed, pulled.digest)


def test_a_dirty_tree_has_no_key_and_trains(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text((repo / "model.py").read_text() + "\n# changed\n")
    result = cli("run")
    assert result.code == 0, result.err
    assert "content key: none, the tree differs from the commit (model.py (modified)); training" in result.err
    assert not (OUT / "content-key.json").exists()
    assert "Training" in result.err


def test_no_cache_trains_and_a_local_run_reuses_the_judged_candidate(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    candidate = candidate_tags(repo)[f"pr-{PULL}"]
    reused = cli("run")
    assert reused.code == 0, reused.err
    assert f"reused the judged candidate {candidate} of pull request #{PULL}: same content key and baseline, " \
           "no training (its verdict: passed; --no-cache trains again)" in reused.err
    assert "main" not in tags(repo)
    forced = cli("run", "--publish", "--no-cache")
    assert forced.code == 0, forced.err
    assert "Training" in forced.err
    assert "promoted" not in forced.err
    assert tags(repo)["main"] != candidate


def test_a_fork_pull_request_pushes_nothing(cli, repo: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 8, "head": {"repo": {"full_name": "someone/churn"}},
                                                  "base": {"repo": {"full_name": "team/churn"}}}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_REF", "refs/pull/8/merge")
    before = tags(repo)
    result = cli("push-candidate")
    assert result.code == 0, result.err
    assert "a pull request from a fork cannot write to the registry; its candidate is rebuilt on main" in result.err
    assert tags(repo) == before


def test_push_candidate_writes_only_key_and_pr_tags_with_the_staged_verdict(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    staged = OUT / "candidate"
    described = json.loads((staged / "candidate.json").read_text())
    # NOTE: the staged file cannot name the verdict, the key or the pull request: the command writes those itself
    described["annotations"] |= {"io.modelci.verdict": "passed", "io.modelci.pull-request": "1"}
    (staged / "candidate.json").write_text(json.dumps(described))
    comparison = json.loads((staged / "comparison.json").read_text())
    (staged / "comparison.json").unlink()  # NOTE: a hard link to the run's; the edit must not reach it
    (staged / "comparison.json").write_text(json.dumps({**comparison, "passed": False}))
    before = tags(repo)
    # NOTE: --registry: candidate.json names the registry of the folder the run was in (the fixture's, not this copy)
    result = cli("push-candidate", "--pull-request", "9", "--registry", f"oci:{REGISTRY}")
    assert result.code == 0, result.err
    after = tags(repo)
    assert set(after) - set(before) == {"pr-9"}
    assert {k: v for k, v in after.items() if not k.startswith(("key-", "pr-"))} == \
        {k: v for k, v in before.items() if not k.startswith(("key-", "pr-"))}
    annotations = annotations_of(parse_reference(f"oci:{REGISTRY}:pr-9", base=repo))
    assert annotations["io.modelci.verdict"] == "failed"
    assert annotations["io.modelci.pull-request"] == "9"
    assert annotations["io.modelci.content-key"] == key()["key"]


@pytest.mark.parametrize("change", ["parts", "missing"])
def test_push_candidate_refuses_a_folder_whose_key_is_missing_or_not_its_parts(  # type: ignore[no-untyped-def]
        cli, repo: Path, change: str) -> None:
    staged = OUT / "candidate" / "content-key.json"
    recorded = json.loads(staged.read_text())
    staged.unlink()
    if change == "parts":
        recorded["parts"]["tree"] = "0" * 40  # another tree, under the key of the judged one
        staged.write_text(json.dumps(recorded))
    before = tags(repo)
    result = cli("push-candidate", "--pull-request", "9")
    assert result.code == 2, result.err
    expected = f"records the key {recorded['key']}, but its parts hash to" if change == "parts" else \
        "content-key.json is missing: the folder holds no content key"
    assert expected in result.err
    assert tags(repo) == before


def test_push_candidate_refuses_a_key_made_for_another_tree_than_the_commit_judged(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    from modelci.cache import ContentKey

    # a run of the pull request's code records the parts of another tree (a later, harmless commit's) under a key
    # that hashes them: its own check passes
    staged = OUT / "candidate" / "content-key.json"
    recorded = json.loads(staged.read_text())
    forged = {**recorded["parts"], "tree": "0" * 40}
    staged.unlink()
    staged.write_text(json.dumps({"key": ContentKey(**forged).key, "parts": forged}))
    before = tags(repo)
    refused = cli("push-candidate", "--pull-request", "9", "--registry", f"oci:{REGISTRY}", "--tree-from", ".")
    assert refused.code == 2
    assert f"the candidate's content key records the tree {'0' * 40}, and the commit checked out at . has " \
           f"{recorded['parts']['tree']}" in refused.err  # the tree of the commit the run judged, read by git
    assert tags(repo) == before
    staged.unlink()
    staged.write_text(json.dumps(recorded))
    pushed = cli("push-candidate", "--pull-request", "9", "--registry", f"oci:{REGISTRY}", "--tree-from", ".")
    assert pushed.code == 0, pushed.err
