"""Sequence data on the real files: split sizes, windows, vocabularies, tokenizer caching, clear failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tasks.data import (
    CharLMDataModule,
    DataError,
    ForecastingDataModule,
    SkipGramDataModule,
    TextClassificationDataModule,
    TranslationDataModule,
)
from tasks.data.timeseries import read_ett
from tasks.data.tokenize import BOS, EOS, PAD, UNK, train_tokenizer


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One tokenizer cache for the whole test session (trained tokenizers are reused across tests)."""
    return str(tmp_path_factory.getbasetemp() / "zoo-cache")


@pytest.fixture(scope="module")
def etth1(data_dir) -> ForecastingDataModule:
    dm = ForecastingDataModule(root=str(data_dir))
    dm.setup()
    return dm


# ---------------------------------------------------------------------------------------------- ETTh1


def test_etth1_standard_split_sizes(etth1):
    # 12/4/4 months = 8640/2880/2880 rows; windows of 96 in + 96 out; val/test start 96 rows early
    n = {k: len(v[0]) for k, v in etth1.windows.items()}
    assert n == {"train": 8640 - 192 + 1, "val": 2880 - 96 + 1, "test": 2880 - 96 + 1}
    assert etth1.windows["train"][0].shape[1:] == (7, 192)


def test_etth1_val_targets_start_at_the_border_and_scaler_uses_train_only(etth1, data_dir):
    raw = read_ett(data_dir / "ETT/ETTh1.csv")
    assert raw.shape == (17420, 7)
    train = raw[:8640]
    torch.testing.assert_close(etth1.mean, train.mean(0))
    torch.testing.assert_close(etth1.series[:8640].mean(0), torch.zeros(7), atol=1e-4, rtol=0)
    torch.testing.assert_close(etth1.series[:8640].std(0, unbiased=False), torch.ones(7), atol=1e-4, rtol=0)
    # the first validation target is row 8640, its input rows 8544..8639
    x, y = etth1.on_after_batch_transfer(next(iter(etth1.val_dataloader())), 0)
    assert x.shape == (512, 96, 7) and y.shape == (512, 96, 7)
    torch.testing.assert_close(y[0, 0] * etth1.std + etth1.mean, raw[8640])
    torch.testing.assert_close(x[0, 0] * etth1.std + etth1.mean, raw[8640 - 96])
    # the last test target is row 14399
    *_, last = etth1.test_dataloader()
    _, y_last = etth1.on_after_batch_transfer(last, 0)
    torch.testing.assert_close(y_last[-1, -1] * etth1.std + etth1.mean, raw[14399])


def test_etth1_univariate_target_and_declared_features_are_checked(data_dir):
    dm = ForecastingDataModule(root=str(data_dir), features="MS", batch_size=4)
    dm.setup()
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (4, 96, 7) and y.shape == (4, 96, 1)
    assert dm.facts() == {"in_features": 7, "out_features": 1, "seq_len": 96, "horizon": 96, "max_len": 96}
    assert ForecastingDataModule(root=str(data_dir), features="S").facts()["in_features"] == 1


def test_corrupted_file_is_rejected(tmp_path, data_dir):
    (tmp_path / "ETT").mkdir()
    shutil.copy(data_dir / "ETT/ETTh1.csv", tmp_path / "ETT/ETTh1.csv")
    with open(tmp_path / "ETT/ETTh1.csv", "r+b") as f:
        f.seek(100)
        old = f.read(1)
        f.seek(100)
        f.write(b"1" if old != b"1" else b"2")  # one digit changed: still parses, no longer the real data
    dm = ForecastingDataModule(root=str(tmp_path), download=False, manifest=None)
    with pytest.raises(DataError, match="checksum mismatch"):
        dm.setup()


def test_missing_files_say_what_is_expected(tmp_path):
    dm = CharLMDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="data files not found") as e:
        dm.setup()
    assert "tiny_shakespeare/input.txt" in str(e.value) and "ZOO_DATA_DIR" in str(e.value)


# ---------------------------------------------------------------------------------- Tiny Shakespeare


