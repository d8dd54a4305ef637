"""MLServer's custom runtime for an ONNX model (MLServer ships none for ONNX): MLServer's documented way,
an `MLModel` whose `predict` decodes the request with MLServer's codecs and calls ONNX Runtime.

Copied by `run.py` next to the model-settings.json it writes, and imported by MLServer from there.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        self.session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self.string_inputs = {i.name for i in self.session.get_inputs() if i.type == "tensor(string)"}
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for tensor in payload.inputs:
            if tensor.name in self.string_inputs:
                feeds[tensor.name] = np.array(StringCodec.decode_input(tensor), dtype=object).reshape(-1, 1)
            else:
                feeds[tensor.name] = NumpyCodec.decode_input(tensor).astype(np.float32).reshape(-1, 1)
        results = self.session.run(self.output_names, feeds)
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(n, r) for n, r in zip(self.output_names, results,
                                                                                          strict=True)])
