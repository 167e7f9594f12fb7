"""What every picture shares: a matplotlib Figure without pyplot, eval mode for a forward, pixels for display."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A Figure of its own (no pyplot, no global state, no display needed): ``fig.savefig("x.png")`` writes it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients for the block (dropout and drop-path off), then as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def display_pixels(images: torch.Tensor, *, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> torch.Tensor:
    """Normalised model inputs (B, C, H, W) -> (B, H, W, C) pixels in [0, 1] for ``imshow`` (the mean/std
    normalisation undone; without them the inputs are shown as they are, clipped to [0, 1])."""
    x = images.detach().float().cpu()
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        x = x * torch.tensor(std, dtype=x.dtype).view(shape) + torch.tensor(mean, dtype=x.dtype).view(shape)
    return x.clamp(0, 1).permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)


def show_image(ax, pixels: torch.Tensor) -> None:
    """One (H, W, C) image in [0, 1] on ``ax``, grey when it has one channel."""
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(pixels.numpy())
    ax.set_xticks([])
    ax.set_yticks([])