@pytest.fixture(scope="module")
def shakespeare(data_dir) -> CharLMDataModule:
    dm = CharLMDataModule(root=str(data_dir), block_size=64, batch_size=8, batches_per_epoch=3)
    dm.setup()
    return dm


def test_shakespeare_split_is_contiguous_90_5_5(shakespeare, data_dir):
    text = (data_dir / "tiny_shakespeare/input.txt").read_text()
    sizes = [len(shakespeare.train_ids), len(shakespeare.val_ids), len(shakespeare.test_ids)]
    assert sum(sizes) == len(text) == 1_115_394
    assert sizes[0] == int(0.9 * len(text)) and abs(sizes[1] - sizes[2]) <= 2
    assert shakespeare.vocab_size == 65
    joined = torch.cat([shakespeare.train_ids, shakespeare.val_ids, shakespeare.test_ids])
    assert shakespeare.decode(joined.tolist()) == text


def test_shakespeare_random_windows_are_shifted_and_reproducible(shakespeare):
    loader = shakespeare.train_dataloader()
    first = list(loader)
    assert len(first) == 3
    x, y = first[0]
    assert x.shape == y.shape == (8, 64)
    torch.testing.assert_close(x[:, 1:], y[:, :-1])  # y is x shifted by one character
    second = list(loader)  # a new epoch draws new windows
    assert not torch.equal(first[0][0], second[0][0])
    again = shakespeare.train_dataloader()
    torch.testing.assert_close(list(again)[0][0], x)  # same seed, same first epoch
    # evaluation windows tile the split without overlap: each character is predicted once
    vx, vy = shakespeare.val_set
    assert vx.shape == (len(shakespeare.val_ids) // 64 - (len(shakespeare.val_ids) % 64 == 0), 64)
    torch.testing.assert_close(vx.flatten()[1:], vy.flatten()[:-1])


def test_the_vocabulary_is_a_fact_of_the_text(shakespeare):
    assert shakespeare.facts() == {"vocab_size": 65, "max_len": 64}  # 65 characters, windows of 64


# ---------------------------------------------------------------------------------------- tokenizers


def test_tokenizer_is_cached_by_a_hash_of_its_inputs(tmp_path):
    texts = ["a man rides a horse .", "two dogs play in the snow .", "a woman reads a book ."] * 50
    tok = train_tokenizer(texts, name="t", vocab_size=60, cache_dir=str(tmp_path))
    files = list((tmp_path / "tokenizers").glob("t-*.json"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = train_tokenizer(texts, name="t", vocab_size=60, cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == mtime  # loaded, not retrained
    assert again.get_vocab() == tok.get_vocab()
    assert [tok.id_to_token(i) for i in range(4)] == [PAD, UNK, BOS, EOS]
    train_tokenizer(texts[:-1], name="t", vocab_size=60, cache_dir=str(tmp_path))  # other texts
    train_tokenizer(texts, name="t", vocab_size=70, cache_dir=str(tmp_path))  # other size
    assert len(list((tmp_path / "tokenizers").glob("t-*.json"))) == 3
    assert tok.decode(tok.encode("a man reads .").ids) == "a man reads ."


# ------------------------------------------------------------------------------------------- SST-2


@pytest.fixture(scope="module")
def sst2(data_dir, cache_dir) -> TextClassificationDataModule:
    dm = TextClassificationDataModule(dataset="sst2", root=str(data_dir), cache_dir=cache_dir, batch_size=16)
    dm.setup()
    return dm


def test_sst2_splits_labels_and_vocab(sst2):
    assert [len(s[1]) for s in (sst2.train_set, sst2.val_set, sst2.test_set)] == [67349 - 1000, 1000, 872]
    assert int(sst2.test_set[1].sum()) == 444  # the GLUE dev set: 428 negative, 444 positive
    assert int(sst2.train_set[1].sum()) + int(sst2.val_set[1].sum()) == 37569
    assert sst2.vocab_size == 8000 and sst2.tokenizer.get_vocab_size() <= 8000
    assert int(sst2.train_set[0].max()) < 8000


def test_sst2_batches_carry_a_padding_mask_and_are_trimmed(sst2):
    (ids, mask), y = sst2.on_after_batch_transfer(next(iter(sst2.train_dataloader())), 0)
    assert ids.shape == mask.shape and ids.shape[0] == 16 and y.shape == (16,)
    assert ids.shape[1] < 64  # trimmed to the longest phrase of the batch
    assert mask.dtype == torch.bool and torch.equal(mask, ids == 0)
    assert bool((~mask).any(1).all())  # no empty rows
    assert bool((~mask[:, :-1] | mask[:, 1:]).all())  # right padding: once padded, always padded


def test_ag_news_without_train_split_fails_clearly(data_dir, cache_dir):
    dm = TextClassificationDataModule(dataset="ag_news", root=str(data_dir), cache_dir=cache_dir, download=False)
    with pytest.raises(DataError, match="train.csv is missing"):
        dm.setup()


# ---------------------------------------------------------------------------------------- Multi30k


@pytest.fixture(scope="module")
def multi30k(data_dir, cache_dir) -> TranslationDataModule:
    dm = TranslationDataModule(root=str(data_dir), cache_dir=cache_dir)
    dm.setup()
    return dm


def test_multi30k_splits_and_targets(multi30k):
    assert [len(s[0]) for s in (multi30k.train_set, multi30k.val_set, multi30k.test_set)] == [29000, 1014, 1000]
    src, tgt, idx = multi30k.on_after_batch_transfer(multi30k.test_set, 0)
    assert bool((tgt[:, 0] == multi30k.bos_id).all())
    assert bool(((src == multi30k.eos_id).sum(1) == 1).all()) and bool(((tgt == multi30k.eos_id).sum(1) == 1).all())
    assert torch.equal(idx, torch.arange(1000))
    assert multi30k.references("test")[0] == "A man in an orange hat starring at something."


def test_multi30k_detokenises_exactly(multi30k):
    refs = multi30k.references("test")
    decoded = [multi30k.decode(row) for row in multi30k.test_set[1].tolist()]
    assert decoded == refs  # BLEU compares detokenised text with the raw references


# ------------------------------------------------------------------------------------------ word2vec


def test_skipgram_pairs_and_negatives(data_dir):
    dm = SkipGramDataModule(root=str(data_dir), window=2, negatives=5, batch_size=256)
    dm.setup()
    center, context = dm.train_set
    assert len(center) == len(context) > 100_000
    pairs = set(zip(center[:5000].tolist(), context[:5000].tolist(), strict=True))
    c, o, neg = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert c.shape == o.shape == (256,) and neg.shape == (256, 5) and int(neg.max()) < dm.vocab_size
    assert len(pairs) > 1000
    # noise distribution: unigram counts to the 3/4 power, normalised
    assert dm.itos[0] in ("the", "and", "i", "to")
    assert abs(float(dm.noise.sum()) - 1) < 1e-5 and bool((dm.noise[:-1] >= dm.noise[1:]).all())
    # the pairs are symmetric: (a, b) at offset k implies (b, a)
    sym = set(zip(context.tolist(), center.tolist(), strict=True))
    assert set(zip(center.tolist(), context.tolist(), strict=True)) == sym


def test_data_root_is_never_written(data_dir):
    before = sorted(p.name for p in Path(data_dir).rglob("*"))
    CharLMDataModule(root=str(data_dir)).setup()
    assert sorted(p.name for p in Path(data_dir).rglob("*")) == before


def test_translation_batches_are_length_bucketed(multi30k):
    """Bucketing keeps every training pair exactly once per epoch and cuts the padding per batch."""
    loader = multi30k.train_dataloader()
    seen, tokens, real = [], 0, 0
    for src, tgt, idx in loader:
        s, t, _ = multi30k.on_after_batch_transfer((src, tgt, idx), 0)
        seen.append(idx)
        tokens += s.numel() + t.numel()
        real += int((s != 0).sum() + (t != 0).sum())
    seen = torch.cat(seen)
    assert len(seen) == len(set(seen.tolist())) == len(loader) * multi30k.batch_size
    assert tokens / real < 1.3  # random batches of Multi30k carry about 2.2x padding
    again = torch.cat([b[2] for b in multi30k.train_dataloader()])
    assert torch.equal(again, seen)  # a new loader with the same seed gives the same epoch
