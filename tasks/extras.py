"""Optional packages: which extra of pyproject.toml brings each, and one clear line when one is missing.

The trackers (``logger=wandb``, ``logger=mlflow``) and the Optuna sweeper (``hparams_search=...``) are large and
not needed to train, so they are extras (``pip install 'dnn-zoo[track]'``, ``'dnn-zoo[search]'``), not
dependencies. Without one, Lightning would fail when the logger is built (after the data is read) and Hydra
with "Could not load 'hydra/sweeper/optuna'"; the checks here name the pip command instead, before anything
starts. Imports nothing heavy: ``train.py`` runs :func:`require` before Hydra composes the config.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import NamedTuple

from tasks.signatures import ConfigError


class Extra(NamedTuple):
    """An optional package: its import name, its pip name and the pyproject extra that installs it."""

    module: str
    package: str
    extra: str


WANDB = Extra("wandb", "wandb", "track")
MLFLOW = Extra("mlflow", "mlflow-skinny", "track")  # the tracking client and its local store; no server or UI
OPTUNA_SWEEPER = Extra("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper", "search")

# a config entry's _target_ -> the package it cannot be built without
TARGETS: dict[str, Extra] = {
    "lightning.pytorch.loggers.WandbLogger": WANDB,
    "lightning.pytorch.loggers.wandb.WandbLogger": WANDB,
    "lightning.pytorch.loggers.MLFlowLogger": MLFLOW,
    "lightning.pytorch.loggers.mlflow.MLFlowLogger": MLFLOW,
    "tasks.loggers.MLFlowLogger": MLFLOW,
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``sys.modules[name] = None`` blocks one)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or blocked
        return False


def require(extra: Extra, *, what: str) -> None:
    """Raise :class:`ConfigError` naming the pip command when ``extra`` is not installed; ``what`` asked for it."""
    if not installed(extra.module):
        raise ConfigError(f"{what} needs the {extra.package} package, which is not installed: "
                          f"pip install 'dnn-zoo[{extra.extra}]' (or pip install {extra.package}).")


def require_for_target(key: str, target: str) -> None:
    """A config entry (``logger.wandb``) whose ``_target_`` needs an optional package has it installed."""
    extra = TARGETS.get(target)
    if extra is not None:
        group, _, name = key.partition(".")
        require(extra, what=f"{group}={name}" if name else key)
