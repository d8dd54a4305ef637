"""The columns `modelci.yaml` names, checked against the data's own before any row is read.

A name that no file of the data has (a typo in `data.label`, `data.features`, `evaluate.slices` or
`evaluate.group`) is a mistake in the config, not in the data: every such name is reported at
once, as a `ConfigError` (exit 2) that lists the columns the data has. A column that some files
have and others lack is the data's problem, and the data checks report it.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from modelci.data.source import column_names
from modelci.errors import ConfigError

if TYPE_CHECKING:
    from modelci.config import Config

# NOTE: which datasets each key's columns are read from: the label and features by training and
# evaluation alike, slices by evaluation, groups by cross-validation over the training data.
BOTH: tuple[str, ...] = ("train", "eval")
EVAL: tuple[str, ...] = ("eval",)
TRAIN: tuple[str, ...] = ("train",)


def named_columns(config: Config) -> list[tuple[str, str, tuple[str, ...]]]:
    """(key, column, the datasets it must be in) for every column the config names."""
    named: list[tuple[str, str, tuple[str, ...]]] = [("data.label", config.data.label, BOTH)]
    named += [("data.features", name, BOTH) for name in config.data.features or ()]
    named += [("evaluate.slices", name, EVAL) for name in config.evaluate.slices]
    if config.evaluate.group is not None:
        named.append(("evaluate.group", config.evaluate.group, TRAIN))
    return named


def _problem(key: str, name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    return f"{key}: {name!r} is not a column of the data" + (f"; did you mean {close[0]!r}?" if close else "")


def require_named_columns(config: Config) -> None:
    """Raise `ConfigError` naming every column the config names that the data it is used with lacks entirely."""
    train = column_names(config.data.train)
    # NOTE: without data.eval, the evaluation rows are split from the training data.
    columns = {"train": train, "eval": column_names(config.data.eval) if config.data.eval else train}
    problems = [_problem(key, name, columns["train"] + columns["eval"])
                for key, name, used in named_columns(config)
                if not any(name in columns[dataset] for dataset in used)]
    if problems:
        every = list(dict.fromkeys(columns["train"] + columns["eval"]))
        raise ConfigError(str(config.path), problems,
                          hint=f"name columns the data has; the data's columns: {', '.join(every)}")
