"""Text datasets held in memory as padded id tensors: classification, character LM, translation, skip-gram.

One module a job: ``text_sources`` (remote files, checksums, readers), ``text_base`` (the shared
DataModule base), ``text_classification``, ``char_lm``, ``translation``, ``skipgram``. This module
gathers their DataModules under one name.

Batch formats, as the tasks see them (after ``on_after_batch_transfer``):

- classification: ``((tokens (B, T) long, padding_mask (B, T) bool, True = pad), labels (B,))``
- language model: ``(inputs (B, T), targets (B, T))``, targets shifted by one
- translation:    ``(src (B, S), tgt (B, T) = <bos> ... <eos> <pad>..., index (B,))``; ``index`` looks
  up the raw reference sentence for BLEU
- skip-gram:      ``(center (B,), context (B,), negatives (B, K))``
"""

from tasks.data.char_lm import CharLMDataModule, RandomWindowLoader
from tasks.data.skipgram import SkipGramDataModule
from tasks.data.text_classification import TextClassificationDataModule
from tasks.data.translation import TranslationDataModule

__all__ = [
    "CharLMDataModule",
    "RandomWindowLoader",
    "SkipGramDataModule",
    "TextClassificationDataModule",
    "TranslationDataModule",
]
