"""The command line: help without heavy imports, bad input answered clearly, Actions I/O."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import Result


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from modelci.cli import main; main(['--help']); main(['train', '--help']); "
            "main(['run', '--help']); heavy = {'torch', 'onnxruntime', 'pandas', 'pyarrow', 'sklearn'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--version")
    assert result.code == 0
    assert "modelci, version" in result.out


def assert_clear_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err


def test_missing_config(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert_clear_error(cli("run"), "modelci.yaml is not valid", "does not exist", "--config PATH")


def test_malformed_config(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "modelci.yaml").write_text("task: binary\ntrain: {epochs: many}\n")
    assert_clear_error(cli("train"), "train.epochs: expected an integer, got 'many'", "data: missing")


def test_missing_data(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "data" / "train.parquet").unlink()
    assert_clear_error(cli("run"), "train.parquet: no such file", "relative paths start at the config file")
    assert not (repo / ".modelci" / "out" / "model.onnx").exists()


def test_truncated_parquet(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    data = (repo / "data" / "train.parquet").read_bytes()
    (repo / "data" / "train.parquet").write_bytes(data[: len(data) // 2])
    assert_clear_error(cli("data", "check"), "train.parquet: cannot be read as PARQUET")


@pytest.mark.parametrize(
    ("model_py", "fragments"),
    [
        pytest.param(None, ("model.factory: model.py does not exist",), id="missing-file"),
        pytest.param("import not_a_module\n", ("importing model.py failed at model.py:1", "ModuleNotFoundError"),
                     id="import-error"),
        pytest.param("def other():\n    pass\n", ("model.py has no function 'build'",), id="no-function"),
        pytest.param("def build(input_dim, output_dim, **kw):\n    raise ValueError('no luck')\n",
                     ("raised at model.py:2: ValueError: no luck",), id="factory-raises"),
        pytest.param("from torch import nn\ndef build(input_dim, output_dim, **kw):\n"
                     "    return nn.Linear(input_dim, 3)\n",
                     ("returns shape (2, 3) for 2 rows; this task needs (2, 1)",), id="wrong-output-shape"),
        pytest.param("def build(input_dim, output_dim, **kw):\n    return 42\n",
                     ("returned int, which no framework adapter takes",),
                     id="not-a-module"),
    ],
)
def test_bad_model_factory(cli, repo: Path, model_py: str | None, fragments: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    if model_py is None:
        (repo / "model.py").unlink()
    else:
        (repo / "model.py").write_text(model_py)
    assert_clear_error(cli("train"), *fragments)
    assert not (repo / ".modelci" / "out" / "model.pt").exists()


def test_eval_labels_the_training_data_never_had(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    frame = pd.read_parquet(repo / "data" / "eval.parquet")
    frame.loc[:2, "churned"] = 7
    frame.to_parquet(repo / "data" / "eval.parquet", index=False)
    assert_clear_error(cli("train"), "label column 'churned' holds values the training data never had: ['7']",
                       "the classes learnt from training are [0, 1]")


def test_registry_folder_that_is_not_a_layout(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "not-a-registry").mkdir()
    (repo / "not-a-registry" / "photo.jpg").write_bytes(b"\xff\xd8")
    out = repo / "artifact"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"x")
    assert_clear_error(cli("push", str(out), "--to", "oci:not-a-registry:v1"), "is not an OCI image layout")
    assert sorted(p.name for p in (repo / "not-a-registry").iterdir()) == ["photo.jpg"]


def test_invalid_reference_and_remote_registry(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    assert_clear_error(cli("pull", "not a ref", "-o", "x"), "is not a registry reference")
    unreachable = cli("pull", "127.0.0.1:9/acme/churn:main", "-o", "x")  # NOTE: port 9 (discard) is never served
    assert unreachable.code == 3
    assert "127.0.0.1:9: cannot connect" in unreachable.err


def test_data_check_failure_is_exit_1_with_every_violation(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(repo / "data" / "train.parquet")
    frame.loc[3, "tenure_months"] = -5
    frame.loc[[10, 11], "contract"] = "lifetime"
    frame.loc[20, "monthly_charges"] = float("inf")
    frame.to_parquet(repo / "data" / "train.parquet", index=False)
    result = cli("data", "check")
    assert result.code == 1
    report = json.loads((repo / ".modelci" / "out" / "data-report.json").read_text())
    found = {(v["column"], v["rule"]): v for v in report["datasets"][0]["violations"]}
    assert set(found) == {("tenure_months", "min"), ("contract", "allowed"), ("monthly_charges", "finite")}
    assert found["contract", "allowed"]["rows"] == 2
    assert found["contract", "allowed"]["sample_rows"] == [10, 11]
    assert found["tenure_months", "min"]["sample_values"] == [-5]
    assert found["monthly_charges", "finite"]["sample_values"] == ["inf"]
    assert "contract: values outside the allowed set" in result.err


def test_data_check_in_actions_annotates_the_file(cli, repo: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.read_parquet(repo / "data" / "eval.parquet").drop(columns=["senior"])
    frame.to_parquet(repo / "data" / "eval.parquet", index=False)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (repo / "modelci.yaml").write_text((repo / "modelci.yaml").read_text()
                                   + "registry: oci:.modelci/registry\nregistry_local_in_ci: true\n")
    result = cli("data", "check")
    assert result.code == 1
    assert "::error file=data/eval.parquet::senior: the column is missing from eval.parquet (500 rows)" in result.err
    assert "::group::Data checks" in result.err


def test_infer_schema_writes_an_editable_schema(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    # Inferred from the whole folder (train and eval), so its observed bounds hold for both files.
    result = cli("data", "infer-schema", "data", "-o", "inferred.yaml")
    assert result.code == 0
    text = (repo / "inferred.yaml").read_text()
    assert text.startswith("# Written by `modelci data infer-schema`")
    assert "contract:" in text
    assert "month-to-month" in text
    (repo / "modelci.yaml").write_text((repo / "modelci.yaml").read_text().replace("schema.yaml", "inferred.yaml"))
    assert cli("data", "check").code == 0


def test_environment_variable_overrides_config(cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MODELCI_TRAIN_EPOCHS", "2")
    assert cli("train").code == 0
    log = json.loads((repo / ".modelci" / "out" / "train-log.json").read_text())
    assert len(log["epochs"]) == 2
    assert cli("train", "--epochs", "1").code == 0
    log = json.loads((repo / ".modelci" / "out" / "train-log.json").read_text())
    assert len(log["epochs"]) == 1


def _use_schema(repo: Path, name: str) -> None:
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("schema: schema.yaml", f"schema: {name}"))


def test_schema_inferred_from_the_training_file_holds_for_the_evaluation_file(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    result = cli("data", "infer-schema", "data/train.parquet", "-o", "inferred.yaml")
    assert result.code == 0, result.err
    text = (repo / "inferred.yaml").read_text()
    assert "widened by 10% of that range on each side" in text
    assert "from data/train.parquet" in text
    columns = yaml.safe_load(text)["columns"]
    train = pd.read_parquet(repo / "data" / "train.parquet")
    charges, tenure = columns["monthly_charges"], columns["tenure_months"]
    assert 0 <= charges["min"] < train["monthly_charges"].min()  # wider, but not below 0: no value was
    assert charges["max"] > train["monthly_charges"].max()
    assert tenure["min"] == 0
    assert isinstance(tenure["max"], int)
    assert tenure["max"] > train["tenure_months"].max()
    assert columns["churned"] == {"type": "int", "allowed": [0, 1]}
    _use_schema(repo, "inferred.yaml")
    # the evaluation file's largest monthly charge is above the training file's: within the margin
    assert pd.read_parquet(repo / "data" / "eval.parquet")["monthly_charges"].max() > train["monthly_charges"].max()
    checked = cli("data", "check")
    assert checked.code == 0, checked.err


def test_schema_inferred_from_several_files_holds_for_each(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    evaluation = pd.read_parquet(repo / "data" / "eval.parquet")
    evaluation.loc[:9, "monthly_charges"] *= 10  # far beyond the training file's range and its margin
    evaluation.loc[10:19, "contract"] = "three-year"
    evaluation["support_tickets"] = evaluation["support_tickets"] + 0.5  # int in train, float here
    evaluation.to_csv(repo / "data" / "eval.csv", index=False)
    (repo / "data" / "eval.parquet").unlink()
    config = repo / "modelci.yaml"
    config.write_text(config.read_text().replace("eval: data/eval.parquet", "eval: data/eval.csv"))
    _use_schema(repo, "inferred.yaml")

    assert cli("data", "infer-schema", "data/train.parquet", "-o", "inferred.yaml").code == 0
    assert cli("data", "check").code == 1  # the training file alone does not describe the evaluation file
    result = cli("data", "infer-schema", "data/train.parquet", "data/eval.csv", "-o", "inferred.yaml")
    assert result.code == 0, result.err
    text = (repo / "inferred.yaml").read_text()
    assert "from data/train.parquet, data/eval.csv" in text
    columns = yaml.safe_load(text)["columns"]
    assert "three-year" in columns["contract"]["allowed"]
    assert columns["support_tickets"]["type"] == "float"
    assert columns["monthly_charges"]["max"] > evaluation["monthly_charges"].max()
    checked = cli("data", "check")
    assert checked.code == 0, checked.err


def test_infer_schema_needs_data(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("data", "infer-schema", "-o", "inferred.yaml")
    assert result.code == 2
    assert "Missing argument 'DATA...'" in result.err
