"""Attention pictures: what a Transformer's tokens look at.

- :func:`attention_weights`: the (B, nh, T, S) weights of every attention layer of one forward pass
  (:func:`zoo.layers.capture_attention`), in the order the layers ran;
- :func:`attention_rollout` (Abnar & Zuidema 2020): how much each input token reaches each output token through
  all layers, residual connections included;
- :func:`vit_attention` / :func:`plot_vit_attention`: a ViT's class-token attention over the patches (per head
  and averaged) and its rollout, overlaid on the images;
- :func:`plot_attention_matrices`: token-by-token matrices with the tokens as tick labels (a translation
  model's cross-attention, a language model's causal self-attention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from zoo.layers.attention import capture_attention
from zoo.pictures._common import display_pixels, evaluating, new_figure, show_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ViTAttention", "attention_rollout", "attention_weights", "plot_attention_matrices", "plot_vit_attention",
           "vit_attention"]


def attention_weights(model: nn.Module, *inputs: Any, which: str = "", **kwargs: Any) -> list[torch.Tensor]:
    """The (B, nh, T, S) attention weights of ``model(*inputs, **kwargs)`` (in eval mode, no gradients), one
    tensor per :class:`~zoo.layers.MultiHeadAttention` whose module name contains ``which`` (``"cross_attn"``:
    a zoo decoder's cross-attention; ``""``: every layer), in the order the layers ran."""
    with evaluating(model), capture_attention(model) as captured:
        model(*inputs, **kwargs)
    found = [w for name, w in captured.items() if which in name]
    if not found:
        raise ValueError(f"no attention layer of {type(model).__name__} named like {which!r} ran; the ones that "
                         f"ran: {', '.join(captured) or 'none'}")
    return found


def attention_rollout(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of self-attention weights, first layer first: (B, T, T).

    Each layer's (B, nh, T, T) weights are averaged over heads, the identity is added for the residual
    connection and the rows are renormalised to sum to 1; the layers' matrices are then multiplied,
    last @ ... @ first, so row t says how much each input token reaches token t at the top.
    """
    if not weights:
        raise ValueError("attention_rollout needs the weights of at least one layer")
    rollout = None
    for w in weights:
        a = w.float().mean(1)  # (B, nh, T, T) -> (B, T, T)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


class ViTAttention(NamedTuple):
    """What a ViT's pooled output looks at, as maps over the (gh, gw) patch grid."""

    heads: torch.Tensor  # (B, nh, gh, gw): the chosen layer's attention of the class token, per head
    mean: torch.Tensor  # (B, gh, gw): the same, averaged over heads
    rollout: torch.Tensor  # (B, gh, gw): the class token's row of the attention rollout through all layers


def _pooled_row(a: torch.Tensor, *, cls: bool) -> torch.Tensor:
    """(..., T, T) -> (..., N) patches: the class token's row without itself, or (mean pooling) the mean row."""
    return a[..., 0, 1:] if cls else a.mean(-2)


def vit_attention(model: nn.Module, images: torch.Tensor, *, layer: int = -1, cls: bool | None = None,
                  grid: tuple[int, int] | None = None) -> ViTAttention:
    """Class-token attention maps of a ViT (:class:`zoo.models.vit.VisionTransformer` or any model whose
    attention layers are zoo :class:`~zoo.layers.MultiHeadAttention`) for normalised ``images`` (B, C, H, W).

    ``layer``: whose per-head maps (default the last). ``cls``: the first token is a class token (default:
    the model has a ``cls_token``); without one the maps are the mean of all tokens' rows, what mean pooling
    sees. ``grid``: the patch grid (default the model's ``patch_embed.grid_size``).
    """
    cls = getattr(model, "cls_token", None) is not None if cls is None else cls
    if grid is None:
        grid = tuple(getattr(getattr(model, "patch_embed", None), "grid_size", ()))
    weights = attention_weights(model, images)
    n = weights[-1].shape[-1] - int(cls)
    if len(grid) != 2 or grid[0] * grid[1] != n:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a square grid; pass grid=(rows, columns)")
        grid = (side, side)
    heads = _pooled_row(weights[layer].float(), cls=cls)  # (B, nh, N)
    rollout = _pooled_row(attention_rollout(weights), cls=cls)  # (B, N)
    b, nh = heads.shape[:2]
    return ViTAttention(heads.reshape(b, nh, *grid), heads.mean(1).reshape(b, *grid), rollout.reshape(b, *grid))


def plot_vit_attention(model: nn.Module, images: torch.Tensor, *, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None, layer: int = -1) -> Figure:
    """One row per image: the image, the class token's attention averaged over heads, the attention rollout,
    then each head, each map overlaid on the image. ``images`` (B, C, H, W) are the model's (normalised) inputs;
    ``mean``/``std`` undo the normalisation for display (default: the model's ``zoo_preprocessing``)."""
    pre = getattr(model, "zoo_preprocessing", None) or {}
    mean, std = mean if mean is not None else pre.get("mean"), std if std is not None else pre.get("std")
    maps = vit_attention(model, images, layer=layer)
    pixels = display_pixels(images, mean=mean, std=std)
    nh = maps.heads.shape[1]
    cols = [("image", None), ("mean of heads", maps.mean), ("rollout", maps.rollout),
            *[(f"head {h}", maps.heads[:, h]) for h in range(nh)]]
    fig = new_figure(1.6 * len(cols), 1.7 * len(pixels))
    axes = fig.subplots(len(pixels), len(cols), squeeze=False)
    h, w = pixels.shape[1:3]
    for i, image in enumerate(pixels):
        for j, (title, m) in enumerate(cols):
            ax = axes[i, j]
            show_image(ax, image)
            if m is not None:  # the patch grid stretched over the image
                ax.imshow(m[i].cpu().numpy(), cmap="inferno", alpha=0.6, interpolation="nearest",
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            if i == 0:
                ax.set_title(title, fontsize=8)
    which = "the last layer" if layer == -1 else f"layer {layer}"
    fig.suptitle(f"class-token attention of {which}, and the rollout through all layers", fontsize=9)
    return fig


def plot_attention_matrices(matrices: Sequence[torch.Tensor], *, row_labels: Sequence[Sequence[str]],
                            col_labels: Sequence[Sequence[str]], titles: Sequence[str] | None = None,
                            xlabel: str = "keys", ylabel: str = "queries", ncols: int | None = None) -> Figure:
    """Panels of (T, S) attention matrices (``ncols`` a row, default about a square grid) with the tokens as tick
    labels: row t is what query token ``row_labels[k][t]`` attends to over the key tokens ``col_labels[k]``."""
    if not (len(matrices) == len(row_labels) == len(col_labels)) or not matrices:
        raise ValueError(f"{len(matrices)} matrices need as many row and column label lists (and at least one), got "
                         f"{len(row_labels)} and {len(col_labels)}")
    ncols = ncols or math.ceil(math.sqrt(len(matrices)))
    nrows = math.ceil(len(matrices) / ncols)
    widest = max(m.shape[1] for m in matrices)
    tallest = max(m.shape[0] for m in matrices)
    fig = new_figure(max(3.0, 0.13 * widest + 1.8) * ncols, max(2.5, 0.13 * tallest + 1.2) * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(matrices):]:
        ax.set_axis_off()
    for k, (ax, m) in enumerate(zip(axes, matrices, strict=False)):
        if tuple(m.shape) != (len(row_labels[k]), len(col_labels[k])):
            raise ValueError(f"matrix {k} is {tuple(m.shape)} but has {len(row_labels[k])} row and "
                             f"{len(col_labels[k])} column labels")
        image = ax.imshow(m.float().cpu().numpy(), cmap="viridis", vmin=0, aspect="auto")
        ax.set_xticks(range(m.shape[1]), list(col_labels[k]), rotation=90, fontsize=6)
        ax.set_yticks(range(m.shape[0]), list(row_labels[k]), fontsize=6)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if titles:
            ax.set_title(titles[k], fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig
