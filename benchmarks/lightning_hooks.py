"""What Lightning pays around every hook call, per call, and what the zoo's replacements pay instead.

Lightning sets ``pl_module._current_fx_name`` twice per hook call (~44 times a training step), enters
``trainer.profiler.profile(name)`` around each (~46), and names callback hooks with the callback's ``state_key``
(two ModelCheckpoints, ~12). Multiply by those counts for the per-step saving (tasks/base.py, tasks/callbacks.py).

    python benchmarks/lightning_hooks.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.profilers import PassThroughProfiler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tasks/ runs from the checkout (only zoo is installed)

from tasks.callbacks import ModelCheckpoint, QuietProfiler

N = 200_000


def per_call_us(fn) -> float:
    return min(timeit.repeat(fn, number=N, repeat=3)) / N * 1e6


def main() -> None:
    module = L.LightningModule()

    def enter(profiler) -> None:
        with profiler.profile("[Callback]ModelCheckpoint.on_train_batch_end"):
            pass

    passthrough, quiet = PassThroughProfiler(), QuietProfiler()
    theirs, ours = LightningModelCheckpoint(monitor="val/acc", mode="max"), ModelCheckpoint(monitor="val/acc", mode="max")
    assert theirs.state_key == ours.state_key  # the same key: checkpoints resume with either class
    rows = [
        ("_current_fx_name set", lambda: setattr(module, "_current_fx_name", "x"),
         lambda: object.__setattr__(module, "_current_fx_name", "x"), 44),
        ("profiler.profile(name)", lambda: enter(passthrough), lambda: enter(quiet), 46),
        ("ModelCheckpoint.state_key", lambda: theirs.state_key, lambda: ours.state_key, 12),
    ]
    total = 0.0
    print(f"{'per call':<28s} {'Lightning':>10s} {'zoo':>10s} {'calls/step':>11s} {'saved/step':>11s}")
    for name, a, b, calls in rows:
        ta, tb = per_call_us(a), per_call_us(b)
        total += (ta - tb) * calls
        print(f"{name:<28s} {ta:8.2f}us {tb:8.2f}us {calls:11d} {(ta - tb) * calls:9.1f}us")
    print(f"saved per training step: {total:.0f} us")


if __name__ == "__main__":
    main()
