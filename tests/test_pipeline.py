"""`modelci run` end to end on a small copy of the example, against the embedded registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import git
from github_standin import GitHubStandIn
from modelci.registry.artifact import annotations_of, read_file
from modelci.registry.layout import OciLayout
from modelci.registry.reference import parse_reference
from test_report import rendered

OUT = Path(".modelci/out")
REGISTRY = Path(".modelci/registry")


def read(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / name).read_text())


def main_digest() -> str:
    return OciLayout.open(REGISTRY, create=False).tags()["main"].digest


def set_params(repo: Path, params: str) -> None:
    config = (repo / "modelci.yaml").read_text()
    start = config.index("params: {")
    end = config.index("}", start) + 1
    (repo / "modelci.yaml").write_text(config[:start] + f"params: {params}" + config[end:])


def test_publish_then_compare_against_the_published_baseline(cli, repo: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = cli("run", "--publish")
    assert first.code == 0, first.err
    comparison = read("comparison.json")
    assert comparison["baseline_status"] == "no-baseline"
    assert "no baseline" in (OUT / "report.md").read_text()
    published = main_digest()
    revision = git(repo, "rev-parse", "HEAD")
    tags = OciLayout.open(REGISTRY, create=False).tags()
    assert tags[f"sha-{revision}"].digest == published
    card = (OUT / "model-card.md").read_text()
    assert read("data-report.json")["datasets"][0]["fingerprint"] in card
    assert f"| roc_auc | {read('metrics.json')['metrics']['roc_auc']:.4f} |" in card
    pushed = read_file(parse_reference(f"oci:{REGISTRY}@{published}", base=repo), "model-card.md")
    assert pushed is not None
    assert pushed.decode() == card  # the card travels in the artifact
    source = annotations_of(parse_reference(f"oci:{REGISTRY}@{published}", base=repo))
    assert source["io.modelci.source.dirty"] == "false"  # published from a committed tree
    assert "io.modelci.source.dirty.files" not in source

    set_params(repo, "{hidden: 64, layers: 2, dropout: 0.05}")
    git(repo, "commit", "-qam", "less dropout")
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    second = cli("run")
    assert second.code == 0, second.err

    comparison = read("comparison.json")
    assert comparison["baseline_status"] == "compared"
    assert comparison["baseline_digest"] == published
    assert published in (OUT / "report.md").read_text()
    roc = next(m for m in comparison["metrics"] if m["name"] == "roc_auc")
    assert roc["baseline"] != roc["candidate"]
    assert roc["ci_low"] <= roc["difference"] <= roc["ci_high"]
    assert main_digest() == published  # a run without --publish moves nothing
    assert summary.read_text() == (OUT / "report.md").read_text()
    assert "verdict=passed\n" in outputs.read_text()


def test_identical_model_is_unchanged_with_zero_in_the_interval(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "--publish").code == 0
    baseline_metrics = read("metrics.json")["metrics"]
    assert cli("run").code == 0
    assert read("metrics.json")["metrics"] == baseline_metrics  # same data, seed and machine: same model
    for metric in read("comparison.json")["metrics"]:
        assert metric["verdict"] == "unchanged"
        assert metric["ci_low"] <= 0 <= metric["ci_high"]


def test_worse_model_fails_the_gate_and_publishes_nothing(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "--publish").code == 0
    published = main_digest()
    set_params(repo, "{hidden: 1, layers: 1, dropout: 0.0}")
    (repo / "modelci.yaml").write_text((repo / "modelci.yaml").read_text().replace("epochs: 4", "epochs: 1")
                                       .replace("lr: 0.002", "lr: 0.00001"))
    git(repo, "commit", "-qam", "a broken model")
    result = cli("run", "--publish")
    assert result.code == 1
    assert "the gate failed: roc_auc" in result.err
    roc = next(m for m in read("comparison.json")["metrics"] if m["name"] == "roc_auc")
    # below the rule's floor (min 0.75) whatever the baseline; the drop against it is reported too
    assert (roc["verdict"], roc["passed"]) == ("failed-floor", False)
    assert "below the minimum 0.75" in roc["reason"]
    assert "worse than the baseline" in roc["reason"]
    report = (OUT / "report.md").read_text()
    assert "❌ **Failed**: the gate rejected roc_auc" in report
    assert "❌ failed floor" in report
    assert main_digest() == published


def test_a_bigger_model_fails_a_size_gate_and_latency_is_measured_on_both(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", "--publish").code == 0
    set_params(repo, "{hidden: 256, layers: 2, dropout: 0.1}")
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("gate:\n", "gate:\n  - {metric: model_size_mb, max_increase: '50%'}\n"
                                                 "  - {metric: latency_p99_ms, max: 10000}\n"))
    result = cli("run")
    assert result.code == 1
    assert "the gate failed: model_size_mb" in result.err
    figures = {m["name"]: m for m in read("comparison.json")["operational"]}
    size = figures["model_size_mb"]
    assert size["candidate"] > 1.5 * size["baseline"]
    assert (size["verdict"], size["passed"], size["rule"]) == ("regressed", False, "max_increase 50%")
    assert "more than the 50% increase allowed" in size["reason"]
    for name in ("latency_p50_ms", "latency_p99_ms", "batch_latency_p50_ms", "batch_latency_p99_ms"):
        assert figures[name]["candidate"] > 0
        assert figures[name]["baseline"] > 0
    assert figures["latency_p50_ms"]["candidate"] <= figures["latency_p99_ms"]["candidate"]
    assert figures["latency_p99_ms"]["passed"]
    assert figures["parity_max_error"]["verdict"] == "measured"
    assert figures["drifted_columns"]["candidate"] == 0  # the same data as the baseline's
    report = (OUT / "report.md").read_text()
    assert "❌ **Failed**: the gate rejected model_size_mb" in report
    found = rendered(report)  # as GitHub renders it
    assert found.open_details == 0
    assert ["metric", "baseline", "candidate", "difference", "95% interval", "verdict", "rule"] in found.headers
    assert ["figure ↓", "baseline", "candidate", "change", "verdict", "rule"] in found.headers
    assert found.code.count("mermaid") == 2  # the ROC curves of both models, the training curves


def test_report_comments_on_the_pull_request_once_and_a_failure_only_warns(cli, repo: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    (repo / "modelci.yaml").write_text((repo / "modelci.yaml").read_text()
                                   + "registry: oci:.modelci/registry\nregistry_local_in_ci: true\n")
    with GitHubStandIn(token="t0ken") as github:
        github.add_repository("team/churn", pulls=(12,))
        for name, value in {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "team/churn",
                            "GITHUB_REF": "refs/pull/12/merge", "GITHUB_TOKEN": "t0ken",
                            "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}.items():
            monkeypatch.setenv(name, value)
        assert cli("run", "--github-comment").code == 0
        assert cli("report", "--github-comment").code == 0  # the same report again: no second comment, no write
        comments = github.comments_on("team/churn", 12)
        assert len(comments) == 1
        assert comments[0]["body"] == (OUT / "report.md").read_text()
        assert [r.method for r in github.requests] == ["GET", "POST", "GET"]
        assert f"comment-url={comments[0]['html_url']}" in outputs.read_text()
        monkeypatch.setenv("GITHUB_TOKEN", "wrong")
        result = cli("report", "--github-comment")
    assert result.code == 0  # the verdict stands
    assert "pull-requests: write" in result.err
    assert "modelci could not comment on the pull request" in summary.read_text()
    assert "verdict=passed" in outputs.read_text()


def test_kfold_results_of_both_models_are_compared_fold_by_fold(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    from scipy import stats

    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("evaluate:\n", "evaluate:\n  kfold: 3\n"))
    git(repo, "commit", "-qam", "cross-validate")
    assert cli("run", "--publish").code == 0
    baseline = read("metrics.json")["kfold"]["metrics"]["roc_auc"]["folds"]
    set_params(repo, "{hidden: 16, layers: 1, dropout: 0.0}")
    assert cli("run").code in (0, 1)  # the gate's verdict does not matter here; comparison.json is written
    candidate = read("metrics.json")["kfold"]["metrics"]["roc_auc"]["folds"]
    found = read("comparison.json")["kfold"]
    assert found["reason"] is None
    roc = found["metrics"]["roc_auc"]
    differences = np.subtract(candidate, baseline)
    assert roc["differences"] == pytest.approx(differences, abs=1e-6)
    # Nadeau and Bengio's correction: the variance times 1/J + n_test/n_train, J - 1 degrees of freedom
    rows = read("metrics.json")["kfold"]["fold_rows"]
    ratio = np.mean([row["rows"] / row["train_rows"] for row in rows])
    half = stats.t.ppf(0.975, 2) * np.sqrt((1 / 3 + ratio) * np.var(differences, ddof=1))
    assert (roc["ci_low"], roc["ci_high"]) == pytest.approx((differences.mean() - half, differences.mean() + half),
                                                            rel=1e-6)
    assert "Fold-wise differences (candidate − baseline) of the 3-fold cross-validations" in (
        OUT / "report.md").read_text()
    # another seed makes other folds: nothing to pair, and the report says why
    config.write_text(config.read_text().replace("seed: 0", "seed: 1"))
    assert cli("run").code in (0, 1)
    assert read("comparison.json")["kfold"]["reason"] == "the folds differ from the baseline's (seed)"


def test_a_required_baseline_that_is_missing_fails_the_gate(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    config = repo / "modelci.yaml"
    config.write_text(config.read_text() + "compare: {require_baseline: true}\n")
    result = cli("run")
    assert result.code == 1
    assert "does not exist yet (the first publish creates it); compare.require_baseline is true" in result.err
    comparison = read("comparison.json")
    assert (comparison["baseline_status"], comparison["passed"]) == ("no-baseline", False)
    assert "❌ **Failed**: no baseline" in (OUT / "report.md").read_text()


def test_publish_outside_git_needs_a_revision(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / ".git").rename(repo / "git-moved")
    result = cli("run", "--publish")
    assert result.code == 2
    assert "pass --revision SHA" in result.err
    assert cli("run", "--publish", "--revision", "0" * 40).code == 0
    assert "sha-" + "0" * 40 in OciLayout.open(REGISTRY, create=False).tags()


def test_exported_model_takes_raw_rows_and_matches_pytorch(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    """Raw rows in, the same predictions out of PyTorch and ONNX, unseen and empty values included."""
    import torch

    from modelci.config import load_config
    from modelci.evaluate.onnx_model import OnnxModel
    from modelci.frameworks.torch_model import load_checkpoint

    assert cli("train").code == 0
    assert cli("export").code == 0
    parity = read("parity.json")
    assert parity["passed"]
    assert parity["rows"] == 500
    rows = pd.read_parquet(repo / "data" / "eval.parquet").iloc[:6].copy()
    rows.loc[0, "contract"] = "a-contract-never-seen"
    rows.loc[1, "total_charges"] = np.nan
    rows.loc[2, "payment_method"] = None
    model = OnnxModel(OUT / "model.onnx")
    assert {i.name for i in model.inputs} == set(rows.columns) - {"churned"}
    scorer, spec, _, _ = load_checkpoint(OUT / "model.pt", load_config("modelci.yaml"))
    with torch.no_grad():
        expected = scorer(torch.as_tensor(spec.transform(rows))).numpy()
    np.testing.assert_allclose(model.predict(rows), expected, atol=1e-5)
    samples = read("samples.json")
    assert len(samples["inputs"]) == len(samples["outputs"]) == 5
    np.testing.assert_allclose(model.predict(pd.DataFrame(samples["inputs"])), samples["outputs"], atol=1e-6)


WHERE = ("--out", "ci-out", "--registry", "oci:models")


def _dirty_tree(repo: Path) -> None:
    """A changed tracked file and a new one; beside them what does not count: ignored files, bytecode,
    the data, modelci's own output and registry folders."""
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore logs")
    set_params(repo, "{hidden: 32, layers: 2, dropout: 0.1}")
    (repo / "features_extra.py").write_text("SCALE = 2\n")
    (repo / "notes.log").write_text("ignored\n")
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "model.cpython-313.pyc").write_bytes(b"\0")
    (repo / "ci-out").mkdir()
    (repo / "ci-out" / "old.json").write_text("{}")
    OciLayout.open(repo / "models", create=True)


