"""Tokenisers for the text datasets: a character vocabulary, and HF ``tokenizers`` trained on a train split and cached.

A trained tokenizer is cached as JSON under ``<cache_dir>/tokenizers/<name>-<key>.json``, where the key
hashes everything that determines it (the training texts, the algorithm, the vocabulary size, the
special tokens, the ``tokenizers`` version). Changing any of these trains a new one; nothing is ever
written into the data root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from tasks.data.integrity import DataError
from zoo.io import cached

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every trained tokenizer
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3
MASK = "<mask>"  # masked-LM pretraining's extra special token (train_tokenizer(mask=True)): id 4
MASK_ID = len(SPECIALS)
DEFAULT_CACHE = "~/.cache/dnn-zoo"


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get("ZOO_CACHE_DIR") or DEFAULT_CACHE).expanduser()


class CharTokenizer:
    """One id per character; the vocabulary is the sorted set of characters of the training text."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def get_vocab_size(self) -> int:
        return len(self.chars)

    def encode_text(self, text: str) -> torch.Tensor:
        unknown = set(text) - self.stoi.keys()
        if unknown:
            raise DataError(f"characters {sorted(unknown)!r} are not in the character vocabulary "
                            f"({len(self.chars)} characters of the training split)")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode_ids(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def tokenizer_record(tok) -> dict[str, object]:
    """A tokenizer as JSON-able data, saved with a trained model (``zoo.preprocess.load_tokenizer`` reads it)."""
    if isinstance(tok, CharTokenizer):
        return {"type": "chars", "chars": list(tok.chars)}
    return {"type": "hf", "json": tok.to_str()}  # the HF tokenizers library's own serialisation


def _key(texts: Sequence[str], **settings: object) -> str:
    import tokenizers

    h = hashlib.sha256()
    h.update(json.dumps({**settings, "tokenizers": tokenizers.__version__}, sort_keys=True).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def train_tokenizer(
    texts: Sequence[str],
    *,
    name: str,
    algorithm: str = "bpe",
    vocab_size: int = 8000,
    lowercase: bool = False,
    cache_dir: str | None = None,
    mask: bool = False,
):
    """A BPE or WordPiece tokenizer trained on ``texts`` (a train split), loaded from the cache if trained before.

    ``mask=True`` adds the ``<mask>`` token of masked-LM pretraining after the four specials (id
    :data:`MASK_ID`); a classifier fine-tuned from such a model reuses that tokenizer (``tokenizer_file``).

    Pre-tokenisation is Metaspace (spaces become part of the pieces), so ``decode`` gives back the
    original spacing: translations are detokenised exactly for sacreBLEU.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if algorithm not in ("bpe", "wordpiece"):
        raise DataError(f"tokenizer algorithm {algorithm!r}; choose 'bpe' or 'wordpiece'")
    specials = (*SPECIALS, MASK) if mask else SPECIALS
    key = _key(texts, algorithm=algorithm, vocab_size=vocab_size, lowercase=lowercase, specials=specials)
    path = cache_root(cache_dir) / "tokenizers" / f"{name}-{algorithm}{vocab_size}-{key}.json"

    def build():
        if algorithm == "bpe":
            tok = Tokenizer(models.BPE(unk_token=UNK))
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False)
        else:
            tok = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
            trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                                show_progress=False)
        norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(norms)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        for i, s in enumerate(specials):
            assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
        log.info("trained tokenizer %s (%d tokens) -> %s", name, tok.get_vocab_size(), path)
        return tok

    # once across processes (a lock file), written atomically
    return cached(path, read=lambda p: Tokenizer.from_file(str(p)), build=build,
                  write=lambda tok, f: f.write(tok.to_str().encode()))


def encode_padded(tok, texts: Sequence[str], *, max_len: int, pad_id: int, bos: bool = False,
                  eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode, truncate to ``max_len`` (BOS/EOS included) and right-pad -> (N, max_len) ids, (N,) lengths."""
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    room = max_len - int(bos) - int(eos)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast: the same ids, no character offsets
    rows = [([bos_id] if bos else []) + enc.ids[:room] + ([eos_id] if eos else []) for enc in encode(list(texts))]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(texts), max_len), pad_id, dtype=torch.long)
    # one copy of all ids into the row-major positions before each row's length (a tensor per row costs ~20 us)
    out[torch.arange(max_len)[None, :] < lengths[:, None]] = torch.tensor([i for r in rows for i in r], dtype=torch.long)
    return out, lengths


def load_tokenizer(path: str | Path):
    """A tokenizer saved as JSON (``Tokenizer.save``), e.g. the one a pretraining run stored with its checkpoint."""
    from tokenizers import Tokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"tokenizer file not found: {path}. Pass the tokenizer.json of the pretraining run "
                        "(init_from=CKPT writes it into the run folder), or drop data.tokenizer_file to train one.")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions for bad JSON
        raise DataError(f"{path} is not a tokenizer saved by the tokenizers library ({e}); pass the "
                        "tokenizer.json of the pretraining run.") from None
