"""Is the comparison fair? The evaluation rows the baseline was trained on, and whether the data is the same.

The baseline artifact keeps a Bloom filter of its training rows (`data/rowsketch.py`). The evaluation
rows found in it are counted, less the false positives the filter is expected to give, and a share
above `compare.max_overlap` flags the comparison as unfair: the baseline's figures on rows it was
trained on are optimistic, so a candidate can look "regressed" against a baseline that memorised
the answers. The flag is a warning and a line in the report; it fails the gate only under
`compare.require_baseline: true`, which already asks for a baseline the verdict can rest on.
The evaluation data's fingerprint (data-report.json) is compared with that of the baseline's run,
and a difference is named: the baseline's recorded figures came from other rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import github
from modelci.data.cli import DATA_REPORT
from modelci.data.rowsketch import SKETCH_FILE, RowSketch, frame_keys

if TYPE_CHECKING:
    import pandas as pd

    from modelci.compare.comparison import Comparison
    from modelci.config import Config

SATURATED = 0.5  # a filter whose false-positive rate is above this cannot tell an overlap from noise


@dataclass
class Comparability:
    """What makes the candidate's and the baseline's figures comparable, or not (in comparison.json)."""

    evaluation_rows: int
    max_overlap: float
    overlap_checked: bool = False
    matched_rows: int | None = None  # evaluation rows the baseline's filter holds, false positives included
    overlap_rows: int | None = None  # corrected for the expected false positives
    overlap_fraction: float | None = None
    false_positive_rate: float | None = None  # of the baseline's filter
    unfair: bool = False
    evaluation_data: str | None = None  # this run's evaluation data fingerprint (data-report.json)
    baseline_evaluation_data: str | None = None  # the baseline's run's
    same_evaluation_data: bool | None = None  # None: not known (a data-report.json is missing)
    notes: list[str] = field(default_factory=list)  # the plain sentences the report shows


def _read_sketch(baseline_dir: Path) -> tuple[RowSketch | None, str | None]:
    """The baseline's sketch, or why there is none to use."""
    path = baseline_dir / SKETCH_FILE
    if not path.is_file():
        return None, "overlap not checked: the baseline records no training-row sketch"
    try:
        return RowSketch.from_bytes(path.read_bytes()), None
    except (ValueError, TypeError) as exc:
        return None, f"overlap not checked: the baseline's training-row sketch cannot be read ({exc})"


def _count_overlap(found: Comparability, sketch: RowSketch, frame: pd.DataFrame) -> str | None:
    """Fill in the overlap figures; returns why they could not be measured, if so."""
    header = sketch.header
    lacking = [name for name in header.columns if name not in {str(c) for c in frame.columns}]
    if lacking:
        return ("overlap not checked: the evaluation data lacks columns the baseline's training rows had: "
                + ", ".join(lacking))
    rate, rows = header.false_positive_rate, len(frame)
    if rate > SATURATED:
        return (f"overlap not checked: the baseline's training-row sketch is too full to tell (false-positive rate "
                f"{rate:.2g})")
    matched = int(sketch.contains(frame_keys(frame, header.columns, header.images)).sum())
    # NOTE: each of the rows not in the training data is matched with probability `rate`, so
    # E[matched] = overlap + (rows - overlap) * rate; solved for the overlap.
    overlap = min(rows, max(0, round((matched - rows * rate) / (1 - rate))))
    found.overlap_checked, found.matched_rows, found.overlap_rows = True, matched, overlap
    found.overlap_fraction, found.false_positive_rate = overlap / rows if rows else 0.0, rate
    found.unfair = found.overlap_fraction > found.max_overlap
    return None


def _unfair_sentence(found: Comparability) -> str:
    assert found.overlap_fraction is not None
    return (f"unfair comparison: {found.overlap_rows:,} of the {found.evaluation_rows:,} evaluation rows "
            f"({found.overlap_fraction:.1%}) were in the baseline's training data, more than compare.max_overlap "
            f"({found.max_overlap:.1%}); the baseline's figures on them are optimistic")


def _evaluation_data(report: dict[str, Any] | None) -> str | None:
    """The evaluation data's fingerprint; for a split of the training data, that data's, marked as such."""
    if report is None:
        return None
    datasets = {d.get("name"): d.get("fingerprint") for d in report.get("datasets", [])}
    if datasets.get("eval"):
        return str(datasets["eval"])
    return f"split from {datasets['train']}" if datasets.get("train") else None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _short(fingerprint: str) -> str:
    """`sha256:` and 12 hex digits: enough to tell two apart in a sentence."""
    head, _, digest = fingerprint.rpartition(":")
    return f"{head}:{digest[:12]}" if head else fingerprint[:12]


def _compare_data(found: Comparability, out: Path, baseline_dir: Path) -> str | None:
    """Fill in the two fingerprints; returns the sentence that names a difference, if there is one."""
    found.evaluation_data = _evaluation_data(_load(out / DATA_REPORT))
    found.baseline_evaluation_data = _evaluation_data(_load(baseline_dir / DATA_REPORT))
    if found.evaluation_data is None or found.baseline_evaluation_data is None:
        return None
    found.same_evaluation_data = found.evaluation_data == found.baseline_evaluation_data
    if found.same_evaluation_data:
        return None
    return (f"evaluated on different data than the baseline's run: fingerprint "
            f"{_short(found.evaluation_data)} vs {_short(found.baseline_evaluation_data)}")


def assess(config: Config, frame: pd.DataFrame, out: Path, baseline_dir: Path) -> Comparability:
    """The overlap of the evaluation rows with the baseline's training rows, and whether the data is the same."""
    found = Comparability(evaluation_rows=len(frame), max_overlap=config.compare.max_overlap)
    sketch, why = _read_sketch(baseline_dir)
    if sketch is not None:
        why = _count_overlap(found, sketch, frame)
    found.notes = [note for note in (why, _unfair_sentence(found) if found.unfair else None,
                                     _compare_data(found, out, baseline_dir)) if note]
    return found


def apply(result: Comparison, config: Config, frame: pd.DataFrame, out: Path, baseline_dir: Path) -> None:
    """Assess a compared baseline; an unfair one is a warning, or a failure under compare.require_baseline."""
    if result.baseline_status != "compared":
        return
    found = result.comparability = assess(config, frame, out, baseline_dir)
    github.log("    " + (f"overlap with the baseline's training rows: {found.overlap_rows:,} of "
                         f"{found.evaluation_rows:,} (false-positive rate {found.false_positive_rate:.2g})"
                         if found.overlap_checked else found.notes[0]))
    for note in found.notes:
        if note.startswith("overlap not checked"):
            continue
        github.warning(note)
    if found.unfair and result.baseline_required:
        from modelci.compare.comparison import required_because

        result.passed = False
        result.reason = "; ".join(filter(None, [result.reason, f"{_unfair_sentence(found)}; "
                                                               f"{required_because(config)}, so this fails the gate"]))
