"""Augmentations that act on a whole batch of tensors at once (no per-sample Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, *, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Zero-pad by ``padding``, take one random crop of the original size per image, and flip half.

    ``x`` is (B, C, H, W); offsets and flips are drawn per image from the global RNG.
    """
    b, _, h, w = x.shape
    if padding > 0:
        x = F.pad(x, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
        dy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = x[batch, chans, rows, cols]  # (B, C, H, W)
    if flip:
        mask = torch.rand(b, 1, 1, 1, device=x.device) < 0.5
        x = torch.where(mask, x.flip(3), x)
    return x
