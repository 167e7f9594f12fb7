"""Zoo models in and out of files as plain PyTorch: no Lightning and no Hydra needed to use them.

Every checkpoint of the project is read by :func:`read_checkpoint`, with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary objects. :func:`load_model` rebuilds the model of

- a training run's checkpoint (``checkpoints/*.ckpt``), which describes its model in a ``"zoo"`` entry:
  ``{"model": registry name, "kwargs": builder kwargs, "prefix": "model.", "preprocessing": {...}}``; the model's weights are the
  ``state_dict`` entries under ``prefix`` (the training task writes this entry; see :data:`RECORD`);
- a file written by :func:`save_model`: ``{"format": "dnn-zoo/1", "model": name, "kwargs": {...},
  "state_dict": {...}}``, the same description at the top level with no prefix;
- a run checkpoint older than the ``"zoo"`` entry (legacy): the model is ``hyper_parameters["model"]``
  (``{"name": registry name, **builder kwargs}``) and its weights are under ``model.``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from zoo.io import write_atomic
from zoo.registry import ZooError, create_model

__all__ = ["RECORD", "CheckpointError", "InitReport", "load_matching", "load_model", "read_checkpoint", "save_model"]

FORMAT = "dnn-zoo/1"  # written by save_model
RECORD = "zoo"  # the checkpoint entry that describes the model: {"model", "kwargs", "prefix"}
LEGACY_PREFIX = "model."  # where run checkpoints without the RECORD entry keep the model's weights


class CheckpointError(ZooError):
    """A checkpoint that cannot or must not be loaded."""


def _unreadable(path: Path, e: Exception) -> str:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]  # torch appends paragraphs
    if not isinstance(e, RuntimeError) and not zipfile.is_zipfile(path):
        why = f"not the zip archive torch.save writes ({type(e).__name__}: {why})"
    return (f"cannot read checkpoint {path} (truncated or corrupted: {why}). Use another copy, or another "
            "checkpoint of the run (e.g. the best-*.ckpt beside a broken last.ckpt).")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary in ``path``, loaded on the CPU with ``torch.load(weights_only=True)``.

    ``weights_only`` refuses anything but tensors and primitive containers, so a file that carries arbitrary
    pickled objects (which could run code when unpickled) is rejected, not executed. Missing, truncated,
    foreign and unsafe files raise :class:`CheckpointError` saying which it is and what to do.
    """
    path = Path(path)
    if not path.is_file():
        hint = (" It is a folder: pass a file in it, e.g. checkpoints/last.ckpt." if path.is_dir() else
                " Pass an existing file: a run's checkpoints/last.ckpt or best-*.ckpt, or one from zoo.save_model.")
        raise CheckpointError(f"checkpoint not found: {path}.{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"Unsupported (?:global|operand): (?:GLOBAL )?[\w.]*\w", str(e))
        if unsafe is None:  # garbage that is not even a pickle
            raise CheckpointError(_unreadable(path, e)) from None
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors and plain data "
            f"({unsafe.group(0)}). Loading it could execute code. Only load checkpoints from sources you trust; "
            "re-save it with state_dict()s of plain tensors (zoo.save_model writes such files)."
        ) from None
    except Exception as e:  # truncated zips, foreign files: the unpickler fails in many ways
        raise CheckpointError(_unreadable(path, e)) from None
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(
            f"{path} holds a bare state_dict (torch.save(model.state_dict())): weights with no description of the "
            "model. Build the model and load them with model.load_state_dict(torch.load(path)), or save it with "
            "zoo.save_model(model, path, name=..., kwargs=...) to load it with zoo.load_model.")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = f"the keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"{path} is not a zoo checkpoint (not a Lightning checkpoint of a training run, nor a file from "
            f"zoo.save_model): it holds {found}, with no 'state_dict' entry."
        )
    return ckpt


