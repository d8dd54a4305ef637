"""The other seeds' models belong to the model beside them: training a new model removes them, and a comparison
never scores the seeds of an earlier model; a model.onnx cannot be trained with seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelci.evaluate.seeds import SEEDS_DIR
from test_train import configure

OUT = Path(".modelci/out")


@pytest.mark.slow  # NOTE: three trainings of the example's network
def test_a_new_model_is_never_compared_with_an_earlier_models_seeds(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, compare={"seeds": 2}, gate=[])
    assert cli("run").code == 0
    assert (OUT / SEEDS_DIR / "seed-1" / "model.onnx").is_file()
    configure(repo, model={"factory": "model.py:build", "params": {"hidden": 8, "layers": 1}})
    assert cli("train").code == 0
    assert not (OUT / SEEDS_DIR).exists()  # the earlier model's seeds went with it
    assert cli("export").code == 0
    result = cli("compare")  # evaluate skipped: no seeds of this model to count
    assert result.code == 2
    assert "compare.seeds is 2, but .modelci/out holds no other seeds trained beside this model" in result.err
    assert "run `modelci evaluate` after `modelci export`" in result.err


def test_a_model_onnx_with_several_seeds_is_exit_2_naming_the_key(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "own.onnx").write_bytes(b"")
    configure(repo, model={"onnx": "own.onnx"}, compare={"seeds": 3})
    result = cli("train")
    assert result.code == 2
    assert "compare.seeds: training with several seeds needs a model modelci trains" in result.err


def test_a_training_log_of_another_version_is_named_in_the_report(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    OUT.mkdir(parents=True)
    (OUT / "train-log.json").write_text(json.dumps({"version": 2, "epochs": [{"eval_loss": 0.5}]}))
    assert cli("report").code == 0
    assert "train-log.json was written by another version of modelci" in (OUT / "report.md").read_text()


def _seeds_trained(cli, processes: int) -> tuple[dict, dict[str, bytes]]:  # type: ignore[no-untyped-def, type-arg]
    configure(Path("."), compare={"seeds": 3, "seed_processes": processes}, gate=[])
    assert cli("evaluate").code == 0
    files = {str(path.relative_to(OUT)): path.read_bytes() for path in sorted((OUT / SEEDS_DIR).rglob("*"))
             if path.is_file() and path.suffix != ".log" and path.name != "train-log.json"}  # NOTE: with timings
    return json.loads((OUT / "metrics.json").read_text())["seeds"], files


@pytest.mark.slow  # NOTE: five trainings of the example's network
def test_seeds_trained_in_processes_are_those_trained_in_turn(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__epochs=2)
    assert cli("train").code == 0
    assert cli("export").code == 0
    in_turn, files_in_turn = _seeds_trained(cli, 1)
    at_once, files_at_once = _seeds_trained(cli, 2)
    assert (OUT / SEEDS_DIR / "seed-2.log").is_file()  # trained by a process of its own
    assert files_at_once == files_in_turn
    assert any(name.endswith("model.onnx") for name in files_at_once)
    assert at_once["seeds"] == in_turn["seeds"] == [0, 1, 2]
    for name, spread in in_turn["metrics"].items():
        assert at_once["metrics"][name]["values"] == pytest.approx(spread["values"], abs=1e-6, nan_ok=True)


@pytest.mark.slow  # NOTE: three trainings of the example's network
def test_a_seed_failing_in_its_process_is_its_exit_code_naming_the_seed(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__epochs=1)
    assert cli("train").code == 0
    assert cli("export").code == 0
    # NOTE: the factory gets no seed, but torch is seeded before it is called: seed 1 alone fails, at once
    model = repo / "model.py"
    model.write_text(model.read_text().replace(
        "    blocks: list[nn.Module] = []\n",
        "    import torch\n\n    if torch.initial_seed() == 1:\n        raise ValueError('no seed 1')\n"
        "    blocks: list[nn.Module] = []\n"))
    configure(repo, compare={"seeds": 3, "seed_processes": 2})
    result = cli("evaluate")
    assert result.code == 2, result.err
    assert "error: seed 1 (2 of 3, compare.seeds): model.factory: model.py:build raised" in result.err
    assert "ValueError: no seed 1" in result.err
    assert "hint: check model.params in modelci.yaml" in result.err  # the child's hint, passed on
    assert "(its log: .modelci/out/seeds/seed-1.log)" in result.err
    assert not (OUT / SEEDS_DIR / "job.pickle").exists()


@pytest.mark.parametrize("value", [0, -1, "x", 1.5, True])
def test_seed_processes_other_than_auto_or_a_positive_integer_is_exit_2_naming_the_key(  # type: ignore[no-untyped-def]
        cli, repo: Path, value: object) -> None:
    configure(repo, compare={"seeds": 2, "seed_processes": value})
    result = cli("train")
    assert result.code == 2
    assert f"compare.seed_processes: expected auto or an integer greater than 0, got {value!r}" in result.err
