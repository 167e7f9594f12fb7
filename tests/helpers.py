"""Test-only callbacks, importable by a `python train.py` subprocess started from the repository root."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class StepRecorder(L.Callback):
    """Writes the global step to ``path`` after every training batch, sleeping ``seconds`` to pace the run
    (so that a test can kill it at a known point)."""

    def __init__(self, path: str, seconds: float = 0.0) -> None:
        self.path, self.seconds = Path(path), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.path.write_text(str(trainer.global_step))
        if self.seconds:
            time.sleep(self.seconds)
