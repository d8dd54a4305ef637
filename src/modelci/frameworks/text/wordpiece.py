"""A Hugging Face WordPiece tokenizer (BERT's, and its family's: DistilBERT, MiniLM, ELECTRA...) as an ONNX graph in
front of the model: texts, string [N, 1], in; token ids, int64 [N, longest], out, padded with the tokenizer's
padding id, each text cut at `max_tokens` ids with its [CLS] and [SEP] kept, as `tokenizer(texts,
truncation=True, max_length=max_tokens)` gives them.

The tokenizing itself is onnxruntime-extensions' BertTokenizer operator (domain ai.onnx.contrib), given the
tokenizer's vocabulary and its normalizer's settings (lowercasing, accents, Chinese characters), after the
characters the normalizer drops are dropped. That operator reads one text (two are a pair), so a Loop runs it
on each text of the batch (`graph.prepend`). Parity compares this graph with the tokenizer itself on the
evaluation texts, long ones included.

NOTE: imports no torch; reads the tokenizer's own description (its tokenizer.json), not transformers' classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelci.errors import UsageError
from modelci.frameworks.text import graph

if TYPE_CHECKING:
    from onnx import ModelProto

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operators
IDS = "modelci_token_ids"  # the graph's token ids, between the tokenizer and the network
# NOTE: RE2 classes. C0 and C1 controls but tab, newline and carriage return; format and private-use characters;
# the replacement character. (NUL is beyond reach: the extensions' operators read a text up to its first NUL.)
DROPPED = r"[\x{1}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\x{FFFD}\p{Cf}\p{Co}]"
SEPARATORS = r"[\p{Zl}\p{Zp}]"


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
    attributes = settings(tokenizer)

    def wordpiece(text: str, named: Callable[[str], str]) -> graph.Body:
        return _wordpiece(text, named, attributes, max_tokens)

    graph.prepend(model, column, IDS, wordpiece, max_tokens, int(tokenizer.pad_token_id), {CONTRIB: 1})


def _wordpiece(text: str, named: Callable[[str], str], attributes: dict[str, Any], max_tokens: int) -> graph.Body:
    """One text [1] → its ids [k], k <= max_tokens. First what the tokenizer's normalizer (clean_text) does and the
    operator does not: control and format characters and U+FFFD dropped, line and paragraph separators made
    spaces; then the operator, which cuts as the tokenizer's truncation does.

    NOTE: one difference is left (README, Hugging Face text models): for a word with a character outside the
    vocabulary, the operator gives the pieces it found and [UNK], the tokenizer one [UNK] for the whole word. The
    operator's offsets do not tell the words apart reliably enough to undo it in the graph."""
    from onnx import TensorProto, helper

    def n(value: str) -> str:  # NOTE: apart from the names graph.prepend's own body takes
        return named(f"wordpiece_{value}")

    nodes = [
        helper.make_node("StringRegexReplace", [text, n("unseen"), n("nothing")], [n("seen")], domain=CONTRIB,
                         global_replace=1),
        helper.make_node("StringRegexReplace", [n("seen"), n("breaks"), n("space")], [n("clean")], domain=CONTRIB,
                         global_replace=1),
        helper.make_node("BertTokenizer", [n("clean")], [n("ids"), n("types"), n("mask")], domain=CONTRIB,
                         max_length=max_tokens, **attributes),
    ]
    patterns = [helper.make_tensor(n(key), TensorProto.STRING, [1], [value.encode()])  # type: ignore[list-item]
                for key, value in (("unseen", DROPPED), ("nothing", ""), ("breaks", SEPARATORS), ("space", " "))]
    typed = [helper.make_tensor_value_info(n(v), TensorProto.INT64, [None]) for v in ("ids", "types", "mask")]
    typed += [helper.make_tensor_value_info(n(v), TensorProto.STRING, [1]) for v in ("seen", "clean")]
    return graph.Body(nodes, n("ids"), patterns, typed)
