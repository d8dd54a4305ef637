"""The predictions that changed between the baseline and the candidate (compare/flips.py), and the report's
table of them: counted against numpy by hand, each model at its own threshold, a text model's rows shown
with their text cut short and in a code span."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper

from modelci.compare.flips import FLIPS_FILE, changed_predictions
from modelci.evaluate.onnx_model import OnnxModel
from modelci.report.markdown import _flips
from modelci.report.units import TEXTS

rng = np.random.default_rng(5)


def identity_model(path: Path, task: str, classes: list[str], text: str | None = None) -> OnnxModel:
    """An ONNX model with modelci's metadata that answers its input: the scores are the test's to choose."""
    width = len(classes)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probabilities"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = {"modelci.task": task, "modelci.classes": json.dumps(classes), "modelci.label": "label",
            **({"modelci.text": json.dumps({"input": text})} if text else {})}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return OnnxModel(path)


def test_changed_classes_are_counted_fixed_broken_or_other_and_all_written(tmp_path: Path) -> None:
    classes = ["cat", "dog", "eel"]
    y = rng.integers(0, 3, 500)
    mine, theirs = rng.dirichlet(np.ones(3), 500), rng.dirichlet(np.ones(3), 500)
    texts = [f"text number {i} " + "word " * (i % 40) + "| `tick`" for i in range(500)]
    model = identity_model(tmp_path / "m.onnx", "multiclass", classes, text="review")
    site = np.where(np.arange(500) % 3 == 0, "north", "south")
    found = changed_predictions(model, y.astype(float), mine, theirs, (0.5, 0.5),
                                pd.DataFrame({"review": texts, "site": site}), tmp_path, ("site",))
    assert found is not None
    a, b = mine.argmax(axis=1), theirs.argmax(axis=1)
    changed = a != b
    assert found.rows == int(changed.sum())
    assert found.fixed == int(np.sum(changed & (a == y)))
    assert found.broken == int(np.sum(changed & (b == y)))
    assert found.other == int(np.sum(changed & (a != y) & (b != y)))
    written = list(csv.DictReader((tmp_path / FLIPS_FILE).open(encoding="utf-8")))
    assert [int(r["row"]) for r in written] == np.flatnonzero(changed).tolist()
    first = int(np.flatnonzero(changed)[0])
    assert written[0] == {"row": str(first), "label": classes[y[first]], "baseline": classes[b[first]],
                          "candidate": classes[a[first]], "outcome": found.examples[0]["outcome"],
                          "text": texts[first]}  # the whole text in the file
    assert len(found.examples) == 5
    # per slice of evaluate.slices
    north = site == "north"
    by_site = {row["value"]: row for row in found.slices["site"]}
    assert by_site["north"] == {"value": "north", "rows": int(north.sum()), "changed": int(np.sum(changed & north)),
                                "fixed": int(np.sum(changed & north & (a == y))),
                                "broken": int(np.sum(changed & north & (b == y)))}
    assert by_site["north"]["changed"] + by_site["south"]["changed"] == found.rows
    assert all(len(row["text"]) <= 80 for row in found.examples)
    shown = "\n".join(_flips(json.loads(json.dumps(found.__dict__)), TEXTS))
    assert f"Predictions that changed from the baseline's: {found.rows} texts, {found.fixed} fixed" in shown
    assert "| row | label | baseline | candidate | outcome | text |" in shown
    assert "`tick`" not in shown  # a backtick of the data cannot end the code span
    assert "\\|" in shown  # nor a | split the table's cell
    assert "| site | texts | changed | fixed | broken |" in shown
    assert f"| north | {int(north.sum()):,} | {by_site['north']['changed']:,} |" in shown


def test_a_binary_model_flips_at_each_models_own_threshold(tmp_path: Path) -> None:
    y = np.array([1, 1, 0, 0])
    positive = np.array([0.4, 0.6, 0.4, 0.6])
    scores = np.stack([1 - positive, positive], axis=1)
    model = identity_model(tmp_path / "b.onnx", "binary", ["no", "yes"])
    # the same scores: at 0.3 the candidate calls every row yes, at 0.5 the baseline only the 0.6 ones
    found = changed_predictions(model, y.astype(float), scores, scores, (0.3, 0.5), pd.DataFrame(index=range(4)),
                                tmp_path)
    assert found is not None
    assert (found.rows, found.fixed, found.broken, found.other) == (2, 1, 1, 0)
    assert [row["row"] for row in found.examples] == [0, 2]
    assert "text" not in found.examples[0]
    assert changed_predictions(identity_model(tmp_path / "r.onnx", "regression", []), y.astype(float), positive,
                               positive, (0.5, 0.5), pd.DataFrame(index=range(4)), tmp_path) is None
