"""Checkpoint safety: atomic writes, loading of tensors and plain containers only, errors a person can act on."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.registry import ZooError


class CheckpointError(ZooError):
    """A checkpoint that cannot or must not be loaded."""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, write: Any) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A rename within one directory is atomic, so a reader (or a resumed run) sees the old file or the new
    one, never a torn one, whatever moment a kill (SIGKILL included) or a full disk strikes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; checkpoints are as readable as other outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with a truly atomic local save.

    Lightning 2.6 stages the bytes in a ``tempfile.mkstemp()`` file under ``$TMPDIR`` and ``shutil.move``s it
    into place: where ``$TMPDIR`` is another filesystem (a node-local /tmp with outputs on NFS or Lustre,
    as on most clusters) that move is a copy, and a kill during it leaves a truncated ``last.ckpt``
    (4 of 8 SIGKILLs in a test with ``TMPDIR=/dev/shm``). Here the temporary file lives beside the target.
    Remote paths (``s3://`` ...) keep Lightning's implementation.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomic(path, lambda f: torch.save(checkpoint, f))


def _unreadable(path: Path, e: Exception) -> str:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]  # torch appends paragraphs
    if not isinstance(e, RuntimeError) and not zipfile.is_zipfile(path):
        why = f"not the zip archive torch.save writes ({type(e).__name__}: {why})"
    return (f"cannot read checkpoint {path} (truncated or corrupted: {why}). Use another checkpoint of the run, "
            "e.g. the best-*.ckpt beside it.")


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
        unsafe = re.search(r"Unsupported (?:global|operand): (?:GLOBAL )?[\w.]*\w", str(e))
        if unsafe is None:  # garbage that is not even a pickle
            raise CheckpointError(_unreadable(path, e)) from None
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors and plain data "
            f"({unsafe.group(0)}). Loading it could execute code. Only load checkpoints from sources you trust; "
            "re-save it with state_dict()s of plain tensors."
        ) from None
    except Exception as e:  # truncated zips, foreign files: the unpickler fails in many ways
        raise CheckpointError(_unreadable(path, e)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this project (no 'state_dict' entry).")
    return ckpt


def check_resumable(path: str | Path, model_cfg: dict[str, Any], *, task: torch.nn.Module | None = None) -> None:
    """Before resuming: the checkpoint loads safely and was made by the same model and arguments.

    With ``task``, its parameter names and shapes must also match the checkpoint's (checkpoints from
    elsewhere carry no model config to compare).
    """
    ckpt = load_checkpoint(path)
    saved = (ckpt.get("hyper_parameters") or {}).get("model")
    if saved is not None and saved != model_cfg:
        diff = {k: (saved.get(k), model_cfg.get(k)) for k in set(saved) | set(model_cfg)
                if saved.get(k) != model_cfg.get(k)}
        raise CheckpointError(
            f"checkpoint {path} was trained with a different model config; differing keys "
            f"(checkpoint, now): {diff}. Resume with the run's own overrides (resume=RUN_DIR does this)."
        )
    if task is not None:
        expected = {k: tuple(v.shape) for k, v in task.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
        missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
        resized = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
        problems = [f"missing {', '.join(missing[:3])}" if missing else "",
                    f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                    ", ".join(f"{k} is {found[k]} there but {expected[k]} here" for k in resized[:3])]
        if any(problems):
            raise CheckpointError(
                f"checkpoint {path} does not fit the model {model_cfg.get('name')!r} of this run "
                f"({'; '.join(p for p in problems if p)}). Pass a checkpoint of the same model and data, "
                "or drop ckpt_path to start from scratch."
            )
