"""`modelci data check` on `type: text` columns: every text rule, the profile without the texts, drift, infer-schema.

Small tables of generated reviews are written with pandas in tmp_path (Parquet and CSV), each bad text
at a known row; the data check runs in-process (`cli`), as a user runs it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import Result
from modelci.config import load_config
from modelci.data.check import check_data
from modelci.data.schema import load_schema
from modelci.data.text.profile import TopCounter
from modelci.errors import ConfigError

OUT = Path(".modelci") / "out"
WORDS = ("the", "product", "arrived", "late", "but", "works", "well", "screen", "battery", "lasts", "all", "day",
         "price", "was", "fair", "would", "buy", "again", "support", "helped")
OTHER = ("der", "artikel", "kam", "spät", "aber", "funktioniert", "gut", "bildschirm", "akku", "hält", "ganzen",
         "tag", "preis", "war", "fair", "würde", "wieder", "kaufen", "hilfe", "schnell")
SCHEMA = """\
columns:
  review: {type: text, min_length: 5, max_length: 300, min_tokens: 2, max_tokens: 40}
  label: {type: string}
"""


def reviews(rows: int, seed: int, words: tuple[str, ...] = WORDS, length: tuple[int, int] = (6, 20)) -> list[str]:
    """Distinct texts of `length` words drawn from `words`."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(*length)))) for _ in range(rows)]


def table(texts: list[str | None], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"review": texts, "label": rng.choice(["positive", "negative"], size=len(texts))})


def repository(root: Path, train: pd.DataFrame, evaluation: pd.DataFrame | None, schema: str = SCHEMA,
               suffix: str = "parquet") -> Path:
    """A model repository whose data are `train` and `evaluation`, as Parquet or CSV files."""
    (root / "data").mkdir(parents=True)
    lines = ["task: binary", "data:", f"  train: data/train.{suffix}", "  label: label", "  schema: schema.yaml"]
    for name, frame in (("train", train), ("eval", evaluation)):
        if frame is None:
            continue
        path = root / "data" / f"{name}.{suffix}"
        frame.to_parquet(path, index=False) if suffix == "parquet" else frame.to_csv(path, index=False)
    lines += [f"  eval: data/eval.{suffix}"] if evaluation is not None else []
    (root / "modelci.yaml").write_text("\n".join(lines) + "\nmodel: {factory: 'model.py:build'}\n")
    (root / "schema.yaml").write_text(schema)
    return root


@pytest.fixture
def at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a repository (see `repository`) and make it the working directory."""
    def make(*args: object, **kwargs: object) -> Path:
        root = repository(tmp_path / "texts", *args, **kwargs)  # type: ignore[arg-type]
        monkeypatch.chdir(root)
        return root
    return make


def report() -> dict:
    return json.loads((OUT / "data-report.json").read_text())


def findings(dataset: int = 0) -> dict[tuple[str | None, str], dict]:
    return {(v["column"], v["rule"]): v for v in report()["datasets"][dataset]["violations"]}


def fullwidth(word: str) -> str:
    """The word in fullwidth letters, which NFKC turns back into ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in word)


def test_every_text_rule_is_named_with_its_rows_and_cut_samples(cli, at) -> None:  # type: ignore[no-untyped-def]
    texts: list[str | None] = reviews(40, 1)
    long = " ".join(["battery"] * 60)
    first, rest = texts[0].split(" ", 1)
    texts += ["", "   \n ", None, "ok", long,
              "caf\ufffd was fine today", "line one\x01 hidden control", "smart \x93quotes\x94 read as latin-1",
              f"  {fullwidth(first)}   {rest.upper()} "]  # row 0's text, in other case, width and spacing
    evaluation: list[str | None] = reviews(10, 2)
    evaluation[3] = texts[5].title() + "  "  # a training text, capitalized
    at(table(texts), table(evaluation, 1))
    result: Result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings()
    expected = {"not_null": [42], "empty": [40, 41], "min_length": [43], "min_tokens": [43], "max_length": [44],
                "max_tokens": [44], "encoding": [45, 46, 47], "duplicates": [48]}
    assert {rule: v["sample_rows"] for (column, rule), v in found.items() if column == "review"} == expected
    assert found["review", "max_length"]["sample_values"] == [long[:77] + "..."]  # cut to 80 characters
    assert found["review", "max_length"]["message"] == "texts of more than 300 characters"
    assert found["review", "encoding"]["sample_values"][0] == "caf\ufffd was fine today"
    assert found["review", "duplicates"]["severity"] == "warning"  # the dataset's `duplicates`, as rows'
    assert (None, "duplicates") not in found  # the rows differ as written
    assert found["review", "empty"]["severity"] == found["review", "encoding"]["severity"] == "error"
    leakage = findings(1)["review", "leakage"]
    assert (leakage["rows"], leakage["sample_rows"], leakage["severity"]) == (1, [3], "error")
    assert "review: texts of fewer than 5 characters (1 rows; e.g. row 43: 'ok')" in result.err


