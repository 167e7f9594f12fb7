"""A test metric does not depend on how many processes computed it: a 2-process DDP run (CPU, gloo) of a
language model, a translation model and a GAN reports the test metrics that one process evaluating the same
checkpoint reports (classification: tests/test_ddp.py).

Tolerance: token-averaged losses are torchmetrics means whose sums are reduced across ranks (the same sum in
another order: 1e-5 relative); BLEU is scored once on every rank's hypotheses put together (equal to 1e-9); the
Fréchet distance is drawn from the same seeded noise on every rank (each rank generates all the samples), so
it equals one process's up to float summation in the feature statistics (1e-3 relative).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.runner import run
from tests.conftest import SMALL_DATA, SMALL_MODEL

ROOT = Path(__file__).resolve().parents[1]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "threads=1"]
SHORT = ["seed=0", "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
         "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null", "logger=none"]
CASES = {  # kind: (overrides, {metric: relative tolerance})
    "lm": (["model=gpt", "data=tiny_shakespeare", *SMALL_MODEL["gpt"], *SMALL_DATA["tiny_shakespeare"],
            "data.eval_batch_size=64"], {"test/loss": 1e-5}),
    "seq2seq": (["model=transformer", "data=multi30k", *SMALL_MODEL["transformer"], *SMALL_DATA["multi30k"],
                 "data.eval_batch_size=100", "task.beam_size=1"], {"test/loss": 1e-5, "test/bleu": 1e-9}),
    "gan": (["model=gan", "data=mnist", "task=gan", "data.batch_size=64", "data.eval_batch_size=1000", "task.fd_samples=300"],
            {"test/fd": 1e-3}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_two_processes_report_the_metrics_of_one(kind, compose_cfg, tmp_path):
    overrides, tolerances = CASES[kind]
    run_dir = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "train.py", *DDP, *SHORT, *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["world_size"] == 2
    # the same checkpoint, evaluated on the whole test split by one process
    single = run(compose_cfg(*SHORT, *overrides, "train=false", f"ckpt_path={ddp['best_checkpoint']}", "threads=1",
                             f"paths.output_dir={tmp_path / 'single'}"))
    for metric, tol in tolerances.items():
        assert ddp[metric] == pytest.approx(single[metric], rel=tol, abs=1e-9), (metric, ddp[metric], single[metric])
