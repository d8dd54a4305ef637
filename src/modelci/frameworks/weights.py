"""`model.weights`: a PyTorch network's starting weights from a local file or folder (a pretrained backbone to
fine-tune), never downloaded.

The file is a state dict: `.safetensors` (with the safetensors package), or a torch file (`.pt`, `.pth`,
`.bin`) read with `weights_only=True`, so that loading it runs no code from it. A checkpoint holding its
state dict under `state_dict` or `model` is read there, and DDP's `module.` prefix is dropped (and modelci's own
checkpoint's `net.`, when the names fit only without it). A folder holds
one such file: Hugging Face's `model.safetensors` or `pytorch_model.bin`, or the only file with one of
those suffixes.

Each tensor of the network is taken from the file when the file has one of the same name and shape; the
others keep the factory's initialisation (typically a new head for other classes) and are named in
train-log.json beside the file's SHA-256, which the content key holds too (`cache.config_hash`), so a
changed file is a changed model. A file that fits none of the network's tensors is exit 2.

NOTE: torch is imported inside the functions that need it: the content key reads `weights_file` without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import atomic, github
from modelci.errors import UsageError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")  # Hugging Face's names, looked for first
SHOWN = 10  # tensor names listed in a message or the train log


def weights_file(path: Path) -> Path:
    """The file `model.weights` names: the path itself, or the one weights file of a folder."""
    if path.is_dir():
        for name in FOLDER_FILES:
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if len(found) != 1:
            names = ", ".join(p.name for p in found[:SHOWN]) or "none ending in " + ", ".join(SUFFIXES)
            raise UsageError(f"model.weights: {path} holds {len(found)} files of weights ({names})",
                             hint="name the file itself in model.weights")
        return found[0]
    if not path.is_file():
        raise UsageError(f"model.weights: {path}: no such file or folder",
                         hint="give a local file of weights (.safetensors, .pt, .pth, .bin): modelci downloads none")
    return path


def digest(file: Path) -> str:
    """The file's SHA-256, in hex."""
    with file.open("rb") as handle:
        return atomic.stream_sha256(handle)[0].removeprefix("sha256:")


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name, DDP's `module.` prefix dropped."""
    found = _safetensors(file) if file.suffix == ".safetensors" else _torch_file(file)
    return {name.removeprefix("module."): tensor for name, tensor in found.items()}


def _safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ModuleNotFoundError:
        raise UsageError(f"model.weights: {file} is a .safetensors file, and the safetensors package is not "
                         "installed", hint="pip install safetensors") from None
    try:
        return load_file(file)
    except Exception as exc:  # NOTE: safetensors raises its own error types for a damaged file
        raise UsageError(f"model.weights: {file} cannot be read as safetensors: {first_line(exc)}") from None


def _torch_file(file: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        found = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # NOTE: a damaged file, or one holding objects that weights_only refuses to build
        raise UsageError(f"model.weights: {file} cannot be read as PyTorch weights: {first_line(exc)}",
                         hint="save them with torch.save(model.state_dict(), PATH), or as .safetensors") from None
    for key in ("state_dict", "model"):
        if isinstance(found, dict) and isinstance(found.get(key), dict):
            found = found[key]
            break
    if not isinstance(found, dict) or not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise UsageError(f"model.weights: {file} holds no state dict (a mapping of names to tensors)",
                         hint="save them with torch.save(model.state_dict(), PATH)")
    return {str(name): tensor for name, tensor in found.items()}


def _fitting(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The given tensors with the name and shape of one of the network's."""
    return {name: given[name] for name, tensor in own.items() if name in given and given[name].shape == tensor.shape}


def load_weights(network: nn.Module, path: Path) -> dict[str, Any]:
    """Start `network` from the weights at `path`: every tensor of the same name and shape. What was taken, for the
    train log."""
    file = weights_file(path)
    given = read_state(file)
    own = network.state_dict()
    taken = _fitting(own, given)
    for _ in range(2):  # NOTE: modelci's own model.pt holds the network under net. (an image model's under net.net.)
        if taken or not any(name.startswith("net.") for name in given):
            break
        given = {name.removeprefix("net."): tensor for name, tensor in given.items()}
        taken = _fitting(own, given)
    if not taken:
        raise UsageError(f"model.weights: none of the {len(given)} tensors in {file} fits the network's "
                         f"{len(own)} (the file's first: {', '.join(list(given)[:3])}; the network's first: "
                         f"{', '.join(list(own)[:3])})",
                         hint="save the weights of the same network (its state_dict()); the names must match")
    network.load_state_dict(taken, strict=False)
    fresh = [name for name in own if name not in taken]
    reshaped = {name: [list(given[name].shape), list(own[name].shape)] for name in fresh if name in given}
    shown = f"; started fresh: {', '.join(fresh[:SHOWN])}" if fresh else ""
    github.log(f"    weights: {len(taken)} of the network's {len(own)} tensors from {file}{shown}")
    return {"file": str(file), "sha256": digest(file), "loaded": len(taken), "tensors": len(own),
            "fresh": fresh, "shapes_differ": reshaped, "unused": len(set(given) - set(own))}
