"""`modelci deploy` and `modelci rollback` against real servers watching the tag: a deploy they
confirm, one they refuse (rolled back), one the gate refused, and a rollback on request."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from loopback import free_port
from modelci.registry import artifact
from modelci.registry.artifact import ANNOTATION_PREFIX, push_files, resolve
from modelci.registry.reference import parse_reference
from test_serve import MODELCI, artifact_of, exported, retrained, start  # noqa: F401  (the module's models, as fixtures)
from test_signature import key_pair

PASSED = {f"{ANNOTATION_PREFIX}verdict": "passed"}


def version_of(url: str) -> str:
    return str(requests.get(f"{url}/v2/models/churn", timeout=5).json()["versions"][0])


def test_deploy_waits_for_the_servers_and_rolls_back_what_they_refuse(  # type: ignore[no-untyped-def]
        cli, exported: Path, retrained: Path, tmp_path: Path) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    first = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                       ["sha-a", "prod"], PASSED)
    second = push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:sha-b"),
                        ["sha-b"], PASSED)
    # the first model's samples do not match the second model's weights: no server will take it
    broken = push_files(artifact_of(tmp_path / "c", retrained, exported), parse_reference(f"{registry}:sha-c"),
                        ["sha-c"], PASSED)
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    try:
        done = cli("deploy", f"{registry}:sha-b", "--server", server.url, "--model-name", "churn", "--timeout", "30")
        assert done.code == 0, done.err
        assert done.out.strip() == second.digest
        assert version_of(server.url) == second.digest.split(":")[1][:12]
        tags = {t: resolve(parse_reference(f"{registry}:{t}")) for t in ("prod", "prod-previous")}
        assert {t: d.digest for t, d in tags.items() if d} == {"prod": second.digest, "prod-previous": first.digest}

        began = time.monotonic()
        refused = cli("deploy", f"{registry}:sha-c", "--server", server.url, "--model-name", "churn",
                      "--timeout", "120")
        assert refused.code == 1
        assert time.monotonic() - began < 60  # the server's refusal ends the wait: no timeout to sit out
        assert f"{server.url} refused {broken.digest}: it did not load, or did not reproduce its golden" in refused.err
        assert f"prod is back on {second.digest}" in refused.err
        prod = resolve(parse_reference(f"{registry}:prod"))
        assert prod is not None
        assert prod.digest == second.digest
        assert version_of(server.url) == second.digest.split(":")[1][:12]  # it never stopped serving

        # a server that never answers: the deploy waits its timeout out, then moves prod back
        nowhere = f"http://127.0.0.1:{free_port()}"
        silent = cli("deploy", f"{registry}:sha-a", "--server", nowhere, "--model-name", "churn", "--timeout", "1")
        assert silent.code == 1
        assert f"{nowhere} did not serve {first.digest} and answer its golden samples within 1 s" in silent.err
        assert resolve(parse_reference(f"{registry}:prod")).digest == second.digest  # type: ignore[union-attr]

        back = cli("rollback", registry, "--tag", "prod")
        assert back.code == 0, back.err
        assert back.out.strip() == first.digest
        for _ in range(100):
            if version_of(server.url) == first.digest.split(":")[1][:12]:
                break
            time.sleep(0.1)
        assert version_of(server.url) == first.digest.split(":")[1][:12]
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)


def test_an_artifact_that_did_not_pass_the_gate_is_not_deployed(  # type: ignore[no-untyped-def]
        cli, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"), ["sha-a"], {})
    refused = cli("deploy", f"{registry}:sha-a")
    assert refused.code == 1
    assert "did not pass the gate (verdict: none); it is not deployed" in refused.err
    assert resolve(parse_reference(f"{registry}:prod")) is None
    assert cli("deploy", f"{registry}:sha-a", "--force").code == 0  # no server named: the tag moves
    assert resolve(parse_reference(f"{registry}:prod")) is not None
    assert cli("rollback", registry).code == 2  # nothing to roll back to


def deploying(registry: str, nowhere: str) -> subprocess.Popen[str]:
    """`modelci deploy` of sha-b to a server that never answers, in its own process, once prod has moved."""
    process = subprocess.Popen([*MODELCI, "deploy", f"{registry}:sha-b", "--server", nowhere, "--model-name",
                                "churn", "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while tag_of(registry, "prod") != tag_of(registry, "sha-b") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # NOTE: now waiting for the server
    return process


def tag_of(registry: str, tag: str) -> str | None:
    found = resolve(parse_reference(f"{registry}:{tag}"))
    return found.digest if found else None


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_deploy_stopped_by_a_signal_moves_the_tag_back(  # type: ignore[no-untyped-def]
        exported: Path, retrained: Path, tmp_path: Path, stop: signal.Signals, code: int) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    first = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                       ["sha-a", "prod"], PASSED)
    push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:sha-b"), ["sha-b"],
               PASSED)
    process = deploying(registry, f"http://127.0.0.1:{free_port()}")
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert re.search(r"deploy interrupted after \d+ s of its 120 s timeout, before every server confirmed", err)
    assert f"prod is back on {first.digest}" in err
    assert tag_of(registry, "prod") == first.digest
    assert tag_of(registry, "prod-previous") is None  # nothing was confirmed, so no rollback target moved


def test_a_killed_deploy_is_seen_by_the_next_deploy_and_by_rollback(  # type: ignore[no-untyped-def]
        cli, exported: Path, retrained: Path, tmp_path: Path) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    first = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                       ["sha-a"], PASSED)
    second = push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:sha-b"),
                        ["sha-b"], PASSED)
    assert cli("deploy", f"{registry}:sha-a").code == 0  # no server named: a deploy that finishes at once
    nowhere = f"http://127.0.0.1:{free_port()}"
    process = deploying(registry, nowhere)
    process.kill()  # NOTE: SIGKILL, by its PID: nothing runs after it
    process.wait(timeout=30)
    assert tag_of(registry, "prod") == second.digest  # left where no server confirmed it

    unconfirmed = f"names {second.digest}, which no server confirmed"
    again = cli("deploy", f"{registry}:sha-b", "--server", nowhere, "--model-name", "churn", "--timeout", "0.5")
    assert again.code == 1
    assert unconfirmed in again.err
    assert f"prod is back on {first.digest}" in again.err  # the last confirmed digest, not the unconfirmed one

    process = deploying(registry, nowhere)
    process.kill()
    process.wait(timeout=30)
    back = cli("rollback", registry)
    assert back.code == 0, back.err
    assert unconfirmed in back.err
    assert back.out.strip() == first.digest
    assert tag_of(registry, "prod") == first.digest
    assert cli("rollback", registry).code == 2  # no deploy finished on another digest: nothing to go back to


def test_a_signal_that_arrives_while_the_tag_moves_still_moves_it_back(  # type: ignore[no-untyped-def]
        cli, exported: Path, retrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    first = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                       ["sha-a", "prod"], PASSED)
    push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:sha-b"), ["sha-b"],
               PASSED)
    real_promote, moves = artifact.promote, []

    def signalled_promote(*args: Any, **kwargs: Any) -> Any:
        moves.append(args)
        if len(moves) == 1:  # NOTE: a fault injected: SIGTERM lands in the middle of the first move
            os.kill(os.getpid(), signal.SIGTERM)
        return real_promote(*args, **kwargs)

    monkeypatch.setattr(artifact, "promote", signalled_promote)
    stopped = cli("deploy", f"{registry}:sha-b", "--server", f"http://127.0.0.1:{free_port()}", "--timeout", "60")
    assert stopped.code == 143, stopped.err
    assert f"prod is back on {first.digest}" in stopped.err
    assert tag_of(registry, "prod") == first.digest


def test_a_refused_deploy_of_the_digest_the_tag_already_names_says_so(  # type: ignore[no-untyped-def]
        cli, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    first = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                       ["sha-a", "prod"], PASSED)
    again = cli("deploy", f"{registry}:sha-a", "--server", f"http://127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert again.code == 1
    assert "prod named it before this deploy too, and still does" in again.err
    assert tag_of(registry, "prod") == first.digest


def refused_on(url: str, digest: str) -> bool:
    """Whether the server says it refused `digest` (/metrics, as `modelci deploy` reads it)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return any(line.startswith("modelci_model_refused_info{") and digest in line for line in text.splitlines())


def test_with_verify_only_a_signed_passed_artifact_is_deployed_and_served(  # type: ignore[no-untyped-def]
        cli, exported: Path, retrained: Path, tmp_path: Path) -> None:  # noqa: F811
    registry = f"oci:{tmp_path / 'registry'}"
    private, public = key_pair(tmp_path)
    signed = push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{registry}:sha-a"),
                        ["sha-a"], PASSED)
    unsigned = push_files(artifact_of(tmp_path / "b", retrained, retrained), parse_reference(f"{registry}:sha-b"),
                          ["sha-b"], PASSED)
    failed = push_files(artifact_of(tmp_path / "c", retrained, retrained), parse_reference(f"{registry}:sha-c"),
                        ["sha-c"], {f"{ANNOTATION_PREFIX}verdict": "failed"})
    for tag in ("sha-a", "sha-c"):
        assert cli("sign", f"{registry}:{tag}", "--key", str(private)).code == 0

    # deploy: an unsigned artifact and a signed failed verdict are refused before prod moves
    not_signed = cli("deploy", f"{registry}:sha-b", "--verify", str(public))
    assert not_signed.code == 1
    assert f"{registry}@{unsigned.digest} is not signed" in not_signed.err
    signed_failed = cli("deploy", f"{registry}:sha-c", "--verify", str(public), "--force")
    assert signed_failed.code == 0  # --force deploys a failed verdict, never an unsigned artifact
    assert cli("rollback", registry).code == 2
    assert cli("deploy", f"{registry}:sha-a", "--verify", str(public)).code == 0
    assert tag_of(registry, "prod") == signed.digest

    # serve: an unsigned artifact does not start
    port = str(free_port())
    stopped = subprocess.run([*MODELCI, "serve", "--model", f"{registry}:sha-b", "--verify", str(public), "--port",
                              port], capture_output=True, text=True, timeout=120, check=False)
    assert stopped.returncode == 1
    assert "is not signed" in stopped.stderr

    # a server watching prod with --verify refuses what no key signed, and a signed failed verdict
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1", "--verify", str(public))
    try:
        assert version_of(server.url) == signed.digest.split(":")[1][:12]
        for moved in (unsigned, failed):  # moved by hand, by someone who may push to the registry
            artifact.promote(parse_reference(f"{registry}@{moved.digest}"), ["prod"])
            deadline = time.monotonic() + 30
            while not refused_on(server.url, moved.digest) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert refused_on(server.url, moved.digest)
            assert version_of(server.url) == signed.digest.split(":")[1][:12]  # it never stopped serving
        artifact.promote(parse_reference(f"{registry}@{signed.digest}"), ["prod"])

        # once signed, the same artifact deploys and is served
        assert cli("sign", f"{registry}:sha-b", "--key", str(private)).code == 0
        deployed = cli("deploy", f"{registry}:sha-b", "--verify", str(public), "--server", server.url,
                       "--model-name", "churn", "--timeout", "60")
        assert deployed.code == 0, deployed.err
        assert version_of(server.url) == unsigned.digest.split(":")[1][:12]
    finally:
        server.process.send_signal(signal.SIGTERM)
        output = server.process.communicate(timeout=30)[0]
    assert "is not signed" in output
    assert "the verdict signed with it is failed, not passed" in output
