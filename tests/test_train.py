"""train.py's run, composed in-process: metrics.json, real learning, reproducibility, clear failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.runner import run
from tests.conftest import fast_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_fast_dev_run_writes_metrics(compose_cfg, tmp_path):
    metrics = run(compose_cfg("trainer.fast_dev_run=true", "callbacks.progress_bar=null"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    for key in ("model", "data", "test/acc", "test/loss", "params", "epochs", "train_time_s", "samples_per_s"):
        assert key in saved, key
    assert (saved["model"], saved["data"], saved["params"]) == ("lenet5", "mnist", 61706)


def test_lenet5_learns_real_mnist(compose_cfg):
    # about 7700 real training images, one epoch: chance is 10%
    cfg = compose_cfg(*fast_overrides("trainer.limit_train_batches=60", "data.batch_size=128",
                                      "trainer.limit_test_batches=2"))
    metrics = run(cfg)
    assert metrics["test/acc"] > 0.80, metrics
    assert metrics["samples_per_s"] > 0


def test_resnet20_trains_on_cifar10_with_augmentation(compose_cfg):
    metrics = run(compose_cfg(*fast_overrides("data=cifar10", "data.batch_size=32")))
    assert metrics["model"] == "resnet20" and 0.0 <= metrics["test/acc"] <= 1.0
    assert metrics["steps"] == 3


def test_same_seed_same_metrics(compose_cfg, tmp_path):
    runs = []
    for i in range(2):
        cfg = compose_cfg(*fast_overrides("model=mlp", "trainer.limit_train_batches=10", "seed=7",
                                          f"paths.output_dir={tmp_path / str(i)}"))
        m = run(cfg)
        runs.append({k: v for k, v in m.items() if k.startswith("test/")})
    assert runs[0] == runs[1]


def _train_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


def test_unknown_model_fails_with_close_matches():
    r = _train_cli("model=resnet21")
    assert r.returncode == 2
    assert "unknown model 'resnet21'" in r.stderr and "resnet20" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_data_root_fails_with_what_to_do(tmp_path):
    r = _train_cli(f"paths.data_dir={tmp_path / 'missing'}", "data.download=false",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "data files not found" in r.stderr and "ZOO_DATA_DIR" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_speed_monitor_counts_training_batches_not_validation_or_its_checkpoints(monkeypatch):
    import torch

    import tasks.callbacks as cb

    clock = iter([0.0, 10.0, 25.0, 31.0, 40.0])  # perf_counter at each start/stop below
    monkeypatch.setattr(cb.time, "perf_counter", lambda: next(clock))
    speed, batch = cb.SpeedMonitor(), (torch.zeros(4, 1), torch.zeros(4))
    speed.on_train_epoch_start(None, None)                  # t=0
    speed.on_train_batch_end(None, None, None, batch, 0)
    speed.on_validation_start(None, None)                   # t=10: a mid-epoch validation
    speed.on_validation_end(None, None)
    speed.on_train_batch_start(None, None, batch, 1)        # t=25: training resumes
    speed.on_train_batch_start(None, None, batch, 2)        # running: no new start
    speed.on_train_batch_end(None, None, None, batch, 2)
    speed.on_validation_start(None, None)                   # t=31: the epoch-end validation
    speed.on_train_epoch_end(None, None)                    # after it and its checkpoints: nothing more
    assert speed.train_seconds == 16.0 and speed.samples == 8 and speed.samples_per_s == 0.5


def test_the_logged_training_loss_is_the_loss_of_the_step_it_is_written_at(compose_cfg, tmp_path):
    import csv

    import lightning as L

    from tasks.runner import build

    class Losses(L.Callback):
        def __init__(self) -> None:
            self.by_step: dict[int, float] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.by_step[trainer.global_step - 1] = float(outputs["loss"])  # global_step counts it already

    cfg = compose_cfg(*fast_overrides("model=mlp", "model.width=16", "model.depth=1", "trainer.limit_train_batches=12",
                                      "trainer.log_every_n_steps=5", "logger=csv", "threads=1"))
    datamodule, task, trainer, _ = build(cfg)
    losses = Losses()
    trainer.callbacks.append(losses)
    trainer.fit(task, datamodule=datamodule)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        logged = {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}
    assert sorted(logged) == [4, 9]  # Lightning writes after steps 5 and 10 (zero-based 4 and 9)
    for step, value in logged.items():
        assert abs(value - losses.by_step[step]) < 1e-6, (step, value, losses.by_step[step], losses.by_step[0])


def test_training_runs_with_the_heap_before_it_frozen_and_hands_it_back_after(compose_cfg):
    import gc

    import lightning as L

    from tasks.runner import build

    class FreezeCount(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.during = gc.get_freeze_count()

    cfg = compose_cfg(*fast_overrides("model=mlp", "model.width=16", "model.depth=1", "trainer.limit_train_batches=2",
                                      "logger=none", "threads=1"))
    datamodule, task, trainer, _ = build(cfg)
    seen = FreezeCount()
    trainer.callbacks.append(seen)
    assert gc.get_freeze_count() == 0
    trainer.fit(task, datamodule=datamodule)
    assert seen.during > 10_000  # the imported modules, configs and data: out of the full collections' way
    assert gc.get_freeze_count() == 0  # after fitting the collector sees them again


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_runs_bf16_only_where_the_hardware_computes_it(compose_cfg, monkeypatch, native):
    from tasks import precision
    from tasks.runner import build

    monkeypatch.setattr(precision, "bf16_is_native", lambda accelerator="cpu": native)
    assert precision.resolve_precision("bf16-auto") == ("bf16-mixed" if native else "32-true")
    assert precision.resolve_precision("16-mixed") == "16-mixed"  # any other value is Lightning's, as given
    cfg = compose_cfg(*fast_overrides("model=mlp", "model.width=16", "model.depth=1", "trainer.precision=bf16-auto",
                                      "logger=none", "threads=1"))
    _, _, trainer, _ = build(cfg)
    assert trainer.precision == ("bf16-mixed" if native else "32-true")
