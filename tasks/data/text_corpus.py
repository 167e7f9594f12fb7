"""Unlabelled sentences for masked-LM pretraining: SST-2's training sentences, optionally with Multi30k's English.

Batches, as the task sees them (after ``on_after_batch_transfer``): ``((tokens (B, T) long, padding_mask (B, T)
bool, True = pad),)``; the masking itself is the task's (tasks/masked_lm.py), so every epoch masks afresh.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from tasks.data.fetch import Remote, ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.text_base import TextDataModule, held_out_split, trim_padding
from tasks.data.text_sources import CLASSIFICATION_FILES, multi30k_file, read_ag_news, read_sst2
from tasks.data.tokenize import (
    MASK_ID,
    PAD_ID,
    encode_padded,
    load_tokenizer,
    tokenizer_record,
    train_tokenizer,
)

# multi30k: the 29,000 English training captions (the German side is unused); ag_news: the 7,600 news articles
# (title and description) of AG News's test split, the one the shared data root holds (labels unused; a model
# pretrained on them should not then be scored on AG News)
SOURCES = ("sst2", "multi30k", "ag_news")
SST2_TEXTS = ("phrases", "sentences")


def whole_sentences(phrases: Sequence[str]) -> list[str]:
    """The phrases that no other phrase contains, word for word: SST-2's training phrases are cut from the parse
    trees of about 6,900 sentences, and these are those sentences (in first-seen order, each once).

    Every contiguous proper sub-span of every phrase is looked up among the phrases, so the cost grows with the
    square of a phrase's length (about 5 s for SST-2's 67,349 training phrases).
    """
    normal = [" ".join(p.split()) for p in phrases]
    known, inside = set(normal), set()
    for p in normal:
        starts = [0, *(m.end() for m in re.finditer(" ", p))]
        ends = [*(a - 1 for a in starts[1:]), len(p)]
        for i, a in enumerate(starts):
            for b in ends[i:len(ends) - (i == 0)]:  # every word span but the whole phrase
                if p[a:b] in known:
                    inside.add(p[a:b])
    return list(dict.fromkeys(p for p in normal if p and p not in inside))


class TextCorpusDataModule(TextDataModule):
    """Sentences without labels, tokenised by a WordPiece/BPE tokenizer with a ``<mask>`` token, for pretraining.

    ``sources``: ``sst2`` (the GLUE training sentences; the ``val_size`` sentences that
    :class:`~tasks.data.TextClassificationDataModule` carves for validation with the same ``split_seed`` are
    this module's validation set, so fine-tuning never validates on text it was pretrained on) and/or
    ``multi30k`` (English training captions) and ``ag_news`` (news articles), added to the training text. The test set is SST-2's dev
    sentences (their labels unused). The tokenizer is trained on the training text of ``tokenizer_sources``
    (None: all sources; e.g. ``[sst2]`` keeps the whole vocabulary for the text fine-tuning will read, the other
    sources then only add sentences), or read from ``tokenizer_file``.
    """

    mask_id = MASK_ID  # the tokenizer's <mask> (train_tokenizer(mask=True))
    first_normal_id = MASK_ID + 1  # ids below are specials: never chosen for masking, never a random replacement

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "sst2_mlm",
        sources: Sequence[str] = ("sst2",),
        batch_size: int = 128,
        eval_batch_size: int = 512,
        val_size: int = 1000,
        split_seed: int = 0,
        seed: int = 0,
        max_len: int = 64,
        bucket_batches: int = 50,
        tokenizer: str = "wordpiece",
        tokenizer_vocab_size: int = 8000,
        tokenizer_file: str | None = None,
        tokenizer_sources: Sequence[str] | None = None,
        sst2_text: str = "phrases",
        source_repeats: dict[str, int] | None = None,
        lowercase: bool = True,
        cache_dir: str | None = None,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise DataError(f"data.sources={list(sources)}: choose one or more of {', '.join(SOURCES)} (sst2 first: "
                            "its held-out sentences are the validation set)")
        tok_unknown = [s for s in (tokenizer_sources or ()) if s not in sources]
        if tok_unknown or (tokenizer_sources is not None and not tokenizer_sources):
            raise DataError(f"data.tokenizer_sources={list(tokenizer_sources)}: choose among data.sources="
                            f"{list(sources)} (null: all of them)")
        if "sst2" not in sources:
            raise DataError(f"data.sources={list(sources)} must include sst2: its held-out sentences validate "
                            "and its dev sentences test")
        if sst2_text not in SST2_TEXTS:
            raise DataError(f"data.sst2_text={sst2_text!r}: choose {' or '.join(SST2_TEXTS)}")
        repeats = dict(source_repeats or {})
        bad = {k: v for k, v in repeats.items() if k not in sources or not isinstance(v, int) or v < 1}
        if bad:
            raise DataError(f"data.source_repeats={bad}: each key one of data.sources={list(sources)}, each value a "
                            "whole number >= 1 (copies of that source's text per epoch)")
        self.sst2_text, self.source_repeats = sst2_text, {s: repeats.get(s, 1) for s in sources}
        self.dataset, self.sources = dataset, tuple(sources)  # dataset: its name in reports
        self.batch_size, self.eval_batch_size, self.bucket_batches = batch_size, eval_batch_size, bucket_batches
        self.val_size, self.split_seed, self.max_len = val_size, split_seed, max_len
        self.tokenizer_kind, self.tokenizer_vocab_size, self.lowercase = tokenizer, tokenizer_vocab_size, lowercase
        self.tokenizer_file, self.pad_id, self.cache_dir = tokenizer_file, PAD_ID, cache_dir
        self.tokenizer_sources = tuple(tokenizer_sources) if tokenizer_sources is not None else self.sources
        self.tokenizer = None

    def _files(self) -> dict[str, Remote]:
        files = {"sst2_train": CLASSIFICATION_FILES["sst2"]["train"], "sst2_dev": CLASSIFICATION_FILES["sst2"]["test"]}
        if "multi30k" in self.sources:
            files["multi30k"] = multi30k_file("train.en")
        if "ag_news" in self.sources:
            files["ag_news"] = CLASSIFICATION_FILES["ag_news"]["test"]
        ensure_files("+".join(self.sources), self.root, list(files.values()), download=self.download,
                     manifest=self.manifest)
        return files

    def prepare_data(self) -> None:
        self._files()

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        files = self._files()
        texts, _ = read_sst2(self.root / files["sst2_train"].rel)
        test_texts, _ = read_sst2(self.root / files["sst2_dev"].rel)
        # TextClassificationDataModule's split: the same sentences are held out in both stages
        val_idx, train_idx = held_out_split(len(texts), val_size=self.val_size, split_seed=self.split_seed)
        val_texts = [texts[i] for i in val_idx]
        by_source = {"sst2": [texts[i] for i in train_idx]}
        if self.sst2_text == "sentences":
            by_source["sst2"] = whole_sentences(by_source["sst2"])
        if "multi30k" in self.sources:
            by_source["multi30k"] = read_text(self.root, files["multi30k"].rel).splitlines()
        if "ag_news" in self.sources:
            by_source["ag_news"] = read_ag_news(self.root / files["ag_news"].rel)[0]
        by_source = {source: texts * self.source_repeats[source] for source, texts in by_source.items()}
        train_texts = [t for source in self.sources for t in by_source[source]]
        if self.tokenizer_file:
            self.tokenizer = load_tokenizer(self.tokenizer_file)
            if self.tokenizer.token_to_id("<mask>") != self.mask_id:
                raise DataError(f"data.tokenizer_file={self.tokenizer_file} has no <mask> token at id {self.mask_id}: "
                                "pretrain with a tokenizer trained here (drop data.tokenizer_file).")
        else:
            tok_texts = [t for source in self.tokenizer_sources for t in by_source[source]]
            self.tokenizer = train_tokenizer(tok_texts, name="+".join(self.tokenizer_sources) + "-mlm",
                                             algorithm=self.tokenizer_kind, vocab_size=self.tokenizer_vocab_size,
                                             lowercase=self.lowercase, cache_dir=self.cache_dir, mask=True)
        self.vocab_size = self.tokenizer.get_vocab_size()

        def encode(ts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
            return encode_padded(self.tokenizer, ts, max_len=self.max_len, pad_id=self.pad_id)

        train_ids, self.train_lengths = encode(train_texts)
        self.train_set = (train_ids,)
        self.val_set = (encode(val_texts)[0],)
        self.test_set = (encode(test_texts)[0],)

    def facts(self) -> dict[str, Any]:
        """The vocabulary, padding id and length of the tokenised text (trains the tokenizer)."""
        self.setup("fit")
        return {"vocab_size": self.vocab_size, "pad_id": self.pad_id, "max_len": self.max_len}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a pretrained model carries: its tokenizer (which ``init_from`` hands on), padding,
        length and the ``<mask>`` id."""
        self.setup("fit")
        return {"kind": "text", "tokenizer": tokenizer_record(self.tokenizer), "max_len": self.max_len,
                "pad_id": self.pad_id, "mask_id": self.mask_id, "lowercase": self.lowercase}

    def train_dataloader(self) -> Any:
        # sentences of similar length share a batch, so trimming padding per batch saves most of its cost
        return self._train_loader(*self.train_set, lengths=self.train_lengths, bucket_batches=self.bucket_batches)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        ids = trim_padding(batch[0], self.pad_id)
        return ((ids, ids == self.pad_id),)
