"""A run killed mid-epoch (SIGKILL, SIGTERM, SIGINT) resumes with one override and ends exactly where an
uninterrupted run ends; checkpoints are written atomically and loaded safely."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint

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


class _Reference:
    """The uninterrupted run, started once and shared by the kill tests (it runs while they do)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir, self.proc, self._metrics = run_dir, _train([*RUN, f"hydra.run.dir={run_dir}"]), None

    def metrics(self) -> dict:
        if self._metrics is None:
            _, err = self.proc.communicate(timeout=300)
            assert self.proc.returncode == 0, err[-3000:]
            self._metrics = _metrics(self.dir)
        return self._metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = _Reference(tmp_path_factory.mktemp("reference") / "run")
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()
        ref.proc.wait()


def _read_step(path: Path) -> int:
    try:  # the recorder rewrites the file after every batch: it may be empty for an instant
        return int(path.read_text())
    except (OSError, ValueError):
        return -1


def _start_and_signal(run_dir: Path, steps: Path, sig: int, at: int) -> tuple[subprocess.Popen, int]:
    """Start a paced run, send ``sig`` once it has done ``at`` steps; returns the process and that step."""
    pace = ["+callbacks.recorder._target_=tests.helpers.StepRecorder", f"+callbacks.recorder.path={steps}",
            "+callbacks.recorder.seconds=0.05"]
    victim = _train([*RUN, *pace, f"hydra.run.dir={run_dir}"])
    deadline = time.time() + 180
    while time.time() < deadline and _read_step(steps) < at:
        if victim.poll() is not None:
            pytest.fail(f"training ended before it could be killed:\n{victim.stderr.read()[-3000:]}")
        time.sleep(0.01)
    step = _read_step(steps)
    victim.send_signal(sig)
    return victim, step


def _resume(run_dir: Path) -> None:
    resumed = _train([f"resume={run_dir}"])
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err[-3000:]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, reference):
    run_dir, steps = tmp_path / "run", tmp_path / "step.txt"
    victim, killed_step = _start_and_signal(run_dir, steps, signal.SIGKILL, at=40 + 15)  # mid second epoch
    victim.wait()
    assert not (run_dir / "metrics.json").exists()

    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert killed_step - saved["global_step"] <= EVERY, "lost more than one checkpoint interval"
    assert 40 < saved["global_step"] < 80, "the checkpoint should be mid-epoch"

    _resume(run_dir)
    assert _metrics(run_dir) == reference.metrics()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_sigterm_sigint_save_at_the_step_and_resume_exactly(tmp_path, reference, sig, status):
    # Lightning alone exits 0 on SIGTERM and saves nothing on either: the work since the last periodic save is lost
    run_dir, steps = tmp_path / "run", tmp_path / "step.txt"
    victim, step = _start_and_signal(run_dir, steps, sig, at=40 + 13)  # between two periodic saves (50, 60)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == status, err[-3000:]
    assert f"error: {signal.Signals(sig).name} received: training stopped at step" in err
    assert f"resume={run_dir}" in err and "Traceback" not in err
    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert 0 <= saved["global_step"] - step <= 1, "saved at the batch the signal arrived in"
    assert saved["global_step"] % EVERY, "a checkpoint of its own, not the last periodic one"
    assert not (run_dir / "metrics.json").exists()

    if sig == signal.SIGTERM:  # resuming from a signal's checkpoint is the same path for both: once is enough
        _resume(run_dir)
        assert _metrics(run_dir) == reference.metrics()


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
    p.write_text("hello")  # any file at all: the weights-only unpickler fails in its own ways
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*not the zip archive torch.save writes"):
        load_checkpoint(p)


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    """A failure in the middle of writing leaves the previous last.ckpt intact and loadable; the temporary
    file lives beside the target, so the final rename never crosses filesystems (never a copy)."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((Path(src), Path(dst))), real_replace(src, dst)))
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04half a checkpoint")
        raise OSError("disk died mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="mid-write"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 3}, path)
    assert load_checkpoint(path)["global_step"] == 3
    assert [(src.parent, dst) for src, dst in renames] == [(tmp_path, path)]


SAVER = """
import sys, torch
from tasks.checkpoints import AtomicCheckpointIO
io, state = AtomicCheckpointIO(), {"state_dict": {"w": torch.randn(4_000_000)}, "global_step": 0}
while True:
    state["global_step"] += 1
    io.save_checkpoint(state, sys.argv[1])
"""


def test_sigkill_during_a_save_leaves_last_ckpt_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (path.is_file() and list(tmp_path.glob(".last.ckpt.*.tmp"))):
            assert saver.poll() is None, "the saver died"
            time.sleep(0.005)
    finally:  # killed while a 16 MB save is being written
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    assert load_checkpoint(path)["global_step"] >= 1


def test_trainer_from_config_saves_atomically(compose_cfg):
    from hydra.utils import instantiate

    trainer = instantiate(compose_cfg().trainer, callbacks=[], logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_resume_with_a_different_model_is_refused(compose_cfg, tmp_path):
    from tasks.checkpoints import check_resumable

    p = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "lenet5", "num_classes": 10}}}, p)
    with pytest.raises(CheckpointError, match="different model config"):
        check_resumable(p, {"name": "mlp", "num_classes": 10})


def test_checkpoints_carry_every_random_stream_and_restore_them():
    import random

    import numpy as np

    from tasks import rng

    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    saved = rng.capture()
    assert {"torch", "python", "numpy"} <= set(saved)  # + "cuda" per device where CUDA is in use
    buf = io.BytesIO()
    torch.save(saved, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # plain tensors and values: the safe loader reads them
    expected = (torch.rand(3), random.random(), np.random.rand(3))
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    rng.restore(loaded)
    got = (torch.rand(3), random.random(), np.random.rand(3))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and np.array_equal(got[2], expected[2])


def test_language_model_windows_resume_at_the_trainers_position(tmp_path):
    # The random-window loader of the LM data must continue where the restored loop stands, as the image and
    # text loaders do: it had no position, and Lightning's one-batch prefetch made its own count one ahead.
    from types import SimpleNamespace

    from tasks.data.char_lm import CharLMDataModule

    (tmp_path / "book.txt").write_text("to be or not to be, that is the question. " * 40)
    dm = CharLMDataModule(root=str(tmp_path), dataset="text_file", path=str(tmp_path / "book.txt"), block_size=16,
                          batch_size=4, batches_per_epoch=6)
    dm.setup("fit")
    progress = SimpleNamespace(current=SimpleNamespace(ready=0))
    dm.trainer = SimpleNamespace(current_epoch=0, global_rank=0, world_size=1, strategy=SimpleNamespace(),
                                 fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    whole, epochs = dm.train_dataloader(), []
    for epoch in range(2):
        dm.trainer.current_epoch = epoch
        epochs.append([x for x, _ in whole])
    assert not torch.equal(epochs[0][0], epochs[1][0])  # new windows each epoch
    dm.trainer.current_epoch, progress.current.ready = 1, 4  # restored mid-epoch: epoch 1, 4 batches done
    resumed = [x for x, _ in dm.train_dataloader()]
    assert len(resumed) == 2
    assert all(torch.equal(a, b) for a, b in zip(resumed, epochs[1][4:], strict=True))
