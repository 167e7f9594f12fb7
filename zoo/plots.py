"""The figures of a comparison sweep's report (the metric against size and time, and the learning curves), and
the learning curves of one run.

matplotlib is imported when a figure is drawn, not with ``zoo``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from zoo.runs import Row, Run

__all__ = ["plot_learning_curves", "plot_sweep"]


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _series(rows: list[dict[str, str]], key: str, *, per_epoch: bool = True) -> tuple[list[float], list[float], str]:
    """(x, y, x name) of one logged metric of a metrics.csv: per epoch if it is logged once an epoch (and
    ``per_epoch``), else per step."""
    rows = [r for r in rows if r.get(key) not in (None, "")]
    if not rows:
        return [], [], ""
    epochs = [int(float(r["epoch"])) for r in rows if r.get("epoch") not in (None, "")]
    if per_epoch and len(epochs) == len(rows) and len(set(epochs)) == len(epochs):
        return [e + 1 for e in epochs], [float(r[key]) for r in rows], "epoch"
    return [float(r["step"]) for r in rows], [float(r[key]) for r in rows], "step"


def _curve(run: Run, key: str) -> tuple[list[float], list[float], str]:
    """(x, y, x name) of one logged metric from the run's csv/metrics.csv (see :func:`_series`)."""
    return _series(_read(run.path / "csv" / "metrics.csv"), key)


def plot_learning_curves(metrics_csv: str | Path) -> Figure:
    """The learning curves of one run from its ``metrics.csv`` (Lightning's CSVLogger: a run's csv/metrics.csv),
    against the training step: the losses (``train/loss``, or its epoch means, and ``val/loss``) in one panel,
    every other validation metric (``val/acc``, ``val/bleu``, ...) in a second when there are any."""
    from matplotlib.figure import Figure

    from zoo.registry import ZooError

    rows = _read(Path(metrics_csv))
    keys = list(rows[0]) if rows else []
    train = next((k for k in ("train/loss", "train/loss_epoch") if _series(rows, k)[0]), None)
    losses = [k for k in (train, "val/loss") if k and _series(rows, k)[0]]
    others = sorted(k for k in keys if k.startswith("val/") and k != "val/loss" and _series(rows, k)[0])
    if not losses and not others:
        raise ZooError(f"{metrics_csv} holds no train/ or val/ metric to draw (columns: {', '.join(keys) or 'none'}): "
                       "a learning curve needs a run that trained and logged with the CSV logger.")
    panels = [p for p in (losses, others) if p]
    fig = Figure(figsize=(5.5 * len(panels), 4), dpi=110, layout="constrained")
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for key in panel:
            x, y, _ = _series(rows, key, per_epoch=False)  # one x axis for metrics logged per step and per epoch
            ax.plot(x, y, marker="." if len(x) < 30 else None, label=key)
        ax.set_xlabel("step")
        ax.set_title("losses" if panel is losses else "validation metrics", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_sweep(sweep_dir: Path, rows: list[Row], *, metric: str, curve: str) -> list[Path]:
    """Write ``metric_vs_params.png``, ``metric_vs_time.png`` and ``learning_curves.png`` (training loss and
    ``curve``, every seed, one colour per row) into ``sweep_dir``; return their paths."""
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