def _record(ckpt: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], str]:
    """(registry name, builder kwargs, state-dict prefix of the model's weights) of any of the three layouts."""
    if RECORD in ckpt:
        record = ckpt[RECORD]
    elif isinstance(ckpt.get("model"), str):  # save_model's file: the description at the top level
        record = {"model": ckpt["model"], "kwargs": ckpt.get("kwargs"), "prefix": ""}
    else:  # legacy run checkpoint: the task's hyperparameters hold the model config
        legacy = (ckpt.get("hyper_parameters") or {}).get("model")
        record = None
        if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
            kwargs = dict(legacy)
            record = {"model": kwargs.pop("name"), "kwargs": kwargs, "prefix": LEGACY_PREFIX}
    if not (isinstance(record, dict) and isinstance(record.get("model"), str)
            and isinstance(record.get("kwargs") or {}, dict) and isinstance(record.get("prefix", ""), str)):
        raise CheckpointError(
            f"{path} is not a zoo checkpoint: it has weights but no description of the model to rebuild. "
            f"Expected a '{RECORD}' entry {{'model': name, 'kwargs': {{...}}, 'prefix': 'model.'}} (written by "
            "train.py's tasks), hyper_parameters['model'] with the registry name (older runs), or a file from "
            f"zoo.save_model; it has the keys {sorted(map(str, ckpt))[:8]}."
        )
    return record["model"], dict(record.get("kwargs") or {}), record.get("prefix", "")


def load_model(path: str | Path, *, strict: bool = True) -> nn.Module:
    """Rebuild a zoo model from a checkpoint: ``model = zoo.load_model("outputs/.../checkpoints/best.ckpt")``.

    Returns the plain ``nn.Module`` in eval mode (call ``.train()`` to fine-tune), on the CPU, with its
    registry name and builder kwargs as ``model.zoo_name`` and ``model.zoo_kwargs``, and the input contract of its
    training data (channels, size, mean/std, class names, tokenizer: see :mod:`zoo.preprocess`) as
    ``model.zoo_preprocessing`` (None for checkpoints without one).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    name, kwargs, prefix = _record(ckpt, path)
    # Other entries under other prefixes (a task's metrics, loss buffers, fixed noise) are not the model's.
    state = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model = create_model(name, **kwargs)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit {name}({kwargs}): {str(e).splitlines()[0]} "
                              "... The registry's model changed since the checkpoint was written, or the file "
                              "was edited; load with strict=False to keep the matching weights only.") from None
    model.zoo_name, model.zoo_kwargs = name, kwargs
    # The input contract of the data it was trained on (zoo.preprocess), when the run's data module stated one.
    model.zoo_preprocessing = (ckpt.get(RECORD) or {}).get("preprocessing")
    return model.eval()


class InitReport(NamedTuple):
    """What :func:`load_matching` did: which of the model's tensors came from the checkpoint and which did not."""

    source: str  # the checkpoint file
    source_model: str  # the registry name of the model that wrote it
    loaded: tuple[str, ...]  # state-dict keys copied from the checkpoint
    fresh: tuple[str, ...]  # keys of the model the checkpoint lacks (or a head of another shape): left as built
    dropped: tuple[str, ...]  # keys of the checkpoint the model lacks (e.g. a pretraining head): ignored

    def summary(self) -> str:
        def names(keys: tuple[str, ...]) -> str:
            groups = sorted({k.split(".")[0] for k in keys})  # top-level modules: "embed, encoder"
            return f"{len(keys)} tensors ({', '.join(groups)})" if keys else "nothing"

        return (f"init_from {self.source} ({self.source_model}): loaded {names(self.loaded)}; "
                f"newly initialised {names(self.fresh)}; not used {names(self.dropped)}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_model": self.source_model, "loaded": list(self.loaded),
                "fresh": list(self.fresh), "dropped": list(self.dropped)}


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's task head (timm's ``get_classifier()``, else a module named ``head``):
    the part a new task replaces, so it may differ from a checkpoint's."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        return set()
    prefix = next((f"{name}." for name, m in model.named_modules() if m is head), None)
    return {k for k in model.state_dict() if prefix and k.startswith(prefix)}


