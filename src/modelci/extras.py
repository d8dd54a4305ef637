"""The frameworks that are extras of modelci (`pip install 'modelci[torch]'`), and the error naming the one missing.

The core (data checks, evaluation, comparison, reports, the registry and serving) runs without any
of them; a command or a model factory that needs one says which extra installs it.

The setup action asks this module which extras a config needs before it installs them
(`python -m modelci.extras --config modelci.yaml --extras auto`, with the environment's Python once
modelci's core is in it): the factory's file is read, never imported, so nothing heavy is needed to
answer, and the answer names what pip is to install.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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
    "PIL": "images",  # Pillow: image datasets (data/images)
    "transformers": "text",  # Hugging Face text models (frameworks/huggingface.py)
    "tokenizers": "text",
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


ALL = "all"  # pyproject.toml's extra of every framework


def chosen(value: str, config: Path) -> tuple[list[str], str]:
    """The extras the setup action's `extras` input asks for (auto, none or a comma list), and why.

    auto: the extras the config's model needs (`needed`); none, or nothing: the core alone.
    """
    value = value.strip()
    if value == "auto":
        return needed(config)
    if value in ("", "none"):
        return [], "the extras input is none"
    names = [name.strip() for name in value.split(",")]
    known = sorted({*EXTRAS.values(), ALL})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"the extras input is {value!r}: modelci has no extra {', '.join(map(repr, unknown))}",
                         hint=f"set extras to auto, none, or a comma list of: {', '.join(known)}")
    return sorted(set(names)), f"the extras input is {value}"


def needed(config: Path) -> tuple[list[str], str]:
    """The extras the model of a config needs, and why, read from modelci.yaml and its factory's imports.

    Only model.factory names code of ours to run; a model.onnx needs no framework, and a
    train.command's script is the team's own, installed by the team (its imports are not read).
    """
    import yaml  # NOTE: a core dependency; here, not at the top, so that the error types import without it

    if not config.is_file():
        return [], f"there is no {config.name} at {config.parent}"
    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config} cannot be read as YAML: {exc}", hint="fix the config, or set the extras input") \
            from exc
    extras, why = _model_extras(raw, config)
    images = _image_data(raw, config.parent)
    if images:
        return sorted({*extras, "images"}), f"{why}; {images}"
    return extras, why


def _model_extras(raw: Any, config: Path) -> tuple[list[str], str]:
    """The extras the config's model.factory imports, and why."""
    model = raw.get("model") if isinstance(raw, dict) else None
    factory = model.get("factory") if isinstance(model, dict) else None
    if not isinstance(factory, str) or ":" not in factory:
        return [], "the config has no model.factory (a model.onnx, or a train.command whose script is the team's)"
    file = (config.parent / factory.rpartition(":")[0]).resolve()
    if not file.is_file():
        return [], f"model.factory's {file.name} is not there"
    modules = imported(file, set())
    frameworks = sorted(modules & EXTRAS.keys())
    return sorted({EXTRAS[module] for module in frameworks}), \
        f"model.factory's {file.name} imports {', '.join(frameworks) or 'no module of an extra'}"


def _image_data(raw: Any, root: Path) -> str | None:
    """Why the config's data needs the images extra (a folder per class, or a schema's `type: image` column),
    or None when it does not: the data check decodes images whatever the model is."""
    import yaml

    from modelci.data.images import is_image_folder

    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return None
    for key in ("train", "eval"):
        if isinstance(data.get(key), str) and is_image_folder(root / data[key]):
            return f"data.{key} is a folder of images"
    schema = root / data["schema"] if isinstance(data.get("schema"), str) else None
    try:
        columns = (yaml.safe_load(schema.read_text(encoding="utf-8")) or {}).get("columns") if schema else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError, AttributeError):
        return None  # NOTE: the data check itself says what is wrong with the schema
    typed = [name for name, rule in (columns or {}).items() if isinstance(rule, dict) and rule.get("type") == "image"]
    return f"the schema's {typed[0]} is an image column" if typed else None


def imported(file: Path, seen: set[Path]) -> set[str]:
    """The top-level modules a Python file imports, with those its neighbouring modules import.

    NOTE: read with `ast`, never run. An import made at run time (`importlib.import_module(name)`)
    is not seen: the extras input names such an extra.
    """
    seen.add(file)
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except SyntaxError as exc:
        raise UsageError(f"{file} does not parse (line {exc.lineno}): the extras it needs cannot be read from it",
                         hint="fix the file, or set the extras input") from exc
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.partition(".")[0])
    for module in sorted(modules):  # the factory may import its neighbours (it runs with its folder on sys.path)
        for neighbour in (file.parent / f"{module}.py", file.parent / module / "__init__.py"):
            if neighbour.is_file() and neighbour not in seen:
                modules |= imported(neighbour, seen)
    return modules


def requirements(extras: list[str], distribution: str = "modelci") -> list[str]:
    """What pip installs for these extras of the installed modelci, from its metadata (extras of extras too)."""
    declared = metadata.requires(distribution) or []
    wanted, found, pending = set(), [], list(extras)
    while pending:
        extra = pending.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for line in declared:
            requirement, _, marker = line.partition(";")
            if re.fullmatch(rf"\s*extra\s*==\s*[\"']{re.escape(extra)}[\"']\s*", marker):
                itself = re.fullmatch(rf"\s*{distribution}\[([\w,\s-]+)\]\s*", requirement)
                if itself:  # an extra that names others (keras: modelci[torch])
                    pending += [name.strip() for name in itself.group(1).split(",")]
                elif requirement.strip() not in found:
                    found.append(requirement.strip())
    return found


def plan(value: str, config: Path) -> dict[str, Any]:
    """What the setup action installs beyond the core: the extras, why, and their requirements."""
    extras, why = chosen(value, config)
    return {"extras": extras, "why": why, "requirements": requirements(extras)}


def main(argv: list[str] | None = None) -> int:
    """`python -m modelci.extras --config FILE --extras VALUE`: the plan, as one line of JSON."""
    parser = argparse.ArgumentParser(prog="python -m modelci.extras")
    parser.add_argument("--config", type=Path, default=Path("modelci.yaml"))
    parser.add_argument("--extras", default="auto")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(plan(args.extras, args.config)))
    except UsageError as exc:
        # NOTE: the setup action's installer reads this output, not a person at `modelci`'s command
        # line, so the error is written here, as the workflow annotation it shows
        print(f"::error::modelci: {exc.message} ({exc.hint})")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
