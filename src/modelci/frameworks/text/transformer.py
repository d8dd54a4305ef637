"""A Hugging Face model for sequence classification or regression, with its tokenizer, as modelci trains, saves,
scores and exports it: the model behind the task's output, fed token ids, and in the exported ONNX model behind
the tokenizer (`tokenizer_graph`), so the artifact takes the texts themselves.

The network modelci trains is `Transformer`: the factory's model, given the ids and an attention mask of the
ids that are not padding, returning its logits; the loop, seeds, resume, bf16 autocast on CUDA, early stopping
and out-of-memory report are the PyTorch ones (`torch_loop`). Each text is cut at `data.text.max_tokens`
tokens, as the tokenizer's own truncation cuts it.

NOTE: imports torch and transformers: only the Hugging Face adapter's methods import this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modelci.config import Config
from modelci.errors import ModelFactoryError, UsageError, first_line
from modelci.evaluate.onnx_model import META_TEXT
from modelci.features import FeatureSpec, Target
from modelci.frameworks import Fit, distributed, huggingface, torch_model
from modelci.frameworks.factory import call_factory
from modelci.frameworks.text.tokenizer_graph import IDS, prepend_tokenizer, steps
from modelci.frameworks.text.training import feed
from modelci.frameworks.text.vocabulary import as_text, padded
from modelci.frameworks.torch_loop import device_for, run
from modelci.frameworks.torch_model import Scorer, export_onnx
from modelci.outputs import TrainLog

if TYPE_CHECKING:
    from onnx import ModelProto

PREDICT_CHUNK = 256  # texts per forward pass when scoring
NO_FEATURES = FeatureSpec((), ())


class Transformer(nn.Module):
    """The factory's model on token ids: the attention mask is the ids that are not padding; its logits out."""

    def __init__(self, model: nn.Module, pad: int) -> None:
        super().__init__()
        self.model, self.pad = model, pad

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=ids, attention_mask=(ids != self.pad).long()).logits
        return logits


class TransformerScorer(Scorer):
    """A trained Hugging Face model: the network and the task's output, with its tokenizer and text column."""

    def __init__(self, net: Transformer, target: Target, tokenizer: Any, column: str, max_tokens: int) -> None:
        super().__init__(net, target)
        self.tokenizer, self.column, self.max_tokens, self.pad = tokenizer, column, max_tokens, net.pad
        self.outputs = 2 if target.task == "binary" else (target.output_dim if target.task == "multiclass" else 1)

    def ids(self, texts: list[Any]) -> list[list[int]]:
        found: list[list[int]] = self.tokenizer([as_text(t) for t in texts], truncation=True,
                                                max_length=self.max_tokens)["input_ids"]
        return found


def check_made(made: Any, config: Config, output_dim: int, max_tokens: int) -> tuple[Transformer, Any]:
    """The factory's (model, tokenizer), checked: the model takes the tokenizer's ids and gives [batch,
    output_dim], and max_tokens fits its positions."""
    model, tokenizer = made
    if tokenizer.pad_token_id is None:
        raise ModelFactoryError(f"model.factory: {config.model.factory}'s tokenizer has no padding token",
                                hint="give the tokenizer a pad_token (BERT's is [PAD])")
    least = tokenizer.num_special_tokens_to_add() + 1  # NOTE: [CLS] and [SEP] around one token, for BERT
    if max_tokens < least:
        raise UsageError(f"data.text.max_tokens: {max_tokens}, fewer than the {least} a text takes with the "
                         "tokenizer's special tokens", hint=f"set data.text.max_tokens to at least {least}")
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int):
        # NOTE: RoBERTa's family numbers positions from its padding id + 1, so that many positions go unused
        padding = getattr(getattr(model.base_model, "embeddings", None), "padding_idx", None)
        positions -= padding + 1 if isinstance(padding, int) else 0
    if isinstance(positions, int) and max_tokens > positions:
        raise UsageError(f"data.text.max_tokens: {max_tokens}, more than the model's {positions} positions",
                         hint=f"set data.text.max_tokens to at most {positions}")
    net = Transformer(model, int(tokenizer.pad_token_id))
    ids = torch.tensor(tokenizer(["a first text", "another"], padding=True)["input_ids"], dtype=torch.int64)
    with torch.no_grad():
        try:
            found = tuple(net.eval()(ids).shape)
        except Exception as exc:
            raise ModelFactoryError(f"the model fails on its tokenizer's ids: {type(exc).__name__}: {first_line(exc)}",
                                    hint="return a model for sequence classification and its own tokenizer") from None
    if found != (2, output_dim):
        raise ModelFactoryError(f"the model returns logits of shape {found} for 2 texts; this task needs "
                                f"(2, {output_dim})", hint="build the model with num_labels=output_dim")
    return net, tokenizer


