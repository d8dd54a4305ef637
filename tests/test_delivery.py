"""Delivery figures (issue 20, item 5): a registry with a scripted history of deploys, a refusal, rollbacks and
foreign tags, and a history written by real deploys and a rollback; the figures, delivery.json, the job summary's
chart and the Prometheus text promtool accepts."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modelci.deploy.delivery import delivery, prometheus
from modelci.registry.artifact import ANNOTATION_PREFIX, CREATED, push_files
from modelci.registry.records import push_record
from modelci.registry.reference import parse_reference

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)  # a Monday


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def model(registry: str, folder: Path, name: str, committed: datetime) -> str:
    """An artifact built from a commit made at `committed`."""
    folder.mkdir()
    (folder / "model.onnx").write_bytes(name.encode())  # NOTE: the history reads annotations, not the model
    found = push_files([folder / "model.onnx"], parse_reference(f"{registry}:sha-{name}"), [f"sha-{name}"],
                       {CREATED: stamp(committed), f"{ANNOTATION_PREFIX}verdict": "passed"})
    return found.digest


def event(registry: str, name: str, **fields: str) -> None:
    push_record(parse_reference(f"{registry}:prod-history-{name}"), [f"prod-history-{name}"], "deploy",
                {"tag": "prod", "how": "deploy", **fields})


@pytest.fixture
def scripted(tmp_path: Path) -> str:
    """Four changes over two weeks: A deployed, B refused by the servers, C deployed then rolled back, D deployed;
    and what a real history has besides: a rollback of a deploy from before the history, a foreign tag."""
    registry = f"oci:{tmp_path / 'registry'}"
    a, b, c, d, x = (model(registry, tmp_path / n, n, committed) for n, committed in (
        ("a", T0), ("b", T0 + timedelta(days=1)), ("c", T0 + timedelta(days=2)),
        ("d", T0 + timedelta(days=9, hours=12)), ("x", T0 - timedelta(days=30))))
    event(registry, "1", event="rolled-back", model=a, previous=x, at=stamp(T0 - timedelta(hours=1)))
    event(registry, "2", event="deployed", model=a, previous=x, at=stamp(T0 + timedelta(hours=1)),
          committed=stamp(T0))
    event(registry, "3", event="refused", model=b, previous=a, at=stamp(T0 + timedelta(days=2)),
          started=stamp(T0 + timedelta(days=2, minutes=-5)), reason="http://10.0.0.5:8080 refused it")
    event(registry, "4", event="deployed", model=c, previous=a, at=stamp(T0 + timedelta(days=3)),
          committed=stamp(T0 + timedelta(days=2)))
    event(registry, "5", event="rolled-back", model=a, previous=c, at=stamp(T0 + timedelta(days=3, hours=2)))
    event(registry, "6", event="deployed", model=d, previous=a, at=stamp(T0 + timedelta(days=10)),
          committed=stamp(T0 + timedelta(days=9, hours=12)))
    push_files([tmp_path / "a" / "model.onnx"], parse_reference(f"{registry}:prod-history-foreign"),
               ["prod-history-foreign"], {})  # NOTE: a model someone tagged with the history's prefix
    return registry


def test_the_four_figures_of_a_scripted_history(scripted: str) -> None:
    found = delivery(parse_reference(scripted), "prod").to_json()
    assert (found["deploys"], found["attempts"], found["failures"]) == (3, 5, 3)
    assert found["change_failure_rate"] == pytest.approx(3 / 5)
    # lead times: A 1 h, C 1 day, D 12 h
    assert found["lead_time_s"]["median"] == pytest.approx(12 * 3600)
    assert found["lead_time_s"]["p90"] == pytest.approx(12 * 3600 + 0.8 * 12 * 3600)
    # restored: B in 5 minutes (the deploy moved the tag back), C in 2 hours (the rollback)
    assert found["time_to_restore_s"]["median"] == pytest.approx((300 + 7200) / 2)
    assert found["time_to_restore_s"]["failures"] == 2
    span_weeks = (timedelta(days=10, hours=1)) / timedelta(days=7)
    assert found["deploys_per_week"] == pytest.approx(3 / span_weeks)
    assert [(w["week"], w["deploys"], w["failures"]) for w in found["weeks"]] == [
        ("2026-11-02", 2, 3), ("2026-11-09", 1, 0)]
    notes = " ".join(found["notes"])
    assert "prod-history-foreign" in notes
    assert "whose deploy is not in the history" in notes


def test_since_keeps_the_latest_history(scripted: str) -> None:
    found = delivery(parse_reference(scripted), "prod", since=T0 + timedelta(days=5)).to_json()
    assert (found["deploys"], found["attempts"], found["failures"]) == (1, 1, 0)
    assert found["change_failure_rate"] == 0


def test_the_command_writes_the_report_the_chart_and_metrics_promtool_accepts(  # type: ignore[no-untyped-def]
        cli, scripted: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    done = cli("delivery", scripted, "--out", str(tmp_path / "out"), "--prometheus", str(tmp_path / "delivery.prom"))
    assert done.code == 0, done.err
    assert json.loads((tmp_path / "out" / "delivery.json").read_text())["deploys"] == 3
    shown = summary.read_text()
    assert "| change failure rate | 60.0% (3 of 5 changes) |" in shown
    assert "xychart-beta" in shown
    assert "  bar [2, 1]" in shown
    assert "  line [3, 0]" in shown
    text = (tmp_path / "delivery.prom").read_text()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f'modelci_delivery_change_failure_ratio{{repository="{scripted}",tag="prod"}} 0.6' in text


def test_an_empty_history_and_a_missing_registry(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("delivery", f"oci:{tmp_path / 'nowhere'}")
    assert missing.code == 2
    assert "no registry there" in missing.err
    (tmp_path / "empty").mkdir()
    empty = cli("delivery", f"oci:{tmp_path / 'empty'}", "--out", str(tmp_path / "out"))
    assert empty.code == 0, empty.err
    assert "no deploy of prod in the history" in empty.err
    assert json.loads((tmp_path / "out" / "delivery.json").read_text())["change_failure_rate"] is None


def test_real_deploys_and_a_rollback_write_the_history(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry = f"oci:{tmp_path / 'registry'}"
    model(registry, tmp_path / "a", "a", T0)
    model(registry, tmp_path / "b", "b", T0 + timedelta(days=1))
    assert cli("deploy", f"{registry}:sha-a").code == 0
    assert cli("deploy", f"{registry}:sha-b").code == 0
    assert cli("rollback", registry).code == 0
    found = delivery(parse_reference(registry), "prod")
    assert (found.deploys, found.attempts, found.failures) == (2, 2, 1)
    assert len(found.lead_times_s) == 2
    assert len(found.restore_times_s) == 1
    assert found.notes == []
    assert 'modelci_delivery_deploys_total{' in prometheus(found)


def test_a_commit_time_without_a_zone_is_read_as_utc() -> None:
    from modelci.deploy.delivery import Event

    found = Event.of({"event": "deployed", "model": "sha256:0", "at": "2026-11-02T10:00:00Z",
                      "committed": "2026-11-02T09:00:00"})
    assert (found.at - found.committed).total_seconds() == 3600  # type: ignore[operator]
