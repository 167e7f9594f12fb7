"""The words the library and the training application share: data modalities and task kinds.

One list each. The registry checks every model's metadata against them, the selection tree routes on
them, and every training task of the application declares which kinds it trains in these words, so a
new modality or task kind is added here once and every table that needs it reads it from here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TASK", "GENERATIVE_TASKS", "MODALITIES", "TASKS", "TASK_ALIASES", "check_task_kinds"]

# modality -> what it is
MODALITIES: dict[str, str] = {
    "image": "pixels: (C, H, W) tensors",
    "text": "token ids: (T,) sequences from a tokenizer",
    "speech": "audio: log-mel spectrogram frames",
    "timeseries": "real-valued feature vectors over time: (T, F)",
    "tabular": "one row of numeric and categorical features",
}

# task kind -> what a model of that kind learns
TASKS: dict[str, str] = {
    "classify": "one label per input",
    "regress": "one real number per input",
    "lm": "the next token (a language model)",
    "seq2seq": "an output sequence from an input sequence (translation)",
    "forecast": "the next steps of a time series",
    "embed": "vectors for tokens (word2vec)",
    "reconstruct": "its own input through a bottleneck",
    "denoise": "the clean input from a corrupted one",
    "generate": "new samples like the training data",
    "mlm": "masked tokens from their context (BERT's pretraining)",
}

# The task a modality is asked for when nobody says: the decision tree's default question.
DEFAULT_TASK: dict[str, str] = {"image": "classify", "text": "classify", "speech": "classify",
                                "timeseries": "forecast", "tabular": "classify"}
# Tasks that make images rather than labels: the tree's "generation" branch, and any image data serves them.
GENERATIVE_TASKS: tuple[str, ...] = ("generate", "reconstruct", "denoise")
# Other words users type for a task kind.
TASK_ALIASES: dict[str, str] = {"translate": "seq2seq", "translation": "seq2seq", "classification": "classify",
                                "regression": "regress", "language_model": "lm", "forecasting": "forecast",
                                "generation": "generate", "reconstruction": "reconstruct",
                                "denoising": "denoise", "embedding": "embed",
                                "masked_lm": "mlm", "pretrain": "mlm"}


def check_task_kinds(kinds: tuple[str, ...], *, owner: str) -> tuple[str, ...]:
    """``kinds`` if each is a known task kind, else a ``ValueError`` naming ``owner`` and the known kinds."""
    bad = [k for k in kinds if k not in TASKS]
    if bad or not kinds:
        raise ValueError(f"{owner}: task kinds must be one or more of {', '.join(TASKS)}; got {kinds!r}")
    return kinds
