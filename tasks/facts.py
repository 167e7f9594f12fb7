"""Facts flow one way, from the data to the model.

A DataModule states what it knows about its data once, in ``facts()``: the number of classes, channels
and image size, the vocabulary size and padding id of its tokenizer, the sequence length, the number of
features, the forecast horizon, and the task kind its data is for. :func:`model_kwargs` fills them
into the model's builder kwargs before the model is built, so no config types them twice and nothing
copies a number by hand. An override that contradicts the data fails here, with what to do.

The facts use the zoo's argument vocabulary (``num_classes``, ``in_chans``, ``img_size``, ``vocab_size``,
``pad_id``, ``max_len``, ``in_features``, ``out_features``, ``horizon``, ``seq_len``, ``task``); a model
receives those its builder accepts. The saved hyperparameters hold the filled kwargs, so a checkpoint
rebuilds the model without the data (``zoo.load_model``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from tasks.signatures import ConfigError
from zoo.registry import model_info

# Facts a larger model value still fits: an embedding may hold more ids, a position table more steps.
AT_LEAST = ("vocab_size", "src_vocab_size", "tgt_vocab_size", "max_len")
# Every fact a data module may state (the zoo's argument vocabulary for them).
FACT_KEYS = ("task", "num_classes", "in_chans", "img_size", "vocab_size", "src_vocab_size", "tgt_vocab_size",
             "pad_id", "max_len", "in_features", "out_features", "horizon", "seq_len")
# What an external (timm/..., torchvision/...) image classifier takes from the data.
EXTERNAL_KWARGS = ("num_classes", "in_chans")


class FactError(ConfigError):
    """A model setting that contradicts what the data says about itself."""


def accepted(name: str) -> set[str]:
    """The keyword arguments the builder of registry name ``name`` accepts."""
    if "/" in name:
        return set(EXTERNAL_KWARGS)
    params = inspect.signature(model_info(name).builder).parameters
    return {k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def model_kwargs(model: Mapping[str, Any], facts: Mapping[str, Any], *, dataset: str) -> dict[str, Any]:
    """The model config (``{"name": ..., **kwargs}``) with the data's facts filled in and checked."""
    name = str(model["name"])
    takes = accepted(name)
    out = dict(model)
    for key, fact in facts.items():
        if key not in takes or fact is None:
            continue
        given = model.get(key)
        if given is None:
            out[key] = fact
        elif key in AT_LEAST:
            if given < fact:
                what = "sequences" if key == "max_len" else "vocabulary"
                raise FactError(f"model.{key}={given} is smaller than the {what} of {dataset} ({key}={fact}): "
                                f"{'longer inputs' if key == 'max_len' else f'token ids up to {fact - 1}'} would "
                                f"index past the model's table. Remove the override of model.{key} (the data "
                                f"sets it to {fact}) or use a larger value.")
        elif given != fact:
            raise FactError(f"model.{key}={given!r} but {dataset} has {key}={fact!r}: the model would not fit the "
                            f"data. Remove the override of model.{key} (the data sets it).")
    # A placeholder (``key: null`` in a model config) that the data does not fill leaves the builder's default.
    out = {k: v for k, v in out.items() if not (v is None and k in FACT_KEYS)}
    _check_shapes(name, out, facts, dataset)
    return out


def _check_shapes(name: str, model: Mapping[str, Any], facts: Mapping[str, Any], dataset: str) -> None:
    """Constraints between a model's own settings and the data: patches tile the image, channels match."""
    patch, img = model.get("patch_size"), model.get("img_size", facts.get("img_size"))
    if patch is not None and img is not None:
        sides = tuple(img) if isinstance(img, (list, tuple)) else (img, img)  # (H, W)
        patches = tuple(patch) if isinstance(patch, (list, tuple)) else (patch, patch)
        if any(p <= 0 or i % p for i, p in zip(sides, patches, strict=False)):
            fits = [p for p in range(2, sides[0] + 1) if sides[0] % p == 0]
            raise FactError(f"model.patch_size={patch!r} does not divide the image size {img!r} of {dataset} "
                            f"({name} cuts the image into non-overlapping patches). Choose a patch size that "
                            f"divides it: {', '.join(map(str, fits))}.")
    chans = facts.get("in_chans")
    if "/" in name or chans is None or "in_chans" in model:
        return
    info = model_info(name)
    shape = info.input_shape
    if info.modality == "image" and shape and len(shape) == 3 and shape[0] != chans:
        raise FactError(f"model {name!r} takes {shape[0]}-channel images (input {tuple(shape)}) and has no "
                        f"in_chans argument, but {dataset} has {chans} channels. Choose another model or data.")
