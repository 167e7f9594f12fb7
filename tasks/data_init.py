"""Data-dependent initialisation: a model that defines ``init_from_data(x)`` gets training inputs before fitting.

The hook takes a batch of training inputs prepared as the model sees them in evaluation (normalised, not
augmented): airbench (Jordan 2024) computes its patch-whitening layer from 5000 training images. Tasks
call :func:`init_from_data` from ``setup("fit")``; a resumed run loads its checkpoint after setup, so the
checkpoint's weights win over the fresh computation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

DATA_INIT_SAMPLES = 5000


def training_inputs(datamodule: L.LightningDataModule, n: int) -> torch.Tensor:
    """The first ``n`` inputs of the datamodule's training loader (its first epoch's order), un-augmented.

    Batches go through the datamodule's ``transform(x, train=False)`` where it has one (VisionDataModule:
    uint8 -> normalised float), so the model sees what it will see at test time.
    """
    chunks, count = [], 0
    transform = getattr(datamodule, "transform", None)
    for batch in datamodule.train_dataloader():
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = transform(x, train=False) if callable(transform) else x.float()
        chunks.append(x[: n - count])
        count += len(chunks[-1])
        if count >= n:
            break
    if not chunks:
        raise ValueError(f"{type(datamodule).__name__}'s training loader yielded no batches for the data-dependent "
                         "init; check the training split (data.val_size, limits)")
    return torch.cat(chunks)


def init_from_data(model: nn.Module, trainer: L.Trainer, *, n: int = DATA_INIT_SAMPLES) -> bool:
    """Call ``model.init_from_data`` on ``n`` training inputs, if the model has that hook; True when it ran.

    Every process computes the same: under DDP the inputs of rank 0 are broadcast first (ranks read shards).
    """
    hook: Any = getattr(model, "init_from_data", None)
    datamodule = trainer.datamodule
    if not callable(hook) or datamodule is None:
        return False
    x = training_inputs(datamodule, n)
    if trainer.world_size > 1:
        x = trainer.strategy.broadcast(x, src=0)
    hook(x)
    return True
