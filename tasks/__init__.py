"""Lightning training systems for the zoo's models. ``zoo`` never imports this package.

The task classes are imported on first access (PEP 562): Hydra's ``_target_: tasks.ClassificationTask``
imports ``tasks.classification`` alone, and ``import tasks.cli_checks`` (train.py, before the config is
composed) imports no Lightning at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from tasks.base import ZooTask
    from tasks.classification import ClassificationTask
    from tasks.forecasting import ForecastingTask
    from tasks.generative import DiffusionTask, GANTask, ReconstructionTask, VAETask
    from tasks.language_model import LanguageModelTask
    from tasks.regression import RegressionTask
    from tasks.seq2seq import Seq2SeqTask
    from tasks.word2vec import Word2VecTask

# name -> the module that defines it
_LAZY_NAMES = {
    "ClassificationTask": "tasks.classification",
    "ForecastingTask": "tasks.forecasting",
    "GANTask": "tasks.generative",
    "LanguageModelTask": "tasks.language_model",
    "ReconstructionTask": "tasks.generative",
    "RegressionTask": "tasks.regression",
    "Seq2SeqTask": "tasks.seq2seq",
    "VAETask": "tasks.generative",
    "Word2VecTask": "tasks.word2vec",
    "ZooTask": "tasks.base",
    "DiffusionTask": "tasks.generative",
}
__all__ = [
    "ClassificationTask",
    "ForecastingTask",
    "GANTask",
    "LanguageModelTask",
    "ReconstructionTask",
    "RegressionTask",
    "Seq2SeqTask",
    "VAETask",
    "Word2VecTask",
    "ZooTask",
    "DiffusionTask",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:  # AttributeError, so that `from tasks import frechet` imports the submodule
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
