"""`modelci deploy` and `modelci rollback` against real servers watching the tag: a deploy they
confirm, one they refuse (rolled back), one the gate refused, and a rollback on request."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import requests

from loopback import free_port
from modelci.registry.artifact import ANNOTATION_PREFIX, push_files, resolve
from modelci.registry.reference import parse_reference
from test_serve import artifact_of, exported, retrained, start  # noqa: F401  (the module's models, as fixtures)

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
