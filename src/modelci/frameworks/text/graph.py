"""The exported text model's front: texts, string [N, 1], in; token ids, int64 [N, longest], out, padded.

Regular-expression replacements, if any, run first on the whole batch (the extensions' StringRegexReplace
compiles its pattern at each run, which costs more than the matching: once a call, not once a text). Then each
text is tokenized alone, in a Loop over the batch, its ids cut at `max_tokens` and padded to it, and the batch is
then cut to its longest text (at least one id wide, all padding for a batch of texts without a word, as
`Texts.padded` and `Vocabulary.batch` pad it). One text at a time bounds the memory a request can take: a
tokenizer of the whole batch at once pads every text to the batch's longest before any cut, so one long text
among many short ones would cost rows × its length.

NOTE: imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operators, which the Hugging Face tokenizers' steps use


@dataclass
class Body:
    """The nodes that tokenize one text (string [1], named `text`) into its ids (int64 [k], k <= max_tokens)."""

    nodes: list[NodeProto]
    ids: str
    initializers: list[TensorProto] = field(default_factory=list)
    value_info: list[ValueInfoProto] = field(default_factory=list)


Tokenize = Callable[[str, Callable[[str], str]], Body]  # (the text's name, a namer of the body's values) → Body
Replacement = tuple[str, str]  # an RE2 pattern and its rewrite, as StringRegexReplace takes them (every match)


def prepend(model: ModelProto, column: str, ids: str, tokenize: Tokenize, max_tokens: int, pad: int,
            domains: dict[str, int], replacements: Sequence[Replacement] = ()) -> None:
    """Texts [N, 1] named `column` → ids [N, longest] named `ids`, in front of the graph whose input is `ids`."""
    from onnx import TensorProto, helper

    graph = model.graph
    name = {key: f"modelci_texts_{key}" for key in ("flat", "shape", "count", "first", "go", "padded", "lengths",
                                                   "most", "one_wide", "longest", "zero", "one", "one_scalar")}
    replacing, replacements_constants, texts = _replacing(name["flat"], replacements)
    nodes = [
        helper.make_node("Reshape", [column, name["shape"]], [name["flat"]], name="modelci_texts_flat"),
        *replacing,
        helper.make_node("Shape", [texts], [name["count"]], name="modelci_texts_count", start=0, end=1),
        helper.make_node("Squeeze", [name["count"]], [name["first"]], name="modelci_texts_rows"),
        helper.make_node("Loop", [name["first"], name["go"]], [name["padded"], name["lengths"]],
                         name="modelci_texts_each", body=_each(texts, tokenize, max_tokens, pad)),
        helper.make_node("ReduceMax", [name["lengths"]], [name["most"]], name="modelci_texts_most", keepdims=0),
        helper.make_node("Max", [name["most"], name["one_scalar"]], [name["one_wide"]], name="modelci_texts_wide"),
        helper.make_node("Reshape", [name["one_wide"], name["shape"]], [name["longest"]],
                         name="modelci_texts_longest"),
        helper.make_node("Slice", [name["padded"], name["zero"], name["longest"], name["one"]], [ids],
                         name="modelci_texts_cut"),
    ]
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)
    graph.initializer.extend([
        *replacements_constants,
        helper.make_tensor(name["shape"], TensorProto.INT64, [1], [-1]),
        helper.make_tensor(name["go"], TensorProto.BOOL, [], [True]),
        helper.make_tensor(name["zero"], TensorProto.INT64, [1], [0]),
        helper.make_tensor(name["one"], TensorProto.INT64, [1], [1]),
        helper.make_tensor(name["one_scalar"], TensorProto.INT64, [], [1]),
    ])
    (given,) = [i for i in graph.input if i.name == ids]
    graph.input.remove(given)
    graph.input.insert(0, helper.make_tensor_value_info(column, TensorProto.STRING, [None, 1]))
    for domain, version in domains.items():
        if not any(o.domain == domain for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(domain, version))


def _replacing(texts: str, replacements: Sequence[Replacement]) -> tuple[list[NodeProto], list[TensorProto], str]:
    """The nodes that make each replacement in turn in the batch's texts [N], their constants, and the name of
    the result."""
    from onnx import TensorProto, helper

    nodes, constants, replaced = [], [], texts
    for at, (pattern, rewrite) in enumerate(replacements):
        given, made = (f"modelci_texts_pattern{at}", f"modelci_texts_rewrite{at}"), f"modelci_texts_replaced{at}"
        nodes.append(helper.make_node("StringRegexReplace", [replaced, *given], [made],
                                      name=f"modelci_texts_replace{at}", domain=CONTRIB, global_replace=1))
        constants += [helper.make_tensor(name, TensorProto.STRING, [1], [value.encode()])  # type: ignore[list-item]
                      for name, value in zip(given, (pattern, rewrite), strict=True)]
        replaced = made
    return nodes, constants, replaced


def _each(texts: str, tokenize: Tokenize, max_tokens: int, pad: int) -> Any:
    """The Loop's body: text `i` of `texts` (a value of the outer graph) → its ids padded to max_tokens, and their
    count."""
    from onnx import TensorProto, helper

    def named(value: str) -> str:  # NOTE: the body sees the outer graph's names: its own must not clash with them
        return f"modelci_text_each_{value}"

    body = tokenize(named("text"), named)
    nodes = [
        helper.make_node("Gather", [texts, named("i")], [named("scalar")], axis=0),
        helper.make_node("Unsqueeze", [named("scalar"), named("axis0")], [named("text")]),
        *body.nodes,
        helper.make_node("Shape", [body.ids], [named("length")]),
        helper.make_node("Sub", [named("max_tokens"), named("length")], [named("short")]),
        helper.make_node("Concat", [named("zero"), named("short")], [named("pads")], axis=0),
        helper.make_node("Pad", [body.ids, named("pads"), named("pad")], [named("padded")]),
        helper.make_node("Identity", [named("go_in")], [named("go_out")]),
    ]
    constants = [helper.make_tensor(named("axis0"), TensorProto.INT64, [1], [0]),
                 helper.make_tensor(named("max_tokens"), TensorProto.INT64, [1], [max_tokens]),
                 helper.make_tensor(named("zero"), TensorProto.INT64, [1], [0]),
                 helper.make_tensor(named("pad"), TensorProto.INT64, [], [pad])]
    return helper.make_graph(
        nodes, "modelci_tokenize_one_text",
        [helper.make_tensor_value_info(named("i"), TensorProto.INT64, []),
         helper.make_tensor_value_info(named("go_in"), TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(named("go_out"), TensorProto.BOOL, []),
         helper.make_tensor_value_info(named("padded"), TensorProto.INT64, [max_tokens]),
         helper.make_tensor_value_info(named("length"), TensorProto.INT64, [1])],
        initializer=[*constants, *body.initializers], value_info=body.value_info)
