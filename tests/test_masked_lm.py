"""Masked-LM pretraining and fine-tuning from it: BERT's masking, the loss on masked positions only,
init_from (encoder weights in, a new head), and experiment=bert_sst2's two stages on the real SST-2."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tasks.data.tokenize import MASK_ID, PAD_ID
from tasks.masked_lm import MaskedLMTask, mask_tokens
from zoo.checkpoint import CheckpointError, load_matching

TINY = {"name": "transformer_encoder", "vocab_size": 60, "pad_id": PAD_ID, "max_len": 16, "dim": 16, "depth": 1,
        "num_heads": 2, "mlp_ratio": 2.0, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


def _ids(rows: int, cols: int, vocab: int = 1000) -> torch.Tensor:
    """Ordinary ids, a special token here and there, and right padding of random length."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(MASK_ID + 1, vocab, (rows, cols), generator=g)
    ids[:, 0] = 2  # <bos>: a special, never to be chosen
    lengths = torch.randint(cols // 4, cols + 1, (rows,), generator=g)
    ids[torch.arange(cols)[None, :] >= lengths[:, None]] = PAD_ID
    return ids


def test_masking_follows_bert_15_percent_and_80_10_10_and_never_touches_padding_or_specials():
    ids = _ids(2000, 64)
    out = mask_tokens(ids, vocab_size=1000, generator=torch.Generator().manual_seed(1))
    normal = ids > MASK_ID
    chosen = out.chosen
    assert not chosen[~normal].any()  # padding and specials are never chosen ...
    assert torch.equal(out.inputs[~normal], ids[~normal])  # ... nor changed
    assert torch.equal(out.inputs[~chosen], ids[~chosen])  # nothing but the chosen positions is changed
    assert chosen.sum() / normal.sum() == pytest.approx(0.15, abs=0.005)
    picked, orig = out.inputs[chosen], ids[chosen]
    masked = (picked == MASK_ID).float().mean()
    kept = (picked == orig).float().mean()
    random = ((picked != MASK_ID) & (picked != orig)).float().mean()
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)  # (a random draw equal to the original counts as kept: 0.01%)
    assert random == pytest.approx(0.1, abs=0.01)
    assert (picked[picked != MASK_ID] > MASK_ID).all()  # random replacements are ordinary tokens
    assert torch.equal(out.targets, ids)
    again = mask_tokens(ids, vocab_size=1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.inputs, out.inputs)  # a seeded generator masks the same positions (validation)


def test_loss_is_taken_on_masked_positions_only():
    torch.manual_seed(0)
    task = MaskedLMTask(model={**TINY, "task": "mlm"}).eval()
    ids = _ids(8, 16, vocab=60)
    batch = task.mask(ids, torch.Generator().manual_seed(3))
    loss, n = task.mlm_loss(batch)
    assert n == int(batch.chosen.sum()) > 0
    row, col = (~batch.chosen & (ids > MASK_ID)).nonzero()[0]  # an ordinary token that was not chosen
    targets = batch.targets.clone()
    targets[row, col] = (targets[row, col] + 1 - MASK_ID) % (60 - MASK_ID - 1) + MASK_ID + 1
    assert task.mlm_loss(batch._replace(targets=targets))[0] == loss  # its target is not scored
    r, c = batch.chosen.nonzero()[0]
    targets = batch.targets.clone()
    targets[r, c] = (targets[r, c] + 1 - MASK_ID) % (60 - MASK_ID - 1) + MASK_ID + 1
    assert task.mlm_loss(batch._replace(targets=targets))[0] != loss  # a chosen one's is


