"""The example's model: a small BERT for sequence classification, built from a config, and its tokenizer.

modelci calls `build(output_dim=..., **model.params)` and fine-tunes the model it returns on the tokenizer's
ids (the attention mask is the ids that are not padding), then exports both: the tokenizer runs inside the
ONNX graph. A pretrained model is loaded the same way from a folder of the repository:
`BertForSequenceClassification.from_pretrained(HERE / "pretrained", num_labels=output_dim)`.
"""

from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

HERE = Path(__file__).parent


def build(output_dim: int, hidden: int = 64, layers: int = 2, heads: int = 2):
    tokenizer = BertTokenizerFast.from_pretrained(HERE / "tokenizer")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=128,
                        num_labels=output_dim)
    return BertForSequenceClassification(config), tokenizer
