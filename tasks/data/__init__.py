"""Lightning DataModules over real datasets, read from a local data root (default: $ZOO_DATA_DIR)."""

from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader
from tasks.data.text import (
    CharLMDataModule,
    SkipGramDataModule,
    TextClassificationDataModule,
    TranslationDataModule,
)
from tasks.data.timeseries import ForecastingDataModule
from tasks.data.vision import VisionDataModule

__all__ = [
    "CharLMDataModule",
    "DataError",
    "ForecastingDataModule",
    "SkipGramDataModule",
    "TensorBatchLoader",
    "TextClassificationDataModule",
    "TranslationDataModule",
    "VisionDataModule",
]
