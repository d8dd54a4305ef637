"""Canary and shadow deploys (issue 20) against a real server watching the tags, under load: a good canary
promoted, a bad one (a model that predicts the other class) rolled back on its live traffic, a shadow that
scores a copy of the requests without touching the answers; and the statistics the verdict rests on."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import requests
from onnx import helper

from modelci.deploy import evidence
from modelci.deploy.evidence import Rule, Traffic
from modelci.evaluate.onnx_model import OnnxModel
from modelci.registry.artifact import ANNOTATION_PREFIX, push_files, resolve
from modelci.registry.records import read_record
from modelci.registry.reference import parse_reference
from modelci.serve.candidates import Canary
from test_serve import Running, artifact_of, exported, request_of, rows, start  # noqa: F401

PASSED = {f"{ANNOTATION_PREFIX}verdict": "passed"}


def inverted(model: Path, folder: Path) -> list[Path]:
    """The artifact of `model` with its classes swapped (a label-order bug): it reproduces its own golden samples,
    so every server takes it, and it predicts the other class for every row."""
    folder.mkdir()
    graph = onnx.load(model / ".modelci/out/model.onnx")
    output = graph.graph.output[0]
    graph.graph.node.append(helper.make_node("Gather", [f"{output.name}_before_swap", "swapped_classes"],
                                             [output.name], axis=1))
    for node in graph.graph.node[:-1]:
        node.output[:] = [f"{output.name}_before_swap" if o == output.name else o for o in node.output]
    graph.graph.initializer.append(helper.make_tensor("swapped_classes", onnx.TensorProto.INT64, [2], [1, 0]))
    onnx.save(graph, folder / "model.onnx")
    samples = json.loads((model / ".modelci/out/samples.json").read_text())
    samples["outputs"] = [row[::-1] for row in samples["outputs"]]
    (folder / "samples.json").write_text(json.dumps(samples))
    return sorted(folder.iterdir())


@contextmanager
def load_on(server: Running, bodies: list[dict[str, Any]], clients: int = 3) -> Iterator[list[int]]:
    """Clients asking `server` all the time, each request one of `bodies` at random with an id of its own; every
    status they got (0: the server could not be reached)."""
    stop, statuses = threading.Event(), list[int]()

    def keep_asking() -> None:
        generator = np.random.default_rng()
        while not stop.is_set():
            body = bodies[generator.integers(len(bodies))]
            try:
                statuses.append(server.infer({**body, "id": uuid.uuid4().hex}).status_code)
            except requests.ConnectionError:  # NOTE: a server restarting: 0, and the client goes on
                statuses.append(0)
                time.sleep(0.05)

    threads = [threading.Thread(target=keep_asking) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@pytest.fixture
def registry(exported: Path, tmp_path: Path) -> str:  # noqa: F811
    """A registry with the stable model at prod (sha-a); a good candidate (sha-b: the same model published again
    from a commit that changed only its documentation) and a bad one (sha-bad)."""
    folder = f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{folder}:sha-a"),
               ["sha-a", "prod"], PASSED)
    good = artifact_of(tmp_path / "b", exported, exported)
    (tmp_path / "b" / "README.md").write_text("The churn model, documented.\n")
    push_files([*good, tmp_path / "b" / "README.md"], parse_reference(f"{folder}:sha-b"), ["sha-b"], PASSED)
    push_files(inverted(exported, tmp_path / "bad"), parse_reference(f"{folder}:sha-bad"), ["sha-bad"], PASSED)
    return folder


def traffic_of(exported: Path) -> list[dict[str, Any]]:  # noqa: F811
    """Requests of 4 rows each from 500 rows of the data: live traffic varies."""
    model, frame = OnnxModel(exported / ".modelci/out/model.onnx"), rows(exported, 500)
    return [request_of(frame.iloc[first:first + 4], model) for first in range(0, 500, 4)]


def digest_of(registry: str, tag: str) -> str:
    found = resolve(parse_reference(f"{registry}:{tag}"))
    assert found is not None
    return found.digest


def test_a_good_canary_is_promoted_and_a_bad_one_rolled_back_on_live_traffic(  # type: ignore[no-untyped-def]
        cli, registry: str, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    stable, good, bad = (digest_of(registry, t) for t in ("prod", "sha-b", "sha-bad"))
    try:
        with load_on(server, traffic_of(exported)) as statuses:
            began = time.monotonic()
            rolled = cli("deploy", f"{registry}:sha-bad", "--server", server.url, "--model-name", "churn",
                         "--canary", "50", "--for", "60s", "--look-every", "0.5", "--min-requests", "100",
                         "--report", str(tmp_path / "bad.json"))
            took = time.monotonic() - began
            promoted = cli("deploy", f"{registry}:sha-b", "--server", server.url, "--model-name", "churn",
                           "--canary", "50", "--for", "8s", "--look-every", "0.5",
                           "--report", str(tmp_path / "good.json"))
        assert set(statuses) == {200}  # not one request failed, through two canaries and a promotion

        assert rolled.code == 1, rolled.err
        assert took < 30  # rolled back at once, not at the end of its 60 s
        assert f"the canary {bad} was rolled back: prediction shift (total variation distance) is worse" in rolled.err
        verdict = json.loads((tmp_path / "bad.json").read_text())
        assert verdict["decision"] == "rolled back"
        shift = next(f for f in verdict["figures"] if f["name"].startswith("prediction shift"))
        assert shift["interval"][0] > shift["margin"]
        assert verdict["requests"]["canary"] > 0

        assert promoted.code == 0, promoted.err
        assert promoted.out.strip() == good
        assert digest_of(registry, "prod") == good
        assert digest_of(registry, "prod-previous") == stable
        assert read_record(parse_reference(f"{registry}:prod-canary"), "canary") == {
            "model": good, "percent": "0", "stable": stable}  # the canary ended with its promotion
        verdict = json.loads((tmp_path / "good.json").read_text())
        assert verdict["decision"] == "promoted"
        assert verdict["requests"]["canary"] >= 200
        assert all(f["not_worse"] for f in verdict["figures"])
        assert {f["name"].split(" (")[0] for f in verdict["figures"]} >= {"error rate", "prediction shift"}
        served = requests.get(f"{server.url}/v2/models/churn", timeout=5).json()["versions"]
        assert served == [good.split(":")[1][:12]]
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)


def test_a_shadow_scores_a_copy_of_the_requests_and_leaves_the_answers_alone(  # type: ignore[no-untyped-def]
        cli, registry: str, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    model = OnnxModel(exported / ".modelci/out/model.onnx")
    frame = rows(exported, 4)
    body = request_of(frame, model)
    try:
        with load_on(server, traffic_of(exported), clients=2):
            done = cli("deploy", f"{registry}:sha-bad", "--server", server.url, "--model-name", "churn", "--shadow",
                       "--for", "2s", "--report", str(tmp_path / "shadow.json"))
        assert done.code == 0, done.err
        found = json.loads((tmp_path / "shadow.json").read_text())
        assert found["rows"]["scored"] > 0
        assert found["agreement"] == 0.0  # the inverted model puts every row in the other class
        assert found["agreement_interval"][1] < 0.1
        assert digest_of(registry, "prod-shadow") == digest_of(registry, "prod")  # the shadow ended
        answer = server.infer(body).json()["outputs"][0]
        assert np.allclose(np.reshape(answer["data"], answer["shape"]), model.predict(frame), atol=1e-6)
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'modelci_shadow_rows_total{' in metrics
        for _ in range(50):  # NOTE: the server sees the shadow tag back on the stable model at its next look
            if 'role="shadow"' not in requests.get(f"{server.url}/metrics", timeout=5).text:
                break
            time.sleep(0.1)
        assert 'role="shadow"' not in requests.get(f"{server.url}/metrics", timeout=5).text
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)


@pytest.mark.parametrize(("argv", "says"), [
    (["--canary", "0", "--for", "1m"], "0<x<100"),
    (["--canary", "120", "--for", "1m"], "0<x<100"),
    (["--canary", "100", "--for", "1m"], "0<x<100"),
    (["--canary", "nan", "--for", "1m"], "a percent of the requests, between 0 and 100"),
    (["--canary", "10", "--for", "nan"], "a duration is more than 0, and finite"),
    (["--canary", "10"], "--canary needs --for"),
    (["--canary", "10", "--for", "soon"], "is not a duration"),
    (["--canary", "10", "--shadow", "--for", "1m"], "--canary, --shadow and --rolling are three deploys"),
    (["--rolling"], "a rolling deploy moves servers: name them with --server"),
    (["--canary", "10", "--for", "1m"], "a canary or shadow is judged on the servers' traffic"),
])
def test_a_canary_asked_for_wrongly_is_exit_2_before_anything_moves(  # type: ignore[no-untyped-def]
        cli, registry: str, argv: list[str], says: str) -> None:
    found = cli("deploy", f"{registry}:sha-b", *argv)
    assert found.code == 2, found.err
    assert says in found.err
    assert resolve(parse_reference(f"{registry}:prod-canary")) is None
    assert digest_of(registry, "prod") == digest_of(registry, "sha-a")


def test_a_shadow_tag_with_no_model_to_judge_against_is_exit_2(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                exported: Path) -> None:  # noqa: F811
    folder = f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "a", exported, exported), parse_reference(f"{folder}:sha-a"), ["sha-a"],
               PASSED)
    found = cli("deploy", f"{folder}:sha-a", "--shadow", "--server", "http://127.0.0.1:9")
    assert found.code == 2, found.err
    assert "names no model to judge the candidate against" in found.err


def traffic(requests_: int, failed: int = 0, slow: int = 0, predictions: list[int] | None = None) -> Traffic:
    counts = np.cumsum(predictions or [requests_ // 2, requests_ - requests_ // 2])
    return Traffic(float(requests_), float(failed), {0.01: float(requests_ - slow), float("inf"): float(requests_)},
                   {float(b): float(c) for b, c in zip([0.5, float("inf")], counts, strict=True)})


def test_the_figures_decide_worse_not_worse_and_undecided_with_their_intervals() -> None:
    rule = Rule()
    same = evidence.judge(traffic(5000, failed=5), traffic(5000, failed=5), rule, 0.95)
    assert [f.not_worse for f in same] == [True, True, True]
    errors = evidence.judge(traffic(2000, failed=200), traffic(2000, failed=4), rule, 0.99)[0]
    assert errors.worse
    assert errors.low > 0.01
    few = evidence.judge(traffic(30, failed=1), traffic(300, failed=1), rule, 0.95)[0]
    assert not few.worse
    assert not few.not_worse  # 30 requests cannot show an error rate within a point of the stable one's
    shifted = evidence.judge(traffic(1000, predictions=[900, 100]), traffic(1000, predictions=[100, 900]), rule,
                             0.99)[2]
    assert shifted.worse
    assert shifted.difference == pytest.approx(0.8)


def test_a_multiclass_canary_is_judged_on_its_predicted_classes() -> None:
    swapped = Traffic(1000.0, 0.0, {}, {}, {0.0: 900.0, 1.0: 100.0})
    stable = Traffic(1000.0, 0.0, {}, {}, {0.0: 100.0, 1.0: 850.0, 2.0: 50.0})
    shift = evidence.judge(swapped, stable, Rule(), 0.99)[-1]
    assert shift.name == "prediction shift (predicted classes, total variation distance)"
    assert shift.difference == pytest.approx(0.8)
    assert shift.worse
    same = evidence.judge(stable, stable, Rule(), 0.95)[-1]
    assert same.not_worse


def test_the_canary_split_is_sticky_per_request_id_and_near_its_percent() -> None:
    split = Canary(None, lambda columns: columns, 10.0)  # type: ignore[arg-type]
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    taken = [split.takes(i) for i in ids]
    assert 0.09 < np.mean(taken) < 0.11
    assert taken == [split.takes(i) for i in ids]


def test_with_verify_a_canary_or_shadow_of_an_unsigned_model_is_refused(  # type: ignore[no-untyped-def]
        cli, registry: str, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    # the records and tags are written by hand, by someone who may push to the registry: the server still serves
    # no model that no key signed, whichever tag names it
    from modelci.registry import artifact
    from modelci.registry.records import push_record
    from test_signature import key_pair

    private, public = key_pair(tmp_path)
    assert cli("sign", f"{registry}:sha-a", "--key", str(private)).code == 0
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1", "--verify", str(public))
    unsigned = digest_of(registry, "sha-bad")
    try:
        push_record(parse_reference(f"{registry}:prod-canary"), ["prod-canary"], "canary",
                    {"model": unsigned, "percent": "100"})
        for _ in range(300):
            if refused_on(server.url, unsigned):
                break
            time.sleep(0.1)
        assert refused_on(server.url, unsigned)
        artifact.promote(parse_reference(f"{registry}:sha-b"), ["prod-shadow"])  # signed by no one either
        shadow = digest_of(registry, "sha-b")
        for _ in range(300):
            if refused_on(server.url, shadow):
                break
            time.sleep(0.1)
        assert refused_on(server.url, shadow)
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert "modelci_model_candidate_info{" not in metrics
        served = {server.infer(body).json()["model_version"] for body in traffic_of(exported)[:20]}
        assert served == {digest_of(registry, "prod").split(":")[1][:12]}
    finally:
        server.process.send_signal(signal.SIGTERM)
        output = server.process.communicate(timeout=30)[0]
    assert "is not signed" in output


def refused_on(url: str, digest: str) -> bool:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return any(line.startswith("modelci_model_refused_info{") and digest in line for line in text.splitlines())


def test_a_rolling_deploy_moves_the_servers_one_at_a_time_and_a_failure_moves_them_back(  # type: ignore[no-untyped-def]
        cli, registry: str, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    from modelci.registry.records import read_record
    from test_signature import key_pair

    # the second server verifies signatures, the first does not: an unsigned model moves the first, then stops at
    # the second, and the first must go back
    private, public = key_pair(tmp_path)
    assert cli("sign", f"{registry}:sha-a", "--key", str(private)).code == 0
    servers = [start(f"{registry}:prod", "--watch", "--poll-interval", "0.1", "--instance", "churn-0"),
               start(f"{registry}:prod", "--watch", "--poll-interval", "0.1", "--instance", "churn-1",
                     "--verify", str(public))]
    stable, good = digest_of(registry, "prod"), digest_of(registry, "sha-b")
    bodies, each = traffic_of(exported), [option for s in servers for option in ("--server", s.url)]

    def versions() -> list[str]:
        return [requests.get(f"{s.url}/v2/models/churn", timeout=5).json()["versions"][0] for s in servers]

    try:
        with load_on(servers[0], bodies, clients=1) as first, load_on(servers[1], bodies, clients=1) as second:
            stopped = cli("deploy", f"{registry}:sha-b", "--rolling", "--model-name", "churn", "--timeout", "60", *each)
            after_stop = digest_of(registry, "prod")
            for _ in range(100):  # NOTE: the first server sees the record list no server at its next look
                if versions() == [stable.split(":")[1][:12]] * 2:
                    break
                time.sleep(0.1)
            back = versions()
            assert cli("sign", f"{registry}:sha-b", "--key", str(private)).code == 0
            rolled = cli("deploy", f"{registry}:sha-b", "--rolling", "--model-name", "churn", "--timeout", "60", *each)
        assert set(first) == set(second) == {200}  # not one request failed through either roll

        assert stopped.code == 1, stopped.err
        assert "1 of 2 servers serve" in stopped.err  # the first had moved
        assert f"{servers[1].url} refused it; the roll stopped, and the 2 server(s) moved are back" in stopped.err
        assert after_stop == stable
        assert back == [stable.split(":")[1][:12]] * 2

        assert rolled.code == 0, rolled.err
        assert "2 of 2 servers serve" in rolled.err
        assert digest_of(registry, "prod") == good
        assert read_record(parse_reference(f"{registry}:prod-rollout"), "rollout") == {"model": good,
                                                                                      "instances": ""}
        for _ in range(20):  # NOTE: the servers' next looks at the cleared record and at prod change nothing
            assert versions() == [good.split(":")[1][:12]] * 2
            time.sleep(0.1)
    finally:
        for server in servers:
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=30)


def test_a_canary_without_traffic_cannot_be_judged_and_is_rolled_back(  # type: ignore[no-untyped-def]
        cli, registry: str, tmp_path: Path) -> None:
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    try:
        quiet = cli("deploy", f"{registry}:sha-b", "--server", server.url, "--model-name", "churn",
                    "--canary", "20", "--for", "2s", "--look-every", "0.5", "--report", str(tmp_path / "quiet.json"))
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    assert quiet.code == 1, quiet.err
    assert "it cannot be judged: the canary answered 0 requests in the window, fewer than the 200" in quiet.err
    assert json.loads((tmp_path / "quiet.json").read_text())["decision"] == "rolled back"
    assert digest_of(registry, "prod") == digest_of(registry, "sha-a")


def test_a_server_without_metrics_per_version_is_exit_2_before_the_canary_starts(  # type: ignore[no-untyped-def]
        cli, registry: str) -> None:
    from loopback import text_server

    older = (b'# TYPE modelci_inference_request_duration_seconds histogram\n'  # NOTE: an older modelci serve's
             b'modelci_inference_request_duration_seconds_bucket{model="churn",le="+Inf"} 3.0\n')
    with text_server(older) as server:
        found = cli("deploy", f"{registry}:sha-b", "--server", f"http://127.0.0.1:{server.port}",
                    "--model-name", "churn", "--canary", "10", "--for", "1m")
    assert found.code == 2, found.err
    assert "does not report its metrics per version" in found.err
    assert resolve(parse_reference(f"{registry}:prod-canary")) is None


def test_a_rollback_ends_a_canary_or_roll_a_killed_deploy_left_going(cli, registry: str) -> None:  # type: ignore[no-untyped-def]
    from modelci.registry.records import push_record, read_record

    assert cli("deploy", f"{registry}:sha-b").code == 0
    good = digest_of(registry, "sha-b")
    push_record(parse_reference(f"{registry}:prod-canary"), ["prod-canary"], "canary",
                {"model": good, "percent": "50", "stable": digest_of(registry, "sha-a")})
    push_record(parse_reference(f"{registry}:prod-rollout"), ["prod-rollout"], "rollout",
                {"model": good, "instances": "churn-0"})
    done = cli("rollback", registry)
    assert done.code == 0, done.err
    assert "prod-canary was still going (a deploy was killed?): ended" in done.err
    assert read_record(parse_reference(f"{registry}:prod-canary"), "canary")["percent"] == "0"  # type: ignore[index]
    assert read_record(parse_reference(f"{registry}:prod-rollout"), "rollout")["instances"] == ""  # type: ignore[index]


def test_a_server_that_restarts_during_the_canary_leaves_it_not_judgeable(registry: str, exported: Path,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    # its counters start again from 0: what it counted before (a canary's failures, say) is gone
    import subprocess

    from loopback import wait_until_ready
    from modelci.deploy.canary import canary
    from modelci.errors import CheckFailed
    from test_serve import MODELCI

    first = start(f"{registry}:prod", "--watch", "--poll-interval", "0.1")
    command = [*MODELCI, "serve", "--model", f"{registry}:prod", "--watch", "--poll-interval", "0.1", "--name",
               "churn", "--port", str(first.port), "--drain-period", "0"]
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            canary(parse_reference(f"{registry}:sha-b"), "prod", [first.url], "churn", 50, 12.0, Rule(), 60,
                   poll_s=0.5)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    judging = threading.Thread(target=run)
    second = None
    try:
        with load_on(first, traffic_of(exported), clients=2):
            judging.start()
            for _ in range(200):
                if 'role="canary"' in requests.get(f"{first.url}/metrics", timeout=5).text:
                    break
                time.sleep(0.1)
            time.sleep(2)  # NOTE: traffic counted by the first process
            first.process.send_signal(signal.SIGTERM)
            first.process.wait(timeout=30)
            second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until_ready(second, f"{first.url}/v2/health/ready", "the restarted server")
            judging.join(timeout=60)
    finally:
        for process in (first.process, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    (found,) = outcome
    assert isinstance(found, CheckFailed)
    assert "it cannot be judged" in found.message
    assert "restarted during the window" in found.message
    assert digest_of(registry, "prod") == digest_of(registry, "sha-a")
