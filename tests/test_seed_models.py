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
