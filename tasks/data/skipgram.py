"""Skip-gram pairs for word2vec.

Batches, as the task sees them: ``(center (B,), context (B,), negatives (B, K))``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import torch

from tasks.data.fetch import ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.loader import resident
from tasks.data.text_base import TextDataModule
from tasks.data.text_sources import CLASSIFICATION_FILES, SHAKESPEARE, read_sst2


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


class SkipGramDataModule(TextDataModule):
    """(center, context) word pairs within ``window`` from Tiny Shakespeare or SST-2 text, plus
    ``negatives`` noise words per pair drawn from the unigram distribution raised to 3/4 (Mikolov et al. 2013).

    Words rarer than ``min_count`` are dropped; frequent words are subsampled once, with ``split_seed``.
    The text is split 90/5/5 by position for train / val / test pairs.
    """

    def __init__(
        self,
        *,
        root: str,
        source: str = "tiny_shakespeare",
        window: int = 2,
        min_count: int = 5,
        negatives: int = 5,
        subsample: float = 1e-3,
        batch_size: int = 1024,
        eval_batch_size: int = 4096,
        split_seed: int = 0,
        seed: int = 0,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        if source not in ("tiny_shakespeare", "sst2"):
            raise DataError(f"data.source={source!r}; choose 'tiny_shakespeare' or 'sst2'")
        self.source, self.window, self.min_count, self.negatives = source, window, min_count, negatives
        self.subsample, self.split_seed = subsample, split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.itos: list[str] | None = None

    def _text(self) -> str:
        if self.source == "tiny_shakespeare":
            ensure_files(self.source, self.root, [SHAKESPEARE], download=self.download, manifest=self.manifest)
            return read_text(self.root, SHAKESPEARE.rel)
        f = CLASSIFICATION_FILES["sst2"]["train"]
        ensure_files("sst2", self.root, [f], download=self.download, manifest=self.manifest)
        return "\n".join(read_sst2(self.root / f.rel)[0])

    def prepare_data(self) -> None:
        self._text()

    def _pairs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centers, contexts = [], []
        for off in range(1, self.window + 1):
            centers += [ids[:-off], ids[off:]]
            contexts += [ids[off:], ids[:-off]]
        return torch.cat(centers), torch.cat(contexts)

    def facts(self) -> dict[str, Any]:
        """The vocabulary: words seen at least ``min_count`` times in training (reads the text)."""
        self.setup("fit")
        return {"vocab_size": self.vocab_size}

    def setup(self, stage: str | None = None) -> None:
        if self.itos is not None:
            return
        words = _words(self._text())
        n = len(words)
        parts = {"train": words[: int(0.9 * n)], "val": words[int(0.9 * n) : int(0.95 * n)],
                 "test": words[int(0.95 * n) :]}
        counts = Counter(parts["train"])
        self.itos = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= self.min_count]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.vocab_size = len(self.itos)
        freq = torch.tensor([counts[w] for w in self.itos], dtype=torch.float64)
        self.noise = (freq**0.75 / (freq**0.75).sum()).float()  # unigram^0.75 noise distribution
        g = torch.Generator().manual_seed(self.split_seed)
        p = freq / freq.sum()
        keep_p = ((self.subsample / p).sqrt() + self.subsample / p).clamp(max=1.0) if self.subsample else None
        sets = {}
        for name, ws in parts.items():
            ids = torch.tensor([self.stoi[w] for w in ws if w in self.stoi], dtype=torch.long)
            if name == "train" and keep_p is not None:  # word2vec's subsampling of frequent words
                ids = ids[torch.rand(len(ids), generator=g, dtype=torch.float64) < keep_p[ids]]
            sets[name] = self._pairs(ids)
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        center, context = batch
        noise = resident(self.noise, center.device)  # copied to the device once, not every batch
        neg = torch.multinomial(noise, center.numel() * self.negatives, replacement=True)
        return center, context, neg.view(-1, self.negatives)  # (B,), (B,), (B, K)
