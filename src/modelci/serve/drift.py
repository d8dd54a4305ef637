"""Input drift, measured online: the rows the server answered lately against the profile of the
training data that the artifact carries (data-profile.json).

Each column is profiled and compared exactly as `modelci data check` does it, with the measure and
threshold the check used for that column, so a column drifted on the server means what a drifted
column in a pull request's report means. Serving only copies each batch's inputs into a window of
the latest rows; the profiling is done when the metrics are read.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelci import github
from modelci.data.drift import ColumnDrift, column_drift
from modelci.data.schema import DRIFT_THRESHOLDS, DriftRule

WINDOW_ROWS = 10_000
# NOTE: fewer rows than this say more about chance than about the data: no score until then
MIN_ROWS = 500
DEFAULT_RULE = DriftRule("psi", DRIFT_THRESHOLDS["psi"])  # a profile older than the rules kept beside it


class _Window:
    """The latest `size` values of one column, oldest overwritten first; with `sampled`, a missing value means not
    measured (an image's statistic, serve/images.py), not an empty one, and is left out; with `lists`, each row
    holds a list of values (a text's words, serve/texts.py), and the window keeps the values."""

    def __init__(self, size: int, text: bool, sampled: bool = False, lists: bool = False) -> None:
        self.values: NDArray[Any] = np.empty(size, dtype=object) if text else np.full(size, np.nan)
        self.sampled, self.lists = sampled, lists
        self.next = 0
        self.filled = 0

    def add(self, values: NDArray[Any]) -> None:
        size = len(self.values)
        if self.lists:  # NOTE: a list of values per row (a text's words): the window keeps the values
            values = np.array([value for row in values for value in row], dtype=object)
        values = values.reshape(-1)
        values = values[~np.isnan(values)][-size:] if self.sampled else values[-size:]
        head = min(len(values), size - self.next)
        self.values[self.next:self.next + head] = values[:head]
        self.values[:len(values) - head] = values[head:]
        self.next = (self.next + len(values)) % size
        self.filled = min(self.filled + len(values), size)

    def latest(self) -> NDArray[Any]:
        return np.array(self.values[:self.filled], copy=True)

    def copy(self) -> _Window:
        copied = _Window(0, self.values.dtype == object, self.sampled, self.lists)
        copied.values, copied.next, copied.filled = self.values.copy(), self.next, self.filled
        return copied


@dataclass(frozen=True)
class Measured:
    rows: int  # in the window
    columns: list[ColumnDrift]  # empty until the window holds MIN_ROWS


class OnlineDrift:
    """The window of a model's latest inputs and their drift from its training data."""

    def __init__(self, reference: dict[str, Any], rules: dict[str, DriftRule], window: int = WINDOW_ROWS,
                 fingerprint: str | None = None, sampled: Collection[str] = (), lists: Collection[str] = ()) -> None:
        self.reference, self.rules, self.fingerprint = reference, rules, fingerprint
        self._windows = {name: _Window(window, reference[name]["type"] == "string", name in sampled, name in lists)
                         for name in rules}
        self._lock = threading.Lock()
        self._added = 0  # rows, ever: a window that has not moved since the last measure is not measured again
        self._measured: tuple[int, Measured] | None = None

    @classmethod
    def of_profile(cls, profile: dict[str, Any], inputs: dict[str, bool], window: int = WINDOW_ROWS,
                   sampled: Collection[str] = (), lists: Collection[str] = ()) -> OnlineDrift | None:
        """The drift of the model's `inputs` (name: whether the model takes it as text) against the
        training data in `profile` (data-profile.json's content); None when it describes none of them.
        `sampled`: the inputs whose missing values mean not measured; `lists`: those with a list of values per row
        (`_Window`).
        An input the model takes otherwise than the profile describes it (a column of booleans with
        empty values, which the model takes as text) is not measured: the two would not compare."""
        train = profile.get("datasets", {}).get("train", {})
        reference = train.get("columns", {})
        kept = profile.get("drift")
        rules = {name: DriftRule(kept[name]["method"], float(kept[name]["threshold"])) if kept is not None
                 else DEFAULT_RULE for name, text in inputs.items()
                 if name in reference and (reference[name].get("type") == "string") == text
                 and (kept is None or name in kept)}
        return cls(reference, rules, window, train.get("fingerprint"), sampled, lists) if rules else None

    def continue_from(self, previous: OnlineDrift) -> None:
        """Take over the window of the model this one replaces when both were trained on the same data
        (the same fingerprint, measured the same way): the latest inputs are as far from the one's
        training data as from the other's, so a release does not start the drift over."""
        if self.fingerprint is None or previous.fingerprint != self.fingerprint or previous.rules != self.rules:
            return
        with previous._lock:
            windows = {name: window.copy() for name, window in previous._windows.items()}
            added = previous._added
        with self._lock:
            if all(len(windows[name].values) == len(window.values) for name, window in self._windows.items()):
                self._windows, self._added = windows, added

    def add(self, columns: dict[str, NDArray[Any]]) -> None:
        """Keep a batch's inputs (called once per batch, beside ONNX Runtime)."""
        with self._lock:
            for name, window in self._windows.items():
                window.add(columns[name])
            self._added += len(next(iter(columns.values())))

    def measure(self) -> Measured:
        with self._lock:
            if self._measured is not None and self._measured[0] == self._added:
                return self._measured[1]
            added = self._added
            latest = {name: window.latest() for name, window in self._windows.items()}
        rows = min((len(v) for v in latest.values()), default=0)
        if rows < MIN_ROWS:
            return Measured(rows, [])
        measured = []
        for name, values in latest.items():
            try:
                current = _profile(values, self.reference[name]["type"])
                measured.append(column_drift(name, self.rules[name], self.reference[name], current))
            except Exception as exc:  # NOTE: one column that cannot be measured costs its own series, not /metrics
                github.warning_once(f"input drift of {name} is not measured: {exc}")
        self._measured = (added, Measured(rows, measured))
        return self._measured[1]


def _profile(values: NDArray[Any], kind: str) -> dict[str, Any]:
    """One column's profile, as the data check writes it."""
    import pyarrow as pa

    from modelci.data.columns import column_batch
    from modelci.data.profile import column_profile

    profile = column_profile(kind)
    if values.dtype == object:
        # NOTE: the model takes an empty text value as "" (features.as_strings); the data's profile counts it as empty
        array = pa.array(values.tolist(), type=pa.string(), mask=np.array([v in ("", None) for v in values]))
    else:
        array = pa.array(values, from_pandas=True)  # NOTE: NaN is an empty value, as in the data
    profile.add(column_batch(array, kind))
    return profile.to_json()


def read_profile(folder: Path) -> dict[str, Any] | None:
    """The data profile beside a model file, if there is one that can be read."""
    import json

    from modelci.data.profile import PROFILE_FILE, PROFILE_VERSION

    try:
        profile = json.loads((folder / PROFILE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return profile if isinstance(profile, dict) and profile.get("version") == PROFILE_VERSION else None
