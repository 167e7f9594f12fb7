"""Translation: Multi30k (task 1), German <-> English.

Batches, as the tasks see them: ``(src (B, S), tgt (B, T) = <bos> ... <eos> <pad>..., index (B,))``;
``index`` looks up the raw reference sentence for BLEU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tasks.data.fetch import Remote, ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader
from tasks.data.text_base import TextDataModule, trim_padding
from tasks.data.text_sources import MULTI30K_SPLITS, multi30k_file
from tasks.data.tokenize import BOS_ID, EOS_ID, PAD_ID, encode_padded, tokenizer_record, train_tokenizer


class TranslationDataModule(TextDataModule):
    """Multi30k German -> English (train / val / test_2016_flickr) with one joint BPE vocabulary.

    The tokenizer is trained on the train split of both languages only and cached; ``<pad>``, ``<unk>``,
    ``<bos>``, ``<eos>`` are ids 0-3. Targets are ``<bos> ... <eos>``; ``references(stage)`` holds the
    raw target sentences that BLEU is computed against.
    """

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "multi30k",
        src_lang: str = "de",
        tgt_lang: str = "en",
        tokenizer: str = "bpe",
        tokenizer_vocab_size: int = 8000,
        lowercase: bool = False,
        max_len: int = 64,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        bucket_batches: int = 50,
        seed: int = 0,
        cache_dir: str | None = None,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        if dataset != "multi30k":
            raise DataError(f"unknown translation dataset {dataset!r}; choose 'multi30k'")
        if {src_lang, tgt_lang} != {"de", "en"}:
            raise DataError(f"Multi30k task 1 has 'de' and 'en'; got src_lang={src_lang!r}, tgt_lang={tgt_lang!r}")
        self.dataset, self.src_lang, self.tgt_lang = dataset, src_lang, tgt_lang
        self.tokenizer_kind, self.tokenizer_vocab_size, self.lowercase = tokenizer, tokenizer_vocab_size, lowercase
        self.max_len, self.batch_size, self.eval_batch_size = max_len, batch_size, eval_batch_size
        self.bucket_batches = bucket_batches
        self.pad_id, self.bos_id, self.eos_id, self.cache_dir = PAD_ID, BOS_ID, EOS_ID, cache_dir
        self.tokenizer = None
        self._refs: dict[str, list[str]] = {}

    def _files(self) -> list[Remote]:
        return [multi30k_file(f"{s}.{lang}") for s in MULTI30K_SPLITS.values() for lang in ("de", "en")]

    def prepare_data(self) -> None:
        ensure_files(self.dataset, self.root, self._files(), download=self.download, manifest=self.manifest)

    def _lines(self, split: str, lang: str) -> list[str]:
        return read_text(self.root, f"multi30k/{MULTI30K_SPLITS[split]}.{lang}").rstrip("\n").split("\n")

    def facts(self) -> dict[str, Any]:
        """The joint vocabulary of both languages, the padding id and the length limit (trains the tokenizer)."""
        self.setup("fit")
        return {"src_vocab_size": self.vocab_size, "tgt_vocab_size": self.vocab_size, "pad_id": self.pad_id,
                "max_len": self.max_len}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries: the joint tokenizer and special ids (``zoo predict``)."""
        self.setup("fit")
        return {"kind": "text", "tokenizer": tokenizer_record(self.tokenizer), "max_len": self.max_len,
                "pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id, "lowercase": self.lowercase,
                "src_lang": self.src_lang, "tgt_lang": self.tgt_lang}

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        self.prepare_data()
        data = {s: (self._lines(s, self.src_lang), self._lines(s, self.tgt_lang)) for s in MULTI30K_SPLITS}
        for s, (src, tgt) in data.items():
            if len(src) != len(tgt):
                raise DataError(f"multi30k {s}: {len(src)} {self.src_lang} lines but {len(tgt)} {self.tgt_lang} lines")
        self.tokenizer = train_tokenizer(data["train"][0] + data["train"][1], name="multi30k_de_en",
                                         algorithm=self.tokenizer_kind, vocab_size=self.tokenizer_vocab_size,
                                         lowercase=self.lowercase, cache_dir=self.cache_dir)
        self.vocab_size = self.tokenizer.get_vocab_size()
        sets = {}
        for s, (src, tgt) in data.items():
            src_ids, src_len = encode_padded(self.tokenizer, src, max_len=self.max_len, pad_id=self.pad_id, eos=True)
            tgt_ids, tgt_len = encode_padded(self.tokenizer, tgt, max_len=self.max_len + 1, pad_id=self.pad_id,
                                             bos=True, eos=True)
            sets[s] = (src_ids, tgt_ids, torch.arange(len(src)))
            if s == "train":
                self.train_lengths = torch.maximum(src_len, tgt_len)
            self._refs[s] = [t.lower() for t in tgt] if self.lowercase else tgt
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
        self.sources = {s: src for s, (src, _) in data.items()}

    def train_dataloader(self) -> TensorBatchLoader:
        """Shuffled, and length-bucketed when ``bucket_batches > 0`` (sentences of similar length together)."""
        return self._train_loader(*self.train_set, lengths=self.train_lengths, bucket_batches=self.bucket_batches)

    def references(self, stage: str) -> list[str]:
        return self._refs[stage]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids up to the first ``<eos>`` (specials dropped) -> detokenised text."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(int(i))
        return self.tokenizer.decode(out)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        src, tgt, idx = batch
        return trim_padding(src, self.pad_id), trim_padding(tgt, self.pad_id), idx
