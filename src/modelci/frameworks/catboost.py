"""CatBoost (`CatBoostClassifier`, `CatBoostRegressor`): saved in CatBoost's own binary model format (base64
in modelci's JSON checkpoint), converted to ONNX by CatBoost's own exporter. See `modelci.frameworks.trees`.

CatBoost's ONNX classifier ends in a ZipMap (a sequence of maps, one per row); modelci takes the tensor
of probabilities the ZipMap reads instead, so that the output is [batch, classes] like every other model's.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelci.errors import UsageError, first_line
from modelci.frameworks import trees

if TYPE_CHECKING:
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog

LIBRARY = "catboost"
# NOTE: CatBoost refuses two names of one setting ("only one of the parameters ... should be initialized"),
# so modelci sets its defaults only when the factory set none of the names.
QUIET = ("verbose", "logging_level", "silent", "verbose_eval")
FILES = ("allow_writing_files", "train_dir")


class CatBoost:
    name = "catboost"
    extra: str | None = "catboost"
    checkpoint = "model.catboost.json"

    def recognises(self, made: object) -> bool:
        # NOTE: an instance of a CatBoost class means the library is imported; never import it here.
        if LIBRARY not in sys.modules or not trees.defined_in(made, LIBRARY):
            return False
        from catboost import CatBoostClassifier, CatBoostRegressor

        return isinstance(made, (CatBoostClassifier, CatBoostRegressor))

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        return trees.fit(_prepared(made), fit, self.name, _dump, self.checkpoint)

    def load(self, path: Path, config: Config) -> Trained:
        from catboost import CatBoostClassifier, CatBoostRegressor

        text, spec, target, label = trees.read(path, self.name)
        model = CatBoostRegressor() if target.task == "regression" else CatBoostClassifier()
        try:  # NOTE: CatBoost's binary model holds trees and numbers (flatbuffers); loading it runs no code
            model.load_model(blob=base64.b64decode(text.encode("ascii"), validate=True))
        except Exception as exc:  # NOTE: not base64 (binascii.Error), or not a CatBoost model (CatBoostError)
            raise trees.corrupt(path, exc) from None
        return trees.trained(model, spec, target, label)

    def predict(self, trained: Trained, features: np.ndarray) -> np.ndarray:
        from modelci.frameworks.sklearn import predict

        return predict(trained.model, features, trained.target.task)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        return _as_features_model(_export(trained.model), trained, opset, output), "catboost"


def _prepared(made: Any) -> Any:
    """`made` with modelci's defaults: `train.seed` as `random_state` (trees.fit sets it), quiet, and no
    `catboost_info` folder written into the model repository."""
    params = made.get_params()
    if params.get("random_seed") is not None and params.get("random_state") is None:
        # NOTE: trees.fit reads random_state; the factory's random_seed is the same setting under CatBoost's name
        params["random_state"] = params.pop("random_seed")
        made = type(made)(**params)
    if not any(name in params for name in QUIET):
        made.set_params(logging_level="Silent")
    if not any(name in params for name in FILES):
        made.set_params(allow_writing_files=False)
    return made


def _dump(model: Any) -> str:
    """CatBoost's binary model, base64: modelci's checkpoint is JSON."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.cbm"
        model.save_model(str(path), format="cbm")
        return base64.b64encode(path.read_bytes()).decode("ascii")


def _export(model: Any) -> ModelProto:
    """CatBoost's own ONNX-ML export of `model`."""
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx", export_parameters={"onnx_graph_name": "modelci"})
        except Exception as exc:
            raise UsageError(f"CatBoost cannot export {type(model).__name__} to ONNX: {type(exc).__name__}: "
                             f"{first_line(exc, 300)}",
                             hint="CatBoost exports models without categorical features (cat_features) only; "
                                  "leave the categorical columns to modelci's preprocessing") from None
        return onnx.load(str(path))


def _as_features_model(model: ModelProto, trained: Trained, opset: int, output: str) -> ModelProto:
    """CatBoost's ONNX graph over FEATURES (float32 [batch, width]) with one output `output`: the tensor of
    probabilities [batch, classes] the ZipMap reads, or the prediction [batch, 1]."""
    from onnx import TensorProto, helper

    from modelci.frameworks import FEATURES, ML_DOMAIN_OPSET
    from modelci.frameworks.sklearn import last_output_only

    graph = model.graph
    _rename_input(model, FEATURES)
    graph.input[0].CopyFrom(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, trained.spec.width]))
    if trained.target.task == "regression":
        produced, width = graph.output[-1].name, 1
    else:  # NOTE: a ZipMap reads the probabilities from the tree ensemble; without one, they are the last output
        zipmaps = [node for node in graph.node if node.op_type == "ZipMap"]
        produced, width = (zipmaps[0].input[0] if zipmaps else graph.output[-1].name), len(trained.target.classes)
        for node in zipmaps:
            graph.node.remove(node)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(produced, TensorProto.FLOAT, [None, width]))
    _use_opsets(model, opset, ML_DOMAIN_OPSET)
    return last_output_only(model, output)


def _rename_input(model: ModelProto, name: str) -> None:
    old = model.graph.input[0].name
    if old == name:
        return
    for node in model.graph.node:
        node.input[:] = [name if used == old else used for used in node.input]


def _use_opsets(model: ModelProto, opset: int, ml_opset: int) -> None:
    """The default domain at `opset` (for the preprocessing export puts in front; CatBoost imports only
    ai.onnx.ml) and ai.onnx.ml at least at `ml_opset`, with the IR version those need."""
    from onnx import helper

    versions = {used.domain: used.version for used in model.opset_import}
    versions[""] = opset
    versions["ai.onnx.ml"] = max(versions.get("ai.onnx.ml", 1), ml_opset)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in versions.items())
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))


ADAPTER = CatBoost()
