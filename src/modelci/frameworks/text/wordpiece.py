"""A Hugging Face WordPiece tokenizer (BERT's, and its family's: DistilBERT, MiniLM, ELECTRA...) as an ONNX graph in
front of the model: texts, string [N, 1], in; token ids, int64 [N, longest], out, padded with the tokenizer's
padding id, each text cut at `max_tokens` ids with its [CLS] and [SEP] kept, as `tokenizer(texts,
truncation=True, max_length=max_tokens)` gives them.

The tokenizing itself is onnxruntime-extensions' BertTokenizer operator (domain ai.onnx.contrib), given the
tokenizer's vocabulary and its normalizer's settings (lowercasing, accents, Chinese characters). That operator
reads one text (two are a pair), so a Loop runs it on each text of the batch, pads its ids to `max_tokens`, and
the batch is then cut to its longest text. Parity compares this graph with the tokenizer itself on the
evaluation texts, long ones included.

NOTE: imports no torch; reads the tokenizer's own description (its tokenizer.json), not transformers' classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelci.errors import UsageError

if TYPE_CHECKING:
    from onnx import ModelProto

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operators
IDS = "modelci_token_ids"  # the graph's token ids, between the tokenizer and the network


def settings(tokenizer: Any) -> dict[str, Any]:
    """The BertTokenizer operator's attributes for a fast WordPiece tokenizer; exit 2 for any other tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    described = json.loads(backend.to_str()) if backend is not None else {}
    model, normalizer = described.get("model") or {}, described.get("normalizer") or {}
    if model.get("type") != "WordPiece" or normalizer.get("type") != "BertNormalizer" or \
            (described.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        kind = model.get("type") or type(tokenizer).__name__
        raise UsageError(f"the factory's tokenizer is a {kind} tokenizer; modelci puts a BERT-style WordPiece "
                         "tokenizer (BERT, DistilBERT, MiniLM, ELECTRA...) in the exported graph, and no other yet",
                         hint="use a fast WordPiece tokenizer (tokenizer.json with a WordPiece model and a "
                              "BertNormalizer)")
    lowercase = bool(normalizer.get("lowercase", True))
    accents = normalizer.get("strip_accents")
    vocabulary = sorted(model["vocab"].items(), key=lambda item: item[1])
    if [at for _, at in vocabulary] != list(range(len(vocabulary))):
        raise UsageError("the tokenizer's vocabulary does not number its tokens 0, 1, 2...",
                         hint="save the tokenizer again with tokenizers or transformers")
    return {"vocab_file": "\n".join(token for token, _ in vocabulary), "do_lower_case": int(lowercase),
            "strip_accents": int(lowercase if accents is None else accents),
            "tokenize_chinese_chars": int(normalizer.get("handle_chinese_chars", True)),
            "unk_token": model.get("unk_token", "[UNK]"), "suffix_indicator": model.get("continuing_subword_prefix",
                                                                                           "##"),
            "cls_token": tokenizer.cls_token, "sep_token": tokenizer.sep_token, "pad_token": tokenizer.pad_token,
            "mask_token": tokenizer.mask_token}


def prepend_tokenizer(model: ModelProto, tokenizer: Any, column: str, max_tokens: int) -> None:
    """Texts [N, 1] → the tokenizer's ids [N, longest], in front of the graph whose input is IDS."""
    from modelci.frameworks.text import graph

    attributes = settings(tokenizer)

    def wordpiece(text: str, named: Callable[[str], str]) -> graph.Body:
        from onnx import TensorProto, helper

        nodes = [helper.make_node("BertTokenizer", [text], [named("ids"), named("types"), named("mask")],
                                  domain=CONTRIB, max_length=max_tokens, **attributes)]
        typed = [helper.make_tensor_value_info(named(n), TensorProto.INT64, [None]) for n in ("ids", "types", "mask")]
        return graph.Body(nodes, named("ids"), value_info=typed)

    graph.prepend(model, column, IDS, wordpiece, max_tokens, int(tokenizer.pad_token_id), {CONTRIB: 1})
