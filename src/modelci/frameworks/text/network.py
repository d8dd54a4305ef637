"""A text model as trained, saved and exported: the factory's network over word ids, behind the task's output,
and in the exported ONNX model behind the tokenizer, so the artifact takes the texts themselves.

The tokenizer in the graph uses ONNX's own operators and one of ONNX Runtime's (no extension library), on
each text alone (`graph.prepend`'s Loop): StringNormalizer lowercases (the "C" locale: ASCII letters, as
`data.text.tokens.words` does), ONNX Runtime's Tokenizer (com.microsoft) takes the runs of word characters,
Slice keeps the first `max_tokens`, and LabelEncoder maps each word to its id (0 for padding, 1 for a word
outside the vocabulary). Parity compares this graph with the PyTorch model fed by `vocabulary.Vocabulary` on
the evaluation texts, so a text the two would split differently fails the export.

NOTE: imports torch: only the PyTorch adapter's methods import this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modelci.config import Config
from modelci.data.text.tokens import WORD_RE2
from modelci.errors import ModelFactoryError
from modelci.evaluate.onnx_model import META_TEXT
from modelci.features import FeatureSpec, Target
from modelci.frameworks import ML_DOMAIN_OPSET, torch_model
from modelci.frameworks.factory import call_factory
from modelci.frameworks.text.vocabulary import PAD, UNKNOWN, Vocabulary
from modelci.frameworks.torch_model import Scorer, export_onnx

if TYPE_CHECKING:
    from onnx import ModelProto

PREDICT_CHUNK = 1024  # texts per forward pass when scoring
NO_FEATURES = FeatureSpec((), ())  # a text model takes its text column as it is: no table preprocessing
IDS = "modelci_word_ids"  # the graph's word ids, between the tokenizer and the network
PADDING = " "  # the Tokenizer's padding: never a word (words hold no space), mapped to PAD


class TextScorer(Scorer):
    """A trained text model: the network and the task's output, with the text column and vocabulary it reads."""

    def __init__(self, net: nn.Module, target: Target, vocabulary: Vocabulary, column: str) -> None:
        super().__init__(net, target)
        self.vocabulary, self.column = vocabulary, column
        self.outputs = 2 if target.task == "binary" else (target.output_dim if target.task == "multiclass" else 1)


def check_network(made: Any, config: Config, vocabulary_size: int, output_dim: int) -> nn.Module:
    """The factory's network, checked to map word ids int64 [batch, words] to [batch, output_dim]."""
    if not isinstance(made, nn.Module):
        raise ModelFactoryError(f"model.factory: {config.model.factory} returned {type(made).__name__}, "
                                "not a torch.nn.Module")
    # NOTE: a batch is as wide as its longest text, one id wide when all its texts have one word or none
    three_words, one_word = torch.tensor([[2, 3, 1], [PAD, PAD, PAD]]), torch.tensor([[2], [PAD]])
    for ids in (three_words % vocabulary_size, one_word % vocabulary_size):
        found = _shape(made, ids, vocabulary_size)
        if found != (2, output_dim):
            raise ModelFactoryError(f"the model returns shape {found} for 2 texts; this task needs (2, {output_dim})",
                                    hint="build the last layer with output_dim outputs")
    return made


def _shape(made: nn.Module, ids: torch.Tensor, vocabulary_size: int) -> tuple[int, ...]:
    with torch.no_grad():
        try:
            return tuple(made.eval()(ids).shape)
        except Exception as exc:
            raise ModelFactoryError(f"the model fails on word ids of shape {tuple(ids.shape)}: {type(exc).__name__}: "
                                    f"{exc}",
                                    hint="its first layer must take int64 word ids [batch, words] below "
                                         f"vocabulary_size={vocabulary_size}, e.g. nn.Embedding(vocabulary_size, "
                                         "width, padding_idx=0), and texts of one word") from None


def save_checkpoint(path: Path, scorer: TextScorer, target: Target, config: Config) -> None:
    torch_model.save_checkpoint(path, scorer, NO_FEATURES, target, config,
                                text=scorer.vocabulary.to_json() | {"column": scorer.column})


