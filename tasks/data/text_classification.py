"""Sentence classification: SST-2 and AG News.

Batches, as the tasks see them (after ``on_after_batch_transfer``):
``((tokens (B, T) long, padding_mask (B, T) bool, True = pad), labels (B,))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tasks.data.fetch import Remote, ensure_files
from tasks.data.integrity import DataError
from tasks.data.text_base import TextDataModule, held_out_split, trim_padding
from tasks.data.text_sources import CLASS_NAMES, CLASSIFICATION_FILES, NUM_CLASSES, READERS
from tasks.data.tokenize import PAD_ID, encode_padded, load_tokenizer, tokenizer_record, train_tokenizer


class TextClassificationDataModule(TextDataModule):
    """SST-2 (GLUE; dev serves as test) and AG News, tokenised by a WordPiece/BPE tokenizer trained on the train split.

    ``val_size`` sentences are carved from the training file with ``split_seed`` for validation.
    ``tokenizer_file``: a saved tokenizer to use instead of training one (fine-tuning a pretrained model must
    read text as its pretraining did; ``init_from=CKPT`` sets it from the checkpoint).
    """

    def __init__(
        self,
        *,
        dataset: str,
        root: str,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        val_size: int = 1000,
        split_seed: int = 0,
        seed: int = 0,
        max_len: int = 64,
        tokenizer: str = "wordpiece",
        tokenizer_vocab_size: int = 8000,
        tokenizer_file: str | None = None,
        lowercase: bool = True,
        cache_dir: str | None = None,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        if dataset not in CLASSIFICATION_FILES:
            raise DataError(f"unknown text classification dataset {dataset!r}; choose one of "
                            f"{', '.join(CLASSIFICATION_FILES)}")
        self.dataset, self.num_classes = dataset, NUM_CLASSES[dataset]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.max_len = val_size, split_seed, max_len
        self.tokenizer_kind, self.tokenizer_vocab_size, self.lowercase = tokenizer, tokenizer_vocab_size, lowercase
        self.pad_id, self.cache_dir, self.tokenizer_file = PAD_ID, cache_dir, tokenizer_file
        self.tokenizer = None

    def _files(self) -> dict[str, Remote]:
        files = CLASSIFICATION_FILES[self.dataset]
        if self.dataset == "ag_news" and not (self.root / files["train"].rel).is_file() and not self.download:
            raise DataError(
                f"ag_news: {self.root / files['train'].rel} is missing (the shared data root has only test.csv), "
                "and a model cannot be trained on the test split. Put the 120000-row train.csv "
                f"(md5 {files['train'].md5}) there, or set data.download=true when online."
            )
        ensure_files(self.dataset, self.root, list(files.values()), download=self.download, manifest=self.manifest)
        return files

    def prepare_data(self) -> None:
        self._files()

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        files = self._files()
        texts, labels = READERS[self.dataset](self.root / files["train"].rel)
        test_texts, test_labels = READERS[self.dataset](self.root / files["test"].rel)
        val_idx, train_idx = held_out_split(len(texts), val_size=self.val_size, split_seed=self.split_seed)
        train_texts = [texts[i] for i in train_idx]
        if self.tokenizer_file:
            self.tokenizer = load_tokenizer(self.tokenizer_file)
        else:
            self.tokenizer = train_tokenizer(train_texts, name=self.dataset, algorithm=self.tokenizer_kind,
                                             vocab_size=self.tokenizer_vocab_size, lowercase=self.lowercase,
                                             cache_dir=self.cache_dir)
        self.vocab_size = self.tokenizer.get_vocab_size()

        def encode(ts: Sequence[str], ys: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
            ids, _ = encode_padded(self.tokenizer, ts, max_len=self.max_len, pad_id=self.pad_id)
            return ids, torch.tensor(ys, dtype=torch.long)

        self.train_set = encode(train_texts, [labels[i] for i in train_idx])
        self.val_set = encode([texts[i] for i in val_idx], [labels[i] for i in val_idx])
        self.test_set = encode(test_texts, test_labels)

    def facts(self) -> dict[str, Any]:
        """The classes, and the vocabulary, padding id and length of the tokenised text (trains the tokenizer)."""
        self.setup("fit")
        return {"num_classes": self.num_classes, "vocab_size": self.vocab_size, "pad_id": self.pad_id,
                "max_len": self.max_len}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries: tokenizer, padding, length, class names."""
        self.setup("fit")
        return {"kind": "text", "tokenizer": tokenizer_record(self.tokenizer), "max_len": self.max_len,
                "pad_id": self.pad_id, "lowercase": self.lowercase, "classes": list(CLASS_NAMES[self.dataset])}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        ids, y = batch
        ids = trim_padding(ids, self.pad_id)
        return (ids, ids == self.pad_id), y