def test_init_from_loads_the_encoder_and_gives_a_new_head(tmp_path):
    kwargs = {k: v for k, v in TINY.items() if k != "name"}
    torch.manual_seed(0)
    pretrained = zoo.create_model("transformer_encoder", task="mlm", **kwargs)
    path = zoo.save_model(pretrained, tmp_path / "mlm.pt", name="transformer_encoder", kwargs={**kwargs, "task": "mlm"})
    torch.manual_seed(1)
    classifier = zoo.create_model("transformer_encoder", task="classify", num_classes=2, **kwargs)
    head_before = {k: v.clone() for k, v in classifier.head.state_dict().items()}
    report = load_matching(classifier, path)
    theirs = pretrained.state_dict()
    for k, v in classifier.state_dict().items():
        if k.startswith(("embed.", "encoder.")):
            assert torch.equal(v, theirs[k]), k
    assert all(torch.equal(classifier.head.state_dict()[k], v) for k, v in head_before.items())  # left as built
    assert set(report.fresh) == {"head.weight", "head.bias"}
    assert {k.split(".")[0] for k in report.dropped} == {"mlm_head"}
    assert {k.split(".")[0] for k in report.loaded} == {"embed", "encoder"}
    assert "loaded" in report.summary() and "newly initialised 2 tensors (head)" in report.summary()

    wider = zoo.create_model("transformer_encoder", task="classify", num_classes=2, **{**kwargs, "dim": 32})
    with pytest.raises(CheckpointError, match="do not fit this model outside its head"):
        load_matching(wider, path)  # another architecture: a clear error, not a half-loaded model
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_matching(classifier, tmp_path / "missing.ckpt")


def test_init_from_a_missing_checkpoint_stops_the_run_with_a_clear_error(compose_cfg, tmp_path):
    from tasks.runner import run

    cfg = compose_cfg("data=sst2", "model=transformer_encoder", f"init_from={tmp_path}/nope.ckpt")
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.ckpt"):
        run(cfg)


def test_bert_sst2_pretrains_then_fine_tunes_with_the_pretraining_tokenizer(compose_cfg, tmp_path):
    from tasks.stages import run_stages

    small = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null",
             "logger=none", "model.dim=32", "model.depth=1", "threads=1"]
    overrides = ["experiment=bert_sst2", *small]
    cfg = compose_cfg(*overrides, return_hydra_config=True)
    results = run_stages(cfg, overrides=[f"paths.output_dir={tmp_path}", *overrides])
    assert list(results) == ["pretrain", "finetune"]
    assert results["pretrain"]["test/mlm_ppl"] > 1 and 0 <= results["finetune"]["test/acc"] <= 1
    report = json.loads((tmp_path / "finetune" / "init_from.json").read_text())
    assert report["source"].startswith(str(tmp_path / "pretrain" / "checkpoints"))
    assert {k.split(".")[0] for k in report["loaded"]} == {"embed", "encoder"}
    assert report["fresh"] == ["head.weight", "head.bias"]
    from tasks.checkpoints import load_checkpoint

    pre = load_checkpoint(report["source"])["zoo"]["preprocessing"]["tokenizer"]["json"]
    assert (tmp_path / "finetune" / "tokenizer.json").read_text() == pre  # read as pretraining read
    vocab = json.loads(pre)["model"]["vocab"]
    assert vocab["<mask>"] == MASK_ID
    summary = json.loads((tmp_path / "stages.json").read_text())
    assert set(summary["stages"]) == {"pretrain", "finetune"} and summary["total_time_s"] > 0


