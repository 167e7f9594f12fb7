"""Text datasets held in memory as padded id tensors: classification, character LM, translation, skip-gram.

Every batch is sliced from in-memory tensors by a whole-batch loader (PERFORMANCE.md) and trimmed to
the longest sequence of the batch after it reaches the device, so short sentences cost little.

Batch formats, as the tasks see them (after ``on_after_batch_transfer``):

- classification: ``((tokens (B, T) long, padding_mask (B, T) bool, True = pad), labels (B,))``
- language model: ``(inputs (B, T), targets (B, T))``, targets shifted by one
- translation:    ``(src (B, S), tgt (B, T) = <bos> ... <eos> <pad>..., index (B,))``; ``index`` looks
  up the raw reference sentence for BLEU
- skip-gram:      ``(center (B,), context (B,), negatives (B, K))``
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tasks.data.fetch import Remote, ensure_files, read_text
from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader, training_position
from tasks.data.tokenize import CharTokenizer, check_vocab, encode_padded, train_tokenizer

GH = "https://raw.githubusercontent.com"
SHAKESPEARE = Remote("tiny_shakespeare/input.txt", "6fb458f1232090904fb40fe944165e91",
                     f"{GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
SST2_ZIP = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST2_ZIP_MD5 = "9f81648d4199384278b86e315dac217c"
CLASSIFICATION_FILES = {
    "sst2": {
        "train": Remote("sst2/train.tsv", "da409a0a939379ed32a470bc0f7fe99a", SST2_ZIP, "SST-2/train.tsv", SST2_ZIP_MD5),
        "test": Remote("sst2/dev.tsv", "268856b487b2a31a28c0a93daaff7288", SST2_ZIP, "SST-2/dev.tsv", SST2_ZIP_MD5),
    },
    "ag_news": {
        "train": Remote("ag_news/train.csv", "b1a00f826fdfbd249f79597b59e1dc12",
                        f"{GH}/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv"),
        "test": Remote("ag_news/test.csv", "d52ea96a97a2d943681189a97654912d",
                       f"{GH}/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv"),
    },
}
NUM_CLASSES = {"sst2": 2, "ag_news": 4}
MULTI30K_MD5 = {
    "train.de": "d3b4bc1671cfb805267f97f16884beba", "train.en": "053a34ece7c904dbc8c7361799afbe4c",
    "val.de": "9f139b15d9d11936dea7af2904e57d8c", "val.en": "2234730e7925354b766681b029b347ec",
    "test_2016_flickr.de": "cde61d7401b116652ee84099c7858ca3",
    "test_2016_flickr.en": "2022a6c31e2418047a0511333d55ed42",
}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def _multi30k_file(name: str) -> Remote:
    # upstream serves gzip files; the data root keeps them decompressed (verified by the plain file's md5)
    return Remote(f"multi30k/{name}", MULTI30K_MD5[name],
                  f"{GH}/multi30k/dataset/master/data/task1/raw/{name}.gz")


def _rank_world(trainer: Any) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def _trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the columns that are padding in every row: (B, T_max) -> (B, T_batch)."""
    longest = int((ids != pad_id).sum(1).max()) if len(ids) else 1
    return ids[:, : max(longest, 1)]


class _Base(L.LightningDataModule):
    def __init__(self, *, root: str, download: bool, manifest: str | None, seed: int,
                 meta: dict[str, Any] | None) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.download, self.manifest, self.seed = download, manifest, seed
        self.meta = dict(meta or {})

    def _eval_loader(self, *tensors: torch.Tensor) -> TensorBatchLoader:
        rank, world = _rank_world(self.trainer)
        return TensorBatchLoader(*tensors, batch_size=self.eval_batch_size, rank=rank, world_size=world)

    def _train_loader(self, *tensors: torch.Tensor, lengths: torch.Tensor | None = None,
                      bucket_batches: int = 0) -> TensorBatchLoader:
        rank, world = _rank_world(self.trainer)
        return TensorBatchLoader(*tensors, batch_size=self.batch_size, shuffle=True, drop_last=True,
                                 seed=self.seed, rank=rank, world_size=world,
                                 position=lambda: training_position(self.trainer),
                                 lengths=lengths if bucket_batches > 0 else None, bucket_batches=bucket_batches)

    def train_dataloader(self) -> Any:
        return self._train_loader(*self.train_set)

    def val_dataloader(self) -> Any:
        return self._eval_loader(*self.val_set)

    def test_dataloader(self) -> Any:
        return self._eval_loader(*self.test_set)


# ----------------------------------------------------------------------------------------------------
# Sentence classification: SST-2, AG News


def _read_sst2(path: Path) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0] != ["sentence", "label"]:
        raise DataError(f"{path}: expected a header 'sentence<TAB>label' (GLUE SST-2 format)")
    return [r[0] for r in rows[1:]], [int(r[1]) for r in rows[1:]]


