"""Comparing architectures on one dataset under one budget: per-run statistics and the sweep report.

``python train.py -m experiment=compare_mnist`` runs one Hydra job per model (and seed, if asked), all
with the same data, epochs and seeds. :class:`ModelStats` (a Lightning callback in the experiment's
callbacks) records each run's FLOPs per sample and peak memory in ``stats.json``; :class:`CompareReport`
(a Hydra callback in the experiment's ``hydra.callbacks``) writes the report into the sweep folder after
every job and at the end. ``zoo compare SWEEP_DIR`` writes it again from the files, without retraining:

- ``report.md`` and ``report.csv``: one row per model, ranked by the test metric (mean +/- std over
  seeds), with parameters, FLOPs per sample, training wall time, samples/s and peak memory;
  ``runs.csv``: one row per job;
- ``metric_vs_params.png``, ``metric_vs_time.png``, ``learning_curves.png`` (all models on one axis).
"""

from __future__ import annotations

import csv
import json
import math
import resource
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from zoo.registry import ZooError

STATS_FILE = "stats.json"
SEED_KEYS = ("seed",)  # overrides that repeat a configuration rather than define one


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


def forward_flops(model: torch.nn.Module, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> int:
    """FLOPs of one forward pass (eval mode, no grad), counted by ``torch.utils.flop_counter.FlopCounterMode``
    (matrix multiplies and convolutions, 2 per multiply-add; element-wise operations are not counted)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args, **(kwargs or {}))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


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


# -- the report over a sweep folder ---------------------------------------------------------------------

@dataclass
class Run:
    """One job of a sweep, read back from its folder."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    config: DictConfig | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return bool(self.metrics)

    @property
    def model(self) -> str:
        if self.metrics.get("model"):
            return str(self.metrics["model"])
        return self.overrides.get("model", "?")


@dataclass
class Row:
    """One configuration of the report: its runs (one per seed) aggregated."""

    label: str
    runs: list[Run]
    metric: str

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.metrics.get(key, r.stats.get(key))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else None


def _read_overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    items = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
    return dict(o.lstrip("+~").split("=", 1) for o in items if "=" in o)


def read_runs(sweep_dir: str | Path) -> list[Run]:
    """Every job folder of a sweep (a folder with ``.hydra/`` or ``metrics.json``), in job order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ZooError(f"no sweep folder at {sweep_dir}. Pass the folder a multirun wrote, e.g. "
                       "multirun/compare_mnist/<date>_<time>.")
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").is_file())]
    jobs.sort(key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))
    runs = []
    for job in jobs:
        run = Run(path=job, overrides=_read_overrides(job))
        if (job / "metrics.json").is_file():
            run.metrics = json.loads((job / "metrics.json").read_text())
        if (job / STATS_FILE).is_file():
            run.stats = json.loads((job / STATS_FILE).read_text())
        for name in ("resolved_config.yaml", ".hydra/config.yaml"):
            if (job / name).is_file():
                run.config = OmegaConf.load(job / name)
                break
        if (job / "error.txt").is_file():
            run.error = (job / "error.txt").read_text().strip().splitlines()[-1][:300]
        runs.append(run)
    if not runs:
        raise ZooError(f"{sweep_dir} holds no job folders (subfolders with .hydra/ or metrics.json). Pass the "
                       "sweep folder itself, not one job's folder.")
    return runs


def _labels(runs: list[Run]) -> list[str]:
    """A name per run: its model, plus whatever else varies across the sweep (seeds excepted)."""
    keys = sorted({k for r in runs for k in r.overrides})
    varying = [k for k in keys if k not in SEED_KEYS and k != "model"
               and len({r.overrides.get(k) for r in runs}) > 1]
    return [" ".join([r.model, *(f"{k}={r.overrides[k]}" for k in varying if k in r.overrides)]) for r in runs]


def _default_metric(runs: list[Run]) -> tuple[str, str]:
    for r in runs:
        if r.config is not None and "monitor" in r.config:
            return str(r.config.monitor.metric).replace("val/", "test/"), str(r.config.monitor.mode)
    return "test/loss", "min"


def _settings_from_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The CompareReport settings the sweep ran with (multirun.yaml), so a re-run reports the same way."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    callbacks = OmegaConf.load(path).get("hydra", {}).get("callbacks") or {}
    for cb in callbacks.values():
        if str(cb.get("_target_", "")).endswith("CompareReport"):
            return {k: v for k, v in OmegaConf.to_container(cb).items() if not k.startswith("_")}
    return {}


def _fallback_flops(run: Run) -> int | None:
    """FLOPs from the registry's example input when the run recorded none (only if built with default inputs)."""
    from zoo.checkpoint import load_model
    from zoo.registry import example_inputs

    ckpt = run.metrics.get("best_checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        return None
    try:
        model = load_model(ckpt)
        return forward_flops(model, example_inputs(model.zoo_name, batch=1))
    except Exception:  # kwargs that change the input (channels, size, vocabulary): leave it unknown
        return None


def _budget(runs: list[Run]) -> str:
    cfg = next((r.config for r in runs if r.config is not None), None)
    if cfg is None:
        return ""
    t = cfg.get("trainer", {})
    parts = [f"data={cfg.data.get('dataset', '?')}"]
    if t.get("max_time"):
        parts.append(f"trainer.max_time={t.max_time}")
    if t.get("max_epochs") is not None:
        parts.append(f"trainer.max_epochs={t.max_epochs}")
    for k in ("limit_train_batches", "precision"):
        if t.get(k) not in (None, "32-true"):
            parts.append(f"trainer.{k}={t.get(k)}")
    seeds = sorted({str(r.metrics.get("seed", r.overrides.get("seed", cfg.get("seed")))) for r in runs})
    parts.append(f"seeds={','.join(seeds)}")
    return ", ".join(parts)


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" + (f" +/- {std:.4f}" if std is not None else "")


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "n/a"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "si":
        for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= scale:
                return f"{v / scale:.2f} {unit}"
        return f"{v:.0f}"
    return f"{v:.1f}"


def write_report(
    sweep_dir: str | Path,
    *,
    metric: str | None = None,
    mode: str | None = None,
    curve: str | None = None,
    title: str | None = None,
    also: Sequence[str] | None = None,
    plots: bool = True,
) -> Path:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and the PNG plots into ``sweep_dir``; return report.md.

    ``metric``/``mode``: what ranks the models (default: the sweep's own setting, else the task's monitored
    metric on the test set); ``also``: more metrics shown beside it; ``curve``: the logged metric of the
    learning curves (default: the ranking metric on val).
    """
    sweep_dir = Path(sweep_dir)
    saved = _settings_from_sweep(sweep_dir)
    runs = read_runs(sweep_dir)
    default_metric, default_mode = _default_metric(runs)
    metric = metric or saved.get("metric") or default_metric
    mode = mode or saved.get("mode") or default_mode
    curve = curve or saved.get("curve") or metric.replace("test/", "val/")
    title = title or saved.get("title") or sweep_dir.name
    also = [m for m in (also if also is not None else saved.get("also") or []) if m != metric]
    if mode not in ("max", "min"):
        raise ZooError(f"mode must be max or min (how {metric} ranks models), got {mode!r}")
    for r in runs:
        if r.finished and r.stats.get("flops_per_sample") is None:
            r.stats["flops_per_sample"] = _fallback_flops(r)

    labels = _labels(runs)
    rows: dict[str, Row] = {}
    for label, r in zip(labels, runs, strict=True):
        if r.finished:
            rows.setdefault(label, Row(label, [], metric)).runs.append(r)
    ranked = sorted(rows.values(), key=lambda row: (row.mean(metric) is None,
                                                    -(row.mean(metric) or 0) if mode == "max" else (row.mean(metric) or 0)))

    columns = ["rank", "model", f"{metric} mean", "std", *also, "seeds", "params", "FLOPs/sample",
               "train time (s)", "samples/s", "peak memory (MB)", "epochs", "steps"]
    table = []
    for i, row in enumerate(ranked, 1):
        m, s = row.mean(metric), row.std(metric)
        table.append({
            "rank": i, "model": row.label, "mean": m, "std": s, "seeds": len(row.runs),
            "also": [(row.mean(k), row.std(k)) for k in also],
            "params": row.mean("params"), "flops_per_sample": row.mean("flops_per_sample"),
            "train_time_s": row.mean("train_time_s"), "samples_per_s": row.mean("samples_per_s"),
            "peak_memory_mb": row.mean("peak_memory_mb"), "epochs": row.mean("epochs"), "steps": row.mean("steps"),
        })

    with open(sweep_dir / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "model", f"{metric}_mean", f"{metric}_std",
                    *(f"{k}_{stat}" for k in also for stat in ("mean", "std")), "seeds", "params",
                    "flops_per_sample", "train_time_s", "samples_per_s", "peak_memory_mb", "epochs", "steps"])
        for t in table:
            extra = ["" if v is None else v for pair in t["also"] for v in pair]
            w.writerow([t["rank"], t["model"], *("" if t[k] is None else t[k] for k in ("mean", "std")), *extra,
                        *("" if t[k] is None else t[k] for k in (
                            "seeds", "params", "flops_per_sample", "train_time_s", "samples_per_s",
                            "peak_memory_mb", "epochs", "steps"))])
    with open(sweep_dir / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "model", "label", "seed", metric, "params", "flops_per_sample", "train_time_s",
                    "samples_per_s", "peak_memory_mb", "epochs", "steps", "status"])
        for label, r in zip(labels, runs, strict=True):
            status = "finished" if r.finished else f"failed: {r.error}" if r.error else "not finished"
            w.writerow([r.path.name, r.model, label, r.metrics.get("seed", r.overrides.get("seed", "")),
                        r.metrics.get(metric, ""), r.metrics.get("params", ""), r.stats.get("flops_per_sample", ""),
                        r.metrics.get("train_time_s", ""), r.metrics.get("samples_per_s", ""),
                        r.stats.get("peak_memory_mb", r.metrics.get("peak_memory_mb", "")),
                        r.metrics.get("epochs", ""), r.metrics.get("steps", ""), status])

    lines = [f"# {title}", "", f"Ranked by `{metric}` ({'higher' if mode == 'max' else 'lower'} is better); "
             f"mean +/- std over seeds. Budget: {_budget(runs)}.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for t in table:
        std = f"+/- {t['std']:.4f}" if t["std"] is not None else ""
        lines.append("| " + " | ".join([
            str(t["rank"]), f"`{t['model']}`", "n/a" if t["mean"] is None else f"{t['mean']:.4f}", std,
            *(_mean_std(m_, s_) for m_, s_ in t["also"]), str(t["seeds"]), _fmt(t["params"], "int"), _fmt(t["flops_per_sample"], "si"),
            _fmt(t["train_time_s"], "f"), _fmt(t["samples_per_s"], "int"), _fmt(t["peak_memory_mb"], "int"),
            _fmt(t["epochs"], "int"), _fmt(t["steps"], "int")]) + " |")
    unfinished = [(label, r) for label, r in zip(labels, runs, strict=True) if not r.finished]
    if unfinished:
        lines += ["", "Not in the table (no metrics.json): " + "; ".join(
            f"job {r.path.name} `{label}`" + (f" failed: {r.error}" if r.error else "") for label, r in unfinished)]
    lines += ["", "FLOPs: one forward pass of one sample (`torch.utils.flop_counter`: matrix multiplies and "
              "convolutions). Train time: `fit` wall time including validation; samples/s: training batches "
              "only; epochs: epochs started (a wall-clock limit can end one early: see steps). Peak memory: the process's peak resident set size during `fit` on CPU (Python, torch and "
              "the in-memory dataset included), peak allocated memory on a GPU."]
    if plots and table:
        for png in _plots(sweep_dir, ranked, metric, curve):
            lines += ["", f"![{png.stem}]({png.name})"]
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _curve(run: Run, key: str) -> tuple[list[float], list[float], str]:
    """(x, y, x name) of one logged metric from the run's csv/metrics.csv: per epoch if it is logged once an
    epoch, else per step."""
    path = run.path / "csv" / "metrics.csv"
    if not path.is_file():
        return [], [], ""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "")]
    if not rows:
        return [], [], ""
    epochs = [int(float(r["epoch"])) for r in rows if r.get("epoch") not in (None, "")]
    per_epoch = len(epochs) == len(rows) and len(set(epochs)) == len(epochs)
    if per_epoch:
        return [e + 1 for e in epochs], [float(r[key]) for r in rows], "epoch"
    return [float(r["step"]) for r in rows], [float(r[key]) for r in rows], "step"


def _plots(sweep_dir: Path, rows: list[Row], metric: str, curve: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    for x_key, x_label, name, log in (("params", "parameters", "metric_vs_params.png", True),
                                      ("train_time_s", "training wall time (s)", "metric_vs_time.png", False)):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for row in rows:
            x, y = row.mean(x_key), row.mean(metric)
            if x is None or y is None:
                continue
            ax.errorbar([x], [y], yerr=[row.std(metric) or 0], fmt="o", capsize=3, label=row.label)
            ax.annotate(row.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {x_label}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(sweep_dir / name)
        plt.close(fig)
        written.append(sweep_dir / name)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    runs = [r for row in rows for r in row.runs]
    # train/loss is logged every log_every_n_steps; runs shorter than that have the epoch means only
    train_key = "train/loss" if any(_curve(r, "train/loss")[0] for r in runs) else "train/loss_epoch"
    for ax, key in zip(axes, (train_key, curve), strict=True):
        x_name = "step"
        for i, row in enumerate(rows):
            for j, run in enumerate(row.runs):  # every seed, one colour per model
                x, y, x_name = _curve(run, key)
                if x:
                    ax.plot(x, y, color=f"C{i}", alpha=1.0 if j == 0 else 0.5, marker="." if len(x) < 20 else None,
                            label=row.label if j == 0 else None)
        ax.set_xlabel(x_name or "step")
        ax.set_ylabel(key)
        ax.set_title(f"learning curves: {key}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sweep_dir / "learning_curves.png")
    plt.close(fig)
    written.append(sweep_dir / "learning_curves.png")
    return written


class CompareReport(Callback):
    """Hydra callback: (re)write the sweep's report after every job and once all jobs are done.

    After every job, because a failed job makes Hydra raise at the end of the sweep, before
    ``on_multirun_end``; the report then still holds every finished run and names the failed ones.
    """

    def __init__(self, *, metric: str | None = None, mode: str | None = None, curve: str | None = None,
                 title: str | None = None, also: Sequence[str] | None = None) -> None:
        self.kwargs = {"metric": metric, "mode": mode, "curve": curve, "title": title,
                       "also": list(also) if also is not None else None}

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

