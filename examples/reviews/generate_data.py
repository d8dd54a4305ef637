"""Synthetic product reviews for the example: short texts, each positive, negative or mixed, deterministic
for a seed.

A review is a few sentences drawn from templates, with words of praise or complaint, neutral filler,
product words, and now and then a negation that turns a sentence around ("not great"), so that a model
has to read more than one word. The label is the review's sentiment; `product` (the kind of product
reviewed) is kept for the evaluation's slices. Written as Parquet, one row per review:

    python generate_data.py --out data        # data/train.parquet and data/eval.parquet
    python generate_data.py --out /tmp/reviews --train 300 --eval 120
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PRODUCTS = ("headphones", "kettle", "backpack", "keyboard")
PRAISE = ("great", "excellent", "lovely", "sturdy", "comfortable", "reliable", "brilliant", "quiet")
COMPLAINT = ("broken", "awful", "flimsy", "noisy", "useless", "disappointing", "cheap", "faulty")
FILLER = ("I bought this last month", "Arrived on Tuesday", "My second one", "Bought it as a gift",
          "Used it every day for {days} days", "The box was plain", "Had it for {days} days")
SENTENCES = ("The {product} is {word}.", "Really {word} {product}!", "Quality feels {word}.",
             "Honestly {word}, would say so again.", "It is {word} for the price.")


def _sentence(rng: np.random.Generator, product: str, positive: bool) -> str:
    negated = rng.random() < 0.15  # "not great" says the opposite of "great"
    words = PRAISE if positive != negated else COMPLAINT
    sentence = str(rng.choice(SENTENCES)).format(product=product, word=rng.choice(words))
    return sentence.replace(" is ", " is not ", 1) if negated and " is " in sentence else \
        sentence if not negated else f"Not {sentence[0].lower()}{sentence[1:]}"


def review(rng: np.random.Generator) -> tuple[str, str, str]:
    """(text, sentiment, product)."""
    product = str(rng.choice(PRODUCTS))
    sentiment = str(rng.choice(("positive", "negative", "mixed"), p=(0.45, 0.35, 0.2)))
    moods = [sentiment == "positive"] * 3 if sentiment != "mixed" else [True, False, bool(rng.random() < 0.5)]
    parts = [str(rng.choice(FILLER)).format(days=int(rng.integers(2, 400))) + "."] if rng.random() < 0.6 else []
    parts += [_sentence(rng, product, mood) for mood in moods[:int(rng.integers(2, 4))]]
    return " ".join(parts), sentiment, product


def frame(count: int, rng: np.random.Generator, seen: set[str]) -> pd.DataFrame:
    """`count` reviews, none a repeat of another or of one in `seen` (a data check names repeats)."""
    rows: list[tuple[str, str, str]] = []
    while len(rows) < count:
        found = review(rng)
        key = " ".join(found[0].lower().split())
        if key not in seen:
            seen.add(key)
            rows.append(found)
    return pd.DataFrame(rows, columns=["review", "sentiment", "product"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--train", type=int, default=3000, help="training reviews")
    parser.add_argument("--eval", type=int, default=1000, help="evaluation reviews")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    frame(args.train, np.random.default_rng(args.seed), seen).to_parquet(args.out / "train.parquet", index=False)
    frame(args.eval, np.random.default_rng(args.seed + 1), seen).to_parquet(args.out / "eval.parquet", index=False)


if __name__ == "__main__":
    main()
