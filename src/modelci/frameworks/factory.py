"""The user's model factory: `build(input_dim: int, output_dim: int, **params)`, returning a model of a
framework that an adapter in `modelci.frameworks` recognises (each adapter says what its model must be).
For an image model (`data.image` set) it is `build(input_shape, output_dim, **params)`, where
`input_shape` is (channels, height, width) (see `modelci.frameworks.images`).

NOTE: no framework is imported here: the factory's own file imports the one it uses.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelci.config import Config
from modelci.errors import ModelFactoryError
from modelci.extras import missing_extra


def _user_frame(exc: BaseException, file: Path) -> str:
    """Where in the user's file an exception came from, as 'model.py:12'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
    return f"{file.name}:{frames[-1].lineno}" if frames else file.name


def load_factory(config: Config) -> Callable[..., Any]:
    file_part, _, function = config.model.factory.rpartition(":")
    file = (config.root / file_part).resolve()
    if not file.is_file():
        raise ModelFactoryError(f"model.factory: {file_part} does not exist (looked in {config.root})",
                                hint="set model.factory to 'FILE.py:FUNCTION', relative to modelci.yaml")
    spec = importlib.util.spec_from_file_location(f"modelci_user_model_{file.stem}", file)
    if spec is None or spec.loader is None:  # NOTE: never for a .py file path; here for the type checker
        raise ModelFactoryError(f"model.factory: {file_part} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered under its name, so that classes defined in the file can be pickled and
    # unpickled (a scikit-learn estimator of the user's own is saved that way).
    sys.modules[spec.name] = module
    sys.path.insert(0, str(file.parent))  # the factory may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        missing = missing_extra(exc, f"model.factory: {file_part}")
        if missing:
            raise missing from None
        raise ModelFactoryError(f"model.factory: importing {file_part} failed at {_user_frame(exc, file)}: "
                                f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(file.parent))
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ModelFactoryError(f"model.factory: {file_part} has no function '{function}'")
    return factory  # type: ignore[no-any-return]


def model_inputs(config: Config, width: int, words: bool = False) -> dict[str, Any]:
    """What the factory is told of the model's input: `input_shape`, (channels, height, width), for an image
    model; `vocabulary_size` for a text model over modelci's words (`words`; `width` is then the vocabulary's
    size), nothing for one that brings its own tokenizer; else `input_dim`, the width of the preprocessed
    features."""
    if config.data.image is not None:
        return {"input_shape": config.data.image.shape}
    if config.data.text is not None:
        return {"vocabulary_size": width} if words else {}
    return {"input_dim": width}


def takes_vocabulary(factory: Callable[..., Any]) -> bool:
    """Whether a text model's factory takes `vocabulary_size` (modelci's words), rather than bringing a tokenizer
    of its own (a Hugging Face model's)."""
    try:
        return "vocabulary_size" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True


def _check_signature(factory: Callable[..., Any], config: Config, inputs: dict[str, Any]) -> None:
    """Refuse a factory that cannot take this model's arguments, saying which it must take (before calling it,
    so that a TypeError inside a factory is not mistaken for one)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # NOTE: a callable without a signature Python can read: calling it will tell
        return
    try:
        signature.bind(**inputs, output_dim=0, **config.model.params)
    except TypeError as exc:
        wanted = ("build(input_shape, output_dim, **params), input_shape being (channels, height, width)"
                  if "input_shape" in inputs else "build(vocabulary_size, output_dim, **params)"
                  if "vocabulary_size" in inputs else "build(output_dim, **params), returning (model, tokenizer)"
                  if config.data.text is not None else "build(input_dim, output_dim, **params)")
        raise ModelFactoryError(f"model.factory: {config.model.factory} cannot be called as {wanted} with "
                                f"model.params {sorted(config.model.params)}: {exc}",
                                hint="give the function those arguments, or fix model.params") from None


def call_factory(config: Config, inputs: dict[str, Any], output_dim: int,
                 factory: Callable[..., Any] | None = None) -> Any:
    """What the user's factory (`factory`, when already loaded) returns: some framework's model. `inputs`:
    `model_inputs`."""
    factory = factory or load_factory(config)
    file = (config.root / config.model.factory.rpartition(":")[0]).resolve()
    _check_signature(factory, config, inputs)
    try:
        return factory(**inputs, output_dim=output_dim, **config.model.params)
    except Exception as exc:
        raise ModelFactoryError(f"model.factory: {config.model.factory} raised at {_user_frame(exc, file)}: "
                                f"{type(exc).__name__}: {exc}",
                                hint="check model.params in modelci.yaml against the factory's arguments") from None