def test_a_clean_text_table_passes_and_its_profile_holds_no_text(cli, at) -> None:  # type: ignore[no-untyped-def]
    train, evaluation = reviews(60, 1), reviews(20, 2)
    at(table(train), table(evaluation, 1), suffix="csv")
    result = cli("data", "check")
    assert result.code == 0, result.err
    assert all(not d["violations"] for d in report()["datasets"]), report()
    assert report()["datasets"][1]["text"] == [
        {"column": "review", "words": sum(len(t.split()) for t in evaluation), "vocabulary": len(WORDS),
         "unknown_word_share": 0.0}]
    saved = (OUT / "data-profile.json").read_text()
    profile = json.loads(saved)
    columns = profile["datasets"]["train"]["columns"]
    assert set(columns) == {"review.characters", "review.tokens", "review.token", "label"}
    assert columns["review.tokens"]["max"] == max(len(t.split()) for t in train)
    assert columns["review.characters"]["count"] == 60
    words = Counter(w for t in train for w in t.split())
    assert dict(map(tuple, columns["review.token"]["frequencies"])) == dict(words)
    assert profile["drift"]["review.token"] == {"method": "psi", "threshold": 0.2}
    assert not any(text in saved for text in train + evaluation)


def test_the_fingerprint_covers_the_texts(cli, at) -> None:  # type: ignore[no-untyped-def]
    texts = reviews(30, 1)
    root = at(table(texts), None)
    assert cli("data", "check").code == 0
    before = report()["datasets"][0]["fingerprint"]
    texts[7] += " again"
    table(texts).to_parquet(root / "data" / "train.parquet", index=False)
    assert cli("data", "check").code == 0
    assert report()["datasets"][0]["fingerprint"] != before


def test_values_that_are_not_text_are_a_type_violation(cli, at) -> None:  # type: ignore[no-untyped-def]
    frame = table(reviews(12, 1))
    frame["review"] = np.arange(12)  # a Parquet int column the schema marks text
    frame.loc[3, "review"] = None
    at(frame, None)
    result = cli("data", "check")
    assert result.code == 1, result.err
    found = findings()
    assert found["review", "type"]["rows"] == 11
    assert found["review", "type"]["sample_rows"] == [0, 1, 2, 4, 5]
    assert found["review", "type"]["message"] == "values that are not text"
    assert found["review", "not_null"]["sample_rows"] == [3]
    assert {rule for column, rule in found if column == "review"} == {"type", "not_null"}


def test_a_csv_that_is_not_utf8_is_exit_2_naming_the_file_and_the_text_column(cli, at) -> None:  # type: ignore[no-untyped-def]
    root = at(table(reviews(10, 1)), None, suffix="csv")
    frame = table(reviews(10, 1))
    frame.loc[4, "review"] = "the año was good"
    frame[["label", "review"]].to_csv(root / "data" / "train.csv", index=False, encoding="latin-1")
    result = cli("data", "check")
    assert result.code == 2, result.err
    assert "data/train.csv: the file is not UTF-8 text (column 'review'" in result.err
    assert "save the file with UTF-8 encoding" in result.err
    assert "Traceback" not in result.err


def test_empty_texts_pass_in_a_nullable_column(cli, at) -> None:  # type: ignore[no-untyped-def]
    texts: list[str | None] = reviews(20, 1)
    texts[2], texts[3], texts[4] = "", " ", None
    at(table(texts), None, schema="columns:\n  review: {type: text, nullable: true, min_tokens: 2}\n"
                                  "  label: {type: string}\n")
    assert cli("data", "check").code == 0
    assert report()["datasets"][0]["violations"] == []


def _baseline(cli: Callable[..., Result], root: Path, texts: list[str]) -> dict:
    """The data profile a `data check` of `texts` writes: what a baseline artifact carries."""
    table(texts).to_parquet(root / "data" / "train.parquet", index=False)
    assert cli("data", "check").code == 0
    return json.loads((OUT / "data-profile.json").read_text())


@pytest.mark.parametrize(("old", "drifted", "stable"), [
    (lambda: reviews(200, 3, length=(30, 60)), {"review.characters", "review.tokens"}, {"review.token", "label"}),
    (lambda: reviews(200, 3, words=OTHER), {"review.token"}, {"review.tokens", "label"}),
], ids=["longer-texts", "other-words"])
def test_drift_against_a_baseline_of_longer_texts_or_other_words(cli, at, old, drifted, stable) -> None:  # type: ignore[no-untyped-def]
    root = at(table(reviews(200, 1)), None, schema=SCHEMA.replace("max_length: 300, ", "").replace(
        "max_tokens: 40", "max_tokens: 100"))
    baseline = _baseline(cli, root, old())
    table(reviews(200, 1)).to_parquet(root / "data" / "train.parquet", index=False)
    checked, _ = check_data(load_config(root / "modelci.yaml"), baseline, "old")
    verdicts = {d.column: d.verdict for d in checked.datasets[0].drift}
    assert {c for c, v in verdicts.items() if v == "drifted"} == drifted, checked.datasets[0].drift
    assert all(verdicts[c] == "stable" for c in stable)


