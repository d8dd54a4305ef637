"""A Hugging Face WordPiece tokenizer (BERT's, and its family's: DistilBERT, MiniLM, ELECTRA...) as the tokenizing
step of the exported graph: one text → its ids, cut at `max_tokens` with its [CLS] and [SEP] kept, as
`tokenizer(text, truncation=True, max_length=max_tokens)` gives them.

The tokenizing itself is onnxruntime-extensions' BertTokenizer operator, given the tokenizer's vocabulary and its
normalizer's settings (lowercasing, accents, Chinese characters), after the characters the normalizer drops are
dropped.

NOTE: imports no torch; reads the tokenizer's own description (its tokenizer.json), not transformers' classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelci.errors import UsageError
from modelci.frameworks.text import graph
from modelci.frameworks.text.graph import CONTRIB

# NOTE: RE2 classes. C0 and C1 controls but tab, newline and carriage return; format and private-use characters;
# the replacement character. (NUL is beyond reach: the extensions' operators read a text up to its first NUL.)
DROPPED = r"[\x{1}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\x{FFFD}\p{Cf}\p{Co}]"
SEPARATORS = r"[\p{Zl}\p{Zp}]"


def recognises(described: dict[str, Any]) -> bool:
    return (described.get("model") or {}).get("type") == "WordPiece"


def attributes(described: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The BertTokenizer operator's attributes; exit 2 for a WordPiece tokenizer not of BERT's kind."""
    model, normalizer = described["model"], described.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer" or \
            (described.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        raise UsageError("the factory's WordPiece tokenizer has no BertNormalizer and BertPreTokenizer; modelci "
                         "carries BERT's kind of WordPiece (BERT, DistilBERT, MiniLM, ELECTRA...) in the exported "
                         "graph", hint="use a fast BERT tokenizer (BertTokenizerFast)")
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


def replacements(attributes: dict[str, Any]) -> list[graph.Replacement]:
    """What the tokenizer's normalizer (clean_text) does and the operator does not, made on the batch first:
    control and format characters and U+FFFD dropped, line and paragraph separators made spaces."""
    return [(DROPPED, ""), (SEPARATORS, " ")]


def body(text: str, named: Callable[[str], str], attributes: dict[str, Any], max_tokens: int) -> graph.Body:
    """One text [1], cleaned (`replacements`) → its ids [k], k <= max_tokens: the operator cuts as the tokenizer's
    truncation does.

    NOTE: one difference is left (README, Hugging Face text models): for a word with a character outside the
    vocabulary, the operator gives the pieces it found and [UNK], the tokenizer one [UNK] for the whole word. The
    operator's offsets do not tell the words apart reliably enough to undo it in the graph."""
    from onnx import TensorProto, helper

    def n(value: str) -> str:  # NOTE: apart from the names graph.prepend's own body takes
        return named(f"wordpiece_{value}")

    nodes = [helper.make_node("BertTokenizer", [text], [n("ids"), n("types"), n("mask")], domain=CONTRIB,
                              max_length=max_tokens, **attributes)]
    typed = [helper.make_tensor_value_info(n(v), TensorProto.INT64, [None]) for v in ("ids", "types", "mask")]
    return graph.Body(nodes, n("ids"), [], typed)