def load_checkpoint(path: Path, config: Config) -> tuple[TextScorer, Target, str]:
    """Rebuild the trained text model from its checkpoint and the config's factory."""
    def read(data: dict[str, Any]) -> tuple[Vocabulary, str]:
        return Vocabulary.from_json(data["text"]), str(data["text"]["column"])

    (vocabulary, column), target, state, label = torch_model.read_checkpoint(path, "a text model's", read)
    made = call_factory(config, {"vocabulary_size": vocabulary.size}, target.output_dim)
    scorer = TextScorer(check_network(made, config, vocabulary.size, target.output_dim), target, vocabulary, column)
    return torch_model.restore(scorer, state, path, config), target, label


def predict(scorer: TextScorer, rows: Any) -> np.ndarray:
    """The model's output for a DataFrame's texts (its text column), as float64 [rows, outputs]: split into words
    by `Vocabulary`, as the exported graph splits them."""
    texts = list(rows[scorer.column])
    parts = []
    with torch.no_grad():
        for first in range(0, len(texts), PREDICT_CHUNK):
            ids = scorer.vocabulary.batch(texts[first:first + PREDICT_CHUNK])
            parts.append(scorer(torch.from_numpy(ids)).numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, scorer.outputs), np.float64)


def to_onnx(scorer: TextScorer, opset: int, output: str) -> tuple[ModelProto, str]:
    """The model as ONNX over the texts, string [N, 1] (the input named as the text column), with the tokenizer in
    the graph in front of the network; how texts are split in its metadata."""
    example = torch.tensor([[2, 3, 1, 4], [2, PAD, PAD, PAD]], dtype=torch.int64) % scorer.vocabulary.size
    model, exporter = export_onnx(scorer, example, IDS, opset, output, words_axis=True)
    _prepend_tokenizer(model, scorer.vocabulary, scorer.column)
    described = {"input": scorer.column, "lowercase": "ascii", "words": WORD_RE2,
                 "max_tokens": scorer.vocabulary.max_tokens, "vocabulary_size": scorer.vocabulary.size}
    model.metadata_props.add(key=META_TEXT, value=json.dumps(described))
    return model, exporter


def _prepend_tokenizer(model: ModelProto, vocabulary: Vocabulary, column: str) -> None:
    """Texts string [N, 1] → ids int64 [N, longest], each text lowercased, split into words, cut at max_tokens and
    looked up, in front of the graph whose input is the ids."""
    from modelci.frameworks.text import graph

    def words(text: str, named: Callable[[str], str]) -> graph.Body:
        from onnx import TensorProto, helper

        nodes = [
            # NOTE: the "C" locale, which every machine has: ASCII letters alone, as data.text.tokens.words lowercases
            helper.make_node("StringNormalizer", [text], [named("lower")], case_change_action="LOWER", locale="C"),
            helper.make_node("Tokenizer", [named("lower")], [named("words")], domain="com.microsoft", mark=0,
                             mincharnum=1, pad_value=PADDING, tokenexp=WORD_RE2),
            helper.make_node("Slice", [named("words"), named("starts"), named("ends"), named("axes")],
                             [named("kept")]),
            helper.make_node("LabelEncoder", [named("kept")], [named("found")], domain="ai.onnx.ml",
                             keys_strings=[PADDING, *vocabulary.words],
                             values_int64s=[PAD, *range(UNKNOWN + 1, vocabulary.size)], default_int64=UNKNOWN),
            helper.make_node("Reshape", [named("found"), named("flat")], [named("ids")]),
        ]
        constants = [helper.make_tensor(named("starts"), TensorProto.INT64, [1], [0]),
                     helper.make_tensor(named("ends"), TensorProto.INT64, [1], [vocabulary.max_tokens]),
                     helper.make_tensor(named("axes"), TensorProto.INT64, [1], [1]),
                     helper.make_tensor(named("flat"), TensorProto.INT64, [1], [-1])]
        # NOTE: the Tokenizer's output typed: ONNX's shape inference crashes on an operator it does not know
        typed = [helper.make_tensor_value_info(named("words"), TensorProto.STRING, [None, None])]
        return graph.Body(nodes, named("ids"), constants, typed)

    graph.prepend(model, column, IDS, words, vocabulary.max_tokens, PAD,
                  {"ai.onnx.ml": ML_DOMAIN_OPSET, "com.microsoft": 1})
