"""Zoo models in and out of files as plain PyTorch: no Lightning and no Hydra needed to use them.

:func:`load_model` reads a training run's Lightning checkpoint (``checkpoints/*.ckpt``: the registry name
and builder kwargs are the task's ``hyper_parameters["model"]``, the weights its ``model.*`` state) or a
file written by :func:`save_model` (``{"model": name, "kwargs": {...}, "state_dict": {...}}``). Files are
read with ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.registry import ZooError, create_model

__all__ = ["CheckpointError", "load_model", "read_checkpoint", "save_model"]

FORMAT = "dnn-zoo/1"  # written by save_model


class CheckpointError(ZooError):
    """A checkpoint that cannot or must not be loaded."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        hint = " It is a folder: pass a file in it, e.g. checkpoints/last.ckpt." if path.is_dir() else ""
        raise CheckpointError(f"checkpoint not found: {path}.{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors and plain data "
            f"({first}). Loading it could run code; only load checkpoints from sources you trust, saved with "
            "state_dict()s of plain tensors (zoo.save_model writes such files)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a torch file: "
                              f"{str(e).splitlines()[0]}).") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dictionary.")
    return ckpt


def _spec(ckpt: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(registry name, builder kwargs, the model's own state dict) of either checkpoint format."""
    if isinstance(ckpt.get("model"), str) and "state_dict" in ckpt:  # save_model's format
        return ckpt["model"], dict(ckpt.get("kwargs") or {}), ckpt["state_dict"]
    model_cfg = (ckpt.get("hyper_parameters") or {}).get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a zoo checkpoint: expected a Lightning checkpoint whose hyper_parameters['model'] "
            "holds the registry name and kwargs (what train.py writes into checkpoints/), or a file from "
            f"zoo.save_model; it has the keys {sorted(ckpt)[:8]}."
        )
    kwargs = dict(model_cfg)
    name = kwargs.pop("name")
    # The task holds the model as `self.model`; other entries (metrics, loss buffers) are the task's own.
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return name, kwargs, state


def load_model(path: str | Path, *, strict: bool = True) -> nn.Module:
    """Rebuild a zoo model from a checkpoint: ``model = zoo.load_model("outputs/.../checkpoints/best.ckpt")``.

    Returns the plain ``nn.Module`` in eval mode (call ``.train()`` to fine-tune), on the CPU, with its
    registry name and builder kwargs as ``model.zoo_name`` and ``model.zoo_kwargs``.
    """
    path = Path(path)
    name, kwargs, state = _spec(read_checkpoint(path), path)
    model = create_model(name, **kwargs)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit {name}({kwargs}): {str(e).splitlines()[0]} "
                              "... The registry's model changed since the checkpoint was written, or the file "
                              "was edited; load with strict=False to keep the matching weights only.") from None
    model.zoo_name, model.zoo_kwargs = name, kwargs
    return model.eval()


def save_model(model: nn.Module, path: str | Path, *, name: str | None = None,
               kwargs: dict[str, Any] | None = None) -> Path:
    """Save weights + registry name + kwargs in a file :func:`load_model` reads (and ``weights_only`` accepts).

    ``name``/``kwargs`` default to ``model.zoo_name``/``model.zoo_kwargs`` (set by :func:`load_model`).
    """
    name = name or getattr(model, "zoo_name", None)
    if name is None:
        raise ZooError("save_model needs the model's registry name: save_model(model, path, name='resnet20', "
                       "kwargs={...}) with the kwargs it was built with.")
    kwargs = dict(kwargs if kwargs is not None else getattr(model, "zoo_kwargs", {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "model": name, "kwargs": kwargs, "state_dict": state}, path)
    return path