def test_publish_refuses_a_tree_that_differs_from_the_commit(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _dirty_tree(repo)
    result = cli("run", "--publish", *WHERE)
    assert result.code == 2, result.err
    assert f"commit {git(repo, 'rev-parse', 'HEAD')[:12]}" in result.err
    assert "2 files differ from it: modelci.yaml (modified), features_extra.py (untracked)" in result.err
    for ignored in ("notes.log", "__pycache__", "ci-out", "models", "data/"):
        assert ignored not in result.err
    assert "--allow-dirty" in result.err
    assert not (repo / "ci-out" / "data-report.json").exists()  # refused before any stage ran
    assert OciLayout.open(repo / "models", create=False).tags() == {}


def test_publish_refuses_a_revision_that_is_not_the_checkout_and_a_git_that_cannot_say(  # type: ignore[no-untyped-def]
        cli, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "notes.md").write_text("a second commit\n")
    git(repo, "add", "notes.md")
    git(repo, "commit", "-qm", "second")
    other = cli("run", "--publish", "--revision", first, *WHERE)
    assert other.code == 2, other.err
    head = git(repo, "rev-parse", "HEAD")
    assert f"commit {first[:12]}, but the checkout is another commit: HEAD is {head[:12]} (another commit)" in other.err
    (repo / ".git" / "index").write_bytes(b"not an index")  # NOTE: `git status` now fails
    unknown = cli("run", "--publish", *WHERE)
    assert unknown.code == 2, unknown.err
    assert "`git status` failed in" in unknown.err
    assert OciLayout.open(repo / "models", create=True).tags() == {}


@pytest.mark.slow
def test_publish_with_allow_dirty_records_the_dirty_tree(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    _dirty_tree(repo)
    result = cli("run", "--publish", "--allow-dirty", *WHERE)
    assert result.code == 0, result.err
    assert "publishing from a tree that differs from commit" in result.err
    found = annotations_of(parse_reference("oci:models:main", base=repo))
    assert found["io.modelci.source.dirty"] == "true"
    assert json.loads(found["io.modelci.source.dirty.files"]) == ["modelci.yaml", "features_extra.py"]
