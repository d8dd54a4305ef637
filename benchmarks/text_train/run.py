"""Benchmark modelci's fine-tuning loop for a Hugging Face text model against Hugging Face's `Trainer`.

    python benchmarks/text_train/run.py [--train 3000] [--batch 32] [--max-tokens 64] [--repeat 7]

examples/reviews' generated reviews (`--train` training reviews, 3 classes), a WordPiece tokenizer trained on them
with `tokenizers` (nothing downloaded), and a small BERT built from a `BertConfig` (hidden 128, 2 layers, 2 heads,
intermediate 256). The loops fine-tune the same model (the same initial weights) on the same rows, each text cut at
`--max-tokens` tokens and each batch padded to its own longest text, with AdamW at the same learning rate, a
constant schedule, no weight decay and no gradient clipping, fp32 on the CPU:

- modelci: the feed and loop `modelci train` runs for a Hugging Face model (`frameworks.text.transformer`'s
  `Transformer` and `TransformerScorer`, `frameworks.text.training.feed` driving `torch_loop.Loop`), from the config
  and data `modelci train` would read;
- Trainer: `transformers.Trainer` on the tokenizer's ids (tokenized once, as `dataset.map` would),
  `DataCollatorWithPadding`, its defaults otherwise (its AdamW is torch's fused one);
- diagnostic, not a target: the same Trainer with `train_sampling_strategy="group_by_length"` (batches of texts of
  similar lengths, as modelci's are).

They take turns inside one `Trainer.train()`: a callback times each of the Trainer's epochs (from its
`on_epoch_begin` to its `on_epoch_end`) and, at each epoch's end, runs one modelci epoch, timed alone, and one
epoch of the grouped Trainer (a `train()` of one epoch; its epoch alone timed). Each loop's first epoch is not
counted; then `--repeat` epochs each, and each one's median samples/s counts. The tokens each model reads (padding
included) are counted too. Writes results.json and RESULTS.md next to this file. Needs `accelerate` (the
Trainer's dependency, not modelci's): see README.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "reviews"
TARGET = 1.0  # modelci's samples/s over the Trainer's, at least
LR, HIDDEN, LAYERS, HEADS, INTERMEDIATE, VOCABULARY = 5e-4, 128, 2, 2, 256, 1000
Epochs = dict[str, list[float]]  # an epoch's samples/s, padded tokens and padded tokens/s, each epoch counted
FACTORY = '''from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

HERE = Path(__file__).parent


def build(output_dim, hidden=128, layers=2, heads=2, intermediate=256):
    tokenizer = BertTokenizerFast.from_pretrained(HERE / "tokenizer")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=128,
                        num_labels=output_dim)
    return BertForSequenceClassification(config), tokenizer
'''


def wordpiece(texts: list[str], folder: Path) -> None:
    """A BERT-style WordPiece tokenizer trained on `texts`, saved as transformers saves one."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    found = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    found.normalizer = normalizers.BertNormalizer(lowercase=True)
    found.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    found.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=VOCABULARY, special_tokens=[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    found.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, found.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    BertTokenizerFast(tokenizer_object=found, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)


def config_text(args: argparse.Namespace, epochs: int) -> str:
    return f"""task: multiclass
data:
  train: data/train.parquet
  eval: data/eval.parquet
  label: sentiment
  schema: schema.yaml
  text: {{max_tokens: {args.max_tokens}}}
model:
  factory: model.py:build
  params: {{hidden: {HIDDEN}, layers: {LAYERS}, heads: {HEADS}, intermediate: {INTERMEDIATE}}}
train:
  epochs: {epochs}
  batch_size: {args.batch}
  lr: {LR}
  seed: 0
  device: cpu
"""


def repository(work: Path, args: argparse.Namespace, evaluation: int = 200) -> None:
    """The reviews example as a user would set it up for a Hugging Face model: data, tokenizer, factory, config
    (text_serve builds its model here too)."""
    import pandas as pd

    shutil.copy(EXAMPLE / "generate_data.py", work / "generate_data.py")
    shutil.copy(EXAMPLE / "schema.yaml", work / "schema.yaml")
    subprocess.run([sys.executable, "generate_data.py", "--out", "data", "--train", str(args.train), "--eval",
                    str(evaluation)],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)
    wordpiece(pd.read_parquet(work / "data" / "train.parquet")["review"].tolist(), work / "tokenizer")
    (work / "model.py").write_text(FACTORY, encoding="utf-8")
    (work / "modelci.yaml").write_text(config_text(args, 1 + args.repeat), encoding="utf-8")


# --- modelci: the feed and loop `modelci train` runs --------------------------------------------------------


class ModelciSide:
    """The network, feed and loop as `trainer.train` and `text.transformer.fit` build them (no checkpoint, no
    validation pass): `epoch` is one `feed.train`."""

    def __init__(self, work: Path) -> None:
        from modelci.config import load_config
        from modelci.data.tables import load_datasets
        from modelci.features import FeatureSpec, Target
        from modelci.frameworks import Fit
        from modelci.frameworks.factory import call_factory
        from modelci.frameworks.text.datasets import text_column
        from modelci.frameworks.text.tokenizer_graph import steps
        from modelci.frameworks.text.training import feed
        from modelci.frameworks.text.transformer import TransformerScorer, check_made
        from modelci.frameworks.torch_loop import Loop, class_weights, device_for

        config = load_config(work / "modelci.yaml")
        assert config.data.text is not None
        self.config, self.datasets = config, load_datasets(config)
        self.column, self.max_tokens = text_column(config), config.data.text.max_tokens
        self.target = Target.fit(self.datasets.train[config.data.label], config.task)
        torch.manual_seed(0)  # NOTE: `modelci train` seeds before it calls the factory
        self.made = call_factory(config, {}, self.target.output_dim)
        start = copy.deepcopy(self.made[0])  # NOTE: the Trainer starts from the same weights
        net, self.tokenizer = check_made(self.made, config, self.target.output_dim, self.max_tokens)
        steps(self.tokenizer)
        device = device_for(None, config.train.device)
        self.scorer = TransformerScorer(net, self.target, self.tokenizer, self.column, self.max_tokens)
        fit = Fit(config, self.datasets, FeatureSpec((), ()), self.target, work / "out", None)  # type: ignore[arg-type]
        self.feed = feed(fit, self.column, self.scorer.ids, net.pad, device, None)
        self.loop = Loop(net, self.target, config.train, device, self.feed.steps,
                         class_weights(self.target, self.feed.labels, config.train.class_weights))
        self.start, self.losses = start, []  # type: list[float]
        self.tokens = tokens_seen(net)

    def epoch(self) -> int:
        from modelci.frameworks.progress import Progress

        self.losses.append(self.feed.train(self.loop, Progress(1_000_000, self.feed.steps, live=False)))
        return self.feed.rows


def tokens_seen(model: torch.nn.Module) -> list[int]:
    """A counter of the token ids (padding included) the model reads: [0] grows with every forward pass."""
    seen = [0]

    def count(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen[0] += int((args[0] if args else kwargs["input_ids"]).numel())

    model.register_forward_pre_hook(count, with_kwargs=True)
    return seen


# --- Hugging Face's Trainer -------------------------------------------------------------------------------


TRAINER, GROUPED = "Trainer", "diagnostic: Trainer, group_by_length"


def trainer_rows(side: ModelciSide) -> list[dict[str, Any]]:
    """modelci's training rows as the tokenizer's ids and the label, tokenized once (as `dataset.map` would)."""
    train = side.datasets.train
    texts, labels = [str(t) for t in train[side.column]], side.target.encode(train[side.config.data.label])
    encoded = side.tokenizer(texts, truncation=True, max_length=side.max_tokens)
    return [{**{k: encoded[k][i] for k in encoded}, "labels": int(labels[i])} for i in range(len(texts))]


class EpochTimer(TrainerCallback):  # type: ignore[misc]
    """A Trainer callback: times each of its Trainer's epochs and counts the tokens its model reads in it; then
    calls `after`, if any (the other loops' turns)."""

    def __init__(self, after: Any = None) -> None:
        self.after, self.began, self.tokens, self.last = after, 0.0, None, (0.0, 0)  # type: Any, float, Any, Any

    def on_train_begin(self, *_: Any, model: torch.nn.Module, **__: Any) -> None:
        if self.tokens is None:
            self.tokens = tokens_seen(model)

    def on_epoch_begin(self, *_: Any, **__: Any) -> None:
        self.tokens[0], self.began = 0, time.perf_counter()

    def on_epoch_end(self, *_: Any, **__: Any) -> None:
        self.last = (time.perf_counter() - self.began, self.tokens[0])
        if self.after is not None:
            self.after()


def trainer(side: ModelciSide, work: Path, args: argparse.Namespace, epochs: int, timer: EpochTimer,
            sampling: str = "random") -> Any:
    """A Trainer on modelci's training rows, from the same starting weights (a copy of them)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    settings = TrainingArguments(
        output_dir=str(work / f"trainer-{sampling}"), per_device_train_batch_size=args.batch, learning_rate=LR,
        weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, num_train_epochs=epochs,
        seed=0, use_cpu=True, save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, train_sampling_strategy=sampling)
    return Trainer(model=copy.deepcopy(side.start), args=settings, train_dataset=trainer_rows(side),
                   processing_class=side.tokenizer, data_collator=DataCollatorWithPadding(side.tokenizer),
                   callbacks=[timer])


def take_turns(side: ModelciSide, work: Path, args: argparse.Namespace, found: dict[str, Epochs]) -> dict[str, Any]:
    """The Trainer's `train()` runs all its epochs; at each one's end, one modelci epoch and one epoch of the
    grouped Trainer (a `train()` of one epoch each time: its epoch alone is timed). The trained models."""
    grouped_timer = EpochTimer()
    grouped = trainer(side, work, args, 1, grouped_timer, "group_by_length")
    rows, epoch = len(side.datasets.train), [0]

    def turns() -> None:
        epoch[0] += 1
        turn(found, TRAINER, rows, *main_timer.last, epoch[0])
        side.tokens[0], began = 0, time.perf_counter()
        done = side.epoch()
        turn(found, "modelci", done, time.perf_counter() - began, side.tokens[0], epoch[0])
        grouped.args.seed = epoch[0]  # NOTE: `train()` seeds its shuffle with it: a new order every epoch
        grouped.train()
        turn(found, GROUPED, rows, *grouped_timer.last, epoch[0])

    main_timer = EpochTimer(turns)
    main = trainer(side, work, args, 1 + args.repeat, main_timer)
    trained = main.train()
    return {"modelci": side.loop.net.model, TRAINER: main.model, GROUPED: grouped.model,
            "optim": str(main.args.optim.value), "trainer_loss": trained.training_loss}


def turn(found: dict[str, Epochs], name: str, rows: int, seconds: float, tokens: int, epoch: int) -> None:
    counted = epoch > 1  # NOTE: the first epoch of each (allocations, caches) is not counted
    if counted:
        found[name]["samples_per_s"].append(rows / seconds)
        found[name]["padded_tokens_per_s"].append(tokens / seconds)
        found[name]["padded_tokens"].append(tokens)
    print(f"  {name}: epoch {epoch}, {rows / seconds:,.0f} samples/s, {tokens:,} tokens with padding"
          f"{'' if counted else ' (not counted)'}", flush=True)


def accuracy(model: torch.nn.Module, side: ModelciSide) -> float:
    """The model's accuracy on modelci's validation rows: both loops learnt, not just ran."""
    from modelci.frameworks.text.transformer import Transformer, TransformerScorer, predict

    scorer = TransformerScorer(Transformer(model, side.scorer.pad), side.target, side.tokenizer, side.column,
                               side.max_tokens).eval()
    validation = side.datasets.validation
    found = predict(scorer, validation).argmax(axis=1)
    return round(float(np.mean(found == side.target.encode(validation[side.config.data.label]))), 4)


# --- results -----------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    from machine import shared_note

    m, load, s = result["machine"], result["load_average_1min"], result["setup"]
    lines = ["# text_train benchmark results", "",
             f"{result['date']} on CPU ({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}); "
             f"torch {result['versions']['torch']}, transformers {result['versions']['transformers']}, accelerate "
             f"{result['versions']['accelerate']}; {result['threads']} threads, fp32. {s['train_rows']:,} training "
             f"reviews (examples/reviews' generator, 3 classes; modelci's training rows, its validation rows carved "
             f"out), a WordPiece tokenizer of {s['vocabulary']:,} tokens trained on them, each text cut at "
             f"{s['max_tokens']} tokens (mean {s['mean_tokens']:.1f}, {s['cut_share']:.0%} cut); a BERT from a "
             f"BertConfig (hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads, intermediate {INTERMEDIATE}, "
             f"{s['parameters']:,} parameters), the same initial weights on both sides; batch {s['batch']}, padded to "
             f"each batch's longest text; AdamW lr {LR}, constant, no weight decay, no clipping (the Trainer's "
             f"optimizer: `{s['trainer_optim']}`). The loops take turns, one epoch each, inside one `Trainer.train()`; "
             f"the first epoch of each not counted, then {s['repeat']} each. The diagnostic row is the Trainer with "
             "`train_sampling_strategy='group_by_length'` (its batches of similar lengths, as modelci's), not a "
             f"target. {shared_note(load)}Generated by `run.py`; every number in results.json.", "",
             "| loop | median samples/s | epochs (samples/s) | tokens per epoch, padding included | median "
             "tokens/s | validation accuracy after |", "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {name} | {statistics.median(v['samples_per_s']):,.0f} | "
              f"{', '.join(f'{x:,.0f}' for x in v['samples_per_s'])} | {statistics.median(v['padded_tokens']):,.0f} | "
              f"{statistics.median(v['padded_tokens_per_s']):,.0f} | {result['validation_accuracy'][name]} |"
              for name, v in result["epochs"].items()]
    from machine import target_rows

    lines += ["", *target_rows(result["targets"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000, help="generated training reviews (before validation)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7, help="epochs counted, each loop")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from importlib.metadata import version

    from machine import describe

    load_before = os.getloadavg()[0]  # NOTE: the machine is shared; its load explains a run's outliers
    found: dict[str, Epochs] = {name: {"samples_per_s": [], "padded_tokens": [], "padded_tokens_per_s": []}
                                for name in ("modelci", TRAINER, GROUPED)}
    with tempfile.TemporaryDirectory(prefix="modelci-text-train-") as folder:
        work = Path(folder)
        repository(work, args)
        side = ModelciSide(work)
        trained = take_turns(side, work, args, found)
        lengths = side.tokenizer([str(t) for t in side.datasets.train[side.column]])["input_ids"]
        setup = {"train_rows": side.feed.rows, "batch": args.batch, "max_tokens": args.max_tokens,
                 "repeat": args.repeat, "vocabulary": len(side.tokenizer),
                 "parameters": sum(p.numel() for p in side.loop.net.parameters()),
                 "mean_tokens": float(np.mean([min(len(x), args.max_tokens) for x in lengths])),
                 "cut_share": float(np.mean([len(x) > args.max_tokens for x in lengths])),
                 "trainer_optim": trained.pop("optim")}
        losses = {"modelci": [round(x, 4) for x in side.losses], TRAINER: round(trained.pop("trainer_loss"), 4)}
        scores = {name: accuracy(model, side) for name, model in trained.items()}
    medians = {name: statistics.median(v["samples_per_s"]) for name, v in found.items()}
    ratio = medians["modelci"] / medians[TRAINER]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "threads": torch.get_num_threads(),
              "versions": {name: version(name) for name in ("torch", "transformers", "accelerate", "tokenizers")},
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "setup": setup, "epochs": found, "validation_accuracy": scores,
              "training_loss": losses,
              "targets": [{"target": f"CPU: modelci ≥ {TARGET}× the Trainer's samples/s", "value": f"{ratio:.2f}× "
                           f"({medians['modelci']:,.0f} against {medians[TRAINER]:,.0f} samples/s)",
                           "pass": ratio >= TARGET},
                          {"target": "GPU: both in bf16, samples/s recorded",
                           "value": "not measured: no GPU on this machine", "pass": None}]}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (HERE / "RESULTS.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
