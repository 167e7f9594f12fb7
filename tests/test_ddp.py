"""Two-process DDP on CPU (gloo) through train.py: each rank trains on its own shard, the val/test metrics
are reduced across ranks, and only rank 0 writes checkpoints, logs and metrics.json."""

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.data import DataError, TensorBatchLoader
from tasks.runner import build

ROOT = Path(__file__).resolve().parents[1]
EVAL_BATCH, TEST_BATCHES = 250, 2  # per rank: 500 test images; both ranks: the first 1000
RUN = [
    "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "threads=1", "model=lenet5", "data=mnist",
    "seed=0", "data.batch_size=64", f"data.eval_batch_size={EVAL_BATCH}", "trainer.max_epochs=1",
    "trainer.limit_train_batches=8", "trainer.limit_val_batches=2", f"trainer.limit_test_batches={TEST_BATCHES}",
    "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null",
]
# everything a DDP run may leave in its folder; a rank other than 0 writing a report would add a file
EXPECTED_FILES = [".hydra/*.yaml", "train.log", "train_ddp_process_1.log",  # Hydra's (empty) job log per rank
                  "csv/metrics.csv", "csv/hparams.yaml", "checkpoints/best-epoch000.ckpt", "checkpoints/last.ckpt",
                  "metrics.json"]