def _read_ag_news(path: Path) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    texts = [f"{title} {desc}".replace("\\n", " ").replace("\\", " ") for _, title, desc in rows]
    return texts, [int(r[0]) - 1 for r in rows]  # classes 1-4 -> 0-3


READERS = {"sst2": _read_sst2, "ag_news": _read_ag_news}


class TextClassificationDataModule(_Base):
    """SST-2 (GLUE; dev serves as test) and AG News, tokenised by a WordPiece/BPE tokenizer trained on the train split.

    ``val_size`` sentences are carved from the training file with ``split_seed`` for validation.
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
        vocab_size: int = 8000,
        lowercase: bool = True,
        pad_id: int = 0,
        num_classes: int | None = None,
        cache_dir: str | None = None,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(root=root, download=download, manifest=manifest, seed=seed, meta=meta)
        if dataset not in CLASSIFICATION_FILES:
            raise DataError(f"unknown text classification dataset {dataset!r}; choose one of "
                            f"{', '.join(CLASSIFICATION_FILES)}")
        if num_classes is not None and num_classes != NUM_CLASSES[dataset]:
            raise DataError(f"data.num_classes={num_classes} but {dataset} has {NUM_CLASSES[dataset]} classes; "
                            "remove the override of data.num_classes")
        if pad_id != 0:
            raise DataError(f"data.pad_id={pad_id}: trained tokenizers put <pad> at id 0; set data.pad_id=0")
        self.dataset, self.num_classes = dataset, NUM_CLASSES[dataset]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.max_len = val_size, split_seed, max_len
        self.tokenizer_kind, self.declared_vocab, self.lowercase = tokenizer, vocab_size, lowercase
        self.pad_id, self.cache_dir = pad_id, cache_dir
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
        if not 0 <= self.val_size < len(texts):
            raise DataError(f"data.val_size={self.val_size} must be in [0, {len(texts)})")
        perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        train_texts = [texts[i] for i in train_idx]
        self.tokenizer = train_tokenizer(train_texts, name=self.dataset, algorithm=self.tokenizer_kind,
                                         vocab_size=self.declared_vocab, lowercase=self.lowercase,
                                         cache_dir=self.cache_dir)
        self.vocab_size = check_vocab(self.dataset, self.tokenizer.get_vocab_size(), self.declared_vocab)

        def encode(ts: Sequence[str], ys: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
            ids, _ = encode_padded(self.tokenizer, ts, max_len=self.max_len, pad_id=self.pad_id)
            return ids, torch.tensor(ys, dtype=torch.long)

        self.train_set = encode(train_texts, [labels[i] for i in train_idx])
        self.val_set = encode([texts[i] for i in val_idx], [labels[i] for i in val_idx])
        self.test_set = encode(test_texts, test_labels)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        ids, y = batch
        ids = _trim(ids, self.pad_id)
        return (ids, ids == self.pad_id), y


# ----------------------------------------------------------------------------------------------------
# Character-level language modelling: Tiny Shakespeare


class RandomWindowLoader:
    """``num_batches`` batches of ``batch_size`` random windows of a 1-D id tensor: (x, y = x shifted by one).

    Window starts come from a generator seeded with ``seed + epoch`` (reproducible, independent of the
    global RNG); stateful like :class:`TensorBatchLoader` so a resumed run continues where it stopped.
    """

    def __init__(self, data: torch.Tensor, *, block_size: int, batch_size: int, num_batches: int,
                 seed: int = 0, rank: int = 0) -> None:
        if len(data) <= block_size + 1:
            raise DataError(f"the training text has {len(data)} tokens, fewer than block_size + 2 = {block_size + 2}")
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.num_batches, self.seed, self.rank = num_batches, seed, rank
        self.epoch, self._start, self._yielded = 0, 0, 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.rank + self.epoch)
        starts = torch.randint(len(self.data) - self.block_size - 1, (self.num_batches, self.batch_size), generator=g)
        offsets = torch.arange(self.block_size + 1)
        begin, self._start = self._start, 0
        for b in range(begin, self.num_batches):
            self._yielded = b + 1
            chunk = self.data[starts[b, :, None] + offsets]  # (B, block_size + 1)
            yield chunk[:, :-1], chunk[:, 1:]
        self.epoch += 1
        self._yielded = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._start = state["epoch"], state["batches"]


def _blocks(data: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (x, y) windows covering ``data``: every token is predicted exactly once."""
    n = (len(data) - 1) // block_size
    x = data[: n * block_size].view(n, block_size)
    y = data[1 : n * block_size + 1].view(n, block_size)
    return x, y


