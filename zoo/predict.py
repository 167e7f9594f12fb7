"""Run a trained model on raw inputs with only what is saved with it: ``zoo predict CKPT_OR_DIR INPUT...``.

What the model does decides what ``INPUT`` means and what comes out:

- image classifiers: image files -> the top-k classes with their probabilities;
- speech classifiers: WAV files -> the top-k classes (log-mels as the model was trained on, ``zoo.audio``);
- tabular models: CSV files -> per row, the top-k classes or the regressed value in target units (``zoo.tabular``);
- text classifiers: sentences -> the top-k classes;
- language models (``gpt``, ``lstm``, ... trained on text): a prompt -> the generated continuation;
- seq2seq models (``transformer``, ``seq2seq_lstm``): sentences -> their translations (greedy, or beam search);
- generative image models (``dcgan``, ``gan``, ``vae``): no input -> a grid of samples written as a PNG.

The model and its input contract come from a run's checkpoint (:func:`zoo.load_model`) or a
:func:`zoo.save_pretrained` folder; no data module, no Hydra, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.preprocess import load_images, load_tokenizer, require
from zoo.registry import ZooError, model_info

__all__ = ["classify", "classify_images", "classify_speech", "classify_texts", "generate_text", "kind_of", "load_any",
           "predict_table", "sample_images", "translate"]


def load_any(source: str | Path) -> nn.Module:
    """A model from a run checkpoint file or a pretrained folder (or Hub id), in eval mode with its contract."""
    path = Path(source)
    if path.is_file() or path.suffix in (".ckpt", ".pt", ".pth"):  # a checkpoint, or a missing one: its error
        from zoo.checkpoint import load_model

        return load_model(path)
    from zoo.pretrained import from_pretrained

    return from_pretrained(source)


def kind_of(model: nn.Module) -> str:
    """What ``zoo predict`` does with the model: classify, regress, lm, seq2seq or generate."""
    if callable(getattr(model, "sample", None)):
        return "generate"
    pre = getattr(model, "zoo_preprocessing", None) or {}
    tasks = model_info(model.zoo_name).tasks if "/" not in model.zoo_name else ("classify",)
    if callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)) and pre.get("kind") == "text":
        return "seq2seq"
    if pre.get("kind") == "tabular":
        return "classify" if pre.get("task") == "classify" else "regress"
    if "classify" in tasks and pre.get("classes"):
        return "classify"
    if "lm" in tasks and pre.get("kind") == "text":
        return "lm"
    raise ZooError(f"zoo predict does not know what to do with {model.zoo_name} (tasks {', '.join(tasks)}) and its "
                   f"saved preprocessing {sorted(pre) or 'none'}: it runs image/text classifiers, language models, "
                   "seq2seq translators and generative image models.")


def _top_k(logits: torch.Tensor, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    probs = logits.float().softmax(-1)
    values, index = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(classes[i] if i < len(classes) else str(i), p) for i, p in zip(row_i.tolist(), row_p.tolist(), strict=True)]
            for row_i, row_p in zip(index, values, strict=True)]


@torch.no_grad()
def classify_images(model: nn.Module, paths: Sequence[str | Path], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per image file."""
    pre = require(getattr(model, "zoo_preprocessing", None), "image", source=model.zoo_name)
    x = load_images(paths, pre)
    expected = getattr(model, "zoo_kwargs", {}).get("in_chans")
    if expected is not None and x.shape[1] != expected:
        raise ZooError(f"{model.zoo_name} takes {expected}-channel images (in_chans={expected}) but its saved "
                       f"preprocessing makes {x.shape[1]}-channel ones (in_chans={pre.get('in_chans')}): the two "
                       f"disagree. Save it again with preprocessing in_chans={expected}.")
    return _top_k(model(x), pre.get("classes") or [], top_k)