def test_loader_gives_each_rank_its_own_shard():
    data = torch.arange(103)
    shards = [torch.cat([b[0] for b in TensorBatchLoader(data, batch_size=10, shuffle=True, drop_last=True, seed=1,
                                                          rank=r, world_size=2)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50  # equal batch counts: no rank waits alone in a collective
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    loaders = [TensorBatchLoader(data, batch_size=10, rank=r, world_size=2) for r in (0, 1)]
    evals = [torch.cat([b[0] for b in loader]) for loader in loaders]
    assert [len(e) for e in evals] == [loader.num_samples for loader in loaders] == [52, 51]  # uneven by one
    assert sorted(torch.cat(evals).tolist()) == list(range(103))  # unshuffled: every sample, none twice
    with pytest.raises(DataError, match="1 evaluation sample.* among 2 processes"):
        TensorBatchLoader(data[:1], batch_size=10, rank=0, world_size=2)


def test_evaluation_on_two_ranks_gives_the_one_process_metrics_on_an_odd_split(compose_cfg, tmp_path, monkeypatch):
    """Each rank's shard of an odd-sized test split, evaluated in turn in this process (the rank forced), and
    combined as Lightning's epoch-end sync combines ranks, gives the metrics of one process on the whole split
    (the 2-process run below checks the sync itself)."""
    rows = "".join(f"{i % 7},{i * 5 % 11},{'abc'[i % 3]}\n" for i in range(150))
    (tmp_path / "t.csv").write_text("u,v,label\n" + rows)
    cfg = compose_cfg("data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=label", "data.test_frac=0.3",
                      "data.eval_batch_size=8", "model=mlp", "logger=none", "callbacks.progress_bar=null")
    datamodule, task, trainer, _ = build(cfg)
    one = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    n = len(datamodule.splits["test"][1])
    assert n % 2 == 1  # shards one sample apart: the case that used to drop a sample
    ranks, sizes = [], []
    for rank in (0, 1):
        monkeypatch.setattr("tasks.data.tabular.rank_world", lambda trainer, rank=rank: (rank, 2))
        ranks.append(trainer.test(task, datamodule=datamodule, verbose=False)[0])
        sizes.append(trainer.test_dataloaders.num_samples)
    assert sum(sizes) == n and abs(sizes[0] - sizes[1]) == 1
    # Micro accuracy is correct / total: its states are counts, summed across ranks by torchmetrics' sync.
    acc = sum(m["test/acc"] * k for m, k in zip(ranks, sizes, strict=True)) / n
    assert acc == pytest.approx(one["test/acc"], abs=1e-6)
    # The loss is logged with batch_size and sync_dist: Lightning reduces its batch-size-weighted sum and its
    # count across ranks and divides, which is the global mean, not the mean of rank means (those differ by
    # |m0 - m1| / (2 n) with shards one sample apart). Tolerance: float32 rounding of sums of ~50 losses, 1e-5.
    loss = sum(m["test/loss"] * k for m, k in zip(ranks, sizes, strict=True)) / n
    assert loss == pytest.approx(one["test/loss"], abs=1e-5)


def test_two_process_ddp_on_cpu_reduces_metrics_and_only_rank0_writes(tmp_path, compose_cfg):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "train.py", *RUN, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in r.stderr and "GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr
    assert "distributed_backend=gloo" in r.stderr

    summaries = [line for line in r.stdout.splitlines() if line.startswith("[lenet5 on mnist]")]
    assert len(summaries) == 1, r.stdout  # printed where metrics.json is written: rank 0 only
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    unexpected = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in EXPECTED_FILES)]
    assert not unexpected, files
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 8

    # Reduced across ranks: the test metrics equal one process's evaluation of both ranks' shards together.
    cfg = compose_cfg("model=lenet5", "data=mnist", "logger=none", "callbacks.progress_bar=null",
                      f"data.eval_batch_size={2 * EVAL_BATCH * TEST_BATCHES}", "trainer.limit_test_batches=1",
                      f"paths.output_dir={tmp_path / 'single'}")
    datamodule, task, trainer, _ = build(cfg)
    single = trainer.test(task, datamodule=datamodule, ckpt_path=m["best_checkpoint"], weights_only=True,
                          verbose=False)[0]
    assert m["test/acc"] == single["test/acc"]
    assert m["test/loss"] == pytest.approx(single["test/loss"], abs=1e-5)
    # ... and not one rank's own half: the halves differ, so a rank-local value could not match
    x, y = datamodule.test_set
    n = 2 * EVAL_BATCH * TEST_BATCHES
    task.eval()
    with torch.no_grad():
        correct = (task(datamodule.transform(x[:n], train=False)).argmax(1) == y[:n]).float()
    halves = correct[0::2].mean().item(), correct[1::2].mean().item()
    assert halves[0] != halves[1]
    assert m["test/acc"] == pytest.approx(correct.mean().item(), abs=1e-7)


def test_translation_bleu_is_scored_on_every_ranks_hypotheses(monkeypatch):
    """Under DDP each rank decodes its own shard; BLEU (a corpus score) must see all of them, once."""
    from types import SimpleNamespace

    import torch.distributed as dist

    from tasks.seq2seq import Seq2SeqTask

    mine = {"greedy": {0: "a man rides", 2: "two dogs"}, "beam": {0: "a man rides a bike"}}
    theirs = {"greedy": {1: "a woman sings", 3: "children play"}, "beam": {1: "a woman is singing"}}

    def all_gather_object(parts, obj):
        assert obj is mine
        parts[:] = [mine, theirs]

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    task = SimpleNamespace(_trainer=object(), trainer=SimpleNamespace(world_size=2), _hyps={"test": mine})
    Seq2SeqTask._gather(task, "test")
    assert task._hyps["test"] == {"greedy": {0: "a man rides", 1: "a woman sings", 2: "two dogs", 3: "children play"},
                                  "beam": {0: "a man rides a bike", 1: "a woman is singing"}}
    single = SimpleNamespace(_trainer=object(), trainer=SimpleNamespace(world_size=1), _hyps={"test": dict(mine)})
    Seq2SeqTask._gather(single, "test")  # one process: nothing to gather
    assert single._hyps["test"] == mine


def test_tasks_that_ask_for_it_get_ddps_unused_parameter_search(compose_cfg):
    from types import SimpleNamespace

    from tasks.generative.gan import GANTask
    from tasks.runner import _trainer_config

    cfg = compose_cfg("model=gan", "data=mnist", "trainer=ddp", "trainer.max_epochs=${seed}")  # an interpolation
    assert GANTask.ddp_find_unused_parameters
    on = _trainer_config(cfg.trainer, SimpleNamespace(ddp_find_unused_parameters=True))
    assert on.strategy.find_unused_parameters is True and on.max_epochs == cfg.seed
    assert _trainer_config(cfg.trainer, SimpleNamespace()).strategy.find_unused_parameters is False
    single = compose_cfg("model=gan", "data=mnist")  # no DDP strategy: nothing to switch
    assert _trainer_config(single.trainer, SimpleNamespace(ddp_find_unused_parameters=True)) is single.trainer
