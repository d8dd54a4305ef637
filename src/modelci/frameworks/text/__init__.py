"""Text models: a PyTorch network over word ids, trained on a table's text column, exported with its tokenizer.

The model factory, for a text model (`data.text` set in modelci.yaml):

    def build(vocabulary_size: int, output_dim: int, **params) -> torch.nn.Module

The module maps word ids, int64 [batch, words], to [batch, output_dim] raw scores: one logit for a
binary task, one per class for multiclass, one value for regression. Id 0 pads a shorter text to its
batch's longest (a network ignores it: `padding_idx=0`, or a mask of `ids > 0`), 1 is a word outside the
vocabulary, 2 and up the vocabulary's words, most frequent first. modelci adds the rest: in front, the
tokenizer (`vocabulary`: the text's words, `data.text.tokens.words`, cut at `data.text.max_tokens`, as
ids), behind, the sigmoid or softmax. Both travel in the exported ONNX model, whose input (named as the
text column) is the texts themselves, string [N, 1], so no client tokenizes. `examples/reviews/model.py`
is a complete factory: an embedding bag (the mean of the words' embeddings) and a linear layer.

The modules: `vocabulary` (learning the words and turning texts into ids, no torch), `network` (the
model, its checkpoint, and its export with the tokenizer in the graph), `training` (batches of similar
lengths, padded per batch, through the PyTorch loop of `modelci.frameworks.torch_loop`).
"""
