"""Lightning DataModules over real datasets, read from a local data root (default: $ZOO_DATA_DIR)."""

from tasks.data.char_lm import CharLMDataModule
from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader
from tasks.data.skipgram import SkipGramDataModule
from tasks.data.text_classification import TextClassificationDataModule
from tasks.data.timeseries import ForecastingDataModule
from tasks.data.translation import TranslationDataModule
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