def test_freeze_keeps_the_named_parameters_fixed_through_training_and_names_the_parts_of_a_wrong_prefix():
    from tasks.init_from import freeze_parameters
    from tasks.optim import build_optimizer
    from zoo.registry import ZooError

    kwargs = {k: v for k, v in TINY.items() if k != "name"}
    torch.manual_seed(0)
    model = zoo.create_model("transformer_encoder", task="classify", num_classes=2, **kwargs)
    assert freeze_parameters(model, ["embed", "encoder.layers.0.attn"]) >= 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, name="adamw", lr=1e-2, weight_decay=0.1)
    tokens = torch.randint(5, 60, (8, 12))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(tokens, tokens == PAD_ID), torch.randint(0, 2, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    fixed = [k for k in after if k.startswith(("embed.", "encoder.layers.0.attn."))]
    assert fixed and all(torch.equal(after[k], before[k]) for k in fixed)  # not even weight decay moved them
    assert not torch.equal(after["head.weight"], before["head.weight"])  # the rest trains
    with pytest.raises(ZooError, match=r"no parameters under 'embedding'; its parts are embed, encoder, head"):
        freeze_parameters(model, ["embedding"])


def test_the_freeze_key_reaches_the_model_a_run_builds(compose_cfg):
    """``freeze=[...]`` (conf/train.yaml) is applied to the model a run builds (after any init_from)."""
    from tasks.runner import build

    _, task, _, _ = build(compose_cfg("data=mnist", "model=lenet5", "freeze=[features]", "logger=none"))
    assert not any(p.requires_grad for p in task.model.features.parameters())
    assert all(p.requires_grad for p in task.model.classifier.parameters())


def test_the_pretraining_corpus_adds_each_source_to_the_training_text_only(data_dir):
    from tasks.data.text_corpus import TextCorpusDataModule

    # bert_sst2's sources and vocabulary with the default cache: the tokenizer is trained once for both tests
    dm = TextCorpusDataModule(root=str(data_dir), sources=["sst2", "multi30k", "ag_news"], download=False)
    dm.setup("fit")
    # SST-2's training phrases but the 1000 that validate, Multi30k's captions, AG News's articles; SST-2's dev
    # sentences test
    assert (len(dm.train_set[0]), len(dm.val_set[0]), len(dm.test_set[0])) == (67349 - 1000 + 29000 + 7600, 1000, 872)


def test_the_vocabulary_can_come_from_some_sources_while_all_of_them_add_sentences(data_dir):
    from tasks.data.integrity import DataError
    from tasks.data.text_corpus import TextCorpusDataModule

    sst2_only = TextCorpusDataModule(root=str(data_dir), sources=["sst2"], download=False)
    sst2_vocab = TextCorpusDataModule(root=str(data_dir), sources=["sst2", "multi30k"], tokenizer_sources=["sst2"],
                                      download=False)
    both = TextCorpusDataModule(root=str(data_dir), sources=["sst2", "multi30k"], download=False)
    for dm in (sst2_only, sst2_vocab, both):
        dm.setup("fit")
    assert sst2_vocab.tokenizer.get_vocab() == sst2_only.tokenizer.get_vocab() != both.tokenizer.get_vocab()
    assert len(sst2_vocab.train_set[0]) == len(both.train_set[0]) == 67349 - 1000 + 29000
    with pytest.raises(DataError, match=r"tokenizer_sources=\['ag_news'\]: choose among"):
        TextCorpusDataModule(root=str(data_dir), sources=["sst2", "multi30k"], tokenizer_sources=["ag_news"])


def test_whole_sentences_keeps_the_phrases_no_other_phrase_contains():
    from tasks.data.text_corpus import whole_sentences

    phrases = ["a good film", "good film", "good", "a good film , really", "not  bad ", "not bad", "bad", "film ,"]
    # word spans, not characters: "od fi" would be inside "good film" as characters but is no phrase here
    assert whole_sentences(phrases + ["od fi"]) == ["a good film , really", "not bad", "od fi"]


def test_the_corpus_can_read_sst2_as_sentences_and_repeat_a_source(data_dir):
    from tasks.data.integrity import DataError
    from tasks.data.text_corpus import TextCorpusDataModule

    dm = TextCorpusDataModule(root=str(data_dir), sources=["sst2", "multi30k"], sst2_text="sentences",
                              source_repeats={"sst2": 3}, download=False)
    dm.setup("fit")
    ids = dm.train_set[0]
    sst2_rows, captions = ids[: len(ids) - 29000], ids[len(ids) - 29000:]
    sentences = sst2_rows[: len(sst2_rows) // 3]
    # about 6,900 sentences (6,885 from all 67,349 phrases; holding 1000 out leaves a few of their largest pieces
    # uncontained), each three times, in order
    assert len(sst2_rows) % 3 == 0 and 6800 < len(sentences) < 7100
    assert torch.equal(sst2_rows, sentences.repeat(3, 1))
    # whole sentences (19 words on average, as in the dev set) are longer than the captions (12 words)
    assert (sentences != dm.pad_id).sum(1).float().mean() > 1.4 * (captions != dm.pad_id).sum(1).float().mean()
    with pytest.raises(DataError, match=r"sst2_text='words': choose phrases or sentences"):
        TextCorpusDataModule(root=str(data_dir), sst2_text="words")
    with pytest.raises(DataError, match=r"source_repeats=\{'multi30k': 2\}: each key one of data.sources"):
        TextCorpusDataModule(root=str(data_dir), sources=["sst2"], source_repeats={"multi30k": 2})
