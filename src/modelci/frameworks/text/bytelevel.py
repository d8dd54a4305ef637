"""A Hugging Face byte-level BPE tokenizer of RoBERTa's kind (RoBERTa, DistilRoBERTa, BART, Longformer...: a BPE
model behind a ByteLevel pre-tokenizer, no normalizer, `<s> text </s>` around each text) as the tokenizing step of
the exported graph: one text → its ids, cut at `max_tokens` with `<s>` and `</s>` kept, as `tokenizer(text,
truncation=True, max_length=max_tokens)` gives them.

The tokenizing itself is onnxruntime-extensions' RobertaTokenizer operator given the tokenizer's vocabulary, merges
and added tokens (which it splits out of the text, as the tokenizer does); an added token that strips the spaces
before or after it (RoBERTa's `<mask>`) has them stripped first, which the operator does not do.

NOTE: imports no torch; reads the tokenizer's own description (its tokenizer.json).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from modelci.errors import UsageError
from modelci.frameworks.text import graph
from modelci.frameworks.text.graph import CONTRIB

# NOTE: what the tokenizer strips beside an added token: Unicode's White_Space property, as an RE2 class
SPACES = r"[\t\n\x{B}\x{C}\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+"


def recognises(described: dict[str, Any]) -> bool:
    return (described.get("model") or {}).get("type") == "BPE" and \
        (described.get("pre_tokenizer") or {}).get("type") == "ByteLevel"


def attributes(described: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The RobertaTokenizer operator's attributes and the spaces to strip; exit 2 for a variant it would read
    differently from the tokenizer."""
    model, pre, post = described["model"], described["pre_tokenizer"], described.get("post_processor") or {}
    hint = "use RoBERTa's tokenizer as saved by transformers (or a BERT-style WordPiece one)"
    if described.get("normalizer") is not None or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        raise UsageError("the factory's byte-level BPE tokenizer has a normalizer or adds a prefix space; modelci "
                         "carries RoBERTa's kind in the exported graph (no normalizer, no prefix space)", hint=hint)
    vocabulary = model["vocab"]
    if post.get("type") != "RobertaProcessing" or post.get("cls") != ["<s>", vocabulary.get("<s>")] or \
            post.get("sep") != ["</s>", vocabulary.get("</s>")]:
        raise UsageError("the factory's byte-level BPE tokenizer does not put <s> and </s> around a text as RoBERTa's "
                         "does; modelci carries RoBERTa's kind of byte-level BPE in the exported graph", hint=hint)
    added = described.get("added_tokens") or []
    if any(token.get("single_word") for token in added):
        raise UsageError("the factory's tokenizer has a single_word added token, which the exported graph cannot "
                         "read as the tokenizer does", hint="add the token with single_word=False")
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    return {"operator": {"vocab": json.dumps(vocabulary, ensure_ascii=False), "merges": "\n".join(merges),
                         "added_token": "\n".join(f"{token['content']}={token['id']}" for token in added),
                         "padding_length": -1},
            "strip": [_stripping(token) for token in added if token.get("lstrip") or token.get("rstrip")]}


def _stripping(token: dict[str, Any]) -> graph.Replacement:
    """(pattern, rewrite) that strips the spaces the tokenizer strips before (lstrip) or after (rstrip) a token."""
    content = re.escape(token["content"])
    before, after = SPACES if token.get("lstrip") else "", SPACES if token.get("rstrip") else ""
    return f"{before}({content}){after}", r"\1"


def replacements(settings: dict[str, Any]) -> list[graph.Replacement]:
    """The spaces the tokenizer strips beside its lstrip and rstrip added tokens, stripped on the batch first."""
    return list(settings["strip"])


def body(text: str, named: Callable[[str], str], settings: dict[str, Any], max_tokens: int) -> graph.Body:
    """One text [1], its spaces stripped (`replacements`) → its ids [k], k <= max_tokens: `<s>`, the text's first
    max_tokens - 2 tokens, `</s>`."""
    from onnx import TensorProto, helper

    def n(value: str) -> str:  # NOTE: apart from the names graph.prepend's own body takes
        return named(f"bytelevel_{value}")

    nodes = [
        helper.make_node("RobertaTokenizer", [text], [n("batch"), n("mask")], domain=CONTRIB, **settings["operator"]),
        helper.make_node("Squeeze", [n("batch"), n("axis0")], [n("all")]),  # NOTE: <s> ... </s>
        helper.make_node("Slice", [n("all"), n("zero"), n("last")], [n("words")]),
        helper.make_node("Slice", [n("words"), n("zero"), n("kept")], [n("cut")]),
        helper.make_node("Slice", [n("all"), n("last"), n("end")], [n("close")]),
        helper.make_node("Concat", [n("cut"), n("close")], [n("ids")], axis=0),
    ]
    constants = [helper.make_tensor(n(key), TensorProto.INT64, [1], [value]) for key, value in
                 (("axis0", 0), ("zero", 0), ("last", -1), ("kept", max_tokens - 1), ("end", 2 ** 62))]
    typed = [helper.make_tensor_value_info(n(v), TensorProto.INT64, [1, None]) for v in ("batch", "mask")]
    typed += [helper.make_tensor_value_info(n(v), TensorProto.INT64, [None]) for v in ("all", "words", "cut",
                                                                                        "close", "ids")]
    return graph.Body(nodes, n("ids"), constants, typed)
