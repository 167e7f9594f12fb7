"""Hyperparameter search with Hydra's sweepers: the value a run returns, and the best trial of a sweep.

``python train.py hparams_search=mnist_optuna`` (conf/hparams_search/, the ``search`` extra) runs Hydra's Optuna
sweeper: each trial is one run of ``train.py`` with the parameters Optuna proposes, and ``train.py`` returns
:func:`objective`, the run's ``optimized_metric`` (a validation metric: the test set stays out of the choice),
for the sweeper to minimise or maximise. At the end the sweeper writes ``optimization_results.yaml`` (the best
parameters and value) into the sweep folder, and :class:`BestTrial` writes ``best_trial.yaml`` beside it: the
best trial's run folder, its overrides and the command that runs it again.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tasks.signatures import ConfigError

RESULTS_FILE = "best_trial.yaml"


def objective(cfg: DictConfig, metrics: Mapping[str, Any]) -> float | None:
    """The value of ``cfg.optimized_metric`` in a run's metrics (None when no metric is named)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if not isinstance(metrics.get(name), (int, float)):
        found = ", ".join(k for k, v in metrics.items() if "/" in k and isinstance(v, (int, float)))
        raise ConfigError(f"optimized_metric={name!r} is not among this run's metrics ({found}). Name one of "
                          "them; a val/ metric needs validation (data.val_size > 0, trainer.limit_val_batches > 0).")
    return float(metrics[name])


def _direction(config: DictConfig) -> str:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
    return str(getattr(direction, "name", direction))  # the Optuna sweeper's config may hold its enum


def best_trial(sweep_dir: Path, *, metric: str, direction: str) -> dict[str, Any] | None:
    """The best finished job of a sweep folder by ``metric`` in its ``metrics.json``: its folder, value and
    overrides, and the command that runs it again (``hydra.mode=RUN``: one run, not another search)."""
    trials = []
    for job in sorted(p for p in sweep_dir.iterdir() if (p / "metrics.json").is_file()):
        value = json.loads((job / "metrics.json").read_text()).get(metric)
        if isinstance(value, (int, float)):
            trials.append((float(value), job))
    if not trials:
        return None
    value, job = (max if direction == "maximize" else min)(trials, key=lambda t: t[0])
    saved = job / ".hydra" / "overrides.yaml"
    overrides = list(yaml.safe_load(saved.read_text()) or []) if saved.is_file() else []
    return {"metric": metric, "direction": direction, "value": value, "trials": len(trials), "run_dir": str(job),
            "overrides": overrides,
            "command": shlex.join(["python", "train.py", *overrides, "hydra.mode=RUN"])}


class BestTrial(Callback):
    """Hydra callback: after a sweep, print the best trial and write it to ``best_trial.yaml`` in the sweep folder.

    Reads the jobs' ``metrics.json`` files, so it works with any sweeper and launcher, and names the trial's
    run folder, which the Optuna sweeper's own ``optimization_results.yaml`` (parameters and value) does not.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        metric = config.get("optimized_metric")
        sweep = Path(config.hydra.sweep.dir)
        if not metric or not sweep.is_dir():
            return
        best = best_trial(sweep, metric=metric, direction=_direction(config))
        if best is None:
            print(f"[search] no finished trial in {sweep} reports {metric}", flush=True)
            return
        (sweep / RESULTS_FILE).write_text(yaml.safe_dump(best, sort_keys=False))
        optuna = sweep / "optimization_results.yaml"  # the Optuna sweeper's, written before this callback runs
        also = f" and {optuna}" if optuna.is_file() else ""
        print(f"[search] best of {best['trials']} trials: {metric}={best['value']:.4f} in {best['run_dir']}\n"
              f"[search] written to {sweep / RESULTS_FILE}{also}; run it again with:\n  {best['command']}",
              flush=True)
