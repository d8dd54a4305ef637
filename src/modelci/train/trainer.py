"""`modelci train`: the features and target chosen, the model factory called, and the model it
returns fitted by the adapter of its framework (`modelci.frameworks`), a `train.command` run, or a
`model.onnx` taken as it is.

NOTE: framework-free: what a framework needs (PyTorch's training loop, devices, precision, torchrun)
is its adapter's, so that training a scikit-learn model never imports torch.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from modelci import github
from modelci.config import Config
from modelci.data.roles import Chosen, choose_features, log_choice
from modelci.data.tables import Datasets
from modelci.errors import UsageError
from modelci.features import MIN_CATEGORY_COUNT, FeatureSpec, Target, category_report, describe_categories
from modelci.frameworks import Fit, adapters, distributed, raw_columns, recognise, seed_all
from modelci.frameworks.factory import call_factory, load_factory, model_inputs, takes_vocabulary
from modelci.frameworks.fitting import environment
from modelci.outputs import PICKLE_CHECKPOINT, EpochRecord, TrainLog
from modelci.train import command

__all__ = ["EpochRecord", "TrainLog", "train"]


def train(config: Config, datasets: Datasets, out: Path, *, resume: bool = False,
          on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainLog:
    """Train the configured model and write its adapter's checkpoint and the training log to `out`.

    `on_epoch` sees every epoch's record (hyperparameter search prunes trials with it).
    """
    settings = config.train
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    chosen, spec = _inputs(datasets, config)
    columns = chosen.features
    target = Target.fit(datasets.train[config.data.label], config.task)
    own_onnx = settings.command is not None or config.model.onnx is not None
    every = () if own_onnx else adapters()
    main = distributed.is_main(distributed.from_env())
    if main:
        log_choice(chosen)
        if config.tuned_from is not None:
            github.log(f"    with the tuned parameters in {config.tuned_from.name}")
        for stale in (*(adapter.checkpoint for adapter in every), PICKLE_CHECKPOINT):
            (out / stale).unlink(missing_ok=True)  # NOTE: a run that fails must not leave an older model behind
    log = TrainLog(task=config.task, framework="", device="cpu", processes=1, precision="fp32",
                   rows=len(datasets.train), validation_rows=len(datasets.validation), input_columns=columns,
                   input_dim=spec.width, parameters=0, seed=settings.seed,
                   settings=asdict(settings) | {"params": config.model.params,
                                                "tuned_from": str(config.tuned_from) if config.tuned_from else None},
                   environment=environment(), left_out=chosen.left_out,
                   as_numbers=chosen.as_numbers, categories={},
                   classes=[] if config.task == "regression" else list(target.classes))
    if settings.command is not None:
        log.framework, log.input_dim, log.settings = "command", 0, {"command": command.argv(settings.command)}
        return command.run(config, datasets, columns, target, out, log)
    if config.model.onnx is not None:
        log.framework, log.input_dim, log.settings = "onnx", 0, {"onnx": str(config.model.onnx)}
        return command.copy_model(config, datasets, columns, target, out, log)
    factory = load_factory(config)
    # NOTE: after the factory's file imported its framework and before the factory builds the model,
    # whose initial weights come from the framework's generator.
    imported = set(sys.modules)
    seed_all(every, settings.seed, settings.deterministic)
    vocabulary = learn_vocabulary(config, datasets, columns) if takes_vocabulary(factory) else None
    inputs = model_inputs(config, vocabulary.size if vocabulary is not None else spec.width, vocabulary is not None)
    made = call_factory(config, inputs, target.output_dim, factory)
    adapter = recognise(made, config.model.factory)
    if set(sys.modules) - imported:
        # NOTE: the factory imported a framework (or more of it) only when called, after the seeding above:
        # seed again and build again, so the initial weights still come from train.seed
        seed_all(every, settings.seed, settings.deterministic)
        made = call_factory(config, inputs, target.output_dim, factory)
    log.framework = adapter.name
    if config.model.weights is not None and adapter.name != "pytorch":
        raise UsageError(f"model.weights: starting weights are for a PyTorch network; {config.model.factory} "
                         f"returned a {adapter.name} model", hint="leave model.weights out")
    if config.model.weights is not None and vocabulary is not None:
        raise UsageError("model.weights: a text model over modelci's words learns its vocabulary from each run's "
                         "training texts, so a saved embedding's rows would stand for other words",
                         hint="leave model.weights out, or fine-tune a Hugging Face model, whose tokenizer is fixed")
    # NOTE: a model over the raw columns does its own preprocessing: modelci's categories are not what it uses.
    if not raw_columns(adapter):
        # NOTE: reads the evaluation rows to report them (their categories unseen in training); it chooses nothing.
        log.categories = category_report(spec, datasets.train, datasets.eval)
        if main:
            for name, entry in log.categories.items():
                github.log(describe_categories(name, entry, len(datasets.eval)))
            _warn_constant(spec.constant_columns(datasets.train))
    return adapter.fit(made, Fit(config, datasets, spec, target, out, log, resume, on_epoch, vocabulary))


def _inputs(datasets: Datasets, config: Config) -> tuple[Chosen, FeatureSpec]:
    """The columns the model takes, and modelci's preprocessing of them. An image model takes its image column as
    it is (its own first layer normalizes the pixels): no table preprocessing."""
    if config.data.image is not None:
        from modelci.frameworks.images.datasets import chosen

        return chosen(config), FeatureSpec((), ())
    if config.data.text is not None:
        from modelci.frameworks.text.datasets import chosen as text_chosen

        return text_chosen(config, datasets), FeatureSpec((), ())
    found = choose_features(datasets.train, config)
    return found, FeatureSpec.fit(datasets.train, found.features, tuple(found.as_numbers))


def learn_vocabulary(config: Config, datasets: Datasets, columns: list[str]) -> Any:
    """A text model's vocabulary, learnt from its training texts; None for any other model."""
    if config.data.text is None:
        return None
    from modelci.frameworks.text.vocabulary import Vocabulary

    return Vocabulary.learn(datasets.train[columns[0]], config.data.text)


def _warn_constant(columns: list[str]) -> None:
    if columns:
        # NOTE: a warning, not an error: the model works, and a value never seen goes to "other" when served.
        github.warning(f"no value of {', '.join(columns)} occurs {MIN_CATEGORY_COUNT} times in the training data, "
                       "so each is one constant input (an ID column?); list the columns the model should use in "
                       "data.features to leave it out")