def test_evaluation_texts_in_other_words_warn_with_the_unknown_share(cli, at) -> None:  # type: ignore[no-untyped-def]
    evaluation = reviews(15, 2)[:10] + reviews(5, 3, words=OTHER)
    at(table(reviews(40, 1)), table(evaluation, 1))
    result = cli("data", "check")
    assert result.code == 0, result.err  # a warning
    unknown = findings(1)["review", "unknown_words"]
    assert unknown["severity"] == "warning"
    assert unknown["sample_rows"] == [10, 11, 12, 13, 14]
    words = [w for t in evaluation for w in t.split()]
    share = sum(w not in WORDS for w in words) / len(words)
    assert report()["datasets"][1]["text"][0]["unknown_word_share"] == pytest.approx(share)
    assert share > 0.1
    assert f"{share:.1%} of the words are outside the training data's vocabulary" in unknown["message"]
    assert f"review: {unknown['message']} (5 rows; e.g. row 10" in result.err


def test_infer_schema_types_reviews_as_text_and_keeps_a_short_category(cli, at) -> None:  # type: ignore[no-untyped-def]
    frame = table(reviews(60, 1, length=(8, 20)))
    frame["product"] = np.random.default_rng(0).choice(["phone", "laptop", "tablet"], size=60)
    at(frame, None)
    result = cli("data", "infer-schema", "data/train.parquet", "-o", "inferred.yaml")
    assert result.code == 0, result.err
    columns = yaml.safe_load(Path("inferred.yaml").read_text())["columns"]
    assert columns["review"] == {"type": "text"}
    assert columns["product"] == {"type": "string", "allowed": ["laptop", "phone", "tablet"]}
    assert "free text, typed text (checked as text, left out of a table model's features): review" in result.out \
        + result.err
    assert load_schema(Path("inferred.yaml")).text.name == "review"  # type: ignore[union-attr]


def test_text_keys_are_checked_with_every_problem_listed(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  review: {type: text, min_length: -1, max_tokens: many, pattern: x}\n"
                    "  body: {type: text, min_tokens: 9, max_tokens: 3}\n  title: {type: text, role: text}\n")
    with pytest.raises(ConfigError) as raised:
        load_schema(path)
    problems = str(raised.value)
    assert "columns.review: unknown keys ['pattern'] for a text column; allowed: type, role, nullable, drift, " \
           "min_length, max_length, min_tokens, max_tokens" in problems
    assert "columns.review.min_length: expected a whole number of characters, at least 0, got -1" in problems
    assert "columns.review.max_tokens: expected a whole number of words, at least 0, got 'many'" in problems
    assert "columns.body: min_tokens 9 is above max_tokens 3" in problems
    path.write_text("columns:\n  body: {type: text, min_length: 0, max_length: 500, max_tokens: 80}\n"
                    "  note: {type: string, role: text}\n")
    schema = load_schema(path)
    assert schema.text is not None
    assert schema.text.name == "body"
    assert (schema.text.length.min, schema.text.length.max, schema.text.tokens.max) == (0, 500, 80)
    assert schema.column("note").role == "text"  # type: ignore[union-attr]


def test_the_word_counter_stays_bounded_and_keeps_the_frequent_words() -> None:
    counter = TopCounter(keep=10)
    for batch in range(50):
        counter.add(Counter({"common": 5, "usual": 3, **{f"rare{batch}-{i}": 1 for i in range(30)}}))
    assert len(counter.counts) <= 20
    assert counter.top(2) == [("common", 250), ("usual", 150)]
    assert counter.total == 50 * 38


def test_a_table_model_trains_with_a_text_column_left_out(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    for name, seed in (("train", 1), ("eval", 2)):
        path = repo / "data" / f"{name}.parquet"
        frame = pd.read_parquet(path)
        frame["note"] = reviews(len(frame), seed)
        frame.to_parquet(path, index=False)
    with (repo / "schema.yaml").open("a") as schema:
        schema.write("  note: {type: text, max_tokens: 40}\n")
    assert cli("data", "check").code == 0
    result = cli("train")
    assert result.code == 0, result.err
    log = json.loads((OUT / "train-log.json").read_text())
    assert log["left_out"]["note"].startswith("type: text in the schema")
    assert "note" not in log["input_columns"]
    assert "left out of the features: note (type: text in the schema" in result.out + result.err
