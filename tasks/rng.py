"""Every random stream a run draws from, captured into a checkpoint and restored on resume.

CPU torch (augmentation, dropout, noise on the CPU), CUDA per device (the same on a GPU), Python's
``random`` and NumPy's global generator (seeded by ``seed_everything``; the zoo's own code does not draw from
it, a user's callback may). Stored as tensors and plain values, so ``torch.load(weights_only=True)`` reads them.
Under DDP the checkpoint is rank 0's: every rank resumes from rank 0's streams.
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["capture", "restore"]


def capture() -> dict[str, Any]:
    """The current state of every stream, as checkpoint-safe values."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()  # one ByteTensor per device
    np = sys.modules.get("numpy")
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        states["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return states


def restore(states: dict[str, Any]) -> None:
    """Put every stream of :func:`capture`'s ``states`` back (a checkpoint without some stream leaves it)."""
    torch.set_rng_state(states["torch"])
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            log.warning("the checkpoint holds the random streams of %d CUDA devices, this machine has %d: "
                        "restoring the first %d", len(cuda), torch.cuda.device_count(),
                        min(len(cuda), torch.cuda.device_count()))
        for device, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)
    saved = states.get("numpy")
    if saved is not None:
        import numpy as np

        np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"],
                             saved["has_gauss"], saved["gauss"]))
