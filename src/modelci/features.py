"""Preprocessing that travels with the model.

The scaling of numeric columns and the encoding of categorical ones are learnt from the training
data once (`FeatureSpec.fit`), applied in numpy for training, and written into the exported ONNX
graph (`onnx_preprocessing`), so the artifact takes the raw columns of the data. The parity check
compares the two, so a difference between them cannot go unnoticed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from modelci.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from onnx import NodeProto, TensorProto, ValueInfoProto

# NOTE: a category seen fewer times than this in training is folded into the "other" slot, which
# also takes values never seen; it keeps the one-hot width bounded on high-cardinality columns.
MIN_CATEGORY_COUNT = 5
MAX_CATEGORIES = 256


@dataclass(frozen=True)
class NumericFeature:
    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.categories) + 1  # the last slot is "other": unseen, rare or empty


def is_categorical(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype)
                or series.dtype == object)


def as_strings(series: pd.Series) -> NDArray[np.object_]:
    """A categorical column as Python strings; empty values become "" (the "other" slot)."""
    return np.array(["" if v is None or v != v else str(v) for v in series.tolist()], dtype=object)


def as_floats(series: pd.Series, name: str) -> NDArray[np.float32]:
    """A numeric column as float32, empty values NaN; numbers stored as text are parsed."""
    try:
        return np.asarray(series.to_numpy(dtype=np.float32, na_value=np.nan), dtype=np.float32)
    except (TypeError, ValueError):
        pass
    if not is_categorical(series):
        raise DataError(f"column '{name}' holds values that are not numbers ({series.dtype})",
                        hint="fix the data, or declare the column as a string in the schema")
    return _parsed(series, name)


def _parsed(series: pd.Series, name: str) -> NDArray[np.float32]:
    """Numbers stored as text; an empty text is an empty value, any other text that is no number an error."""
    import pandas as pd

    text = series.astype(object).where(series.notna(), None).map(lambda v: None if v is None else str(v).strip())
    numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
    wrong = text[numbers.isna() & text.notna() & (text != "")]
    if len(wrong):
        shown = ", ".join(repr(v) for v in wrong.unique()[:5])
        raise DataError(f"column '{name}' holds values that are not numbers: {shown} ({len(wrong):,} rows)",
                        hint="the model takes it as numbers, as its training data held only numbers: "
                             "fix those values, or declare the column as a string in the schema")
    return np.asarray(numbers.to_numpy(dtype=np.float32, na_value=np.nan), dtype=np.float32)


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.numeric] + [f.name for f in self.categorical]

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(f.width for f in self.categorical)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str], as_numbers: tuple[str, ...] = ()) -> FeatureSpec:
        """Learn the scaling and categories of `columns`; those in `as_numbers` are text holding numbers."""
        numeric, categorical = [], []
        for name in columns:
            series = frame[name]
            if is_categorical(series) and name not in as_numbers:
                counts = series.dropna().astype(str).value_counts()
                kept = counts[counts >= MIN_CATEGORY_COUNT].index[:MAX_CATEGORIES]
                categorical.append(CategoricalFeature(name, tuple(sorted(map(str, kept)))))
            else:
                values = as_floats(series, name).astype(np.float64)
                finite = values[np.isfinite(values)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                numeric.append(NumericFeature(name, mean, std if std > 0 else 1.0))
        return cls(tuple(numeric), tuple(categorical))

    def constant_columns(self, frame: pd.DataFrame) -> list[str]:
        """Categorical columns with no category kept, each with its distinct values: as features, constants."""
        return [f"{c.name} ({frame[c.name].nunique():,} distinct values in {len(frame):,} rows)"
                for c in self.categorical if not c.categories]

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float32]:
        """The model's input matrix: standardized numbers (empty → mean) then one-hot categories."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"the data lacks the model's input columns: {', '.join(missing)}")
        parts: list[NDArray[np.float32]] = []
        for f in self.numeric:
            z = (as_floats(frame[f.name], f.name) - np.float32(f.mean)) / np.float32(f.std)
            parts.append(np.where(np.isnan(z), np.float32(0), z).astype(np.float32)[:, None])
        for c in self.categorical:
            index = {value: i for i, value in enumerate(c.categories)}
            codes = np.array([index.get(v, len(c.categories)) for v in as_strings(frame[c.name])])
            parts.append(np.eye(c.width, dtype=np.float32)[codes])
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            numeric=tuple(NumericFeature(**f) for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(f["name"], tuple(f["categories"])) for f in data["categorical"]),
        )


