"""Autoregressive generation: sampling from language models, greedy and beam-search decoding for seq2seq.

Generation re-feeds the whole output so far at every step (the seeds' description, and what the
models' causal masks make correct); no key/value cache, so it is simple and exact, if O(n^2).

Seq2seq models implement a two-method protocol:

- ``encode(src, src_padding_mask) -> memory`` (a tensor, or a tuple of batch-first tensors);
- ``decode(tgt, memory, src_padding_mask) -> logits (B, T, V)`` for every prefix of ``tgt``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _repeat(memory: Any, times: int) -> Any:
    """Repeat every batch-first tensor in ``memory`` ``times`` times along the batch: (B, ...) -> (B*times, ...)."""
    if isinstance(memory, torch.Tensor):
        return memory.repeat_interleave(times, dim=0)
    if isinstance(memory, tuple):
        return type(memory)(*(_repeat(m, times) for m in memory)) if hasattr(memory, "_fields") else tuple(
            _repeat(m, times) for m in memory)
    if memory is None:
        return None
    raise TypeError(f"cannot repeat memory of type {type(memory).__name__}")


@torch.no_grad()
def sample(model: nn.Module, ids: torch.Tensor, *, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``ids`` (B, T) by ``max_new_tokens`` tokens sampled from ``model(ids)``'s last logits.

    ``temperature`` 0 means greedy; ``top_k`` keeps the k most likely tokens. The context is cropped
    to ``model.max_len`` when the model has one. Returns (B, T + max_new_tokens).
    """
    max_len = getattr(model, "max_len", None)
    for _ in range(max_new_tokens):
        context = ids if max_len is None else ids[:, -max_len:]
        logits = model(context)[:, -1].float()  # (B, V)
        if temperature <= 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None, *,
                  bos_id: int, eos_id: int, max_len: int) -> torch.Tensor:
    """The most likely next token at every step: (B, <= max_len) ids after <bos>; rows that ended are
    filled with <eos>."""
    memory = model.encode(src, src_padding_mask)
    seqs = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        nxt = model.decode(seqs, memory, src_padding_mask)[:, -1].argmax(-1)  # (B,)
        nxt = nxt.masked_fill(done, eos_id)
        seqs = torch.cat([seqs, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return seqs[:, 1:]


def _length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5 + length.float()) / 6) ** alpha  # Wu et al. 2016 (GNMT)


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None, *,
                beam_size: int, bos_id: int, eos_id: int, max_len: int, length_penalty: float = 0.6) -> torch.Tensor:
    """Keep the ``beam_size`` most likely prefixes at every step; return the best finished one per source,
    ranked by log-probability over GNMT's length penalty. ``beam_size=1`` is exactly greedy decoding.

    Returns (B, <= max_len) ids after <bos>, rows padded with <eos> after they end.
    """
    b, k = src.shape[0], beam_size
    memory = _repeat(model.encode(src, src_padding_mask), k)
    mask = None if src_padding_mask is None else src_padding_mask.repeat_interleave(k, dim=0)
    seqs = torch.full((b * k, 1), bos_id, dtype=torch.long, device=src.device)
    scores = torch.zeros(b, k, device=src.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    done = torch.zeros(b * k, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(b * k, dtype=torch.long, device=src.device)  # tokens up to and including <eos>
    for _ in range(max_len):
        logp = model.decode(seqs, memory, mask)[:, -1].float().log_softmax(-1)  # (B*K, V)
        vocab = logp.shape[-1]
        logp[done] = float("-inf")
        logp[done, eos_id] = 0.0  # a finished beam only continues with <eos>, at no cost
        cand = (scores.view(b * k, 1) + logp).view(b, k * vocab)
        scores, flat = cand.topk(k, dim=1)  # (B, K)
        parent = (flat // vocab + torch.arange(b, device=src.device)[:, None] * k).view(-1)  # (B*K,)
        token = (flat % vocab).view(-1)
        seqs = torch.cat([seqs[parent], token[:, None]], dim=1)
        lengths = lengths[parent] + (~done[parent]).long()
        done = done[parent] | (token == eos_id)
        if bool(done.all()):
            break
    normalised = scores / _length_penalty(lengths.view(b, k), length_penalty)
    best = normalised.argmax(1) + torch.arange(b, device=src.device) * k  # (B,)
    return seqs[best, 1:]