class CharLMDataModule(_Base):
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
        vocab_size: int | None = None,
        max_len: int | None = None,
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
        self.split, self.declared_vocab = tuple(split), vocab_size
        if max_len is not None and max_len < block_size:
            raise DataError(f"data.max_len={max_len} (the longest input models are built for) is shorter than "
                            f"data.block_size={block_size}; raise max_len or lower block_size")
        self.max_len = max_len or block_size
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
        self.vocab_size = check_vocab(self.dataset, self.tokenizer.get_vocab_size(), self.declared_vocab)
        self.train_ids = self.tokenizer.encode_text(text[:n_train])
        self.val_ids = self.tokenizer.encode_text(text[n_train : n_train + n_val])
        self.test_ids = self.tokenizer.encode_text(text[n_train + n_val :])
        self.val_set = _blocks(self.val_ids, self.block_size)
        self.test_set = _blocks(self.test_ids, self.block_size)

    def encode(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode_text(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode_ids(ids)

    def train_dataloader(self) -> RandomWindowLoader:
        rank, _ = _rank_world(self.trainer)
        return RandomWindowLoader(self.train_ids, block_size=self.block_size, batch_size=self.batch_size,
                                  num_batches=self.batches_per_epoch, seed=self.seed, rank=rank)


# ----------------------------------------------------------------------------------------------------
# Translation: Multi30k (task 1)


class TranslationDataModule(_Base):
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
        vocab_size: int = 8000,
        lowercase: bool = False,
        max_len: int = 64,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        bucket_batches: int = 50,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
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
        if (pad_id, bos_id, eos_id) != (0, 2, 3):
            raise DataError("trained tokenizers use <pad>=0, <bos>=2, <eos>=3; set data.pad_id=0, "
                            "data.bos_id=2, data.eos_id=3")
        self.dataset, self.src_lang, self.tgt_lang = dataset, src_lang, tgt_lang
        self.tokenizer_kind, self.declared_vocab, self.lowercase = tokenizer, vocab_size, lowercase
        self.max_len, self.batch_size, self.eval_batch_size = max_len, batch_size, eval_batch_size
        self.bucket_batches = bucket_batches
        self.pad_id, self.bos_id, self.eos_id, self.cache_dir = pad_id, bos_id, eos_id, cache_dir
        self.tokenizer = None
        self._refs: dict[str, list[str]] = {}

    def _files(self) -> list[Remote]:
        return [_multi30k_file(f"{s}.{lang}") for s in MULTI30K_SPLITS.values() for lang in ("de", "en")]

    def prepare_data(self) -> None:
        ensure_files(self.dataset, self.root, self._files(), download=self.download, manifest=self.manifest)

    def _lines(self, split: str, lang: str) -> list[str]:
        return read_text(self.root, f"multi30k/{MULTI30K_SPLITS[split]}.{lang}").rstrip("\n").split("\n")

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        self.prepare_data()
        data = {s: (self._lines(s, self.src_lang), self._lines(s, self.tgt_lang)) for s in MULTI30K_SPLITS}
        for s, (src, tgt) in data.items():
            if len(src) != len(tgt):
                raise DataError(f"multi30k {s}: {len(src)} {self.src_lang} lines but {len(tgt)} {self.tgt_lang} lines")
        self.tokenizer = train_tokenizer(data["train"][0] + data["train"][1], name="multi30k_de_en",
                                         algorithm=self.tokenizer_kind, vocab_size=self.declared_vocab,
                                         lowercase=self.lowercase, cache_dir=self.cache_dir)
        self.vocab_size = check_vocab(self.dataset, self.tokenizer.get_vocab_size(), self.declared_vocab)
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
        return _trim(src, self.pad_id), _trim(tgt, self.pad_id), idx


# ----------------------------------------------------------------------------------------------------
# Skip-gram pairs for word2vec


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


class SkipGramDataModule(_Base):
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
        vocab_size: int | None = None,
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
        self.batch_size, self.eval_batch_size, self.declared_vocab = batch_size, eval_batch_size, vocab_size
        self.itos: list[str] | None = None

    def _text(self) -> str:
        if self.source == "tiny_shakespeare":
            ensure_files(self.source, self.root, [SHAKESPEARE], download=self.download, manifest=self.manifest)
            return read_text(self.root, SHAKESPEARE.rel)
        f = CLASSIFICATION_FILES["sst2"]["train"]
        ensure_files("sst2", self.root, [f], download=self.download, manifest=self.manifest)
        return "\n".join(_read_sst2(self.root / f.rel)[0])

    def prepare_data(self) -> None:
        self._text()

    def _pairs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centers, contexts = [], []
        for off in range(1, self.window + 1):
            centers += [ids[:-off], ids[off:]]
            contexts += [ids[off:], ids[:-off]]
        return torch.cat(centers), torch.cat(contexts)

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
        self.vocab_size = check_vocab(f"word2vec/{self.source}", len(self.itos), self.declared_vocab)
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
        noise = self.noise.to(center.device)
        neg = torch.multinomial(noise, center.numel() * self.negatives, replacement=True)
        return center, context, neg.view(-1, self.negatives)  # (B,), (B,), (B, K)

