"""Transformer encoder and decoder layers (Vaswani et al. 2017) with residual connections and LayerNorm.

Post-norm, as in the 2017 paper: ``x = LayerNorm(x + Sublayer(x))``. Pre-norm (``norm_first=True``,
Xiong et al. 2020; GPT-2, ViT): ``x = x + Sublayer(LayerNorm(x))``, which trains stably without a long
warmup; a pre-norm stack ends with one more LayerNorm. Encoder-only models (BERT-style classifiers,
ViT) stack :class:`EncoderLayer`; decoder-only models (GPT) stack it with ``is_causal=True``; the
encoder-decoder adds :class:`DecoderLayer` with cross-attention. Both stacks decode incrementally with
a :class:`DecoderCache` (``new_cache()``): each call then feeds only the new positions.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from zoo.layers.attention import KVCache, MultiHeadAttention
from zoo.layers.mlp import FeedForward
from zoo.layers.position import RotaryEmbedding


class _Residual(nn.Module):
    """One sublayer with its residual connection and LayerNorm, before (pre-norm) or after (post-norm)."""

    def __init__(self, dim: int, *, norm_first: bool, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_first = norm_first
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.norm_first:
            return x + self.drop_path(self.drop(sublayer(self.norm(x))))
        return self.norm(x + self.drop_path(self.drop(sublayer(x))))


class DecoderCache:
    """The key/value caches of a decoder stack, one :class:`~zoo.layers.attention.KVCache` per attention layer:
    ``self_attn[i]`` grows by the new positions at every call, ``cross_attn[i]`` (encoder-decoder only)
    holds layer i's projected encoder memory from the first call on.

    :meth:`reorder` follows a beam step (only self-attention moves: every beam of a source reads the same
    memory); :meth:`select` keeps some batch rows of everything (dropping sources that finished).
    """

    def __init__(self, depth: int, *, cross: bool) -> None:
        self.self_attn = [KVCache() for _ in range(depth)]
        self.cross_attn = [KVCache(static=True) for _ in range(depth)] if cross else []

    def __len__(self) -> int:
        """The positions fed so far: the offset of the next one."""
        return len(self.self_attn[0]) if self.self_attn else 0

    def reorder(self, index: torch.Tensor) -> None:
        for c in self.self_attn:
            c.reorder(index)

    def select(self, index: torch.Tensor) -> None:
        for c in self.self_attn + self.cross_attn:
            c.select(index)


class EncoderLayer(nn.Module):
    """Self-attention then the position-wise feed-forward block, each with residual + LayerNorm."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act: str = "gelu",
        norm_first: bool = True,
        drop_path: float = 0.0,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout, rope=rope)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), act=act)
        self.res_attn = _Residual(dim, norm_first=norm_first, dropout=dropout, drop_path=drop_path)
        self.res_ffn = _Residual(dim, norm_first=norm_first, dropout=dropout, drop_path=drop_path)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = self.res_attn(x, lambda h: self.attn(h, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                                 is_causal=is_causal, cache=cache))
        return self.res_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked (causal) self-attention, cross-attention to the encoder's memory, then feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act: str = "gelu",
        norm_first: bool = True,
        drop_path: float = 0.0,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout, rope=rope)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), act=act)
        self.res_self = _Residual(dim, norm_first=norm_first, dropout=dropout, drop_path=drop_path)
        self.res_cross = _Residual(dim, norm_first=norm_first, dropout=dropout, drop_path=drop_path)
        self.res_ffn = _Residual(dim, norm_first=norm_first, dropout=dropout, drop_path=drop_path)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = self.res_self(x, lambda h: self.self_attn(h, key_padding_mask=tgt_padding_mask, is_causal=True,
                                                      cache=self_cache))
        x = self.res_cross(x, lambda h: self.cross_attn(h, memory, key_padding_mask=memory_padding_mask,
                                                        cache=cross_cache))
        return self.res_ffn(x, self.ffn)


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` (causal with ``is_causal=True``: a GPT decoder-only stack).

    ``drop_path_rate`` grows linearly from 0 at the first layer to its value at the last (stochastic
    depth, Huang et al. 2016); a pre-norm stack ends with a LayerNorm.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act: str = "gelu",
        norm_first: bool = True,
        drop_path_rate: float = 0.0,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=attn_dropout, act=act,
                         norm_first=norm_first, drop_path=drop_path_rate * i / max(1, depth - 1), rope=rope)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). With a ``cache`` (a causal stack generating) ``x`` holds the positions after
        the cached ones, and the masks cover all keys."""
        for i, layer in enumerate(self.layers):
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask, is_causal=is_causal,
                      cache=None if cache is None else cache.self_attn[i])
        return self.norm(x)

    def new_cache(self) -> DecoderCache:
        """An empty cache for incremental decoding with a causal stack (GPT)."""
        return DecoderCache(len(self.layers), cross=False)


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer`; a pre-norm stack ends with a LayerNorm."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        act: str = "gelu",
        norm_first: bool = True,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=attn_dropout, act=act,
                         norm_first=norm_first, rope=rope)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """(B, T, D) targets attending to (B, S, D) memory -> (B, T, D). With a ``cache``, ``x`` holds the
        positions after the cached ones, and ``memory`` is projected at the first call only."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_padding_mask=tgt_padding_mask, memory_padding_mask=memory_padding_mask,
                      self_cache=None if cache is None else cache.self_attn[i],
                      cross_cache=None if cache is None else cache.cross_attn[i])
        return self.norm(x)

    def new_cache(self) -> DecoderCache:
        """An empty cache for incremental decoding."""
        return DecoderCache(len(self.layers), cross=True)