def load_matching(model: nn.Module, checkpoint: str | Path | dict[str, Any], *, source: str | None = None,
                  reset_head: bool = False) -> InitReport:
    """Start ``model`` from another run's weights (fine-tuning): every tensor whose name and shape the checkpoint
    shares is copied; the model's head (:func:`head_keys`) stays as built when the checkpoint has none or one of
    another shape (another number of classes), and with ``reset_head=True`` always (a new task with as many
    classes, e.g. MNIST digits -> Fashion-MNIST garments); checkpoint tensors the model lacks (a pretraining
    head) are ignored. A body tensor of another shape is a :class:`CheckpointError` (another architecture, or
    text read by another tokenizer).

    ``checkpoint``: a path (read with :func:`read_checkpoint`) or a dictionary it returned (or
    :func:`zoo.pretrained.read_weights`, for folders and shipped weights).
    """
    if isinstance(checkpoint, dict):
        ckpt, path = checkpoint, Path(source or "<checkpoint>")
    else:
        path = Path(checkpoint)
        ckpt = read_checkpoint(path)
    name, _, prefix = _record(ckpt, path)
    theirs = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items()
              if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    ours = model.state_dict()
    head = head_keys(model)
    if reset_head and not head:
        raise CheckpointError(f"reset_head: {type(model).__name__} names no head to reset (no get_classifier() and "
                              "no module called 'head'); drop reset_head to load every matching tensor.")
    loaded, fresh, resized = [], [], []
    for k, v in ours.items():
        if k not in theirs or (reset_head and k in head):
            fresh.append(k)
        elif theirs[k].shape == v.shape:
            loaded.append(k)
        elif k in head:
            fresh.append(k)
        else:
            resized.append(f"{k} is {tuple(theirs[k].shape)} there but {tuple(v.shape)} here")
    if resized:
        raise CheckpointError(
            f"init_from={path}: the weights of {name} do not fit this model outside its head ({'; '.join(resized[:3])}"
            f"{'; ...' if len(resized) > 3 else ''}). Build the same architecture (model.dim, depth, num_heads, ...) "
            "and, for text, read the data with the pretraining tokenizer (init_from passes the checkpoint's own to "
            "the data module; a data.tokenizer_file override replaces it).")
    if not loaded:
        raise CheckpointError(f"init_from={path}: no tensor of its {name} fits this model (no shared names): pass a "
                              "checkpoint of the same family, e.g. the pretraining run's checkpoints/last.ckpt.")
    model.load_state_dict({k: theirs[k] for k in loaded}, strict=False)
    return InitReport(str(path), name, tuple(loaded), tuple(fresh), tuple(sorted(theirs.keys() - ours.keys())))


def save_model(model: nn.Module, path: str | Path, *, name: str | None = None,
               kwargs: dict[str, Any] | None = None) -> Path:
    """Save weights + registry name + kwargs in a file :func:`load_model` reads (and ``weights_only`` accepts).

    ``name``/``kwargs`` default to ``model.zoo_name``/``model.zoo_kwargs`` (set by :func:`load_model`). The
    write is atomic: a kill or a full disk during the save leaves the previous file at ``path`` intact.
    """
    name = name or getattr(model, "zoo_name", None)
    if name is None:
        raise ZooError("save_model needs the model's registry name: save_model(model, path, name='resnet20', "
                       "kwargs={...}) with the kwargs it was built with.")
    kwargs = dict(kwargs if kwargs is not None else getattr(model, "zoo_kwargs", {}))
    state = {k: v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "model": name, "kwargs": kwargs, "state_dict": state}
    return write_atomic(path, lambda f: torch.save(payload, f))
