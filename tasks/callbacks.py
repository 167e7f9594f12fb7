"""Callbacks the Lightning library does not ship in the form a CPU model zoo wants."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.profilers import PassThroughProfiler

from zoo.registry import ZooError


class ProgressBar(TQDMProgressBar):
    """TQDM bar that refreshes every step on a terminal and every ``pipe_refresh_rate`` steps otherwise
    (redrawing a bar into a log file costs ~1 ms a step)."""

    def __init__(self, *, refresh_rate: int | None = None, pipe_refresh_rate: int = 50) -> None:
        if refresh_rate is None:
            refresh_rate = 5 if sys.stdout.isatty() else pipe_refresh_rate
        super().__init__(refresh_rate=refresh_rate)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, with its ``state_key`` computed once.

    Lightning names every callback hook it calls, for its profiler, with the callback's ``state_key``: about six
    hooks a training step, whether the callback implements them or not. ModelCheckpoint builds that key anew
    each time (the repr of a dict of its settings, which never change after ``__init__``): 1.8 us a call, ~19 us a
    step for two checkpoint callbacks (``python benchmarks/lightning_hooks.py``). The key is the same string, so
    checkpoints written by either class resume with the other.
    """

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_zoo_state_key")
        if key is None:
            key = self.__dict__["_zoo_state_key"] = super().state_key
        return key


class FrozenHeap(L.Callback):
    """Keeps the objects alive before training (imported modules, configs, the model, the data) out of the garbage
    collector's full passes while training runs.

    A process that has imported torch, Lightning and Hydra holds ~530k tracked objects; CPython runs a full
    collection, which visits every one of them, once enough new objects have survived, and setting up a Trainer
    makes that many: a 0.44 s pause inside the first epoch, ~2 ms a step of a 214-step MNIST epoch
    (``python benchmarks/trainer_vs_loop.py --gc``). ``gc.freeze()`` at the start of training moves them to the
    permanent generation (the collections during training then visit only what training makes);
    ``gc.unfreeze()`` when fitting ends hands them back, so a process that fits many times frees them as usual.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gc.collect()  # what is garbage already is freed, not frozen
        gc.freeze()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gc.unfreeze()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        gc.unfreeze()


class QuietProfiler(PassThroughProfiler):
    """The Trainer's default "no profiler", with one reusable null context instead of a generator per call.

    Lightning enters ``trainer.profiler.profile(name)`` around every hook it calls, ~45 times a training step;
    the default pass-through profiler builds a ``contextlib.contextmanager`` generator each time (~1.5 us).
    train.py uses this one unless ``trainer.profiler`` names another (``simple``, ``advanced``, ...).
    """

    _null = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._null


class SpeedMonitor(L.Callback):
    """Measures pure training throughput: samples and seconds of training batches, validation excluded."""

    def __init__(self) -> None:
        self.samples = 0
        self.train_seconds = 0.0
        self._t0: float | None = None

    def _start(self) -> None:
        self._t0 = time.perf_counter()

    def _stop(self) -> None:
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0
            self._t0 = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first = batch
        while isinstance(first, (tuple, list)):  # text batches nest: ((tokens, padding_mask), labels)
            first = first[0]
        self.samples += len(first)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None:  # the first batch after a mid-epoch validation
            self._start()

    def on_validation_start(self, trainer, pl_module) -> None:
        # Stopped until the next training batch: the validation, and the checkpoints saved after it, are
        # not training (a checkpoint every `checkpoint_every` steps, saved between batches, is).
        self._stop()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds else 0.0


class NonFiniteLossError(ZooError):
    """A NaN or Inf training loss: the run stops before the update that would spread it into the weights."""


class FiniteLossGuard(L.Callback):
    """Stops training at the first NaN/Inf loss, naming the step, instead of training on garbage.

    The check runs before ``backward``, so the failing step never updates the weights and every checkpoint
    on disk stays finite. Under DDP all ranks decide together (one tiny all-reduce a step), so no rank is
    left waiting in a collective. ``every_n_steps`` > 1 trades the check's host sync for later detection.
    """

    def __init__(self, *, every_n_steps: int = 1) -> None:
        self.every_n_steps = every_n_steps

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(self._message(trainer, loss))

    @staticmethod
    def _message(trainer: L.Trainer, loss: torch.Tensor) -> str:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        lower = f"task.optimizer.lr is {lr:.3g} at this step; try 10x lower" if lr else "lower task.optimizer.lr"
        return (f"the training loss is {loss.detach().float().mean().item()} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); training stopped before this update, so the weights and "
                f"checkpoints hold no NaN. Lower the learning rate ({lower}), clip gradients "
                "(trainer.gradient_clip_val=1.0), or find the operation that produced it with "
                "trainer.detect_anomaly=true.")


class RunInterrupted(ZooError):
    """Training stopped by SIGINT/SIGTERM after writing a resumable checkpoint; exits with 128 + the signal."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class CheckpointOnSignal(L.Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (a scheduler's pre-emption) during training: finish the batch, write
    ``last.ckpt``, stop with exit status 128 + signal. Resuming continues from that very step.

    Lightning 2.6 does neither: SIGINT raises KeyboardInterrupt wherever the program is (mid-step, where a
    checkpoint would not be resumable) and saves nothing; SIGTERM ends the run with exit status 0 (a
    scheduler sees success) and saves nothing. Here the handler only records the signal; the checkpoint is
    written at the next batch boundary, the point where ModelCheckpoint's periodic saves resume exactly,
    and under DDP every rank stops at the same batch. A second signal stops at once (the last periodic
    ``last.ckpt`` stays). SIGKILL cannot be caught; for it, ``checkpoint_every`` bounds the lost work.
    """

    def __init__(self, *, dirpath: str, filename: str = "last", signals: Sequence[str] = ("SIGINT", "SIGTERM"),
                 resume_hint: str | None = None) -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.signals = [signal.Signals[s] for s in signals]
        self.resume_hint = resume_hint or f"python train.py resume={Path(dirpath).parent}"
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def _install(self) -> None:
        # Installed once fit runs, after Lightning registered its own SIGTERM handler (Trainer._run), which
        # this replaces during fit; Lightning restores the handlers from before the run at teardown.
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self._received = None
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._received is not None:  # asked twice: stop now, without a new checkpoint
            self._restore()
            raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
        self._received = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this batch and writing {self.path} "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
            self._stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A signal during the last validation: no batch boundary is left, but the test should not start.
        if trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
            self._stop(trainer)
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _stop(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: optimizer, loops, RNG
        signum = self._received or signal.SIGTERM  # another rank received it
        self._restore()
        raise RunInterrupted(
            f"{signal.Signals(signum).name} received: training stopped at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}) and saved {self.path}. Resume with: {self.resume_hint}",
            signum=signum,
        )

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, handler in self._previous.items():
                with contextlib.suppress(TypeError, ValueError):
                    signal.signal(s, handler)
        self._previous = {}
