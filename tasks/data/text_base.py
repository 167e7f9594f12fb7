"""The base of the text DataModules: padded id tensors in memory, sliced by a whole-batch loader.

Every batch is sliced from in-memory tensors by a whole-batch loader (benchmarks/README.md) and trimmed to
the longest sequence of the batch after it reaches the device, so short sentences cost little. On an
accelerator the id tensors are copied to the device once and batches are sliced there (``tasks.data.loader``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader, data_device, rank_world, training_position


def trim_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the columns that are padding in every row: (B, T_max) -> (B, T_batch)."""
    longest = int((ids != pad_id).sum(1).max()) if len(ids) else 1
    return ids[:, : max(longest, 1)]


def held_out_split(n: int, *, val_size: int, split_seed: int) -> tuple[list[int], list[int]]:
    """(validation, training) indices of ``n`` training examples: ``val_size`` drawn with ``split_seed``.

    The one split of a text training set: the masked-LM corpus holds out exactly the sentences its fine-tuning
    run on the same data validates on.
    """
    if not 0 <= val_size < n:
        raise DataError(f"data.val_size={val_size} must be in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return perm[:val_size], perm[val_size:]


class TextDataModule(L.LightningDataModule):
    """The text DataModules' shared part: data root, download, seed, loaders over ``train_set``/``val_set``/``test_set``.

    ``on_device``: where the loaders keep the tensors: None (auto: on the trainer's device when it is an
    accelerator), True (also on CPUs: the same code path, no copy), False (host memory).
    """

    on_device: bool | None = None

    def __init__(self, *, root: str, download: bool, manifest: str | None, seed: int,
                 meta: dict[str, Any] | None) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.download, self.manifest, self.seed = download, manifest, seed
        self.meta = dict(meta or {})

    def batch_device(self) -> torch.device | None:
        """The device the loaders slice batches on (None: host memory, Lightning copies each batch)."""
        return data_device(self.trainer, on_device=self.on_device)

    def _eval_loader(self, *tensors: torch.Tensor) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        return TensorBatchLoader(*tensors, batch_size=self.eval_batch_size, rank=rank, world_size=world,
                                 device=self.batch_device())

    def _train_loader(self, *tensors: torch.Tensor, lengths: torch.Tensor | None = None,
                      bucket_batches: int = 0) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        return TensorBatchLoader(*tensors, batch_size=self.batch_size, shuffle=True, drop_last=True,
                                 seed=self.seed, rank=rank, world_size=world,
                                 position=lambda: training_position(self.trainer),
                                 lengths=lengths if bucket_batches > 0 else None, bucket_batches=bucket_batches,
                                 device=self.batch_device())

    def train_dataloader(self) -> Any:
        return self._train_loader(*self.train_set)

    def val_dataloader(self) -> Any:
        return self._eval_loader(*self.val_set)

    def test_dataloader(self) -> Any:
        return self._eval_loader(*self.test_set)
