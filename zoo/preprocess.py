"""Raw inputs -> model inputs, from the input contract a trained model carries (``model.zoo_preprocessing``).

The training data module states the contract (``preprocessing()``) and it is saved with the model, in the
run's checkpoints and in :func:`zoo.save_pretrained` folders, as JSON-able data:

- images: ``{"kind": "image", "in_chans": 1, "img_size": 28, "mean": [...], "std": [...], "classes": [...]}``;
  a file is decoded (PIL), converted to grayscale or RGB, resized, scaled to [0, 1] and normalised, exactly
  as the data module fed the model in training;
- text: ``{"kind": "text", "tokenizer": {"type": "chars", "chars": [...]} or {"type": "hf", "json": "..."},
  "max_len": 64, "pad_id": 0, "bos_id": 2, "eos_id": 3, "classes": [...]}`` (ids and classes when the task
  has them); ``"hf"`` is a Hugging Face ``tokenizers`` tokenizer serialised by its own ``to_str()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.registry import ZooError

__all__ = ["CharTokenizer", "load_image", "load_images", "load_tokenizer", "require"]


def require(preprocessing: dict[str, Any] | None, kind: str, *, source: str = "the model") -> dict[str, Any]:
    """``preprocessing`` if it describes ``kind`` inputs, else a ZooError saying what is missing."""
    if not preprocessing:
        raise ZooError(f"{source} carries no preprocessing (no input contract was saved with it: trained before "
                       "preprocessing travelled with models, or by a data module that states none). Retrain it, "
                       "or pass preprocessing={...} to zoo.save_pretrained (see zoo.preprocess).")
    if preprocessing.get("kind") != kind:
        raise ZooError(f"{source} takes {preprocessing.get('kind')!r} inputs, not {kind!r} ones.")
    return preprocessing


def load_image(path: str | Path, preprocessing: dict[str, Any]) -> torch.Tensor:
    """One image file -> the normalised (C, H, W) float tensor the model was trained on."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such file. Pass image files (PNG, JPEG, ...).")
    chans, size = int(preprocessing["in_chans"]), int(preprocessing["img_size"])
    if chans not in (1, 3):
        raise ZooError(f"the model takes {chans}-channel images; only 1 (grayscale) and 3 (RGB) come from files.")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if chans == 1 else "RGB")  # decodes the whole file: truncation shows here
    except UnidentifiedImageError:
        raise ZooError(f"{path} is not an image file PIL can read (PNG, JPEG, BMP, ...).") from None
    except OSError as e:
        raise ZooError(f"{path} is an unreadable image (truncated or corrupt: {e}).") from None
    if img.size != (size, size):  # the model's training images were size x size: resize, as a user would
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, chans)
    x = x.permute(2, 0, 1).float().div_(255)  # (H, W, C) -> (C, H, W) in [0, 1]
    mean = torch.tensor(preprocessing.get("mean") or [0.0] * chans).view(-1, 1, 1)
    std = torch.tensor(preprocessing.get("std") or [1.0] * chans).view(-1, 1, 1)
    return (x - mean) / std


def load_images(paths: Sequence[str | Path], preprocessing: dict[str, Any]) -> torch.Tensor:
    """Image files -> one (N, C, H, W) batch."""
    return torch.stack([load_image(p, preprocessing) for p in paths])


class CharTokenizer:
    """One id per character of the training text (``{"type": "chars"}``)."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ZooError(f"characters {unknown!r} are not in the model's vocabulary (the {len(self.chars)} "
                           "characters of its training text); leave them out.")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)


class _HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer (``{"type": "hf"}``), with the same encode/decode as above."""

    def __init__(self, serialised: str) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(serialised)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))


def load_tokenizer(preprocessing: dict[str, Any]) -> CharTokenizer | _HFTokenizer:
    """The tokenizer saved in a text contract: ``.encode(text) -> ids``, ``.decode(ids) -> text``."""
    record = preprocessing.get("tokenizer") or {}
    if record.get("type") == "chars":
        return CharTokenizer(record["chars"])
    if record.get("type") == "hf":
        return _HFTokenizer(record["json"])
    raise ZooError(f"unknown tokenizer record {str(record)[:80]!r}: expected type 'chars' or 'hf'.")
