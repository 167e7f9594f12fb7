"""Multi-head attention (Vaswani et al. 2017): softmax(Q K^T / sqrt(d_k)) V over several heads at once.

Masks follow ``torch.nn.MultiheadAttention``: ``True`` means *blocked*. ``key_padding_mask`` is (B, S)
with ``True`` at padding; ``attn_mask`` is (T, S) or (B, T, S), boolean (``True`` = blocked) or additive
float. ``is_causal`` blocks every key after its query, so step t never sees t+1, t+2, ...

Incremental decoding keeps a :class:`KVCache` per attention layer: self-attention appends each new
step's keys and values and attends over all of them (the newest queries are the last positions, so a
causal mask aligns to the bottom right), cross-attention projects the encoder memory once and reuses it.
Generating n tokens then costs O(n) projections instead of the O(n^2) of re-feeding the whole prefix.

The fused kernel returns no attention weights; :func:`capture_attention` asks every
:class:`MultiHeadAttention` of a model to compute and keep them for the pictures (``zoo.pictures``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class KVCache:
    """Keys and values that one attention layer has computed so far, (B, nh, S, hd) each: incremental
    decoding (the "past key values" of GPT-2's implementation) so that a step does not recompute them.

    The positions live in buffers that grow geometrically, so a step writes only its own keys and values
    instead of copying the whole past (as ``torch.cat`` would). ``static`` marks a cross-attention cache:
    it is filled once from the encoder memory, which is the same for every beam of a source, so
    :meth:`reorder` leaves it alone.
    """

    def __init__(self, *, static: bool = False) -> None:
        self.static = static
        self.length = 0
        self._k: torch.Tensor | None = None  # (B, nh, capacity, hd)
        self._v: torch.Tensor | None = None

    def __len__(self) -> int:
        """The positions held."""
        return self.length

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new positions' (B, nh, T, hd) keys and values; returns all of them, (B, nh, S + T, hd)."""
        end = self.length + k.shape[2]
        if self._k is None or end > self._k.shape[2]:
            capacity = end if self.static else max(16, end, 2 * (0 if self._k is None else self._k.shape[2]))
            self._k, self._v = self._grown(self._k, k, capacity), self._grown(self._v, v, capacity)
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self.k, self.v

    def _grown(self, old: torch.Tensor | None, new: torch.Tensor, capacity: int) -> torch.Tensor:
        b, nh, _, hd = new.shape
        buf = new.new_empty(b, nh, capacity, hd)
        if old is not None:
            buf[:, :, : self.length] = old[:, :, : self.length]
        return buf

    def reorder(self, index: torch.Tensor) -> None:
        """Rows of the hypotheses after a beam step: row i becomes old row ``index[i]`` (a static cache stays).
        Only the rows that change are copied: most beams usually continue themselves."""
        if self.static or self._k is None:
            return
        moved = (index != torch.arange(len(index), device=index.device)).nonzero().squeeze(1)
        if len(moved):
            src = index[moved]
            self._k[moved, :, : self.length] = self._k[src, :, : self.length]  # gathers before it writes
            self._v[moved, :, : self.length] = self._v[src, :, : self.length]

    def select(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',), in that order, e.g. dropping sources that finished."""
        if self._k is not None:
            self._k, self._v = self._k.index_select(0, index), self._v.index_select(0, index)


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
        self.record: Callable[[torch.Tensor], None] | None = None  # set by capture_attention only

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
        cache: KVCache | None = None,
    ) -> torch.Tensor | AttentionOutput:
        """Self-attention over ``x`` (B, T, D), or cross-attention from ``x`` to ``memory`` (B, S, D).

        With a ``cache`` self-attention treats ``x`` as the ``T`` positions after the ``len(cache)`` cached
        ones (RoPE rotates them by that offset) and attends over all of them, and the masks cover all the
        keys; cross-attention projects ``memory`` into an empty cache and afterwards reads the cache only.
        """
        if memory is None:
            q, k, v = self.in_proj(x).chunk(3, dim=-1)  # (B, T, 3D) -> 3 x (B, T, D)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, T, D) -> (B, nh, T, hd)
            if self.rope is not None:
                offset = 0 if cache is None else len(cache)
                q, k = self.rope(q, offset=offset), self.rope(k, offset=offset)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, nh, len(cache) + T, hd)
        else:
            if cache is not None and self.rope is not None:
                raise ValueError("a key/value cache for cross-attention with RoPE is not supported: the memory "
                                 "has no position relative to the decoder's; build the cross-attention "
                                 "without rope")
            w, b = self.in_proj.weight, self.in_proj.bias
            q = self._heads(F.linear(x, w[: self.dim], None if b is None else b[: self.dim]))  # (B, nh, T, hd)
            if cache is not None and len(cache):
                k, v = cache.k, cache.v  # the memory projected at the first step
            else:
                k, v = F.linear(memory, w[self.dim :], None if b is None else b[self.dim :]).chunk(2, dim=-1)
                k, v = self._heads(k), self._heads(v)  # (B, S, D) -> (B, nh, S, hd)
                if self.rope is not None:
                    q, k = self.rope(q), self.rope(k)
                if cache is not None:
                    cache.append(k, v)
        t, s = q.shape[2], k.shape[2]
        is_causal = is_causal and t > 1  # one query, the newest position, may see every key
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

        if need_weights or self.record is not None:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, S)
            if use_causal_flag:
                scores = scores.masked_fill(causal_mask(t, device=x.device), float("-inf"))
            elif mask is not None:
                scores = scores + mask if mask.dtype != torch.bool else scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout_p) @ v
            if self.record is not None:
                self.record(weights.detach())
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=use_causal_flag)
        out = out.transpose(1, 2).reshape(x.shape[0], t, self.dim)  # (B, nh, T, hd) -> (B, T, D)
        out = self.out_proj(out)
        return AttentionOutput(out, weights) if need_weights else out


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the attention weights of every :class:`MultiHeadAttention` in ``model`` while the block runs.

    Yields a dict, filled as the layers run: module name (``"encoder.layers.0.attn"``) -> its (B, nh, T, S)
    weights softmax(Q K^T / sqrt(d) + mask), each row summing to 1, masked keys exactly 0 (before dropout). A
    layer called again (a decoding step) replaces its entry; the dict is in the order the layers first ran.
    Inside the block the layers compute the weights explicitly instead of SDPA's fused kernel (slower, and the
    same output up to float rounding); outside it nothing changes::

        with capture_attention(model) as weights:
            model(x)
        last = list(weights.values())[-1]  # (B, nh, T, S)
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no MultiHeadAttention layer (zoo.layers.attention) whose "
                         "weights could be captured")
    captured: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable[[torch.Tensor], None]:
        def record(weights: torch.Tensor) -> None:
            captured[name] = weights

        return record

    try:
        for name, m in layers:
            m.record = recorder(name)
        yield captured
    finally:
        for _, m in layers:
            m.record = None


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

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """U h for (B, S, D_k) keys -> (B, S, A): computed once when the same keys serve many steps."""
        return self.w_key(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None,
                projected_keys: torch.Tensor | None = None) -> AttentionOutput:
        """Context (B, T, D_k) and weights (B, 1, T, S); ``projected_keys``: :meth:`project_keys` of ``keys``,
        computed before (incremental decoding)."""
        projected = self.w_key(keys) if projected_keys is None else projected_keys  # (B, S, A)
        scores = self.v(torch.tanh(self.w_query(query)[:, :, None] + projected[:, None])).squeeze(-1)
        # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S, A) -> (B, T, S)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        return AttentionOutput(weights @ keys, weights[:, None])  # (B, T, D_k), (B, 1, T, S)
