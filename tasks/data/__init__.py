"""Lightning DataModules over real datasets, read from a local data root (default: $ZOO_DATA_DIR)."""

# Imported on first access (PEP 562): `_target_: tasks.data.VisionDataModule` imports vision.py alone.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.data.char_lm import CharLMDataModule
    from tasks.data.integrity import DataError
    from tasks.data.loader import TensorBatchLoader
    from tasks.data.skipgram import SkipGramDataModule
    from tasks.data.tabular import TabularDataModule
    from tasks.data.text_classification import TextClassificationDataModule
    from tasks.data.timeseries import ForecastingDataModule
    from tasks.data.translation import TranslationDataModule
    from tasks.data.vision import VisionDataModule

_LAZY_NAMES = {"CharLMDataModule": "char_lm", "DataError": "integrity", "ForecastingDataModule": "timeseries",
               "SkipGramDataModule": "skipgram", "TensorBatchLoader": "loader",
               "TabularDataModule": "tabular",
               "TextClassificationDataModule": "text_classification", "TranslationDataModule": "translation",
               "VisionDataModule": "vision"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:  # AttributeError, so that `from tasks.data import fetch` imports the submodule
        raise AttributeError(f"module 'tasks.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tasks.data.{_LAZY_NAMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CharLMDataModule",
    "DataError",
    "ForecastingDataModule",
    "SkipGramDataModule",
    "TabularDataModule",
    "TensorBatchLoader",
    "TextClassificationDataModule",
    "TranslationDataModule",
    "VisionDataModule",
]
