"""A run killed with SIGKILL mid-epoch resumes with one override and ends exactly where an uninterrupted
run ends; checkpoints are written atomically and loaded safely."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.checkpoints import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EVERY = 10  # checkpoint interval in steps
RUN = [
    "model=lenet5", "data=mnist", "seed=3", "data.batch_size=64", "trainer.max_epochs=2",
    "trainer.limit_train_batches=40", "trainer.limit_val_batches=2", "trainer.limit_test_batches=3",
    f"checkpoint_every={EVERY}", "callbacks.progress_bar=null", "logger=none", "threads=1",
]


def _train(args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _metrics(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k.startswith("test/")} | {"steps": m["steps"]}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    ref_dir, run_dir, steps = tmp_path / "ref", tmp_path / "run", tmp_path / "step.txt"
    ref = _train([*RUN, f"hydra.run.dir={ref_dir}"])

    pace = [f"+callbacks.recorder._target_=tests.helpers.StepRecorder", f"+callbacks.recorder.path={steps}",
            "+callbacks.recorder.seconds=0.05"]
    victim = _train([*RUN, *pace, f"hydra.run.dir={run_dir}"])
    kill_at = 40 + 15  # mid-way through the second epoch (40 batches per epoch)
    deadline = time.time() + 120
    while time.time() < deadline:
        if steps.is_file() and steps.read_text().strip() and int(steps.read_text()) >= kill_at:
            break
        if victim.poll() is not None:
            pytest.fail(f"training ended before it could be killed:\n{victim.stderr.read()[-3000:]}")
        time.sleep(0.01)
    killed_step = int(steps.read_text())
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (run_dir / "metrics.json").exists()

    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert killed_step - saved["global_step"] <= EVERY, "lost more than one checkpoint interval"
    assert 40 < saved["global_step"] < 80, "the checkpoint should be mid-epoch"

    resumed = _train([f"resume={run_dir}"])
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err[-3000:]
    out_ref, err_ref = ref.communicate(timeout=180)
    assert ref.returncode == 0, err_ref[-3000:]
    assert _metrics(run_dir) == _metrics(ref_dir)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Path("/etc/passwd")}, p)  # a pickled non-tensor object
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects"):
        load_checkpoint(p)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    p = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.randn(1000)}}, p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(p)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "t.pt"
    torch.save(torch.zeros(2), p)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(p)


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    """A failure in the middle of writing leaves the previous last.ckpt intact and loadable."""
    from fsspec.implementations.local import LocalFileOpener
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    io = TorchCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def broken_write(self, data):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(LocalFileOpener, "write", broken_write)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_resume_with_a_different_model_is_refused(compose_cfg, tmp_path):
    from tasks.checkpoints import check_resumable

    p = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "lenet5", "num_classes": 10}}}, p)
    with pytest.raises(CheckpointError, match="different model config"):
        check_resumable(p, {"name": "mlp", "num_classes": 10})
