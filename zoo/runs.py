"""Comparison sweeps read back from their folders: each job a :class:`Run`, the seeds of one configuration a
:class:`Row`. Plain Python (no torch): :mod:`zoo.report` writes the report from them, :mod:`zoo.sweeps` checks
that sweeps merged into one report belong together.

A sweep folder holds one subfolder per job (``0/``, ``1/`` ...: Hydra's ``.hydra/overrides.yaml`` and config,
``metrics.json`` of a finished run, ``stats.json`` with FLOPs and peak memory, ``csv/metrics.csv`` with the
logged curves, ``error.txt`` of a failed one).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.registry import ZooError

__all__ = ["SEED_KEYS", "STATS_FILE", "Row", "Run", "config_value", "read_runs", "seed_order", "time_to_threshold"]

STATS_FILE = "stats.json"  # FLOPs and peak memory of one run, written by the training side
SEED_KEYS = ("seed",)  # overrides that repeat a configuration rather than define one


def config_value(config: dict[str, Any] | None, key: str, default: Any = None) -> Any:
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

    @property
    def sweep(self) -> Path:
        return self.path.parent

    @property
    def seed(self) -> str:
        """The seed it ran with (as text); a run that names none is its own seed, never paired with another."""
        for seed in (self.metrics.get("seed"), self.overrides.get("seed"), config_value(self.config, "seed")):
            if seed is not None:
                return str(seed)
        return f"job {self.path}"

    @property
    def provenance(self) -> dict[str, Any] | None:
        return self.metrics.get("provenance") if isinstance(self.metrics.get("provenance"), dict) else None


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def seed_order(seed: str) -> tuple[int, float, str]:
    return (0, float(seed), "") if seed.lstrip("-").isdigit() else (1, 0.0, seed)


@dataclass
class Row:
    """One configuration of the report: its runs (one per seed) aggregated."""

    label: str
    runs: list[Run]
    metric: str

    def values(self, key: str) -> list[float]:
        """``key`` once per seed (see :meth:`by_seed`): what the mean, std and statistics are over."""
        return list(self.by_seed(key).values())

    def by_seed(self, key: str) -> dict[str, float]:
        """``key`` per seed, in seed order; a seed run twice (two merged sweeps) counts once, at its mean."""
        per_seed: dict[str, list[float]] = {}
        for r in sorted(self.runs, key=lambda r: seed_order(r.seed)):
            v = _number(r.metrics.get(key, r.stats.get(key)))
            if v is not None:
                per_seed.setdefault(r.seed, []).append(v)
        return {seed: statistics.fmean(v) for seed, v in per_seed.items()}

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else None

    @property
    def seeds(self) -> list[str]:
        return sorted({r.seed for r in self.runs}, key=seed_order)


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


def settings_from_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The report settings the sweep ran with (the report callback's arguments in ``multirun.yaml``), so a
    re-run reports the same way."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    callbacks = config_value(_load_yaml(path), "hydra.callbacks") or {}
    for cb in callbacks.values():
        if isinstance(cb, dict) and str(cb.get("_target_", "")).endswith("CompareReport"):
            return {k: v for k, v in cb.items() if not k.startswith("_")}
    return {}


def labels(runs: list[Run]) -> list[str]:
    """A name per run: its model, plus whatever else varies across the sweep (seeds excepted)."""
    keys = sorted({k for r in runs for k in r.overrides})
    varying = [k for k in keys if k not in SEED_KEYS and k != "model"
               and len({r.overrides.get(k) for r in runs}) > 1]
    return [" ".join([r.model, *(f"{k}={r.overrides[k]}" for k in varying if k in r.overrides)]) for r in runs]


def default_metric(runs: list[Run]) -> tuple[str, str]:
    """The ranking metric and mode when none is set: the task's monitored metric, on the test set."""
    for r in runs:
        if config_value(r.config, "monitor.metric") is not None:
            return (str(config_value(r.config, "monitor.metric")).replace("val/", "test/"),
                    str(config_value(r.config, "monitor.mode")))
    return "test/loss", "min"


def time_to_threshold(run: Run, key: str, threshold: float, *, mode: str) -> float | None:
    """Seconds of ``fit`` until the logged ``key`` (a validation metric in ``csv/metrics.csv``) first reached
    ``threshold`` (``>=`` for ``mode="max"``, ``<=`` for ``min``); ``math.inf`` if it never did; None if the run
    logged no such curve or no train time.

    The log has steps, not times: the time is the run's ``train_time_s`` x (steps done at that validation /
    all steps), so it assumes steps of equal cost. Lightning logs a validation at the step before the next
    training step (global step - 1), hence the +1.
    """
    path = run.path / "csv" / "metrics.csv"
    total, seconds = _number(run.metrics.get("steps")), _number(run.metrics.get("train_time_s"))
    if not path.is_file() or not total or seconds is None:
        return None
    with open(path, newline="") as f:
        points = sorted((float(r["step"]), float(r[key])) for r in csv.DictReader(f)
                        if r.get(key) not in (None, "") and r.get("step") not in (None, ""))
    if not points:
        return None
    for step, value in points:
        if (value >= threshold) if mode == "max" else (value <= threshold):
            return seconds * min(1.0, (step + 1) / total)
    return math.inf
