"""Character-level language modelling: Tiny Shakespeare.

Batches: ``(inputs (B, T), targets (B, T))``, targets shifted by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tasks.data.fetch import ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.loader import ResumableLoader, rank_world, resident
from tasks.data.text_base import TextDataModule
from tasks.data.text_sources import SHAKESPEARE
from tasks.data.tokenize import CharTokenizer, tokenizer_record


class RandomWindowLoader(ResumableLoader):
    """``num_batches`` batches of ``batch_size`` random windows of a 1-D id tensor: (x, y = x shifted by one).

    Window starts come from a generator seeded with ``seed + epoch`` (reproducible, independent of the
    global RNG); resumable (:class:`ResumableLoader`) so a resumed run continues where it stopped.
    ``device``: the text is copied there once and windows are gathered there (the starts are drawn on the
    host, so every device sees the same batches); ``None``: where ``data`` is.
    """

    def __init__(self, data: torch.Tensor, *, block_size: int, batch_size: int, num_batches: int,
                 seed: int = 0, rank: int = 0, device: torch.device | str | None = None) -> None:
        if len(data) <= block_size + 1:
            raise DataError(f"the training text has {len(data)} tokens, fewer than block_size + 2 = {block_size + 2}")
        super().__init__()
        self.data, self.block_size, self.batch_size = resident(data, device), block_size, batch_size
        self.num_batches, self.seed, self.rank = num_batches, seed, rank

    def __len__(self) -> int:
        return self.num_batches

    def _epoch_batches(self) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.rank + self.epoch)
        starts = torch.randint(len(self.data) - self.block_size - 1, (self.num_batches, self.batch_size), generator=g)
        starts = starts.to(self.data.device)  # one copy an epoch
        offsets = torch.arange(self.block_size + 1, device=self.data.device)

        def batch(b: int) -> tuple[torch.Tensor, torch.Tensor]:
            chunk = self.data[starts[b, :, None] + offsets]  # (B, block_size + 1)
            return chunk[:, :-1], chunk[:, 1:]

        return batch


def _blocks(data: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (x, y) windows covering ``data``: every token is predicted exactly once."""
    n = (len(data) - 1) // block_size
    x = data[: n * block_size].view(n, block_size)
    y = data[1 : n * block_size + 1].view(n, block_size)
    return x, y


class CharLMDataModule(TextDataModule):
    """Tiny Shakespeare as characters, split 90/5/5 by position (train / val / test, contiguous).

    Training draws ``batches_per_epoch`` batches of random ``block_size`` windows; validation and test
    cover their split with non-overlapping windows.
    """

    char_level = True

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "tiny_shakespeare",
        block_size: int = 256,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        batches_per_epoch: int = 500,
        split: Sequence[float] = (0.9, 0.05, 0.05),
        seed: int = 0,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        if dataset != "tiny_shakespeare":
            raise DataError(f"unknown character LM dataset {dataset!r}; choose 'tiny_shakespeare'")
        if len(split) != 3 or abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
            raise DataError(f"data.split={list(split)} must be three positive fractions summing to 1")
        self.dataset, self.block_size = dataset, block_size
        self.batch_size, self.eval_batch_size, self.batches_per_epoch = batch_size, eval_batch_size, batches_per_epoch
        self.split = tuple(split)
        self.tokenizer: CharTokenizer | None = None

    def prepare_data(self) -> None:
        ensure_files(self.dataset, self.root, [SHAKESPEARE], download=self.download, manifest=self.manifest)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        self.prepare_data()
        text = read_text(self.root, SHAKESPEARE.rel)
        n_train = int(len(text) * self.split[0])
        n_val = int(len(text) * self.split[1])
        self.tokenizer = CharTokenizer.fit(text[:n_train])  # every character of the text occurs in the first 90%
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.train_ids = self.tokenizer.encode_text(text[:n_train])
        self.val_ids = self.tokenizer.encode_text(text[n_train : n_train + n_val])
        self.test_ids = self.tokenizer.encode_text(text[n_train + n_val :])
        self.val_set = _blocks(self.val_ids, self.block_size)
        self.test_set = _blocks(self.test_ids, self.block_size)

    def facts(self) -> dict[str, Any]:
        """The characters seen in training (the vocabulary) and the window length (reads the text)."""
        self.setup("fit")
        return {"vocab_size": self.vocab_size, "max_len": self.block_size}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries: its characters and window (``zoo predict`` reads it)."""
        self.setup("fit")
        return {"kind": "text", "tokenizer": tokenizer_record(self.tokenizer), "max_len": self.block_size}

    def encode(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode_text(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode_ids(ids)

    def train_dataloader(self) -> RandomWindowLoader:
        rank, _ = rank_world(self.trainer)
        return RandomWindowLoader(self.train_ids, block_size=self.block_size, batch_size=self.batch_size,
                                  num_batches=self.batches_per_epoch, seed=self.seed, rank=rank,
                                  device=self.batch_device())
