"""Positional information for attention, which by itself is blind to order: sinusoidal, learned, rotary.

- sinusoidal (Vaswani et al. 2017): PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same),
  added to the token embeddings; no parameters, any length up to ``max_len``.
- learned (Gehring et al. 2017; GPT, BERT): one trained vector per position, added.
- rotary, RoPE (Su et al. 2021): rotate each (even, odd) pair of query/key features by an angle
  proportional to the position, so q_m . k_n depends on m - n only; applied inside attention.
- the same sinusoids of any real-valued position, one vector per batch element: a diffusion model's
  timestep embedding (Ho et al. 2020, appendix B), :func:`timestep_embedding`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POSITIONS = ("sinusoidal", "learned", "rope", "none")


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """(max_len, dim) table of the 2017 paper's sinusoids (dim even)."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (L, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (D/2,)
    table = torch.zeros(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table.float()


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoids of (B,) positions (integers or reals) -> (B, dim): [sin(t f_0), ..., cos(t f_0), ...].

    The frequencies are those of :func:`sinusoidal_table` (f_i = max_period^(-2i/dim)), with the sines in the
    first half and the cosines in the second (the layout of the DDPM and guided-diffusion code), so a
    diffusion model can embed its noise level t as a transformer embeds a position.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal timestep embeddings need an even dim, got {dim}")
    freq = torch.exp(-math.log(max_period) * torch.arange(0, dim, 2, device=t.device, dtype=torch.float32) / dim)
    angles = t.float()[:, None] * freq  # (B, 1) * (D/2,) -> (B, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, D)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal positions (Vaswani et al. 2017), added to (B, T, D) embeddings."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        _check_len(x.shape[1], offset, self.max_len)
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)  # (T, D) broadcasts over B


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (Gehring et al. 2017; GPT), added to (B, T, D) embeddings."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        _check_len(x.shape[1], offset, self.max_len)
        return x + self.weight[offset : offset + x.shape[1]]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer) for (B, nh, T, head_dim) queries and keys.

    Feature pairs (i, i + head_dim/2) are rotated by angle pos * base^(-2i/head_dim) (the "rotate half"
    layout of GPT-NeoX/LLaMA), so the score q_m . k_n depends on the relative position m - n only.
    """

    def __init__(self, head_dim: int, max_len: int, *, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.max_len = max_len
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq  # (L, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        t = x.shape[-2]
        _check_len(t, offset, self.max_len)
        cos = self.cos[offset : offset + t].to(x.dtype)  # (T, hd)
        sin = self.sin[offset : offset + t].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)  # rotate each pair by 90 degrees
        return x * cos + rotated * sin


class NoPositionalEncoding(nn.Module):
    """Adds nothing: for ``pos="rope"`` (positions act inside attention) and ``pos="none"``."""

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        return x


def _check_len(t: int, offset: int, max_len: int) -> None:
    if offset + t > max_len:
        raise ValueError(f"sequence of {offset + t} positions but the model was built for max_len={max_len}; "
                         "build it with a larger max_len or feed shorter sequences")


def create_positional(kind: str, *, dim: int, max_len: int) -> nn.Module:
    """The additive positional module for ``kind``, called as ``pos(x, offset=0)`` (``offset``: the position of
    ``x``'s first step, for incremental decoding); RoPE and "none" add nothing (RoPE acts in attention)."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(dim, max_len)
    if kind == "learned":
        return LearnedPositionalEmbedding(dim, max_len)
    if kind in ("rope", "none"):
        return NoPositionalEncoding()
    raise ValueError(f"unknown positional encoding {kind!r}; choose one of {', '.join(POSITIONS)}")


def create_rope(kind: str, *, head_dim: int, max_len: int) -> RotaryEmbedding | None:
    """A :class:`RotaryEmbedding` when ``kind == "rope"``, else None."""
    return RotaryEmbedding(head_dim, max_len) if kind == "rope" else None
