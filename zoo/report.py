"""The report of a comparison sweep, read from its folder: which model won, at what cost. Plain Python.

A sweep folder holds one subfolder per job (``0/``, ``1/`` ...: Hydra's ``.hydra/overrides.yaml`` and
config, ``metrics.json`` of a finished run, ``stats.json`` with FLOPs and peak memory, ``error.txt`` of a
failed one). :func:`write_report` writes, into the sweep folder:

- ``report.md`` and ``report.csv``: one row per model, ranked by the test metric (mean +/- std over
  seeds), with parameters, FLOPs per sample, training wall time, samples/s and peak memory;
  ``runs.csv``: one row per job;
- ``metric_vs_params.png``, ``metric_vs_time.png``, ``learning_curves.png`` (:mod:`zoo.plots`).

``zoo compare SWEEP_DIR`` calls it; so does the training side after every job of a comparison sweep.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from zoo.registry import ZooError

__all__ = ["STATS_FILE", "Row", "Run", "forward_flops", "read_runs", "write_report"]

STATS_FILE = "stats.json"  # FLOPs and peak memory of one run, written by the training side
SEED_KEYS = ("seed",)  # overrides that repeat a configuration rather than define one


def forward_flops(model: torch.nn.Module, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> int:
    """FLOPs of one forward pass (eval mode, no grad), counted by ``torch.utils.flop_counter.FlopCounterMode``
    (matrix multiplies and convolutions, 2 per multiply-add; element-wise operations are not counted).

    Attention is counted under the math backend of ``F.scaled_dot_product_attention``: the counter has no
    formula for the fused CPU kernel and counted it as 0 (vit_tiny: 231.2 MFLOPs instead of 250.7), while
    the math backend's QK^T and AV products are ordinary matrix multiplies, so every device counts the same.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(*args, **(kwargs or {}))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def _get(config: dict[str, Any] | None, key: str, default: Any = None) -> Any:
    """``config["a"]["b"]`` for ``key="a.b"``, following a value that is a whole ``${other.key}`` reference
    (Hydra saves ``.hydra/config.yaml`` unresolved)."""
    value: Any = config
    for _ in range(8):  # references to references, but never a cycle
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not (isinstance(value, str) and value.startswith("${") and value.endswith("}") and config):
            break
        key, value = value[2:-1], config
    return default if value is None else value


@dataclass
class Run:
    """One job of a sweep, read back from its folder."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
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


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _read_overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    items = (_load_yaml(path) or []) if path.is_file() else []
    return dict(str(o).lstrip("+~").split("=", 1) for o in items if "=" in str(o))


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
                run.config = _load_yaml(job / name)
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
        if _get(r.config, "monitor.metric") is not None:
            return str(_get(r.config, "monitor.metric")).replace("val/", "test/"), str(_get(r.config, "monitor.mode"))
    return "test/loss", "min"


def _settings_from_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The report settings the sweep ran with (the report callback's arguments in ``multirun.yaml``), so a
    re-run reports the same way."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    callbacks = _get(_load_yaml(path), "hydra.callbacks") or {}
    for cb in callbacks.values():
        if isinstance(cb, dict) and str(cb.get("_target_", "")).endswith("CompareReport"):
            return {k: v for k, v in cb.items() if not k.startswith("_")}
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
    parts = [f"data={_get(cfg, 'data.dataset', '?')}"]
    if _get(cfg, "trainer.max_time"):
        parts.append(f"trainer.max_time={_get(cfg, 'trainer.max_time')}")
    if _get(cfg, "trainer.max_epochs") is not None:
        parts.append(f"trainer.max_epochs={_get(cfg, 'trainer.max_epochs')}")
    for k in ("limit_train_batches", "precision"):
        if _get(cfg, f"trainer.{k}") not in (None, "32-true"):
            parts.append(f"trainer.{k}={_get(cfg, f'trainer.{k}')}")
    seeds = sorted({str(r.metrics.get("seed", r.overrides.get("seed", _get(cfg, "seed")))) for r in runs})
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


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _write_csvs(sweep_dir: Path, table: list[dict[str, Any]], runs: list[Run], labels: list[str], metric: str,
                also: list[str]) -> None:
    with open(sweep_dir / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "model", f"{metric}_mean", f"{metric}_std",
                    *(f"{k}_{stat}" for k in also for stat in ("mean", "std")), "seeds", "params",
                    "flops_per_sample", "train_time_s", "samples_per_s", "peak_memory_mb", "epochs", "steps"])
        for t in table:
            extra = [_blank(v) for pair in t["also"] for v in pair]
            w.writerow([t["rank"], t["model"], _blank(t["mean"]), _blank(t["std"]), *extra,
                        *(_blank(t[k]) for k in ("seeds", "params", "flops_per_sample", "train_time_s",
                                                 "samples_per_s", "peak_memory_mb", "epochs", "steps"))])
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
        table.append({
            "rank": i, "model": row.label, "mean": row.mean(metric), "std": row.std(metric), "seeds": len(row.runs),
            "also": [(row.mean(k), row.std(k)) for k in also],
            "params": row.mean("params"), "flops_per_sample": row.mean("flops_per_sample"),
            "train_time_s": row.mean("train_time_s"), "samples_per_s": row.mean("samples_per_s"),
            "peak_memory_mb": row.mean("peak_memory_mb"), "epochs": row.mean("epochs"), "steps": row.mean("steps"),
        })
    _write_csvs(sweep_dir, table, runs, labels, metric, also)

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
        from zoo.plots import plot_sweep  # matplotlib: only when plots are asked for

        for png in plot_sweep(sweep_dir, ranked, metric=metric, curve=curve):
            lines += ["", f"![{png.stem}]({png.name})"]
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
