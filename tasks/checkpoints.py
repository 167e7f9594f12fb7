"""The training side's checkpoint pieces: Lightning's checkpoint IO made atomic, and the check before a resume.

Reading checkpoints (``torch.load(weights_only=True)`` with errors a person can act on), :class:`CheckpointError`
and atomic writes belong to the library, :mod:`zoo.checkpoint` and :mod:`zoo.io`; they are re-exported here
under the names the training side uses (``load_checkpoint`` is :func:`zoo.checkpoint.read_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.checkpoint import CheckpointError
from zoo.checkpoint import read_checkpoint as load_checkpoint
from zoo.io import write_atomic

__all__ = ["AtomicCheckpointIO", "CheckpointError", "check_resumable", "load_checkpoint", "write_atomic"]


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


def check_resumable(path: str | Path, model_cfg: dict[str, Any], *, task: torch.nn.Module | None = None) -> None:
    """Before resuming: the checkpoint loads safely and was made by the same model and arguments.

    With ``task``, its parameter names and shapes must also match the checkpoint's (checkpoints from
    elsewhere carry no model config to compare).
    """
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass an existing .ckpt file, or ckpt_path=last "
                              "with hydra.run.dir set to the run folder (or resume=RUN_DIR).")
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
