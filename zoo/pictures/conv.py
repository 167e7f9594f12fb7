"""Convolution pictures: what a CNN's first layer looks for (its kernels) and what it sees in an image (its
feature maps). The first layer works on pixels, so its kernels are images themselves: edge, colour and blob
detectors once trained, noise before."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.pictures._common import display_pixels, evaluating, new_figure, show_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["feature_maps", "first_conv", "plot_feature_maps", "plot_kernels"]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first ``nn.Conv2d`` in module order (the layer that sees the pixels in the zoo's CNNs)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer: kernel pictures are for convolutional models")


def feature_maps(model: nn.Module, images: torch.Tensor, *, conv: nn.Conv2d | None = None) -> torch.Tensor:
    """The output (B, C', H', W') of ``conv`` (default :func:`first_conv`) while ``model(images)`` runs in eval
    mode: what that layer computes on the model's own path, whatever comes before it."""
    conv = first_conv(model) if conv is None else conv
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _inp, out: seen.append(out.detach()))
    try:
        with evaluating(model):
            model(images)
    finally:
        handle.remove()
    if not seen:
        raise ValueError("the convolution did not run in model(images): pass conv= a layer on the forward path")
    return seen[0]


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot_kernels(model: nn.Module, *, conv: nn.Conv2d | None = None, max_kernels: int = 64) -> Figure:
    """The first ``max_kernels`` kernels of ``conv`` (default :func:`first_conv`), one panel each.

    Kernels over 3 input channels are drawn as colour images, each min-max scaled to [0, 1]; other kernels
    (the mean over their input channels when there are several) in grey on a scale symmetric around 0
    (mid-grey is 0, white positive, black negative), so the panel's values are the weights themselves.
    """
    conv = first_conv(model) if conv is None else conv
    w = conv.weight.detach().float().cpu()[:max_kernels]  # (O, I, k, k)
    rows, cols = _grid(len(w))
    fig = new_figure(1.0 * cols + 0.4, 1.0 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(w):
            ax.set_axis_off()
            continue
        k = w[i]
        if k.shape[0] == 3:
            lo, hi = k.min(), k.max()
            ax.imshow(((k - lo) / (hi - lo).clamp_min(1e-12)).permute(1, 2, 0).numpy())  # (3, k, k) -> (k, k, 3)
        else:
            k = k.mean(0)  # (I, k, k) -> (k, k)
            bound = float(k.abs().max()) or 1.0
            ax.imshow(k.numpy(), cmap="gray", vmin=-bound, vmax=bound)
    shape = "x".join(map(str, conv.weight.shape))
    fig.suptitle(f"first-layer kernels ({shape}, out x in x k x k)", fontsize=9)
    return fig


def plot_feature_maps(model: nn.Module, image: torch.Tensor, *, conv: nn.Conv2d | None = None, num: int = 15,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Figure:
    """One (normalised) input image (C, H, W) and the first ``num`` channels of ``conv``'s output on it
    (:func:`feature_maps`). ``mean``/``std`` undo the normalisation for display (default: the model's
    ``zoo_preprocessing``)."""
    pre = getattr(model, "zoo_preprocessing", None) or {}
    mean, std = mean if mean is not None else pre.get("mean"), std if std is not None else pre.get("std")
    maps = feature_maps(model, image[None], conv=conv)[0].float().cpu()[:num]  # (C', H', W')
    rows, cols = _grid(len(maps) + 1)
    fig = new_figure(1.3 * cols + 0.4, 1.3 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    show_image(axes[0], display_pixels(image[None], mean=mean, std=std)[0])
    axes[0].set_title("input", fontsize=8)
    for i, ax in enumerate(axes[1:]):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(maps):
            ax.set_axis_off()
            continue
        ax.imshow(maps[i].numpy(), cmap="viridis")
        ax.set_title(f"channel {i}", fontsize=8)
    fig.suptitle("feature maps of the first convolution", fontsize=9)
    return fig
