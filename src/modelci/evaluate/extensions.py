"""ONNX Runtime's extension operators (onnxruntime-extensions): a Hugging Face text model's tokenizer in its
graph needs them. A session registers them only when ONNX Runtime asks for one (the model uses their domain),
so no other model pays for them.

NOTE: the library is found without importing its package, which imports torch and transformers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from modelci.errors import UsageError

CONTRIB = "ai.onnx.contrib"  # the extensions' operators' domain
EXTRA = "text"  # the pip extra that installs onnxruntime-extensions


def library_path() -> str | None:
    """The extensions' operator library, when onnxruntime-extensions is installed."""
    spec = importlib.util.find_spec("onnxruntime_extensions")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [str(p) for folder in folders for p in Path(folder).glob("_extensions_pydll*")
             if p.suffix in (".so", ".pyd", ".dylib")]
    return found[0] if found else None


def inference_session(source: str | bytes, options: Any) -> Any:
    """ONNX Runtime's session on the CPU, with the extensions' operators when the model uses them."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        if CONTRIB not in str(exc):
            raise
        path = library_path()
        if path is None:
            raise UsageError("the model's graph uses onnxruntime-extensions' operators (a Hugging Face tokenizer), "
                             "which are not installed", hint=f"pip install 'modelci[{EXTRA}]'") from None
        options.register_custom_ops_library(path)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
