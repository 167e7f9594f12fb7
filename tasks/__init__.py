"""Lightning training systems for the zoo's models. ``zoo`` never imports this package."""

from tasks.base import ZooTask
from tasks.classification import ClassificationTask
from tasks.forecasting import ForecastingTask
from tasks.generative import GANTask, ReconstructionTask, VAETask
from tasks.language_model import LanguageModelTask
from tasks.seq2seq import Seq2SeqTask
from tasks.word2vec import Word2VecTask

__all__ = [
    "ClassificationTask",
    "ForecastingTask",
    "GANTask",
    "LanguageModelTask",
    "ReconstructionTask",
    "Seq2SeqTask",
    "VAETask",
    "Word2VecTask",
    "ZooTask",
]
