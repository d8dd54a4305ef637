"""XGBoost's scikit-learn API (`XGBClassifier`, `XGBRegressor`): saved as XGBoost's own JSON model,
converted to ONNX by onnxmltools' converter registered with skl2onnx. See `modelci.frameworks.trees`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.frameworks import trees

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

LIBRARY = "xgboost"


class XGBoost:
    name = "xgboost"
    extra: str | None = "xgboost"
    checkpoint = "model.xgboost.json"

    def recognises(self, made: object) -> bool:
        # NOTE: an instance of an XGBoost class means the library is imported; never import it here.
        if LIBRARY not in sys.modules or not trees.defined_in(made, LIBRARY):
            return False
        from xgboost import XGBClassifier, XGBRegressor

        return isinstance(made, (XGBClassifier, XGBRegressor))

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        return trees.fit(made, fit, self.name, _dump, self.checkpoint)

    def load(self, path: Path, config: Config) -> Trained:
        from xgboost import XGBClassifier, XGBRegressor

        text, spec, target, label = trees.read(path, self.name)
        model = XGBRegressor() if target.task == "regression" else XGBClassifier()
        try:  # NOTE: XGBoost's JSON model holds trees and numbers; loading it runs no code
            model.load_model(bytearray(text.encode("utf-8")))
        except Exception as exc:
            raise trees.corrupt(path, exc) from None
        return trees.trained(model, spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        from modelci.frameworks.sklearn import predict

        return predict(trained.model, features, trained.target.task)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        trees.registered(register, LIBRARY)
        return trees.convert(trained.model, trained, opset, output, LIBRARY), "onnxmltools"


def _dump(model: Any) -> str:
    """XGBoost's JSON model text, with what its scikit-learn API keeps (the classes) in it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        model.save_model(path)
        return path.read_text(encoding="utf-8")


def register() -> None:
    """Put onnxmltools' XGBoost converters in skl2onnx, so that convert_sklearn (and a pipeline) takes them."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                convert_xgboost)


ADAPTER = XGBoost()