def category_report(spec: FeatureSpec, train: pd.DataFrame, evaluation: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per categorical feature: the categories kept, how many (and how many rows) were folded into
    "other" as rare, and how many evaluation rows hold a category training never had."""
    report: dict[str, dict[str, Any]] = {}
    for c in spec.categorical:
        seen, kept = _tally(as_strings(train[c.name])), set(c.categories)
        folded = {v: n for v, n in seen.items() if v not in kept}
        unseen = sum(v not in seen for v in as_strings(evaluation[c.name]) if v) if c.name in evaluation else 0
        report[c.name] = {"kept": list(c.categories), "folded": len(folded), "folded_rows": sum(folded.values()),
                          "unseen_eval_rows": unseen}
    return report


def _tally(values: NDArray[np.object_]) -> dict[str, int]:
    """How often each non-empty value occurs (an empty value is no category)."""
    found, counts = np.unique(values[values != ""].astype(str), return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))


def describe_categories(name: str, entry: dict[str, Any], eval_rows: int) -> str:
    """One line of the progress output for one categorical feature."""
    return (f"    {name}: {len(entry['kept'])} categories kept, {entry['folded']} rare ones "
            f"({entry['folded_rows']:,} rows) folded into \"other\"; {entry['unseen_eval_rows']:,} of "
            f"{eval_rows:,} evaluation rows hold a category unseen in training")


OnnxParts = tuple[list["ValueInfoProto"], list["NodeProto"], list["TensorProto"]]


def onnx_preprocessing(spec: FeatureSpec, output: str) -> OnnxParts:
    """ONNX inputs (one per raw column), nodes and initializers that compute `spec.transform`."""
    from onnx import TensorProto, helper

    inputs, nodes, inits, parts = [], [], [], []
    if spec.numeric:
        names = [f.name for f in spec.numeric]
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1]) for n in names]
        inits += [
            helper.make_tensor("pre.mean", TensorProto.FLOAT, [len(names)], [f.mean for f in spec.numeric]),
            helper.make_tensor("pre.std", TensorProto.FLOAT, [len(names)], [f.std for f in spec.numeric]),
            helper.make_tensor("pre.zero", TensorProto.FLOAT, [], [0.0]),
        ]
        nodes += [
            helper.make_node("Concat", names, ["pre.numeric"], axis=1),
            helper.make_node("Sub", ["pre.numeric", "pre.mean"], ["pre.centered"]),
            helper.make_node("Div", ["pre.centered", "pre.std"], ["pre.scaled"]),
            helper.make_node("IsNaN", ["pre.scaled"], ["pre.empty"]),
            helper.make_node("Where", ["pre.empty", "pre.zero", "pre.scaled"], ["pre.numeric_out"]),
        ]
        parts.append("pre.numeric_out")
    if spec.categorical:
        inits += [
            helper.make_tensor("pre.onehot_values", TensorProto.FLOAT, [2], [0.0, 1.0]),
            helper.make_tensor("pre.axis1", TensorProto.INT64, [1], [1]),
        ]
    for i, c in enumerate(spec.categorical):
        inputs.append(helper.make_tensor_value_info(c.name, TensorProto.STRING, ["batch", 1]))
        inits.append(helper.make_tensor(f"pre.depth{i}", TensorProto.INT64, [], [c.width]))
        # NOTE: LabelEncoder needs one key at least. A column with no category kept (an ID column: every
        # value once) gets "" as a key for slot 0, which is its only slot, "other", as for any value.
        keys, codes = (list(c.categories), list(range(len(c.categories)))) if c.categories else ([""], [0])
        nodes += [
            # Unseen, rare and empty values all map to the last ("other") slot.
            helper.make_node("LabelEncoder", [c.name], [f"pre.code{i}"], domain="ai.onnx.ml",
                             keys_strings=keys, values_int64s=codes, default_int64=len(c.categories)),
            helper.make_node("OneHot", [f"pre.code{i}", f"pre.depth{i}", "pre.onehot_values"], [f"pre.hot{i}"]),
            helper.make_node("Squeeze", [f"pre.hot{i}", "pre.axis1"], [f"pre.cat{i}"]),
        ]
        parts.append(f"pre.cat{i}")
    nodes.append(helper.make_node("Concat", parts, [output], axis=1))
    return inputs, nodes, inits



def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and ONNX metadata can hold."""
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class Target:
    """The label column: its classes (classification), or its scale (regression)."""

    task: str
    classes: tuple[Any, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, series: pd.Series, task: str) -> Target:
        if task == "regression":
            values = as_floats(series, str(series.name)).astype(np.float64)
            return cls(task, mean=float(values.mean()), std=float(values.std()) or 1.0)
        classes = tuple(_plain(v) for v in sorted(series.unique()))
        if task == "binary" and len(classes) != 2:
            raise DataError(
                f"label column '{series.name}' has {len(classes)} distinct values {list(classes)[:10]}; "
                "a binary task needs exactly 2",
                hint="use task: multiclass or regression, or fix the labels",
            )
        if len(classes) < 2:
            raise DataError(f"label column '{series.name}' has only one class: {list(classes)}")
        return cls(task, classes=classes)

    @property
    def output_dim(self) -> int:
        return len(self.classes) if self.task == "multiclass" else 1

    def encode(self, series: pd.Series) -> NDArray[Any]:
        """Class indices (int64) for classification, the values (float64) for regression."""
        if self.task == "regression":
            return as_floats(series, str(series.name)).astype(np.float64)
        index = {c: i for i, c in enumerate(self.classes)}
        codes = np.array([index.get(_plain(v), -1) for v in series.tolist()], dtype=np.int64)
        unknown = sorted({str(v) for v, code in zip(series.tolist(), codes, strict=True) if code < 0})
        if unknown:
            raise DataError(
                f"label column '{series.name}' holds values the training data never had: {unknown[:10]}",
                hint=f"the classes learnt from training are {list(self.classes)}",
            )
        return codes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(data["task"], tuple(data["classes"]), data["mean"], data["std"])
