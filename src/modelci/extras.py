"""The frameworks that are extras of modelci (`pip install 'modelci[torch]'`), and the error naming the one missing.

The core (data checks, evaluation, comparison, reports, the registry and serving) runs without any
of them; a command or a model factory that needs one says which extra installs it.
"""

from __future__ import annotations

from modelci.errors import UsageError

# NOTE: each module as `import` names it, and the extra in pyproject.toml's
# [project.optional-dependencies] that installs it: keep the two in step.
EXTRAS = {
    "torch": "torch",
    "onnxscript": "torch",  # torch's dynamo ONNX exporter
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "keras": "keras",
}


def missing_extra(exc: BaseException, needs: str) -> UsageError | None:
    """The error for `exc` when it is the import of an extra's module that is not installed, else None.

    Only the top-level module counts: a submodule missing from an installed torch is a broken
    install, not a missing extra.
    """
    module = exc.name if isinstance(exc, ModuleNotFoundError) else None
    extra = EXTRAS.get(module or "")
    if module is None or extra is None:
        return None
    return UsageError(f"{needs} needs {module}, which is not installed",
                      hint=f"install modelci's {extra} extra: pip install 'modelci[{extra}]'")
