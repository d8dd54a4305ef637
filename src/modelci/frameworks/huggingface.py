"""The Hugging Face adapter: a `transformers` model for sequence classification (or regression) and its tokenizer,
fine-tuned on a table's text column and exported with the tokenizer in the ONNX graph.

Factory contract, for a text model (`data.text` set): `build(output_dim, **params) -> (model, tokenizer)`, the
model built with `num_labels=output_dim` (one logit for a binary task, one per class, one value for regression),
both loaded from a local directory or a path in the repository (`from_pretrained(PATH)`) or built from a config:
modelci downloads nothing. The tokenizer is a fast one of BERT's kind (WordPiece) or RoBERTa's (byte-level BPE),
which the exported graph carries (onnxruntime-extensions' operators; `pip install 'modelci[text]'`). modelci adds
the sigmoid or softmax behind the logits, as for a PyTorch network. See `frameworks/text/transformer.py`.

NOTE: imports neither torch nor transformers: a model is recognised only when the factory's file imported
transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

CHECKPOINT = "transformer.pt"  # the fine-tuned weights, with the column and the words read of each text

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto

    from modelci.config import Config
    from modelci.frameworks import Fit, Trained
    from modelci.outputs import TrainLog


class HuggingFace:
    name = "huggingface"
    extra: str | None = "text"
    checkpoint = CHECKPOINT

    def recognises(self, made: object) -> bool:
        transformers = sys.modules.get("transformers")
        if transformers is None or not isinstance(made, tuple) or len(made) != 2:
            return False
        model, tokenizer = made
        return isinstance(model, transformers.PreTrainedModel) and \
            isinstance(tokenizer, transformers.PreTrainedTokenizerBase)

    def fit(self, made: Any, fit: Fit) -> TrainLog:
        from modelci.errors import UsageError
        from modelci.frameworks.text import transformer

        if fit.config.data.text is None:
            raise UsageError("model.factory returned a Hugging Face model and tokenizer; set data.text (e.g. "
                             "data.text: {max_tokens: 128}) and mark the texts' column type: text in the schema")
        return transformer.fit(made, fit)

    def load(self, path: Path, config: Config) -> Trained:
        from modelci.frameworks import Trained
        from modelci.frameworks.text import transformer

        scorer, target, label = transformer.load_checkpoint(path, config)
        return Trained(scorer, transformer.NO_FEATURES, target, label)

    def predict(self, trained: Trained, features: Any) -> np.ndarray:
        from modelci.frameworks.text import transformer

        return transformer.predict(trained.model, features)

    def to_onnx(self, trained: Trained, opset: int, output: str) -> tuple[ModelProto, str]:
        from modelci.frameworks.text import transformer

        return transformer.to_onnx(trained.model, opset, output)


ADAPTER = HuggingFace()
