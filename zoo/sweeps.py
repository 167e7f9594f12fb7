"""What a report of one or more sweeps says about where its runs came from: the budget they shared, whether
sweeps run apart (seeds 0,1 one day, 2 the next) may be merged, and whose provenance differs.

Merging is refused when the sweeps ran different experiments (another ``experiment=``, data or trainer budget):
their numbers do not answer one question. Differences of provenance (another commit, torch, machine, thread
count) do not stop a merge, but the report names them, so a reader can judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.provenance import flatten_provenance
from zoo.registry import ZooError
from zoo.runs import Run, config_value, read_runs, seed_order

__all__ = ["budget", "budget_items", "check_mergeable", "experiment_identity", "provenance_lines", "read_sweeps"]

_SHOWN = 6  # runs named per differing value before "+N more"


def budget_items(runs: list[Run]) -> dict[str, str]:
    """The budget the runs shared, by key (``data``, ``trainer.max_epochs``, ...); several values joined by ``,``."""
    configs = [r.config for r in runs if r.config is not None]
    if not configs:
        return {}

    def values(key: str, skip: tuple[Any, ...] = (None,)) -> str:
        found = {str(config_value(c, key)) for c in configs if config_value(c, key) not in skip}
        return ",".join(sorted(found))

    items = {"data": values("data.dataset") or "?"}
    for key, skip in (("trainer.max_time", (None, "", 0)), ("trainer.max_epochs", (None,)),
                      ("trainer.limit_train_batches", (None, "32-true")), ("trainer.precision", (None, "32-true"))):
        if values(key, skip):
            items[key] = values(key, skip)
    return items


def budget(runs: list[Run]) -> str:
    """``data=mnist, trainer.max_epochs=2, seeds=0,1,2``: the budget line of the report."""
    parts = [f"{k}={v}" for k, v in budget_items(runs).items()]
    seeds = sorted({r.seed for r in runs if not r.seed.startswith("job ")}, key=seed_order)
    if seeds:
        parts.append(f"seeds={','.join(seeds)}")
    return ", ".join(parts)


def experiment_identity(runs: list[Run]) -> dict[str, str]:
    """What must agree between merged sweeps: the experiment's name and its budget (data, epochs, time...)."""
    names = sorted({r.overrides.get("experiment", "(none)") for r in runs})
    return {"experiment": ",".join(names), **budget_items(runs)}


def check_mergeable(sweeps: Sequence[tuple[Path, list[Run]]]) -> None:
    """Raise a ZooError naming every differing key when the sweeps ran different experiments."""
    ids = [(path, experiment_identity(runs)) for path, runs in sweeps]
    keys = sorted({k for _, ident in ids for k in ident})
    differing = [k for k in keys if len({ident.get(k) for _, ident in ids}) > 1]
    if differing:
        what = "; ".join(f"{k}: " + ", ".join(f"{ident.get(k, '(not set)')} in {path}" for path, ident in ids)
                         for k in differing)
        raise ZooError(f"these sweeps ran different experiments, so one report would mix their numbers: {what}. "
                       "Merge only sweeps of one experiment under one budget (same experiment=, data and trainer "
                       "limits), and report the others on their own (zoo compare DIR).")


def read_sweeps(sweep_dirs: Sequence[str | Path]) -> list[Run]:
    """The runs of one or more sweep folders of the same experiment, checked by :func:`check_mergeable`."""
    paths = [Path(p) for p in sweep_dirs]
    if not paths:
        raise ZooError("no sweep folder given: pass one or more folders a multirun wrote")
    if len({p.resolve() for p in paths}) < len(paths):
        raise ZooError(f"a sweep folder is named twice in {[str(p) for p in paths]}: its runs would count twice")
    sweeps = [(p, read_runs(p)) for p in paths]
    if len(sweeps) > 1:
        check_mergeable(sweeps)
    return [r for _, runs in sweeps for r in runs]


def _short(key: str, value: Any) -> str:
    return str(value)[:12] if key == "git_commit" and value else str(value)


def _who(runs: list[tuple[Run, str]], everyone: list[tuple[Run, str]], merged: bool) -> str:
    """The runs holding one value: whole sweeps by name where every run of the sweep holds it, else the runs."""
    names = []
    for sweep in dict.fromkeys(r.sweep for r, _ in runs):
        mine = [(r, label) for r, label in runs if r.sweep == sweep]
        if merged and len(mine) == sum(r.sweep == sweep for r, _ in everyone):
            names.append(f"sweep `{sweep.name}`")
        else:
            names += [f"`{label}` seed {r.seed}" + (f" (`{sweep.name}`)" if merged else "") for r, label in mine]
    return ", ".join(names[:_SHOWN]) + (f", +{len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def provenance_lines(runs: Sequence[tuple[Run, str]], *, merged: bool) -> list[str]:
    """Report lines on the finished runs' provenance: the keys whose values differ (and who holds which), what all
    share, and the runs that recorded none (trained before runs recorded it)."""
    recorded = [(r, label) for r, label in runs if r.finished and r.provenance]
    missing = [(r, label) for r, label in runs if r.finished and not r.provenance]
    lines = []
    if recorded:
        flat = [flatten_provenance(r.provenance or {}) for r, _ in recorded]
        keys = list(dict.fromkeys(k for f in flat for k in f))
        differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        if differing:
            parts = []
            for k in differing:
                holders: dict[str, tuple[Any, list[tuple[Run, str]]]] = {}
                for f, run in zip(flat, recorded, strict=True):
                    holders.setdefault(repr(f.get(k)), (f.get(k), []))[1].append(run)
                parts.append(f"`{k}`: " + "; ".join(f"{_short(k, value)} in {_who(h, recorded, merged)}"
                                                   for value, h in holders.values()))
            lines.append("**Provenance differs** between runs in " + ", ".join(f"`{k}`" for k in differing)
                         + ": " + " | ".join(parts) + ".")
        same = [k for k in keys if k not in differing]
        lines.append(("Provenance shared by every run" if not differing else "Shared by every run") + ": "
                     + ", ".join(f"{k}={_short(k, flat[0].get(k))}" for k in same) + ".")
    if missing:
        lines.append(f"No provenance recorded (trained before runs recorded it): {_who(missing, missing, merged)}.")
    return lines
