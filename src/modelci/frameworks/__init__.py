"""Framework adapters: everything modelci does that depends on what the model factory returned.

One adapter per framework (a module in this package, or a package of a team's own registered in the
`modelci.frameworks` entry point group). `train`, `export`, `tune` and K-fold ask `recognise` for
the adapter of the object the factory made, or `by_name` for the one a training log names, and
contain no framework-specific branch themselves. An adapter imports its framework inside its
methods, so that listing the adapters imports no framework.

An adapter may also define `seed(seed: int, deterministic: bool) -> None`: `train` calls it on every
adapter after importing the model factory's file and before calling the factory, so that a framework
the file imported builds its model from the run's seed (it must import nothing itself).

A team's own adapter, in its package's pyproject.toml:

    [project.entry-points."modelci.frameworks"]
    mylib = "mylib_modelci:ADAPTER"     # an object with the attributes and methods of `Framework`
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelci.errors import ModelFactoryError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.data.tables import Datasets
    from modelci.features import FeatureSpec, Target
    from modelci.outputs import EpochRecord, TrainLog

ENTRY_POINT_GROUP = "modelci.frameworks"
# NOTE: the tree adapters before scikit-learn's: XGBoost's and LightGBM's scikit-learn API classes are
# scikit-learn estimators too, which skops can neither save safely nor skl2onnx convert on its own.
# The pipeline adapter before the estimator one: a Pipeline over the raw columns is an estimator too.
# Keras's before PyTorch's: on Keras's torch backend a Keras model is a torch module too.
BUILT_IN = ("modelci.frameworks.xgboost:ADAPTER", "modelci.frameworks.lightgbm:ADAPTER",
            "modelci.frameworks.catboost:ADAPTER", "modelci.frameworks.sklearn_pipeline:ADAPTER",
            "modelci.frameworks.sklearn:ADAPTER",
            "modelci.frameworks.keras:ADAPTER", "modelci.frameworks.huggingface:ADAPTER",
            "modelci.frameworks.torch:ADAPTER")
FEATURES = "features"  # the name of the ONNX input `to_onnx` takes: the preprocessed features
ML_DOMAIN_OPSET = 3  # the ai.onnx.ml opset modelci's preprocessing needs: LabelEncoder with string keys


@dataclass(frozen=True)
class Trained:
    """A trained model read back from `--out`, with what it was trained on."""

    model: Any
    spec: FeatureSpec  # modelci's preprocessing of the raw columns (exported in front of the model)
    target: Target
    label: str


@dataclass(frozen=True)
class Fit:
    """What fitting needs: the run's config and data, the features and target chosen, where to write."""

    config: Config
    datasets: Datasets
    spec: FeatureSpec
    target: Target
    out: Path
    log: TrainLog  # filled in by the adapter and written to OUT/train-log.json
    resume: bool = False
    on_epoch: Callable[[EpochRecord], None] | None = None  # every epoch's record (tune prunes with it)
    vocabulary: Any = None  # a text model's words, learnt from the training texts (frameworks/text/vocabulary.py)


class Framework(Protocol):
    """One framework's adapter. `name` is what train-log.json records as `framework`."""

    name: str
    extra: str | None  # the pip extra that installs the framework: `pip install 'modelci[EXTRA]'`
    checkpoint: str  # the file under --out that `fit` writes and `load` reads

    def recognises(self, made: object) -> bool:
        """Whether `made`, what the model factory returned, is this framework's model."""

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        """Train `made` on the fit's training rows, save it to `fit.out / checkpoint` and write the log. Whatever
        is chosen (early stopping, the kept epoch) and every epoch's loss and metrics come from
        `fit.datasets.validation`; `fit.datasets.eval` is the rows that judge the model, never read here."""

    def load(self, path: Path, config: Config) -> Trained:
        """Read back what `fit` saved, running no code from the file (exit 2 when it is not such a file)."""

    def predict(self, trained: Trained, features: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The framework's own scores on preprocessed features: probabilities [rows, classes], or for
        regression the predictions [rows]; the reference that ONNX Runtime's outputs are checked against.
        With `raw_columns`, `features` is the evaluation rows' DataFrame instead."""

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        """The model as ONNX over the preprocessed features (input `FEATURES`, float32 [batch, width]) with one
        output named `output`, and the exporter's name; modelci puts its preprocessing in front. With
        `raw_columns`, the model takes the raw columns itself: one input per column, [batch, 1], float32 for
        numbers and string for text, named after it (`trained.spec`'s columns), and nothing is put in front."""


def raw_columns(adapter: Framework) -> bool:
    """Whether the adapter's model does its own preprocessing: an optional attribute `raw_columns: bool` (False
    when absent) that says `fit` fits on the raw columns, `predict` takes the evaluation rows' DataFrame, and
    `to_onnx` returns a model over the raw columns, in front of which modelci puts nothing."""
    return bool(getattr(adapter, "raw_columns", False))


@functools.cache
def adapters() -> tuple[Framework, ...]:
    """The adapters registered in the entry point group, then the built-in ones: a team's adapter is asked
    first, so it can take a model that a built-in one would also take (a scikit-learn estimator of its own)."""
    # NOTE: once a process: train, export and `run` each ask, and reading every distribution's entry points is
    # not free
    found = [_load(point.value, point.name) for point in entry_points(group=ENTRY_POINT_GROUP)]
    found += [_load(reference) for reference in BUILT_IN]
    names = [adapter.name for adapter in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"two framework adapters are named {', '.join(twice)}; train-log.json names a model's "
                         "adapter by its name", hint="uninstall one of the packages that register them")
    return tuple(found)


def _load(reference: str, name: str | None = None) -> Framework:
    from importlib import import_module

    module, _, attribute = reference.partition(":")
    try:
        adapter: Framework = getattr(import_module(module), attribute)
    except Exception as exc:
        raise UsageError(f"the framework adapter {name or reference} ({reference}) cannot be loaded: "
                         f"{type(exc).__name__}: {exc}",
                         hint="fix or uninstall the package that registers it") from None
    return adapter


def recognise(made: object, factory: str) -> Framework:
    """The adapter for what the factory returned; exit 2 naming every adapter when none takes it."""
    every = adapters()
    for adapter in every:
        if adapter.recognises(made):
            return adapter
    names = ", ".join(f"{a.name}" + (f" (modelci[{a.extra}])" if a.extra else "") for a in every)
    kind = type(made)
    shown = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    raise ModelFactoryError(f"model.factory: {factory} returned {shown}, which no framework adapter takes; "
                            f"the adapters: {names}",
                            hint="return a model of one of them, or register an adapter in the "
                                 f"{ENTRY_POINT_GROUP} entry point group")


def seed_all(every: Iterable[Framework], seed: int, deterministic: bool) -> None:
    """Seed the frameworks already imported, through the adapters that define `seed`."""
    for adapter in every:
        hook: Callable[[int, bool], None] | None = getattr(adapter, "seed", None)
        if hook is not None:
            hook(seed, deterministic)


def by_name(name: str) -> Framework:
    """The adapter a training log names."""
    for adapter in adapters():
        if adapter.name == name:
            return adapter
    raise UsageError(f"the training log names the framework {name!r}, which no installed adapter is",
                     hint="install the package that provides it, or run `modelci train` again")
