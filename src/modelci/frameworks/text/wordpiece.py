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
from typing import TYPE_CHECKING, Any

from modelci.errors import UsageError

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto

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
    from onnx import TensorProto, helper

    graph, pad = model.graph, int(tokenizer.pad_token_id)
    name = {key: f"modelci_tokens_{key}" for key in ("flat", "shape", "count", "first", "go", "ids", "lengths",
                                                   "most", "longest", "zero", "one")}
    nodes = [
        helper.make_node("Reshape", [column, name["shape"]], [name["flat"]], name="modelci_tokens_flat"),
        helper.make_node("Shape", [name["flat"]], [name["count"]], name="modelci_tokens_count", start=0, end=1),
        helper.make_node("Squeeze", [name["count"]], [name["first"]], name="modelci_tokens_texts"),
        helper.make_node("Loop", [name["first"], name["go"]], [name["ids"], name["lengths"]],
                         name="modelci_tokens_each_text", body=_each_text(name["flat"], settings(tokenizer), pad,
                                                                          max_tokens)),
        helper.make_node("ReduceMax", [name["lengths"]], [name["most"]], name="modelci_tokens_most", keepdims=0),
        helper.make_node("Reshape", [name["most"], name["shape"]], [name["longest"]], name="modelci_tokens_longest"),
        helper.make_node("Slice", [name["ids"], name["zero"], name["longest"], name["one"]], [IDS],
                         name="modelci_tokens_cut"),
    ]
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)
    graph.initializer.extend([
        helper.make_tensor(name["shape"], TensorProto.INT64, [1], [-1]),
        helper.make_tensor(name["go"], TensorProto.BOOL, [], [True]),
        helper.make_tensor(name["zero"], TensorProto.INT64, [1], [0]),
        helper.make_tensor(name["one"], TensorProto.INT64, [1], [1]),
    ])
    (ids,) = [i for i in graph.input if i.name == IDS]
    graph.input.remove(ids)
    graph.input.insert(0, helper.make_tensor_value_info(column, TensorProto.STRING, [None, 1]))
    if not any(o.domain == CONTRIB for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB, 1))


def _each_text(texts: str, attributes: dict[str, Any], pad: int, max_tokens: int) -> GraphProto:
    """The Loop's body: text `i` of `texts` (a value of the outer graph) → its ids padded to max_tokens, and its
    length."""
    from onnx import TensorProto, helper

    def _b(name: str) -> str:  # NOTE: the body sees the outer graph's names: its own must not clash with them
        return f"modelci_wordpiece_{name}"

    nodes = [
        helper.make_node("Gather", [texts, _b("i")], [_b("text")], axis=0),
        helper.make_node("Unsqueeze", [_b("text"), _b("axis0")], [_b("one_text")]),
        helper.make_node("BertTokenizer", [_b("one_text")], [_b("ids"), _b("types"), _b("mask")], domain=CONTRIB,
                         max_length=max_tokens, **attributes),
        helper.make_node("Shape", [_b("ids")], [_b("length")]),
        helper.make_node("Sub", [_b("max_tokens"), _b("length")], [_b("short")]),
        helper.make_node("Concat", [_b("zero"), _b("short")], [_b("pads")], axis=0),
        helper.make_node("Pad", [_b("ids"), _b("pads"), _b("pad")], [_b("padded")]),
        helper.make_node("Identity", [_b("go_in")], [_b("go_out")]),
    ]
    constants = [helper.make_tensor(_b("axis0"), TensorProto.INT64, [1], [0]),
                 helper.make_tensor(_b("max_tokens"), TensorProto.INT64, [1], [max_tokens]),
                 helper.make_tensor(_b("zero"), TensorProto.INT64, [1], [0]),
                 helper.make_tensor(_b("pad"), TensorProto.INT64, [], [pad])]
    return helper.make_graph(
        nodes, "modelci_tokenize_one_text",
        [helper.make_tensor_value_info(_b("i"), TensorProto.INT64, []),
         helper.make_tensor_value_info(_b("go_in"), TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(_b("go_out"), TensorProto.BOOL, []),
         helper.make_tensor_value_info(_b("padded"), TensorProto.INT64, [max_tokens]),
         helper.make_tensor_value_info(_b("length"), TensorProto.INT64, [1])],
        initializer=constants,
        value_info=[helper.make_tensor_value_info(_b(n), TensorProto.INT64, [None]) for n in ("ids", "types", "mask")])
