"""Callbacks the Lightning library does not ship in the form a CPU model zoo wants."""

from __future__ import annotations

import sys
import time

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """TQDM bar that refreshes every step on a terminal and every ``pipe_refresh_rate`` steps otherwise
    (redrawing a bar into a log file costs ~1 ms a step)."""

    def __init__(self, *, refresh_rate: int | None = None, pipe_refresh_rate: int = 50) -> None:
        if refresh_rate is None:
            refresh_rate = 5 if sys.stdout.isatty() else pipe_refresh_rate
        super().__init__(refresh_rate=refresh_rate)


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

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:  # training resumes after it
            self._start()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds else 0.0
