"""Multi-head attention (Vaswani et al. 2017): softmax(Q K^T / sqrt(d_k)) V over several heads at once.

Masks follow ``torch.nn.MultiheadAttention``: ``True`` means *blocked*. ``key_padding_mask`` is (B, S)
with ``True`` at padding; ``attn_mask`` is (T, S) or (B, T, S), boolean (``True`` = blocked) or additive
float. ``is_causal`` blocks every key after its query, so step t never sees t+1, t+2, ...
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.position import RotaryEmbedding


class AttentionOutput(NamedTuple):
    out: torch.Tensor  # (B, T, D)
    weights: torch.Tensor  # (B, nh, T, S), each row sums to 1


def causal_mask(size: int, *, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) boolean mask, ``True`` above the diagonal: query t may attend to keys 0..t only."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu(1)


def merge_masks(
    *,
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    is_causal: bool,
    q_len: int,
    k_len: int,
    device: torch.device,
) -> torch.Tensor | None:
    """One boolean (B or 1, 1, T, S) mask, ``True`` = *may attend* (SDPA's convention), or None."""
    allowed = None
    if is_causal:
        allowed = ~causal_mask(max(q_len, k_len), device=device)[-q_len:, -k_len:]  # (T, S)
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise TypeError("merge_masks handles boolean masks; pass float masks to attention directly")
        m = ~attn_mask
        allowed = m if allowed is None else allowed & m
    if allowed is not None and allowed.dim() == 2:
        allowed = allowed[None, None]  # (T, S) -> (1, 1, T, S)
    elif allowed is not None and allowed.dim() == 3:
        allowed = allowed[:, None]  # (B, T, S) -> (B, 1, T, S)
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
        allowed = keep if allowed is None else allowed & keep
    return allowed


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with its own Q/K/V/output projections.

    Self-attention projects Q, K and V with one matrix multiply (like ``nn.MultiheadAttention``'s
    ``in_proj_weight``); cross-attention projects the query from ``x`` and keys/values from ``memory``.
    The attention itself runs in ``F.scaled_dot_product_attention`` (a fused kernel on CPU and GPU),
    unless ``need_weights=True`` asks for the attention weights, which are then computed explicitly.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)  # rows: [W_q; W_k; W_v]
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.rope = rope

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, T, D) -> (B, nh, T, hd)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | AttentionOutput:
        """Self-attention over ``x`` (B, T, D), or cross-attention from ``x`` to ``memory`` (B, S, D)."""
        if memory is None:
            q, k, v = self.in_proj(x).chunk(3, dim=-1)  # (B, T, 3D) -> 3 x (B, T, D)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            q = F.linear(x, w[: self.dim], None if b is None else b[: self.dim])
            k, v = F.linear(memory, w[self.dim :], None if b is None else b[self.dim :]).chunk(2, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, nh, T|S, hd)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        t, s = q.shape[2], k.shape[2]
        dropout_p = self.dropout if self.training else 0.0

        float_mask = attn_mask is not None and attn_mask.dtype != torch.bool
        if float_mask:  # additive mask: merge the rest into it
            mask = attn_mask if attn_mask.dim() != 3 else attn_mask[:, None]
            extra = merge_masks(attn_mask=None, key_padding_mask=key_padding_mask, is_causal=is_causal,
                                q_len=t, k_len=s, device=x.device)
            if extra is not None:
                mask = mask.masked_fill(~extra, float("-inf"))
        elif attn_mask is None and key_padding_mask is None and (is_causal and t == s or not is_causal):
            mask = None  # SDPA's own causal flag takes its fastest path
        else:
            mask = merge_masks(attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                               q_len=t, k_len=s, device=x.device)
        use_causal_flag = is_causal and mask is None and not float_mask

        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, S)
            if use_causal_flag:
                scores = scores.masked_fill(causal_mask(t, device=x.device), float("-inf"))
            elif mask is not None:
                scores = scores + mask if mask.dtype != torch.bool else scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout_p) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=use_causal_flag)
        out = out.transpose(1, 2).reshape(x.shape[0], t, self.dim)  # (B, nh, T, hd) -> (B, T, D)
        out = self.out_proj(out)
        return AttentionOutput(out, weights) if need_weights else out


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015): score(s, h) = v^T tanh(W s + U h), softmax over keys.

    Scores every query against every key at once, (B, T, D_q) x (B, S, D_k) -> context (B, T, D_k), so a
    decoder can attend from all its steps in parallel (as in Luong et al. 2015's placement).
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(query_dim, attn_dim, bias=False)
        self.w_key = nn.Linear(key_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, *,
                key_padding_mask: torch.Tensor | None = None) -> AttentionOutput:
        scores = self.v(torch.tanh(self.w_query(query)[:, :, None] + self.w_key(keys)[:, None])).squeeze(-1)
        # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S, A) -> (B, T, S)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        return AttentionOutput(weights @ keys, weights[:, None])  # (B, T, D_k), (B, 1, T, S)
