"""The operations assets in deploy/prometheus/, checked by Prometheus' own tools: promtool checks the
configuration and the rules and runs the rules' unit tests, and a real Prometheus scrapes a real
server and raises the alert for a model the server refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from loopback import free_port, stop, text_server, wait_until_ready
from modelci.registry.artifact import push_files
from modelci.registry.reference import parse_reference
from test_serve import artifact_of, exported, start  # noqa: F401  (the module's model, as a fixture)

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(PROMETHEUS / "alerts-test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_scrape_configuration_is_valid(tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so its promtool rejects the
    `kubernetes_sd_configs` key itself: the discovery is checked here to be the pod role, then
    stood in for by a static target, and promtool checks all the rest (relabelling, rule files)."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "modelci-serve"
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10).json()
        assert answer["status"] == "success", (expression, answer)
        return list(answer["data"]["result"])

    def firing(self) -> set[str]:
        alerts = requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    def wait_for(self, what: str, check: Any, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"Prometheus did not see {what} within {timeout_s:g} s"
            time.sleep(0.25)


def start_prometheus(folder: Path, target: str) -> tuple[subprocess.Popen[str], Prometheus]:
    """Prometheus with deploy/prometheus/'s job and rules, scraping `target` every second."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    config["scrape_configs"] = [{"job_name": job["job_name"], "metrics_path": job["metrics_path"],
                                 "static_configs": [{"targets": [target]}]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Prometheus(f"http://127.0.0.1:{port}")
    wait_until_ready(process, f"{server.url}/-/ready", "Prometheus")
    return process, server


@pytest.fixture
def watched(exported: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:  # noqa: F811
    """A server watching `prod` of an on-disk registry; (its address, the registry)."""
    registry = f"oci:{tmp_path / 'registry'}"
    push_files(artifact_of(tmp_path / "good", exported, exported), parse_reference(f"{registry}:sha-good"),
               ["sha-good", "prod"], {})
    server = start(f"{registry}:prod", "--watch", "--poll-interval", "0.2")
    yield server.url.removeprefix("http://"), registry
    stop(server.process)


def test_prometheus_scrapes_a_server_and_alerts_on_a_model_it_refused(
        watched: tuple[str, str], exported: Path, tmp_path: Path) -> None:  # noqa: F811
    address, registry = watched
    process, prometheus = start_prometheus(tmp_path, address)
    try:
        prometheus.wait_for("the server up", lambda: [r["value"][1] for r in prometheus.query("up")] == ["1"])
        prometheus.wait_for("two scrapes", lambda: prometheus.query(
            'count_over_time(modelci_model_loads_total{outcome="failed"}[1m]) >= 2'))
        assert prometheus.firing() == set()
        (before,) = prometheus.query("modelci_model_info")

        # the next model's golden samples do not match it: the server refuses it and keeps serving
        broken = artifact_of(tmp_path / "broken", exported, exported)
        samples = json.loads((tmp_path / "broken" / "samples.json").read_text())
        samples["outputs"] = [[1 - p for p in row] for row in samples["outputs"]]
        (tmp_path / "broken" / "samples.json").write_text(json.dumps(samples))
        push_files(broken, parse_reference(f"{registry}:sha-broken"), ["sha-broken", "prod"], {})
        prometheus.wait_for("ModelciModelLoadFailed firing", lambda: "ModelciModelLoadFailed" in prometheus.firing())
        (after,) = prometheus.query("modelci_model_info")
        assert after["metric"]["version"] == before["metric"]["version"]  # the good model still serves
        assert [r["value"][1] for r in prometheus.query('modelci_model_loads_total{outcome="loaded"}')] == ["1"]

        # every query of the Grafana dashboard, as Grafana sends it for this server, on this Prometheus
        escaped = re.escape(address).replace("\\", "\\\\")  # NOTE: a regular expression in a PromQL string
        answered = {query: prometheus.query(query) for query in dashboard_queries(model="churn", instance=escaped)}
        assert len(answered) > 20
        (info,) = [found for query, found in answered.items() if query.startswith("modelci_model_info{")]
        assert [r["metric"] for r in info] == [after["metric"]]  # the variables select this server's model
    finally:
        stop(process)


def dashboard_queries(dashboard_file: str = "modelci-serve.json", **variables: str) -> list[str]:
    """The PromQL of every panel of a dashboard of deploy/grafana/, with Grafana's variables replaced."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / dashboard_file).read_text())
    panels = [p for p in dashboard["panels"] for p in [p, *p.get("panels", [])]]
    replaced = {"$__rate_interval": "5s", "$__range": "1m", **{f"${k}": v for k, v in variables.items()}}
    queries = []
    for target in (t for p in panels for t in p.get("targets", [])):
        query = target["expr"]
        for name, value in replaced.items():
            query = query.replace(name, value)
        assert "$" not in query, query
        queries.append(query)
    return queries


def test_the_delivery_dashboards_queries_read_what_modelci_delivery_writes(tmp_path: Path) -> None:
    # the figures of a history of two deploys and a rollback, as node_exporter's textfile collector exposes them
    from test_delivery import T0, model

    registry = f"oci:{tmp_path / 'registry'}"
    model(registry, tmp_path / "a", "a", T0)
    model(registry, tmp_path / "b", "b", T0)
    for argv in (["deploy", f"{registry}:sha-a"], ["deploy", f"{registry}:sha-b"], ["rollback", registry],
                 ["delivery", registry, "--out", str(tmp_path / "out"), "--prometheus", str(tmp_path / "d.prom")]):
        done = subprocess.run([sys.executable, "-m", "modelci", *argv], capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
    with text_server((tmp_path / "d.prom").read_bytes()) as exporter:
        process, prometheus = start_prometheus(tmp_path, f"127.0.0.1:{exporter.port}")
        try:
            prometheus.wait_for("a scrape", lambda: prometheus.query("modelci_delivery_deploys_total"))
            answered = {query: prometheus.query(query) for query in dashboard_queries("modelci-delivery.json",
                                                                                      repository=".+", tag="prod")}
            empty = [query for query, found in answered.items() if not found]
            assert not empty, empty
            (rate,) = prometheus.query("modelci_delivery_change_failure_ratio")
            assert float(rate["value"][1]) == 0.5
        finally:
            stop(process)