@torch.no_grad()
def classify_speech(model: nn.Module, paths: Sequence[str | Path], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per WAV file, featurised with the contract the model was trained with."""
    from zoo.audio import layout_for, load_speech, to_model_input

    pre = require(getattr(model, "zoo_preprocessing", None), "speech", source=model.zoo_name)
    x, lengths = load_speech(paths, pre)
    inputs = to_model_input(x, lengths, layout_for(model.zoo_name))
    logits = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    return _top_k(logits, pre.get("classes") or [], top_k)


@torch.no_grad()
def predict_table(model: nn.Module, paths: Sequence[str | Path], *,
                  top_k: int = 5) -> tuple[list[str], list[list[tuple[str, float]]] | list[float]]:
    """Every data row of the CSV files (named ``file:line``): top-k (class, probability) for a classifier, the
    value in target units for a regressor. Columns are found by name; the target and extra columns are ignored."""
    from zoo.tabular import ColumnCode, encode, read_rows, to_target_units

    pre = require(getattr(model, "zoo_preprocessing", None), "tabular", source=model.zoo_name)
    codes = [ColumnCode(**c) for c in pre["codes"]]
    names, rows = [], []
    for path in paths:
        cells = read_rows(path, pre["columns"])
        names += [f"{path}:{line}" for line in range(2, len(cells) + 2)]
        rows += cells
    out = model(encode(codes, rows))
    if pre.get("task") == "classify":
        return names, _top_k(out, pre["classes"], top_k)
    return names, to_target_units(out.reshape(len(rows), -1)[:, 0], pre).tolist()


def classify(model: nn.Module, inputs: Sequence[str], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per input: image files, WAV files or sentences, as the model's contract says."""
    kind = (getattr(model, "zoo_preprocessing", None) or {}).get("kind")
    fn = {"image": classify_images, "speech": classify_speech}.get(kind, classify_texts)
    return fn(model, inputs, top_k=top_k)


@torch.no_grad()
def classify_texts(model: nn.Module, texts: Sequence[str], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) per sentence, one sentence at a time (no padding)."""
    pre = require(getattr(model, "zoo_preprocessing", None), "text", source=model.zoo_name)
    tok, max_len = load_tokenizer(pre), int(pre.get("max_len") or 10**9)
    rows = []
    for text in texts:
        ids = torch.tensor([tok.encode(text)[:max_len] or [pre.get("pad_id", 0)]])  # (1, T)
        rows += _top_k(model(ids, torch.zeros_like(ids, dtype=torch.bool)), pre["classes"], top_k)
    return rows


@torch.no_grad()
def generate_text(model: nn.Module, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = None, seed: int = 0) -> str:
    """The prompt and its continuation sampled from a language model (``temperature`` 0: greedy)."""
    from zoo.decoding import sample

    pre = require(getattr(model, "zoo_preprocessing", None), "text", source=model.zoo_name)
    tok = load_tokenizer(pre)
    ids = tok.encode(prompt)
    if not ids:
        raise ZooError("the prompt is empty: give the language model some text to continue.")
    out = sample(model, torch.tensor([ids]), max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                 generator=torch.Generator().manual_seed(seed))
    return tok.decode(out[0].tolist())


@torch.no_grad()
def translate(model: nn.Module, sentences: Sequence[str], *, beam_size: int = 1, max_decode_len: int = 64) -> list[str]:
    """Each sentence's translation, decoded as the seq2seq task decodes its test set (zoo.decoding)."""
    from zoo.decoding import beam_search, greedy_decode

    pre = require(getattr(model, "zoo_preprocessing", None), "text", source=model.zoo_name)
    tok = load_tokenizer(pre)
    pad, bos, eos, max_len = pre["pad_id"], pre["bos_id"], pre["eos_id"], int(pre["max_len"])
    out = []
    for sentence in sentences:
        src = torch.tensor([tok.encode(sentence)[: max_len - 1] + [eos]])  # (1, S): as the data module encodes it
        kw: dict[str, Any] = dict(bos_id=bos, eos_id=eos, max_len=min(max_decode_len, int(src.shape[1] * 1.5) + 10))
        ids = (beam_search(model, src, src == pad, beam_size=beam_size, **kw) if beam_size > 1
               else greedy_decode(model, src, src == pad, **kw))
        kept = []
        for i in ids[0].tolist():
            if i == eos:
                break
            if i not in (pad, bos):
                kept.append(i)
        out.append(tok.decode(kept))
    return out


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@torch.no_grad()
def sample_images(model: nn.Module, out: str | Path, *, num: int = 64, seed: int = 0, nrow: int | None = None,
                  **options: Any) -> Path:
    """``num`` samples of a generative image model: one grid image when ``out`` ends in .png/.jpg, else a folder
    with one PNG per sample. ``options`` (``steps``, ``eta``, ``sampler``; None: the model's own) set how a
    diffusion model samples; a one-pass generator refuses them."""
    import inspect

    from torchvision.utils import save_image

    from zoo.registry import list_models

    if num < 1:
        raise ZooError(f"--num {num}: ask for at least one sample")
    name = getattr(model, "zoo_name", type(model).__name__)
    if not callable(getattr(model, "sample", None)):
        raise ZooError(f"model {name!r} has no prior to sample from; generate from a checkpoint of one of: "
                       f"{', '.join(list_models(task='generate'))}")
    options = {k: v for k, v in options.items() if v is not None}
    takes = inspect.signature(model.sample).parameters
    if any(k not in takes for k in options):
        flags = " ".join(f"--{k}" for k in options if k not in takes)
        raise ZooError(f"{flags}: model {name!r} samples in one pass; these options are for diffusion models "
                       f"({', '.join(list_models(family='diffusion'))}). Drop them.")
    images = model.sample(num, generator=torch.Generator().manual_seed(seed), **options)  # (N, C, H, W) in [0, 1]
    out = Path(out)
    if out.suffix.lower() in IMAGE_SUFFIXES:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=nrow or math.ceil(math.sqrt(num)), padding=2, pad_value=0.5)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            save_image(image, out / f"sample_{i:04d}.png")
    return out
