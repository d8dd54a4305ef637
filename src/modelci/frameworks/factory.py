"""The user's model factory: `build(input_dim: int, output_dim: int, **params)`, returning a model of a
framework that an adapter in `modelci.frameworks` recognises (each adapter says what its model must be).

NOTE: no framework is imported here: the factory's own file imports the one it uses.
"""

from __future__ import annotations

import importlib.util
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


def call_factory(config: Config, input_dim: int, output_dim: int,
                 factory: Callable[..., Any] | None = None) -> Any:
    """What the user's factory (`factory`, when already loaded) returns: some framework's model."""
    factory = factory or load_factory(config)
    file = (config.root / config.model.factory.rpartition(":")[0]).resolve()
    try:
        return factory(input_dim=input_dim, output_dim=output_dim, **config.model.params)
    except Exception as exc:
        raise ModelFactoryError(f"model.factory: {config.model.factory} raised at {_user_frame(exc, file)}: "
                                f"{type(exc).__name__}: {exc}",
                                hint="check model.params in modelci.yaml against the factory's arguments") from None


