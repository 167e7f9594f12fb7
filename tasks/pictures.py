"""Pictures of a trained model, written at test time: ``python train.py ... +callbacks/pictures=default``.

Each kind has a switch (``callbacks.pictures.attention=false``, ...) and is drawn where the model has what it
needs; the drawing is ``zoo.pictures`` (usable on one's own models), this callback only feeds it a run's test
data. Files go to ``<run folder>/images/<name>-test.png`` (as the generative tasks' grids do) and to TensorBoard
when that logger is on; ``learning_curves.png`` goes to the run folder at the end of fitting.

- ``attention``: a ViT's class-token attention and attention rollout on test images (``attention``); a
  translation Transformer's cross-attention on test sentences (``cross_attention``); a GPT's causal
  self-attention of a line it samples (``self_attention``);
- ``kernels``: an image classifier's first-layer kernels (``kernels``) and feature maps of one test image
  (``feature_maps``);
- ``embeddings``: a 2-D PCA of the token embeddings of the most frequent test tokens, labelled (``embeddings``);
- ``learning_curves``: losses and validation metrics against the step, from csv/metrics.csv (CSV logger).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from zoo.layers import MultiHeadAttention

log = logging.getLogger(__name__)


class Pictures(L.Callback):
    """Write the pictures of ``tasks.pictures`` (module docstring) for a run; rank 0 only."""

    def __init__(self, *, attention: bool = True, kernels: bool = True, embeddings: bool = True,
                 learning_curves: bool = True, num_examples: int = 4, num_words: int = 60,
                 line_tokens: int = 32) -> None:
        self.attention, self.kernels, self.embeddings = attention, kernels, embeddings
        self.learning_curves = learning_curves
        self.num_examples, self.num_words, self.line_tokens = num_examples, num_words, line_tokens
        self._batch: Any = None
        self._counts: Counter[int] = Counter()

    # -- what the test set shows: its first batch, and how often each token occurs --
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batch, self._counts = None, Counter()

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.is_global_zero:
            return
        if self._batch is None:
            self._batch = batch
        if self.embeddings and _namer(trainer.datamodule) is not None:
            ids = _first(batch, lambda t: not t.is_floating_point())
            if ids is not None:
                self._counts.update(ids.flatten().tolist())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.learning_curves and trainer.is_global_zero):
            return
        csv_loggers = [lg for lg in trainer.loggers if isinstance(lg, CSVLogger)]
        if not csv_loggers:
            log.warning("learning curves need the CSV logger (logger=csv or logger=many): none written")
            return
        from zoo.plots import plot_learning_curves

        def draw() -> None:
            csv_loggers[0].save()  # what is still buffered
            fig = plot_learning_curves(csv_loggers[0].experiment.metrics_file_path)
            fig.savefig(Path(trainer.default_root_dir) / "learning_curves.png")
            _to_tensorboard(trainer, "learning_curves", fig)

        _guarded("learning_curves", draw)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self._batch is None:
            return
        model, dm = pl_module.model, trainer.datamodule
        was_training = model.training
        model.eval()  # dropout off for the samples, translations and maps
        try:
            with torch.no_grad():
                self._draw(trainer, pl_module, model, dm)
        finally:
            model.train(was_training)

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, model: nn.Module, dm: Any) -> None:
        kinds = set(getattr(pl_module, "kinds", ()))
        images = _first(self._batch, lambda t: t.is_floating_point() and t.dim() == 4)
        has_attention = any(isinstance(m, MultiHeadAttention) for m in model.modules())
        if self.attention and has_attention:
            if images is not None and hasattr(model, "patch_embed"):
                _guarded("attention", lambda: self._vit(trainer, model, images[: self.num_examples], dm))
            elif "seq2seq" in kinds and any(n.endswith("cross_attn") for n, _ in model.named_modules()):
                src = self._batch[0][: self.num_examples]
                _guarded("cross_attention", lambda: self._cross_attention(trainer, model, src, dm))
            elif "lm" in kinds:
                _guarded("self_attention", lambda: self._self_attention(trainer, pl_module, dm))
        if self.kernels and images is not None and "classify" in kinds and any(
                isinstance(m, nn.Conv2d) for m in model.modules()):
            _guarded("kernels", lambda: self._conv(trainer, model, images[0], dm))
        if self.embeddings and self._counts and any(isinstance(m, nn.Embedding) for m in model.modules()):
            _guarded("embeddings", lambda: self._embeddings(trainer, model, dm))

    # -- the pictures --
    def _vit(self, trainer: L.Trainer, model: nn.Module, images: torch.Tensor, dm: Any) -> None:
        from zoo.pictures import plot_vit_attention

        _save(trainer, "attention", plot_vit_attention(model, images.contiguous(), **_mean_std(dm)))

    def _conv(self, trainer: L.Trainer, model: nn.Module, image: torch.Tensor, dm: Any) -> None:
        from zoo.pictures import plot_feature_maps, plot_kernels

        _save(trainer, "kernels", plot_kernels(model))
        _save(trainer, "feature_maps", plot_feature_maps(model, image.contiguous(), **_mean_std(dm)))

    def _cross_attention(self, trainer: L.Trainer, model: nn.Module, src: torch.Tensor, dm: Any) -> None:
        from zoo.decoding import greedy_decode
        from zoo.pictures import attention_weights, plot_attention_matrices

        name = _namer(dm)
        pad, bos, eos = dm.pad_id, dm.bos_id, dm.eos_id
        matrices, rows, cols = [], [], []
        for s in src:
            s = s[s != pad][None]  # (1, S): one sentence, no padding
            hyp = greedy_decode(model, s, s == pad, bos_id=bos, eos_id=eos, max_len=int(s.shape[1] * 1.5) + 10)[0]
            ended = (hyp == eos).nonzero()
            out = hyp[: int(ended[0]) + 1] if len(ended) else hyp  # the output tokens, up to its <eos>
            tgt_in = torch.cat([out.new_tensor([bos]), out[:-1]])[None]  # (1, T): what the decoder saw for each
            w = attention_weights(model, s, tgt_in, which="cross_attn", src_padding_mask=s == pad)[-1]
            matrices.append(w[0].mean(0))  # (nh, T, S) -> (T, S)
            rows.append([name(i) for i in out.tolist()])
            cols.append([name(i) for i in s[0].tolist()])
        fig = plot_attention_matrices(matrices, row_labels=rows, col_labels=cols, xlabel="source token",
                                      ylabel="output token", titles=[f"sentence {k}: last layer, mean of heads"
                                                                     for k in range(len(matrices))])
        _save(trainer, "cross_attention", fig)

    def _self_attention(self, trainer: L.Trainer, pl_module: L.LightningModule, dm: Any) -> None:
        from zoo.decoding import sample
        from zoo.pictures import attention_weights, plot_attention_matrices

        model, name = pl_module.model, _namer(dm)
        if name is None or not callable(getattr(dm, "encode", None)):
            return
        prompt = dm.encode(getattr(pl_module, "prompt", "\n")).to(pl_module.device)[None]  # (1, P)
        room = getattr(model, "max_len", self.line_tokens + prompt.shape[1]) - prompt.shape[1]
        ids = sample(model, prompt, max_new_tokens=max(1, min(self.line_tokens, room)), temperature=0.8,
                     generator=torch.Generator(device=prompt.device).manual_seed(0))
        w = attention_weights(model, ids)[-1][0]  # the last layer: (nh, T, T)
        labels = [name(i) for i in ids[0].tolist()]
        panels = [w.mean(0), *w]
        fig = plot_attention_matrices(panels, row_labels=[labels] * len(panels), col_labels=[labels] * len(panels),
                                      titles=["last layer, mean of heads", *[f"head {h}" for h in range(len(w))]],
                                      xlabel="attended token", ylabel="token")
        _save(trainer, "self_attention", fig)

    def _embeddings(self, trainer: L.Trainer, model: nn.Module, dm: Any) -> None:
        from zoo.pictures import plot_embeddings, token_embedding

        name, table = _namer(dm), token_embedding(model).weight.detach().float().cpu()
        special = {getattr(dm, a, None) for a in ("pad_id", "bos_id", "eos_id", "mask_id")}
        ids = [i for i, _ in self._counts.most_common() if i not in special and i < len(table)
               and not name(i).startswith("<")][: self.num_words]
        if len(ids) >= 2:
            title = f"token embeddings of the {len(ids)} most frequent test tokens"
            _save(trainer, "embeddings", plot_embeddings(table[ids], [name(i) for i in ids], title=title))


def _guarded(name: str, draw) -> None:
    """Draw one picture; a failure is logged, not raised: the pictures come after the run's training and
    test, whose checkpoints and metrics must not be lost to a figure (tests/test_pictures.py checks they draw)."""
    try:
        draw()
    except Exception as e:  # noqa: BLE001 - any failure of a picture, reported, then the run goes on
        log.warning("picture %r not drawn: %s: %s", name, type(e).__name__, e)


def _first(batch: Any, want) -> torch.Tensor | None:
    """The first tensor in a (nested) batch for which ``want(tensor)`` holds."""
    if isinstance(batch, torch.Tensor):
        return batch if want(batch) else None
    if isinstance(batch, (list, tuple)):
        for item in batch:
            found = _first(item, want)
            if found is not None:
                return found
    return None


def _namer(dm: Any):
    """id -> a short printable token string, from the data module's vocabulary or tokenizer (None: no text)."""
    itos = getattr(dm, "itos", None)
    if itos:
        return lambda i: itos[i]
    tok = getattr(dm, "tokenizer", None)
    tok = getattr(tok, "tok", tok)  # a SubwordTokenizer holds the HF one
    if hasattr(tok, "id_to_token"):
        return lambda i: (tok.id_to_token(i) or f"#{i}").lstrip("\N{LOWER ONE EIGHTH BLOCK}") or "\N{MIDDLE DOT}"
    if hasattr(tok, "chars"):
        return lambda i: {" ": "\N{MIDDLE DOT}", "\n": "\\n", "\t": "\\t"}.get(tok.chars[i], tok.chars[i])
    return None


def _mean_std(dm: Any) -> dict[str, Any]:
    pre = dm.preprocessing() if callable(getattr(dm, "preprocessing", None)) else {}
    return {"mean": pre.get("mean"), "std": pre.get("std")}


def _save(trainer: L.Trainer, name: str, fig: Any) -> None:
    out = Path(trainer.default_root_dir) / "images"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}-test.png")
    _to_tensorboard(trainer, f"test/{name}", fig)


def _to_tensorboard(trainer: L.Trainer, tag: str, fig: Any) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, trainer.global_step, close=False)
