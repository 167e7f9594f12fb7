"""Every sequence task runs end to end on its real dataset through train.py's run (composed in-process),
writes its metrics.json keys, and leaves its generated text in the run folder."""

import json
import math

import pytest

from tasks.runner import run
from tests.conftest import SMALL_DATA as DATA
from tests.conftest import SMALL_MODEL as SMALL
from tests.conftest import fast_overrides

CASES = [
    ("lstm", "sst2", ["test/acc", "test/loss"]),
    ("transformer_encoder", "sst2", ["test/acc"]),
    ("gru", "sst2", ["test/acc"]),
    ("gpt", "tiny_shakespeare", ["test/loss", "test/bpc", "test/ppl"]),
    ("lstm", "tiny_shakespeare", ["test/loss", "test/bpc"]),
    ("transformer", "multi30k", ["test/bleu", "test/bleu_greedy", "test/loss"]),
    ("seq2seq_lstm", "multi30k", ["test/bleu"]),
    ("lstm", "etth1", ["test/mse", "test/mae"]),
    ("transformer_encoder", "etth1", ["test/mse", "test/mae"]),
    ("rnn", "etth1", ["test/mse"]),
    ("word2vec", "word2vec", ["test/loss"]),
]


@pytest.mark.parametrize("model,data,keys", CASES, ids=[f"{m}-{d}" for m, d, _ in CASES])
def test_sequence_task_runs_on_real_data(model, data, keys, compose_cfg, tmp_path):
    cfg = compose_cfg(*fast_overrides(f"data={data}", f"model={model}", *SMALL[model], *DATA[data],
                                      "trainer.limit_train_batches=2", "logger=none"))
    metrics = run(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["model"] == model
    for key in keys:
        assert key in saved and math.isfinite(saved[key]), (key, saved)
    if data == "tiny_shakespeare":  # a sample continued from the prompt is printed and saved
        text = (tmp_path / "samples.txt").read_text()
        assert "ROMEO:" in text and "=== sample after" in text
    if data == "multi30k":  # translations with their sources and references
        text = (tmp_path / "translations.txt").read_text()
        assert text.count("SRC: ") == text.count("REF: ") == text.count("HYP: ") > 0
    if data == "word2vec":
        assert "nearest words" in (tmp_path / "samples.txt").read_text()
    assert metrics["steps"] == 2


def test_lm_bits_per_character_is_loss_over_ln2(compose_cfg):
    cfg = compose_cfg(*fast_overrides("data=tiny_shakespeare", "model=gpt", *SMALL["gpt"], *DATA["tiny_shakespeare"],
                                      "task.sample_tokens=0", "logger=none"))
    m = run(cfg)
    assert m["test/bpc"] == pytest.approx(m["test/loss"] / math.log(2), rel=1e-5)
    assert m["test/ppl"] == pytest.approx(math.exp(m["test/loss"]), rel=1e-4)
    assert m["test/loss"] < math.log(65) + 0.5  # an untrained model is near uniform over 65 characters
