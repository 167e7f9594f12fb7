"""Language modelling on one text: Tiny Shakespeare, or your own plain-text file (``data=text_file``).

Batches: ``(inputs (B, T), targets (B, T))``, targets shifted by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tasks.data.fetch import ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.loader import ResumableLoader, rank_world, resident, training_position
from tasks.data.text_base import TextDataModule
from tasks.data.text_sources import SHAKESPEARE
from tasks.data.tokenize import CharTokenizer, tokenizer_record, train_tokenizer


class SubwordTokenizer:
    """A BPE tokenizer (``tasks.data.tokenize.train_tokenizer``) with :class:`CharTokenizer`'s methods."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def get_vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode_text(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tok.encode(text).ids, dtype=torch.long)

    def decode_ids(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))

    def to_str(self) -> str:
        """The HF tokenizer's own JSON serialisation (``tokenizer_record``, checkpoints)."""
        return self.tok.to_str()


class RandomWindowLoader(ResumableLoader):
    """``num_batches`` batches of ``batch_size`` random windows of a 1-D id tensor: (x, y = x shifted by one).

    Window starts come from a generator seeded with ``seed + epoch`` (reproducible, independent of the
    global RNG); resumable (:class:`ResumableLoader`) so a resumed run continues where it stopped.
    ``device``: the text is copied there once and windows are gathered there (the starts are drawn on the
    host, so every device sees the same batches); ``None``: where ``data`` is.
    """

    def __init__(self, data: torch.Tensor, *, block_size: int, batch_size: int, num_batches: int,
                 seed: int = 0, rank: int = 0, device: torch.device | str | None = None,
                 position: Callable[[], tuple[int, int] | None] | None = None) -> None:
        if len(data) <= block_size + 1:
            raise DataError(f"the training text has {len(data)} tokens, fewer than block_size + 2 = {block_size + 2}")
        super().__init__(position=position)
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
    """One text as characters (or BPE tokens), split 90/5/5 by position (train / val / test, contiguous).

    ``dataset``: ``tiny_shakespeare`` (from the data root, verified), or ``text_file``: your own UTF-8 text at
    ``path``, whose characters all make the vocabulary (a character seen only in its last 10% would otherwise
    have no id). ``tokenizer``: ``char``, or ``bpe`` (byte-pair pieces, ``tokenizer_vocab_size`` of them, trained
    on the training part and cached). Training draws ``batches_per_epoch`` batches of random ``block_size``
    windows; validation and test cover their split with non-overlapping windows.
    """

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "tiny_shakespeare",
        path: str | None = None,
        tokenizer: str = "char",
        tokenizer_vocab_size: int = 2000,
        cache_dir: str | None = None,
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
        if dataset not in ("tiny_shakespeare", "text_file"):
            raise DataError(f"unknown language-model dataset {dataset!r}; choose 'tiny_shakespeare' or 'text_file' "
                            "(with data.path=your.txt)")
        if dataset == "text_file" and not path:
            raise DataError("data=text_file needs the file: data.path=/path/to/your.txt (UTF-8 plain text)")
        if tokenizer not in ("char", "bpe"):
            raise DataError(f"data.tokenizer={tokenizer!r}; choose 'char' or 'bpe'")
        self.path = Path(path).expanduser() if path else None
        self.tokenizer_kind, self.tokenizer_vocab_size, self.cache_dir = tokenizer, tokenizer_vocab_size, cache_dir
        self.char_level = tokenizer == "char"  # bits per character are reported for character models
        if len(split) != 3 or abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
            raise DataError(f"data.split={list(split)} must be three positive fractions summing to 1")
        self.dataset, self.block_size = dataset, block_size
        self.batch_size, self.eval_batch_size, self.batches_per_epoch = batch_size, eval_batch_size, batches_per_epoch
        self.split = tuple(split)
        self.tokenizer: CharTokenizer | SubwordTokenizer | None = None

    def prepare_data(self) -> None:
        if self.dataset == "text_file":
            if not self.path.is_file():
                raise DataError(f"data.path={self.path}: no such file. Pass a UTF-8 plain-text file.")
            return
        ensure_files(self.dataset, self.root, [SHAKESPEARE], download=self.download, manifest=self.manifest)

    def _read(self) -> str:
        if self.dataset == "text_file":
            return read_text(self.path.parent, self.path.name)
        return read_text(self.root, SHAKESPEARE.rel)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        self.prepare_data()
        text = self._read()
        if not text.strip():
            raise DataError(f"{self.path or self.dataset} is empty{' (only white space)' if text else ''}: a language "
                            "model learns from the text in it. Point data.path at a UTF-8 plain-text file with text.")
        n_train = int(len(text) * self.split[0])
        n_val = int(len(text) * self.split[1])
        if self.tokenizer_kind == "bpe":
            self.tokenizer = SubwordTokenizer(train_tokenizer(
                text[:n_train].splitlines(keepends=True), name=self.dataset, algorithm="bpe",
                vocab_size=self.tokenizer_vocab_size, cache_dir=self.cache_dir))
        else:  # Shakespeare: every character occurs in the first 90%; a file of yours: all of them count
            self.tokenizer = CharTokenizer.fit(text if self.dataset == "text_file" else text[:n_train])
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.train_ids = self.tokenizer.encode_text(text[:n_train])
        self.val_ids = self.tokenizer.encode_text(text[n_train : n_train + n_val])
        self.test_ids = self.tokenizer.encode_text(text[n_train + n_val :])
        short = min(len(self.val_ids), len(self.test_ids)) - 1
        if short < 1:  # no window fits, whatever the block size: the text is too short
            need = math.ceil((self.block_size + 1) / min(self.split[1:]))
            raise DataError(f"{self.path or self.dataset} is too short ({len(text)} characters): its validation and "
                            f"test parts ({self.split[1]:.0%} / {self.split[2]:.0%}) need at least 2 tokens each. Use "
                            f"a longer text (about {need} characters for data.block_size={self.block_size}).")
        if short < self.block_size:
            raise DataError(f"{self.path or self.dataset}: its validation or test part ({self.split[1]:.0%} / "
                            f"{self.split[2]:.0%} of the text) has {short + 1} tokens, fewer than data.block_size + 1 = "
                            f"{self.block_size + 1}. Use a smaller data.block_size (at most {max(short, 1)}) or a "
                            "longer text.")
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
                                  device=self.batch_device(), position=lambda: training_position(self.trainer))
