"""Shared fixtures: the real data root, and composing the real Hydra config in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One torch thread for the test (small models run faster without the second thread's sync)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data root. Tests that need data fail (never skip) when it is missing: CI must run them."""
    root = os.environ.get("ZOO_DATA_DIR")
    if not root or not Path(root).is_dir():
        pytest.fail("set ZOO_DATA_DIR to the data root (README: Data); real-data tests never skip")
    return Path(root)


@pytest.fixture
def compose_cfg(tmp_path, data_dir):
    """``compose_cfg(*overrides)`` -> the composed training config, writing into ``tmp_path``, resolved as
    train.py resolves it (model=auto, model-implied task: tasks/resolve.py) unless ``resolve=False``."""

    def _compose(*overrides: str, return_hydra_config: bool = False, resolve: bool = True):
        from tasks.resolve import resolve_config

        GlobalHydra.instance().clear()
        overrides = (f"paths.output_dir={tmp_path}", f"paths.data_dir={data_dir}", *overrides)
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)
            return resolve_config(cfg, overrides=overrides).cfg if resolve else cfg

    return _compose


def fast_overrides(*extra: str) -> list[str]:
    """A short CPU run: tiny limits, no progress bar redraws."""
    return [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "callbacks.progress_bar=null",
        *extra,
    ]


# CPU-quick sizes for runs that check wiring, not accuracy: model name / data config name -> overrides
SMALL_MODEL = {
    "lstm": ["model.embed_dim=32", "model.hidden_size=32"],
    "gru": ["model.embed_dim=32", "model.hidden_size=32", "model.bidirectional=true"],
    "rnn": ["model.embed_dim=32", "model.hidden_size=32"],
    "transformer_encoder": ["model.dim=32", "model.depth=1"],
    "gpt": ["model.dim=32", "model.depth=1"],
    "transformer": ["model.dim=32", "model.depth=1"],
    "seq2seq_lstm": ["model.embed_dim=32", "model.hidden_size=32", "model.num_layers=1"],
    "word2vec": ["model.embed_dim=16"],
    "ddpm": ["model.width=8", "model.channel_mults=[1,2]", "model.num_heads=2", "data.eval_batch_size=100"],
}
SMALL_DATA = {
    "sst2": ["data.batch_size=16", "data.eval_batch_size=64"],
    "tiny_shakespeare": ["data.batch_size=4", "data.block_size=64", "data.eval_batch_size=16", "task.sample_tokens=20"],
    "multi30k": ["data.batch_size=16", "data.eval_batch_size=8", "task.max_decode_len=8", "task.beam_size=2"],
    "etth1": ["data.batch_size=16", "data.eval_batch_size=64"],
    "word2vec": ["data.batch_size=256", "data.eval_batch_size=1024"],
    "fsdd": ["data.batch_size=16", "data.eval_batch_size=16"],
}
