"""Token embeddings for sequence models: a lookup table plus positional information.

Vaswani et al. 2017 (section 3.4) multiply the embedding by sqrt(dim) before adding the positions, so
that the two have comparable scale; GPT (Radford et al. 2018) does not (``scale=False``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.layers.position import create_positional


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(dim) (Vaswani et al. 2017, section 3.4) plus positions, then dropout."""

    def __init__(self, vocab_size: int, dim: int, *, max_len: int, pos: str, dropout: float,
                 pad_id: int | None = None, scale: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.pos = create_positional(pos, dim=dim, max_len=max_len)
        self.scale = math.sqrt(dim) if scale else 1.0
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """(B, T) ids -> (B, T, D); ``offset`` is the position of the first token (incremental decoding)."""
        return self.drop(self.pos(self.embed(tokens) * self.scale, offset=offset))
