"""The predictions that changed between the baseline and the candidate, on the same evaluation rows.

A verdict says whether the candidate is better; a reviewer then asks which answers changed. For a
classifier, each row whose predicted class differs (each model at its own threshold) is counted as
fixed (the candidate is right, the baseline was not), broken (the other way round) or changed between
two wrong classes; the first few go into the report, a text model's with its text cut short, and
every one into `changed-predictions.csv` under `--out`; they are counted per slice of `evaluate.slices`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci import atomic
from modelci.evaluate.metrics import decided
from modelci.evaluate.onnx_model import META_TEXT, described

if TYPE_CHECKING:
    import pandas as pd

    from modelci.evaluate.onnx_model import OnnxModel

FLIPS_FILE = "changed-predictions.csv"
SHOWN = 5  # rows the report shows
TEXT_SHOWN = 80  # characters of a text the report shows


@dataclass
class Flips:
    """How many predictions changed, and how, with the first few."""

    rows: int  # rows whose predicted class changed
    fixed: int  # the candidate right, the baseline wrong
    broken: int  # the baseline right, the candidate wrong
    other: int  # from one wrong class to another
    examples: list[dict[str, Any]] = field(default_factory=list)  # row, label, baseline, candidate, outcome (text)
    # per evaluate.slices column, per value (or quartile): rows, changed, fixed, broken
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def changed_predictions(candidate: OnnxModel, y: np.ndarray, scores: np.ndarray, baseline_scores: np.ndarray,
                        thresholds: tuple[float, float], frame: pd.DataFrame, out: Path,
                        slices: tuple[str, ...] = ()) -> Flips | None:
    """The classifier's changed predictions (None for a regression), written whole to `out`/FLIPS_FILE, and counted
    per value of each of `slices` (evaluate.slices)."""
    if candidate.task == "regression":
        return None
    mine, theirs = decided(scores, thresholds[0]), decided(baseline_scores, thresholds[1])
    truth = y.astype(np.int64)
    changed = np.flatnonzero(mine != theirs)
    outcome = np.where(mine[changed] == truth[changed], "fixed",
                       np.where(theirs[changed] == truth[changed], "broken", "other"))
    text = _text_column(candidate)
    classes = [str(c) for c in candidate.classes]
    rows = [{"row": int(row), "label": classes[truth[row]], "baseline": classes[theirs[row]],
             "candidate": classes[mine[row]], "outcome": str(kind),
             **({"text": str(frame[text].iloc[row])} if text else {})}
            for row, kind in zip(changed.tolist(), outcome.tolist(), strict=True)]
    _write(out / FLIPS_FILE, rows, text is not None)
    shown = [{**row, "text": _short(row["text"])} if text else row for row in rows[:SHOWN]]
    kinds = np.full(len(frame), "", dtype=object)
    kinds[changed] = outcome
    return Flips(rows=len(rows), fixed=int(np.sum(outcome == "fixed")), broken=int(np.sum(outcome == "broken")),
                 other=int(np.sum(outcome == "other")), examples=shown,
                 slices={column: _by_slice(frame[column], kinds) for column in slices if column in frame.columns})


def _by_slice(column: pd.Series, kinds: np.ndarray) -> list[dict[str, Any]]:
    """Each value's (or quartile's) rows, and how many of them changed, were fixed and were broken."""
    from modelci.evaluate.evaluator import _slice_groups

    return [{"value": value, "rows": int(mask.sum()), "changed": int(np.sum(kinds[mask] != "")),
             "fixed": int(np.sum(kinds[mask] == "fixed")), "broken": int(np.sum(kinds[mask] == "broken"))}
            for value, mask in _slice_groups(column)]


def _text_column(model: OnnxModel) -> str | None:
    """A text model's text column (its exported input), whose texts identify the rows in the report."""
    found = described(model.session.get_modelmeta().custom_metadata_map, META_TEXT).get("input")
    return str(found) if found else None


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_SHOWN else flat[:TEXT_SHOWN - 1] + "…"


def _write(path: Path, rows: list[dict[str, Any]], text: bool) -> None:
    found = io.StringIO(newline="")
    writer = csv.DictWriter(found, fieldnames=["row", "label", "baseline", "candidate", "outcome",
                                               *(["text"] if text else [])])
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, found.getvalue())
