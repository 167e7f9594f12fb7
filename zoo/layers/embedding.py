"""Input embeddings for sequence models: a lookup table of tokens (or a linear projection of real-valued
feature vectors, e.g. log-mel frames) plus positional information.

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


class FeatureEmbedding(nn.Module):
    """Real-valued feature vectors (spectrogram frames) projected to ``dim`` by one linear layer, plus positions,
    then dropout: the :class:`TokenEmbedding` of inputs that are not token ids. No sqrt(dim) scale: the
    projection of standardised features already has a scale comparable to the positions."""

    def __init__(self, in_features: int, dim: int, *, max_len: int, pos: str, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, dim)
        self.pos = create_positional(pos, dim=dim, max_len=max_len)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """(B, T, F) features -> (B, T, D)."""
        return self.drop(self.pos(self.proj(x), offset=offset))
