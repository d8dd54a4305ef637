"""A BERT-style WordPiece tokenizer learnt from the training reviews, saved as transformers saves one, so that the
example downloads nothing. A team fine-tuning a pretrained model keeps its tokenizer (and weights) in a folder of
the repository instead, and its factory loads them with from_pretrained(PATH).

    python make_tokenizer.py --data data/train.parquet --out tokenizer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/train.parquet"))
    parser.add_argument("--out", type=Path, default=Path("tokenizer"))
    parser.add_argument("--size", type=int, default=1000, help="the vocabulary's size")
    args = parser.parse_args()
    texts = pd.read_parquet(args.data)["review"].tolist()
    found = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    found.normalizer = normalizers.BertNormalizer(lowercase=True)
    found.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    found.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=args.size, special_tokens=SPECIAL))
    found.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, found.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    BertTokenizerFast(tokenizer_object=found, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(args.out)


if __name__ == "__main__":
    main()
