"""Training noise (compare.seeds): the candidate is trained once per seed, the published model is the first
seed's, every seed's metrics go into metrics.json and the artifact, and the verdict's intervals count the
seeds' spread: a candidate that differs from the baseline by its seed alone passes, a truly worse one fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import git
from modelci.compare.noise import deviations, recipe_differences, seed_noise
from modelci.registry.artifact import read_file
from modelci.registry.reference import parse_reference
from test_train import configure

OUT = Path(".modelci/out")
GATE = [{"metric": "roc_auc", "max_drop": 0.01}, {"metric": "f1", "max_drop": 0.0}]


def _comparison() -> dict:  # type: ignore[type-arg]
    return json.loads((OUT / "comparison.json").read_text())


def _row(name: str) -> dict:  # type: ignore[type-arg]
    return next(m for m in _comparison()["metrics"] if m["name"] == name)


@pytest.mark.slow  # NOTE: nine trainings of the example's network: three runs of three seeds
def test_a_seed_alone_passes_and_a_worse_recipe_fails(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, compare={"seeds": 3}, gate=GATE, train__epochs=10)
    git(repo, "commit", "-qam", "three seeds")
    published = cli("run", "--publish")
    assert published.code == 0, published.err
    metrics = json.loads((OUT / "metrics.json").read_text())
    assert metrics["seeds"]["seeds"] == [0, 1, 2]
    roc = metrics["seeds"]["metrics"]["roc_auc"]
    assert roc["values"][0] == metrics["metrics"]["roc_auc"]  # the published model is the first seed's
    assert len(set(roc["values"])) == 3  # the seeds made three different models
    stored = json.loads(read_file(parse_reference("oci:.modelci/registry:main", base=repo), "metrics.json"))
    assert stored["seeds"] == metrics["seeds"]  # the baseline's noise is on record in its artifact

    configure(repo, train__seed=10)
    git(repo, "commit", "-qam", "another seed, the same recipe")
    same = cli("run")
    assert same.code == 0, same.err
    seeds = _comparison()["seeds"]
    assert (seeds["seeds"], seeds["baseline_seeds"], seeds["note"]) == (3, 3, None)
    assert _row("roc_auc")["candidate"] == pytest.approx(np.mean(seeds["candidate"]["roc_auc"]))
    assert "Training noise: the candidate was trained with 3 seeds" in (OUT / "report.md").read_text()

    # the same two models judged on the rows alone: the seeds' interval is the wider, by the noise it counts
    with_noise = _row("f1")
    configure(repo, compare={"seeds": 1})
    assert cli("compare").code in (0, 1)
    rows_only = _row("f1")
    assert with_noise["ci_high"] - with_noise["ci_low"] > rows_only["ci_high"] - rows_only["ci_low"]

    weak = ["payment_method", "internet_service", "senior", "num_products"]
    configure(repo, compare={"seeds": 3}, data__features=weak)
    git(repo, "commit", "-qam", "a worse recipe: without the contract, the tenure, the charges and the tickets")
    worse = cli("run")
    assert worse.code == 1, worse.err
    assert (OUT / "comparison.json").is_file(), worse.err[-1500:]
    assert _row("roc_auc")["verdict"] == "regressed"
    assert not _row("roc_auc")["passed"]


def test_a_baseline_without_seeds_is_taken_as_noisy_as_the_candidate_and_said() -> None:
    noise = seed_noise(3, {"f1": [0.70, 0.72, 0.74]}, None)
    assert noise.baseline_seeds == 0
    assert "the baseline recorded no seeds" in (noise.note or "")
    assert np.allclose(noise.baseline_deviations["f1"], deviations([0.70, 0.72, 0.74]))
    recorded = seed_noise(3, {"f1": [0.70, 0.72, 0.74]}, {"seeds": [0, 1], "metrics": {"f1": {"values": [0.5, 0.6]}}})
    assert (recorded.baseline_seeds, recorded.note) == (2, None)
    assert np.allclose(recorded.baseline_deviations["f1"], [-0.05 * np.sqrt(2), 0.05 * np.sqrt(2)])


def test_one_draw_of_the_deviations_has_the_seeds_sample_variance() -> None:
    values = [0.70, 0.71, 0.75, 0.78]
    assert np.mean(deviations(values) ** 2) == pytest.approx(np.var(values, ddof=1))
    assert deviations([0.7]).tolist() == [0.0]  # one seed: no spread to count


def test_the_recipe_difference_spreads_by_both_recipes_noise() -> None:
    rng = np.random.default_rng(0)
    resamples = 20_000
    # the rows add no noise here: each seed's metric is the same on every resample
    per_seed = np.repeat(np.array([[0.80], [0.82], [0.84]]), resamples, axis=1)
    baseline = np.full(resamples, 0.82)
    spread = recipe_differences(per_seed, baseline, deviations([0.80, 0.82, 0.84]), rng)
    assert spread.mean() == pytest.approx(0.0, abs=1e-3)
    # the mean of 3 seeds drawn with replacement (variance s²·(2/3)/3) and one baseline draw (variance s²)
    s2 = np.var([0.80, 0.82, 0.84], ddof=1)
    assert spread.var() == pytest.approx(s2 * (2 / 3) / 3 + s2, rel=0.05)
