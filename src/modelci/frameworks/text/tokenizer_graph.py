"""A Hugging Face fast tokenizer in front of the exported model: texts, string [N, 1], in; its token ids, int64
[N, longest], out, each text cut at `max_tokens` as `tokenizer(texts, truncation=True, max_length=max_tokens)`
cuts it, padded with the tokenizer's padding id.

Which operators tokenize depends on the tokenizer's model, read from its own description (tokenizer.json):
WordPiece of BERT's kind (`wordpiece`) or byte-level BPE of RoBERTa's kind (`bytelevel`), each an
onnxruntime-extensions operator that reads one text, run on each text of the batch by a Loop (`graph.prepend`).
Any other kind (SentencePiece's Unigram, say) is exit 2 before training. Parity compares the graph with the
tokenizer itself on the evaluation texts, long ones included.

NOTE: imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from modelci.errors import UsageError
from modelci.frameworks.text import bytelevel, graph, wordpiece
from modelci.frameworks.text.graph import CONTRIB

if TYPE_CHECKING:
    from onnx import ModelProto

IDS = "modelci_token_ids"  # the graph's token ids, between the tokenizer and the network
KINDS = (wordpiece, bytelevel)


def steps(tokenizer: Any) -> tuple[ModuleType, dict[str, Any]]:
    """The module that puts this tokenizer in the graph, and its settings; exit 2 for a tokenizer no module
    carries (called before training, so that a model is never trained to fail at export)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    described = json.loads(backend.to_str()) if backend is not None else {}
    for kind in KINDS:
        if kind.recognises(described):
            return kind, kind.attributes(described, tokenizer)
    found = (described.get("model") or {}).get("type") or type(tokenizer).__name__
    raise UsageError(f"the factory's tokenizer is a {found} tokenizer; modelci puts a WordPiece tokenizer of BERT's "
                     "kind (BERT, DistilBERT, MiniLM, ELECTRA...) or a byte-level BPE one of RoBERTa's kind "
                     "(RoBERTa, DistilRoBERTa, BART...) in the exported graph, and no other yet",
                     hint="use a fast tokenizer of one of those kinds (its tokenizer.json)")


def prepend_tokenizer(model: ModelProto, tokenizer: Any, column: str, max_tokens: int) -> None:
    """Texts [N, 1] → the tokenizer's ids [N, longest], in front of the graph whose input is IDS."""
    kind, settings = steps(tokenizer)

    def tokenize(text: str, named: Callable[[str], str]) -> graph.Body:
        body: graph.Body = kind.body(text, named, settings, max_tokens)
        return body

    graph.prepend(model, column, IDS, tokenize, max_tokens, int(tokenizer.pad_token_id), {CONTRIB: 1},
                  kind.replacements(settings))
