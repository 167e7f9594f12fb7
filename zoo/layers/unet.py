"""The blocks of a diffusion model's U-Net (Ho et al. 2020, after PixelCNN++ and Wide ResNets).

- :class:`TimeResBlock`: GroupNorm -> SiLU -> 3x3 conv, then GroupNorm whose output is scaled and shifted
  per channel by a projection of the time embedding (the "scale-shift norm" of Nichol & Dhariwal 2021),
  SiLU -> dropout -> 3x3 conv (zero-initialised, so each block starts as its shortcut) and a residual
  connection. Conditioning *after* the norm: a per-channel shift added before it (Ho et al.'s form) is
  removed by a GroupNorm whose groups hold one channel each, as in a narrow network. GroupNorm rather than
  BatchNorm: the network sees images at every noise level in one batch, and its output must not depend on
  which others share the batch.
- :class:`SpatialSelfAttention`: multi-head self-attention over the H*W positions of a feature map
  (:class:`~zoo.layers.attention.MultiHeadAttention`), residual; used at the lowest resolution, where the
  map is small enough for attention over all positions.
- :class:`Downsample` (a stride-2 3x3 conv) and :class:`Upsample` (nearest x2, then a 3x3 conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.attention import MultiHeadAttention


def group_norm(chans: int, *, groups: int = 32, min_group: int = 4) -> nn.GroupNorm:
    """GroupNorm with up to ``groups`` groups of at least ``min_group`` channels (32 groups of 4 for 128)."""
    g = max(1, min(groups, chans // min_group))
    while chans % g:
        g -= 1
    return nn.GroupNorm(g, chans)


class TimeResBlock(nn.Module):
    """A residual conv block conditioned on a time embedding (Ho et al. 2020): (B, C, H, W), (B, E) -> (B, C', H, W)."""

    def __init__(self, in_chans: int, out_chans: int, *, time_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_chans)
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * out_chans)  # a scale and a shift per channel
        self.norm2 = group_norm(out_chans)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1)
        self.shortcut = nn.Conv2d(in_chans, out_chans, 1) if in_chans != out_chans else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # the block starts as its shortcut
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, 2C', 1, 1) -> 2 x (B, C', 1, 1)
        h = self.norm2(h) * (1 + scale) + shift  # the same for every pixel of a channel
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.shortcut(x)


class SpatialSelfAttention(nn.Module):
    """Self-attention over all positions of a feature map, residual: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, chans: int, *, num_heads: int = 1) -> None:
        super().__init__()
        self.norm = group_norm(chans)
        self.attn = MultiHeadAttention(chans, num_heads)
        nn.init.zeros_(self.attn.out_proj.weight)  # starts as the identity, like the residual blocks
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        out = self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)  # (B, H*W, C) -> (B, C, H, W)
        return x + out


class Downsample(nn.Module):
    """Halve the side with a stride-2 3x3 conv (28 -> 14 -> 7; odd sides round up)."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(chans, chans, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Resize to ``size`` (twice the side by default) with nearest neighbours, then a 3x3 conv."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(chans, chans, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest") if size is not None else F.interpolate(
            x, scale_factor=2.0, mode="nearest")
        return self.conv(x)