def fit(made: Any, fit: Fit) -> TrainLog:
    """Fine-tune the factory's model on the texts of `fit.datasets`: in this process, or in a torchrun job."""
    config, target, job = fit.config, fit.target, distributed.from_env()
    assert config.data.text is not None  # NOTE: the adapter sends only text models here
    max_tokens, column = config.data.text.max_tokens, fit.log.input_columns[0]
    device = device_for(job, config.train.device)
    net, tokenizer = check_made(made, config, target.output_dim, max_tokens)
    steps(tokenizer)  # NOTE: a tokenizer the export could not carry is refused before training, not after
    net = net.to(device)
    scorer = TransformerScorer(net, target, tokenizer, column, max_tokens)
    fit.log.text = {"column": column, "max_tokens": max_tokens, "vocabulary": len(tokenizer),
                    "unknown_share": _unknown_share(scorer, fit), "tokenizer": type(tokenizer).__name__}

    def save(trained: nn.Module) -> None:
        assert isinstance(trained, Transformer)
        saved = TransformerScorer(trained.cpu(), target, tokenizer, column, max_tokens).eval()
        save_checkpoint(fit.out / huggingface.CHECKPOINT, saved, target, config)

    return run(net, fit, device, job, feed(fit, column, scorer.ids, net.pad, device, job), save)


def _unknown_share(scorer: TransformerScorer, fit: Fit) -> float:
    """The validation texts' tokens that are the tokenizer's unknown token, as a share."""
    unknown = scorer.tokenizer.unk_token_id
    ids = [i for row in scorer.ids(list(fit.datasets.validation[scorer.column])) for i in row]
    return round(float(np.mean(np.asarray(ids) == unknown)), 4) if ids and unknown is not None else 0.0


def save_checkpoint(path: Path, scorer: TransformerScorer, target: Target, config: Config) -> None:
    torch_model.save_checkpoint(path, scorer, NO_FEATURES, target, config,
                                huggingface={"column": scorer.column, "max_tokens": scorer.max_tokens})


def load_checkpoint(path: Path, config: Config) -> tuple[TransformerScorer, Target, str]:
    """Rebuild the fine-tuned model from its checkpoint and the config's factory (which gives the tokenizer)."""
    def read(data: dict[str, Any]) -> tuple[str, int]:
        return str(data["huggingface"]["column"]), int(data["huggingface"]["max_tokens"])

    (column, max_tokens), target, state, label = torch_model.read_checkpoint(path, "a Hugging Face model's", read)
    net, tokenizer = check_made(call_factory(config, {}, target.output_dim), config, target.output_dim, max_tokens)
    scorer = TransformerScorer(net, target, tokenizer, column, max_tokens)
    return torch_model.restore(scorer, state, path, config), target, label


def predict(scorer: TransformerScorer, rows: Any) -> np.ndarray:
    """The model's output for a DataFrame's texts, as float64 [rows, outputs], tokenized by its tokenizer."""
    texts = list(rows[scorer.column])
    parts = []
    with torch.no_grad():
        for first in range(0, len(texts), PREDICT_CHUNK):
            ids = torch.from_numpy(padded(scorer.ids(texts[first:first + PREDICT_CHUNK]), scorer.pad))
            parts.append(scorer(ids).numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, scorer.outputs), np.float64)


def to_onnx(scorer: TransformerScorer, opset: int, output: str) -> tuple[ModelProto, str]:
    """The model as ONNX over the texts, string [N, 1], the tokenizer in the graph in front of it."""
    # NOTE: two texts of two lengths, padded: the exporter traces the model on them
    example = torch.from_numpy(padded(scorer.ids(["an example text of a few words", "another"]), scorer.pad))
    # NOTE: the TorchScript exporter's graph of a transformer runs a quarter faster in ONNX Runtime than the dynamo
    # exporter's (benchmarks/text_serve)
    model, exporter = export_onnx(scorer, example, IDS, opset, output, words_axis=True, torchscript_first=True)
    prepend_tokenizer(model, scorer.tokenizer, scorer.column, scorer.max_tokens)
    described = {"input": scorer.column, "tokenizer": type(scorer.tokenizer).__name__,
                 "max_tokens": scorer.max_tokens, "vocabulary_size": len(scorer.tokenizer)}
    model.metadata_props.add(key=META_TEXT, value=json.dumps(described))
    return model, exporter
