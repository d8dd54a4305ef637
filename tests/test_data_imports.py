"""`modelci data check` imports only what it uses: no pandas (a few tenths of a second of its run), and
none of the model libraries; and the parts that replace pandas give what pandas and pyarrow give.

pyarrow imports pandas the first time it converts an array to numpy or a Python object to Arrow, so
the data check reads Arrow buffers itself (modelci/data/arrow.py) and hashes text without pandas
(modelci/data/texthash.py); the row keys, and so the fingerprints, must stay what pandas' hash made them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelci.cli import main
from modelci.data import texthash
from modelci.data.arrow import flags, nulls, numbers, positions, strings

HEAVY = ("pandas", "scipy", "sklearn", "onnx", "onnxruntime", "skl2onnx", "optuna", "torch")
LOADED = "heavy modules loaded:"
SCRIPT = f"""
import sys
from modelci.cli import main
code = main(sys.argv[1:])
print({LOADED!r}, sorted({{name.partition(".")[0] for name in sys.modules}} & set({HEAVY!r})), flush=True)
raise SystemExit(code)
"""
SCHEMA = """\
version: 1
dataset: {duplicates: error, class_balance: {min: 0.05}}
columns:
  amount: {type: float, nullable: true, min: 0, max: 100}
  count: {type: int, min: 0, max: 9}
  active: {type: bool, nullable: true}
  plan: {type: string, nullable: true, allowed: [basic, plus]}
  code: {type: string, pattern: '^[A-Z]{2}[0-9]+$'}
  label: {type: int, allowed: [0, 1]}
"""


def _rows(n: int, seed: int) -> dict[str, list[object]]:
    rng = np.random.default_rng(seed)
    return {"amount": [None if i % 7 == 0 else float(v) for i, v in enumerate(rng.uniform(0, 100, n))],
            "count": rng.integers(0, 10, n).tolist(),
            "active": [None if i % 5 == 0 else bool(v) for i, v in enumerate(rng.integers(0, 2, n))],
            "plan": [None if i % 11 == 0 else ("basic", "plus")[v] for i, v in enumerate(rng.integers(0, 2, n))],
            "code": [f"AB{v}" for v in rng.integers(0, 10**6, n)],
            "label": rng.integers(0, 2, n).tolist()}


@pytest.fixture
def data_repo(tmp_path: Path) -> Path:
    """Parquet training data and CSV evaluation data (numbers and booleans as text), each breaking some rules."""
    train = _rows(400, 0)
    train["amount"][3], train["plan"][4], train["code"][5] = 1000.0, "gold", "not-a-code"
    table = pa.table(train)
    pq.write_table(pa.concat_tables([table, table.slice(0, 2)]), tmp_path / "train.parquet")
    pd.DataFrame(_rows(200, 1)).assign(count=lambda f: f["count"].astype(str).where(f.index != 9, "nine")).to_csv(
        tmp_path / "eval.csv", index=False)
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "modelci.yaml").write_text("task: binary\ndata: {train: train.parquet, eval: eval.csv, label: label, "
                                           "schema: schema.yaml}\nmodel: {factory: model.py:build}\n")
    return tmp_path


def _data_check(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, "data", "check"], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "GITHUB_ACTIONS": ""})


@pytest.mark.parametrize("baseline", [False, True], ids=["no-baseline", "drift-against-a-baseline"])
def test_data_check_imports_no_pandas_nor_model_libraries(data_repo: Path, baseline: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if baseline:
        monkeypatch.chdir(data_repo)
        assert main(["data", "check", "--out", "first"]) == 1
        # NOTE: push wants a model.onnx; the data check reads only the profile beside it
        (data_repo / "first" / "model.onnx").write_bytes(b"not read")
        assert main(["push", "first", "--to", "oci:.modelci/registry:main"]) == 0
    done = _data_check(data_repo)
    assert done.returncode == 1, done.stdout + done.stderr
    printed = done.stdout + done.stderr
    for found in ("amount: values above the maximum 100 (1 rows; e.g. row 3: 1000.0)",
                  "plan: values outside the allowed set (basic, plus) (1 rows; e.g. row 4: 'gold')",
                  "code: values that do not match the pattern", "count: values that are not int",
                  "rows that repeat an earlier row exactly (2 rows"):
        assert found in printed
    assert ("columns drifted" in printed) is baseline
    assert (data_repo / ".modelci" / "out" / "data-profile.json").exists()
    assert f"{LOADED} []" in done.stdout


def _reference_hashes(words: pa.Array) -> np.ndarray:
    return np.asarray(pd.util.hash_array(words.to_numpy(zero_copy_only=False), categorize=False))


def _texts() -> list[str]:
    rng = np.random.default_rng(4)
    alphabet = [*"abcXYZ019 _-\t", "é", "漢", "😀", "\x00"]
    return ["", *("".join(rng.choice(alphabet, size)) for size in [*range(1, 34), *rng.integers(0, 90, 500)])]


@pytest.mark.parametrize("words", [
    pytest.param(pa.array(_texts()), id="lengths-0-to-90-and-multibyte"),
    pytest.param(pa.array(_texts()).slice(13, 200), id="sliced"),
    pytest.param(pa.array(["a", None, "None", ""]), id="nulls-as-pandas-hashes-them"),
    pytest.param(pa.array(_texts(), pa.large_string()), id="large-string"),
    pytest.param(pa.array([], pa.string()), id="empty"),
    pytest.param(pa.array([f"id-{i:09d}" for i in range(90_000)]), id="over-NUMPY_BYTES-hashed-by-pandas"),
])
def test_text_hashes_are_pandas_hashes(words: pa.Array) -> None:
    assert (texthash.text_hashes(words) == _reference_hashes(words)).all()


def test_text_hashes_by_numpy_match_pandas_above_its_threshold_too(monkeypatch: pytest.MonkeyPatch) -> None:
    words = pa.array([f"customer-{i:07d}-{'x' * (i % 23)}" for i in range(20_000)])
    monkeypatch.setattr(texthash, "NUMPY_BYTES", 1 << 40)
    assert (texthash.text_hashes(words) == _reference_hashes(words)).all()


@pytest.mark.parametrize("array", [
    pytest.param(pa.array([1.5, None, -0.0, np.inf, 7.0] * 7).slice(3, 29), id="float-sliced-with-nulls"),
    pytest.param(pa.array([3, None, 5, 2**40] * 5, pa.int64()).slice(1), id="int64"),
    pytest.param(pa.array([1, 2, None], pa.int8()), id="int8"),
    pytest.param(pa.array([0.5, 1.0], pa.float32()), id="float32-without-nulls"),
    pytest.param(pa.array([], pa.float64()), id="empty"),
])
def test_numbers_and_nulls_read_from_buffers_as_pyarrow_converts(array: pa.Array) -> None:
    expected_nulls = ~array.is_valid().to_numpy(zero_copy_only=False)
    assert (nulls(array) == expected_nulls).all()
    filled = pa.compute.fill_null(array, 0).to_numpy(zero_copy_only=False)
    assert numbers(array).dtype == filled.dtype
    assert np.array_equal(numbers(array), filled)


def test_flags_positions_and_strings_convert_as_pyarrow_does() -> None:
    values = pa.array([True, None, False, True, True, None, False, True, False, True] * 3).slice(5, 22)
    assert (flags(values) == pa.compute.fill_null(values, False).to_numpy(zero_copy_only=False)).all()
    assert pa.array(["a", "b", "c"]).take(positions(np.array([2, 0]))).to_pylist() == ["c", "a"]
    assert strings(["é", "", "x y"]).equals(pa.array(["é", "", "x y"]))
