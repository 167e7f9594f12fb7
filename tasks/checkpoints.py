"""Safe checkpoint loading: tensors and plain containers only, and errors a person can act on."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from zoo.registry import ZooError


class CheckpointError(ZooError):
    """A checkpoint that cannot or must not be loaded."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors for missing, truncated, foreign or unsafe files.

    ``weights_only`` refuses anything but tensors and primitive containers, so a checkpoint that carries
    arbitrary pickled objects (which could run code when unpickled) is rejected, not executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass an existing .ckpt file, or ckpt_path=last "
                              "with hydra.run.dir set to the run folder (or resume=RUN_DIR).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors and plain data "
            f"({first}). Loading it could execute code. Only load checkpoints from sources you trust; "
            "re-save it with state_dict()s of plain tensors."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or corrupted: {str(e).splitlines()[0]}). "
            "Use another checkpoint of the run, e.g. the best-*.ckpt beside it."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this project (no 'state_dict' entry).")
    return ckpt


def check_resumable(path: str | Path, model_cfg: dict[str, Any]) -> None:
    """Before resuming: the checkpoint loads safely and was made by the same model and arguments."""
    ckpt = load_checkpoint(path)
    saved = (ckpt.get("hyper_parameters") or {}).get("model")
    if saved is not None and saved != model_cfg:
        diff = {k: (saved.get(k), model_cfg.get(k)) for k in set(saved) | set(model_cfg)
                if saved.get(k) != model_cfg.get(k)}
        raise CheckpointError(
            f"checkpoint {path} was trained with a different model config; differing keys "
            f"(checkpoint, now): {diff}. Resume with the run's own overrides (resume=RUN_DIR does this)."
        )
