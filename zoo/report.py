"""The report of one comparison sweep, or of several merged: which model won, by how much, at what cost.
Plain Python (no Lightning, no Hydra).

:func:`write_report` reads the job folders (:mod:`zoo.runs`) and writes, into the sweep folder (or ``out``):

- ``report.md`` and ``report.csv``: one row per model, ranked by the test metric's mean over seeds, with its
  standard deviation, 95% confidence interval (Student t, :mod:`zoo.stats`), a paired t-test against the best
  row, the time to reach a validation threshold, parameters, FLOPs per sample, training wall time,
  samples/s and peak memory; the budget and the runs' provenance (:mod:`zoo.sweeps`); ``runs.csv``: one row
  per job;
- ``metric_vs_params.png``, ``metric_vs_time.png``, ``learning_curves.png`` (:mod:`zoo.plots`).

``zoo compare SWEEP_DIR [SWEEP_DIR ...]`` calls it; so does the training side after every job of a sweep.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo.registry import ZooError
from zoo.runs import (
    STATS_FILE,
    Row,
    Run,
    default_metric,
    labels,
    read_runs,
    seed_order,
    settings_from_sweep,
    time_to_threshold,
)
from zoo.stats import mean_ci, paired_t_test
from zoo.sweeps import budget, provenance_lines, read_sweeps

__all__ = ["ALPHA", "STATS_FILE", "Row", "Run", "forward_flops", "read_runs", "write_report"]

ALPHA = 0.05  # significance level of the paired t-test against the best row


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


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _vs_best(row: Row, best: Row, metric: str, mode: str) -> tuple[str, str, float | None]:
    """(cell, word, p) of the two-sided paired t-test of ``row`` against ``best`` over the seeds both ran."""
    if row is best:
        return "best", "best", None
    mine, theirs = row.by_seed(metric), best.by_seed(metric)
    shared = [s for s in mine if s in theirs]
    test = paired_t_test([mine[s] for s in shared], [theirs[s] for s in shared])
    if test is None:
        return f"n/a ({len(shared)} shared seed{'s' * (len(shared) != 1)})", "n/a", None
    if not test.significant(ALPHA):
        return f"tied ({_p(test.p)})", "tied", test.p
    if (test.mean_diff < 0) == (mode == "max"):
        return f"worse ({_p(test.p)})", "worse", test.p
    return f"better on shared seeds ({_p(test.p)})", "better", test.p  # below by its mean over all seeds


def _time_to(row: Row, key: str, threshold: float, mode: str) -> tuple[str, float | None, str]:
    """(cell, mean seconds over the runs that reached it, "reached/runs with the curve")."""
    times = [t for r in row.runs if (t := time_to_threshold(r, key, threshold, mode=mode)) is not None]
    reached = [t for t in times if math.isfinite(t)]
    if not times:
        return "n/a (no curve)", None, ""
    if not reached:
        return "not reached", None, f"0/{len(times)}"
    mean = statistics.fmean(reached)
    some = f" ({len(reached)}/{len(times)} seeds)" if len(reached) < len(times) else ""
    return f"{mean:.1f}{some}", mean, f"{len(reached)}/{len(times)}"


def _write_csvs(out: Path, table: list[dict[str, Any]], runs: list[Run], names: list[str], metric: str,
                also: list[str]) -> None:
    later = ("seeds", "params", "flops_per_sample", "train_time_s", "samples_per_s", "peak_memory_mb", "epochs",
             "steps", "ci95_low", "ci95_high", "vs_best", "p_vs_best", "time_to_threshold_s", "threshold_reached")
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "model", f"{metric}_mean", f"{metric}_std",
                    *(f"{k}_{stat}" for k in also for stat in ("mean", "std")),
                    *(f"{metric}_{k}" if k.startswith("ci95") else k for k in later)])
        for t in table:
            extra = [_blank(v) for pair in t["also"] for v in pair]
            w.writerow([t["rank"], t["model"], _blank(t["mean"]), _blank(t["std"]), *extra,
                        *(_blank(t[k]) for k in later)])
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "model", "label", "seed", metric, "params", "flops_per_sample", "train_time_s",
                    "samples_per_s", "peak_memory_mb", "epochs", "steps", "status", "sweep", "git_commit"])
        for label, r in zip(names, runs, strict=True):
            status = "finished" if r.finished else f"failed: {r.error}" if r.error else "not finished"
            w.writerow([r.path.name, r.model, label, r.metrics.get("seed", r.overrides.get("seed", "")),
                        r.metrics.get(metric, ""), r.metrics.get("params", ""), r.stats.get("flops_per_sample", ""),
                        r.metrics.get("train_time_s", ""), r.metrics.get("samples_per_s", ""),
                        r.stats.get("peak_memory_mb", r.metrics.get("peak_memory_mb", "")),
                        r.metrics.get("epochs", ""), r.metrics.get("steps", ""), status, r.sweep.name,
                        _blank((r.provenance or {}).get("git_commit"))])


def _table(ranked: list[Row], *, metric: str, mode: str, also: list[str], threshold: float | None,
           threshold_metric: str) -> list[dict[str, Any]]:
    table = []
    for i, row in enumerate(ranked, 1):
        ci = mean_ci(row.values(metric))
        vs_cell, vs_word, p = _vs_best(row, ranked[0], metric, mode)
        time_cell, time_s, reached = (_time_to(row, threshold_metric, threshold, mode) if threshold is not None
                                      else ("", None, ""))
        table.append({
            "rank": i, "model": row.label, "mean": row.mean(metric), "std": row.std(metric),
            "seeds": len(row.seeds), "also": [(row.mean(k), row.std(k)) for k in also],
            "ci95_low": ci[0] if ci else None, "ci95_high": ci[1] if ci else None,
            "vs_best": vs_word, "vs_best_cell": vs_cell, "p_vs_best": p,
            "time_to_threshold_s": time_s, "time_cell": time_cell, "threshold_reached": reached,
            **{k: row.mean(k) for k in ("params", "flops_per_sample", "train_time_s", "samples_per_s",
                                        "peak_memory_mb", "epochs", "steps")},
        })
    return table


def write_report(
    sweep_dir: str | Path | Sequence[str | Path],
    *,
    out: str | Path | None = None,
    metric: str | None = None,
    mode: str | None = None,
    curve: str | None = None,
    title: str | None = None,
    also: Sequence[str] | None = None,
    threshold: float | None = None,
    threshold_metric: str | None = None,
    plots: bool = True,
) -> Path:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and the PNG plots into ``out`` (default: the first sweep
    folder); return report.md.

    ``sweep_dir``: one sweep folder, or several of the same experiment (seeds run on different days) merged
    into one report; sweeps of different experiments are refused (:func:`zoo.sweeps.check_mergeable`).
    ``metric``/``mode``: what ranks the models (default: the first sweep's own setting, else the task's
    monitored metric on the test set); ``also``: more metrics shown beside it; ``curve``: the logged metric
    of the learning curves (default: the ranking metric on val); ``threshold``: adds the column "time to
    reach it" of ``threshold_metric`` (default: the ranking metric on val), crossed in ``mode``'s direction.
    """
    sweeps = [Path(sweep_dir)] if isinstance(sweep_dir, (str, Path)) else [Path(p) for p in sweep_dir]
    runs = read_sweeps(sweeps)
    out = Path(out) if out is not None else sweeps[0]
    out.mkdir(parents=True, exist_ok=True)
    saved = settings_from_sweep(sweeps[0])
    default = default_metric(runs)
    metric = metric or saved.get("metric") or default[0]
    mode = mode or saved.get("mode") or default[1]
    curve = curve or saved.get("curve") or metric.replace("test/", "val/")
    title = title or saved.get("title") or out.name
    also = [m for m in (also if also is not None else saved.get("also") or []) if m != metric]
    threshold = threshold if threshold is not None else saved.get("threshold")
    threshold_metric = threshold_metric or saved.get("threshold_metric") or metric.replace("test/", "val/")
    if mode not in ("max", "min"):
        raise ZooError(f"mode must be max or min (how {metric} ranks models), got {mode!r}")
    for r in runs:
        if r.finished and r.stats.get("flops_per_sample") is None:
            r.stats["flops_per_sample"] = _fallback_flops(r)

    names = labels(runs)
    rows: dict[str, Row] = {}
    for label, r in zip(names, runs, strict=True):
        if r.finished:
            rows.setdefault(label, Row(label, [], metric)).runs.append(r)
    ranked = sorted(rows.values(), key=lambda row: (row.mean(metric) is None,
                                                    -(row.mean(metric) or 0) if mode == "max" else (row.mean(metric) or 0)))
    table = _table(ranked, metric=metric, mode=mode, also=also, threshold=threshold, threshold_metric=threshold_metric)
    _write_csvs(out, table, runs, names, metric, also)

    op = ">=" if mode == "max" else "<="
    reach = [f"time to {threshold_metric} {op} {threshold:g} (s)"] if threshold is not None else []
    columns = ["rank", "model", f"{metric} mean", "std", "95% CI", "vs best", *also, "seeds", *reach, "params",
               "FLOPs/sample", "train time (s)", "samples/s", "peak memory (MB)", "epochs", "steps"]
    lines = [f"# {title}", "", f"Ranked by `{metric}` ({'higher' if mode == 'max' else 'lower'} is better): mean, "
             "standard deviation and 95% confidence interval of the mean over seeds (Student t, seeds - 1 degrees "
             f"of freedom). **vs best**: a two-sided paired t-test against the best row over the seeds both ran, "
             f"alpha {ALPHA}; `tied` rows are not significantly different from the best; n/a with fewer than 2 "
             f"shared seeds. Budget: {budget(runs)}.", ""]
    if threshold is not None:
        lines += [f"**Time to {threshold_metric} {op} {threshold:g}**: seconds of `fit` until the first validation "
                  "that reached it, estimated as train time x (steps done / all steps); the mean over the seeds "
                  "that reached it (how many, if not all).", ""]
    if len(sweeps) > 1:
        lines += ["Merged from " + ", ".join(f"`{p}` (seeds {','.join(sorted({r.seed for r in runs if r.sweep == p}, key=seed_order))})"
                                             for p in sweeps) + ".", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for t in table:
        ci = f"[{t['ci95_low']:.4f}, {t['ci95_high']:.4f}]" if t["ci95_low"] is not None else "n/a"
        lines.append("| " + " | ".join([
            str(t["rank"]), f"`{t['model']}`", "n/a" if t["mean"] is None else f"{t['mean']:.4f}",
            f"+/- {t['std']:.4f}" if t["std"] is not None else "", ci, t["vs_best_cell"],
            *(_mean_std(m_, s_) for m_, s_ in t["also"]), str(t["seeds"]), *([t["time_cell"]] if reach else []),
            _fmt(t["params"], "int"), _fmt(t["flops_per_sample"], "si"), _fmt(t["train_time_s"], "f"),
            _fmt(t["samples_per_s"], "int"), _fmt(t["peak_memory_mb"], "int"), _fmt(t["epochs"], "int"),
            _fmt(t["steps"], "int")]) + " |")
    unfinished = [(label, r) for label, r in zip(names, runs, strict=True) if not r.finished]
    if unfinished:
        lines += ["", "Not in the table (no metrics.json): " + "; ".join(
            f"job {r.path.name} `{label}`" + (f" failed: {r.error}" if r.error else "") for label, r in unfinished)]
    twice = [f"`{row.label}` seed {s}" for row in ranked for s in row.seeds if sum(r.seed == s for r in row.runs) > 1]
    if twice:
        lines += ["", "Run more than once (their mean counts as the seed's one value): " + ", ".join(twice) + "."]
    for line in provenance_lines(list(zip(runs, names, strict=True)), merged=len(sweeps) > 1):
        lines += ["", line]
    lines += ["", "FLOPs: one forward pass of one sample (`torch.utils.flop_counter`: matrix multiplies and "
              "convolutions). Train time: `fit` wall time including validation; samples/s: training batches "
              "only; epochs: epochs started (a wall-clock limit can end one early: see steps). Peak memory: the "
              "process's peak resident set size during `fit` on CPU (Python, torch and the in-memory dataset "
              "included), peak allocated memory on a GPU."]
    if plots and table:
        from zoo.plots import plot_sweep  # matplotlib: only when plots are asked for

        for png in plot_sweep(out, ranked, metric=metric, curve=curve):
            lines += ["", f"![{png.stem}]({png.name})"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
