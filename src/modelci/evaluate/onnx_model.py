"""An exported model in ONNX Runtime: what evaluation, comparison and serving all run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from modelci.errors import UsageError
from modelci.evaluate.extensions import inference_session
from modelci.evaluate.metrics import DEFAULT_THRESHOLD
from modelci.features import as_floats, as_strings

if TYPE_CHECKING:
    import pandas as pd

# Keys of the ONNX model's metadata_props, written by `modelci export`.
META_TASK = "modelci.task"
META_CLASSES = "modelci.classes"
META_LABEL = "modelci.label"
META_THRESHOLD = "modelci.threshold"  # a binary model's classification threshold; absent (older models): 0.5
META_IMAGE = "modelci.image"  # an image model's input: its size, channels, layout, resize filter, normalization
META_TEXT = "modelci.text"  # a text model's input: its name, how texts are split, the words read


def described(meta: dict[str, str], key: str) -> dict[str, Any]:
    """A JSON description in a model's metadata (META_IMAGE, META_TEXT); {} when absent or not a JSON object."""
    try:
        found = json.loads(meta.get(key, "{}"))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


IMAGE_CHUNK = 256  # images per run of an image model: a large evaluation set is never decoded all at once


@dataclass(frozen=True)
class ModelInput:
    name: str
    kind: str  # "float", "string", or "image": uint8 pixels [batch, height, width, channels], fed from an image column
    shape: tuple[Any, ...] = ()


class OnnxModel:
    """An ONNX Runtime session plus what modelci wrote into the model: task, classes, label, threshold."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise UsageError(f"{path}: no such model file", hint="run `modelci export` first")
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = inference_session(str(path), options)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"{path}: not a model ONNX Runtime can load: {exc}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_TASK not in meta:
            raise UsageError(f"{path}: not a model exported by modelci (no '{META_TASK}' metadata)")
        self.path = path
        self.task: str = meta[META_TASK]
        self.classes: list[Any] = json.loads(meta.get(META_CLASSES, "[]"))
        self.label: str = meta.get(META_LABEL, "")
        self.threshold = threshold_of(meta, path)
        self.output: str = self.session.get_outputs()[0].name
        self.inputs = [ModelInput(i.name, _kind(i.type, i.shape), tuple(i.shape)) for i in self.session.get_inputs()]

    def missing_inputs(self, frame: pd.DataFrame) -> list[str]:
        return [i.name for i in self.inputs if i.name not in frame.columns]

    def feeds(self, frame: pd.DataFrame) -> dict[str, NDArray[Any]]:
        return {i.name: _feed(i, frame) for i in self.inputs}

    def predict(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Class probabilities (n, classes) for classification, predictions (n,) for regression."""
        if any(i.kind == "image" for i in self.inputs) and len(frame) > IMAGE_CHUNK:
            return np.concatenate([self.predict(frame.iloc[first:first + IMAGE_CHUNK])
                                   for first in range(0, len(frame), IMAGE_CHUNK)])
        output = np.asarray(self.session.run(None, self.feeds(frame))[0], dtype=np.float64)
        return output[:, 0] if self.task == "regression" else output


def _kind(onnx_type: str, shape: list[Any]) -> str:
    if onnx_type == "tensor(string)":
        return "string"
    return "image" if onnx_type == "tensor(uint8)" and len(shape) == 4 else "float"


def _feed(given: ModelInput, frame: pd.DataFrame) -> NDArray[Any]:
    """One input's values for the frame's rows: a column [rows, 1], or an image column's images decoded and resized
    to the input's [rows, height, width, channels] (paths, encoded bytes, or pixels)."""
    if given.kind == "image":
        from modelci.frameworks.images.pixels import pixels_of

        _, height, width, channels = given.shape
        return pixels_of(frame[given.name], (int(height), int(width)), int(channels))
    if given.kind == "string":
        return as_strings(frame[given.name])[:, None]
    return as_floats(frame[given.name], given.name)[:, None]


def threshold_of(meta: dict[str, str], path: Path) -> float:
    """The classification threshold a model's metadata records; 0.5 for a model exported before there was one."""
    text = meta.get(META_THRESHOLD)
    if text is None:
        return DEFAULT_THRESHOLD
    try:
        found = float(text)
    except ValueError:
        found = math.nan
    if not 0 < found < 1:
        raise UsageError(f"{path}: its '{META_THRESHOLD}' metadata is {text!r}, not a number between 0 and 1",
                         hint="export the model again with `modelci export`")
    return found
