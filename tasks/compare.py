"""Comparing architectures on one dataset under one budget: the training side of a comparison sweep.

``python train.py -m experiment=compare_mnist`` runs one Hydra job per model (and seed, if asked), all
with the same data, epochs and seeds. :class:`ModelStats` (a Lightning callback in the experiment's
callbacks) records each run's FLOPs per sample and peak memory in ``stats.json``; :class:`CompareReport`
(a Hydra callback in the experiment's ``hydra.callbacks``) writes the report into the sweep folder after
every job and at the end. The report itself (``report.md``, CSVs, plots) is :func:`zoo.report.write_report`,
which needs neither Lightning nor Hydra: ``zoo compare SWEEP_DIR`` writes it again from the files,
without retraining.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from torch.utils._pytree import tree_flatten, tree_map

from zoo.report import STATS_FILE, forward_flops, write_report

__all__ = ["CompareReport", "ModelStats", "peak_memory_mb", "reset_peak_memory"]


# -- measured by each run -------------------------------------------------------------------------------

def reset_peak_memory() -> None:
    """Start peak-memory accounting afresh: the jobs of a multirun share one process, whose peak only grows."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: "5" resets the peak resident set size (VmHWM, ru_maxrss) to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory since :func:`reset_peak_memory`: allocated CUDA memory on a GPU, else the process's
    peak resident set size (which includes Python, torch and the in-memory dataset)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _first_sample(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Slice every tensor that has the batch's leading size down to one sample."""
    leaves = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and t.dim()]
    batch = leaves[0].shape[0]
    return tree_map(lambda t: t[:1] if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == batch else t,
                    (args, kwargs))


class ModelStats(L.Callback):
    """Writes ``stats.json`` in the run folder: FLOPs per sample (one forward of the first training sample the
    model sees, batch 1) and the peak memory of ``fit``."""

    def __init__(self) -> None:
        self.flops_per_sample: int | None = None
        self.input_shapes: list[list[int]] = []
        self._handle: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reset_peak_memory()
        model = getattr(pl_module, "model", pl_module)
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._handle.remove()  # once, and before calling the module again from inside its own hook
        self._handle = None
        args1, kwargs1 = _first_sample(args, kwargs)
        self.input_shapes = [list(t.shape) for t in tree_flatten((args1, kwargs1))[0] if isinstance(t, torch.Tensor)]
        self.flops_per_sample = forward_flops(module, args1, kwargs1)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._handle is not None:  # the task never called the model itself (e.g. only its generator)
            self._handle.remove()
        if not trainer.is_global_zero:
            return
        stats = {"flops_per_sample": self.flops_per_sample, "flops_input_shapes": self.input_shapes,
                 "peak_memory_mb": round(peak_memory_mb(pl_module.device), 1),
                 "peak_memory_kind": "cuda_allocated" if pl_module.device.type == "cuda" else "process_rss"}
        out = Path(trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")


# -- the report, after every job of a sweep ------------------------------------------------------

class CompareReport(Callback):
    """Hydra callback: (re)write the sweep's report after every job and once all jobs are done.

    After every job, because a failed job makes Hydra raise at the end of the sweep, before
    ``on_multirun_end``; the report then still holds every finished run and names the failed ones.
    Its arguments are :func:`zoo.report.write_report`'s report settings (an experiment config's
    ``hydra.callbacks.compare_report``; ``threshold`` adds the "time to reach it" column); ``zoo compare``
    reads them back from the sweep's ``multirun.yaml``.
    """

    def __init__(self, *, metric: str | None = None, mode: str | None = None, curve: str | None = None,
                 title: str | None = None, also: Sequence[str] | None = None, threshold: float | None = None,
                 threshold_metric: str | None = None) -> None:
        self.kwargs = {"metric": metric, "mode": mode, "curve": curve, "title": title,
                       "also": list(also) if also is not None else None, "threshold": threshold,
                       "threshold_metric": threshold_metric}

    def _write(self, sweep_dir: Path) -> None:
        try:
            report = write_report(sweep_dir, **self.kwargs)
        except Exception as e:  # a report must never take the sweep down; `zoo compare` can retry
            print(f"[compare] could not write the report in {sweep_dir}: {type(e).__name__}: {e}", flush=True)
            return
        print(f"[compare] report: {report}", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job_dir = Path(config.hydra.runtime.output_dir)
        status = getattr(getattr(job_return, "status", None), "name", "")
        if status == "FAILED":
            err = job_return._return_value
            (job_dir / "error.txt").write_text(f"{type(err).__name__}: {err}\n")
        if config.hydra.mode is not None and str(config.hydra.mode).endswith("MULTIRUN"):
            self._write(job_dir.parent)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if sweep.is_dir():
            self._write(sweep)

