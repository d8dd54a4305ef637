"""LightGBM's scikit-learn API (`LGBMClassifier`, `LGBMRegressor`): saved as LightGBM's own model text,
read back as a `lightgbm.Booster`, converted to ONNX by onnxmltools' converter registered with skl2onnx.
See `modelci.frameworks.trees`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.frameworks import trees

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

LIBRARY = "lightgbm"


class LightGBM:
    name = "lightgbm"
    extra: str | None = "lightgbm"
    checkpoint = "model.lightgbm.json"

    def recognises(self, made: object) -> bool:
        # NOTE: an instance of a LightGBM class means the library is imported; never import it here.
        if LIBRARY not in sys.modules or not trees.defined_in(made, LIBRARY):
            return False
        from lightgbm import LGBMClassifier, LGBMRegressor

        return isinstance(made, (LGBMClassifier, LGBMRegressor))

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        return trees.fit(made, fit, self.name, _dump, self.checkpoint)

    def load(self, path: Path, config: Config) -> Trained:
        import lightgbm

        text, spec, target, label = trees.read(path, self.name)
        try:  # NOTE: LightGBM's model text holds trees and numbers; parsing it runs no code
            booster = lightgbm.Booster(model_str=text)
        except Exception as exc:
            raise trees.corrupt(path, exc) from None
        return trees.trained(booster, spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        scores = np.asarray(trained.model.predict(features), dtype=np.float64)
        if trained.target.task == "binary":  # NOTE: a Booster gives the second class's probability alone
            return np.column_stack([1.0 - scores, scores])
        return scores if trained.target.task == "multiclass" else scores.reshape(-1)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        import lightgbm

        classifier, regressor = trees.registered(register, LIBRARY)
        booster = lightgbm.Booster(model_str=float32_thresholds(trained.model.model_to_string()))
        wrapped = (regressor if trained.target.task == "regression" else classifier)(booster)
        return trees.convert(wrapped, trained, opset, output, LIBRARY), "onnxmltools"


def float32_thresholds(text: str) -> str:
    """LightGBM's model text with every numerical split's threshold lowered to the largest float32 at most it.

    NOTE: LightGBM compares a float32 feature with a double threshold; ONNX's tree ensembles hold float32
    thresholds, and the nearest float32 may lie above the double one, so that a value between the two goes
    left in ONNX and right in LightGBM (a row off in 100,000, benchmarks/trees). Below it, every float32
    value goes the same way in both."""
    head, *trees_text = text.split("\nTree=")
    # NOTE: tree_sizes gives each tree's length in bytes, which the new numbers change; without it LightGBM
    # reads the trees one after another
    head = "\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))
    return "\nTree=".join([head, *(_lowered(tree) for tree in trees_text)])


def _lowered(tree: str) -> str:
    lines = tree.split("\n")
    kinds = next((line.split("=", 1)[1].split() for line in lines if line.startswith("decision_type=")), [])
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            values = line.split("=", 1)[1].split()
            # NOTE: decision_type's lowest bit marks a categorical split, whose threshold is an index
            lines[i] = "threshold=" + " ".join(
                value if i_kind < len(kinds) and int(kinds[i_kind]) & 1 else _float32_below(value)
                for i_kind, value in enumerate(values))
    return "\n".join(lines)


def _float32_below(value: str) -> str:
    threshold = float(value)
    lowered = np.float32(threshold)
    if float(lowered) > threshold:
        lowered = np.nextafter(lowered, np.float32(-np.inf))
    return repr(float(lowered))


def _dump(model: Any) -> str:
    text: str = model.booster_.model_to_string()
    return text


@functools.cache
def register() -> tuple[type, type]:
    """Put onnxmltools' LightGBM converter in skl2onnx for the scikit-learn API's classes (so a pipeline
    takes them) and for a Booster read back from a model file; returns the Booster's wrappers
    (classifier, regressor)."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm._parse import WrappedBooster
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.base import ClassifierMixin

    # NOTE: onnxmltools' own wrapper of a Booster, which its converter takes like the scikit-learn API's
    # classes; one subclass per kind, as skl2onnx picks the converter by the type, and declares a
    # classifier's two outputs (label, probabilities) for a ClassifierMixin.
    class BoosterClassifier(WrappedBooster, ClassifierMixin):  # type: ignore[misc]
        pass

    class BoosterRegressor(WrappedBooster):  # type: ignore[misc]
        pass

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for kind in (LGBMClassifier, BoosterClassifier):
        update_registered_converter(kind, f"LightGbm{kind.__name__}", calculate_linear_classifier_output_shapes,
                                    convert_lightgbm, options=options)
    for kind in (LGBMRegressor, BoosterRegressor):
        update_registered_converter(kind, f"LightGbm{kind.__name__}", calculate_linear_regressor_output_shapes,
                                    convert_lightgbm)
    return BoosterClassifier, BoosterRegressor


ADAPTER = LightGBM()
