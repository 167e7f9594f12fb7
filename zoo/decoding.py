"""Autoregressive generation: sampling from language models, greedy and beam-search decoding for seq2seq.

Every step needs the next-token distribution after the output so far. Re-feeding that whole output at
every step (``use_cache=False``) is what the models' causal masks make correct, and the simplest to
read, but generating n tokens costs O(n^2) token passes. A model with a cache (a key/value cache per
attention layer, or a recurrent state; Ott et al. 2019, fairseq's incremental decoding) feeds only the
new token and keeps the rest: O(n). Both give the same tokens; the re-feeding path stays as the
reference. Rows (sources) that have finished are dropped from the batch, so the last steps cost only
what is still being decoded.

Seq2seq models implement a two-method protocol:

- ``encode(src, src_padding_mask) -> memory`` (a tensor, or a tuple of batch-first tensors);
- ``decode(tgt, memory, src_padding_mask) -> logits (B, T, V)`` for every prefix of ``tgt``.

Language models: ``model(ids) -> logits (B, T, V)``. Either kind may add incremental decoding:

- ``new_cache() -> cache``, and ``decode(tgt, memory, src_padding_mask, cache=cache)`` or
  ``model(ids, cache=cache)`` taking only the tokens after the ``len(cache)`` fed before;
- ``cache.reorder(index)``: batch row i continues old row ``index[i]`` (after a beam step; every
  beam of a source reads the same memory), and ``cache.select(index)``: keep the rows ``index``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _repeat(memory: Any, times: int) -> Any:
    """Repeat every batch-first tensor in ``memory`` ``times`` times along the batch: (B, ...) -> (B*times, ...)."""
    return _map(memory, lambda t: t.repeat_interleave(times, dim=0))


def _rows(memory: Any, index: torch.Tensor) -> Any:
    """Batch rows ``index`` of every batch-first tensor in ``memory``: (B, ...) -> (len(index), ...)."""
    return _map(memory, lambda t: t.index_select(0, index))


def _map(memory: Any, fn) -> Any:
    if isinstance(memory, torch.Tensor):
        return fn(memory)
    if isinstance(memory, tuple):
        mapped = (_map(m, fn) for m in memory)
        return type(memory)(*mapped) if hasattr(memory, "_fields") else tuple(mapped)
    if memory is None:
        return None
    raise TypeError(f"cannot take batch rows of memory of type {type(memory).__name__}; encode() should return "
                    "a tensor or a (named) tuple of batch-first tensors")


def _new_cache(model: nn.Module, use_cache: bool) -> Any:
    return model.new_cache() if use_cache and hasattr(model, "new_cache") else None


class _Decoder:
    """Next-token logits of a seq2seq model for a batch of prefixes, incrementally when the model has a cache;
    follows beam steps (:meth:`reorder`) and drops finished rows (:meth:`select`)."""

    def __init__(self, model: nn.Module, memory: Any, src_padding_mask: torch.Tensor | None, *,
                 use_cache: bool) -> None:
        self.model, self.memory, self.mask = model, memory, src_padding_mask
        self.cache = _new_cache(model, use_cache)

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, T) prefixes -> (B, V) logits of the token after each."""
        if self.cache is None:
            return self.model.decode(seqs, self.memory, self.mask)[:, -1]
        new = seqs[:, len(self.cache):]  # (B, T) -> (B, 1) after the first step
        return self.model.decode(new, self.memory, self.mask, cache=self.cache)[:, -1]

    def reorder(self, index: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)

    def select(self, index: torch.Tensor) -> None:
        self.memory = _rows(self.memory, index)
        self.mask = None if self.mask is None else self.mask.index_select(0, index)
        if self.cache is not None:
            self.cache.select(index)


@torch.no_grad()
def sample(model: nn.Module, ids: torch.Tensor, *, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, generator: torch.Generator | None = None,
           use_cache: bool = True) -> torch.Tensor:
    """Continue ``ids`` (B, T) by ``max_new_tokens`` tokens sampled from ``model(ids)``'s last logits.

    ``temperature`` 0 means greedy; ``top_k`` keeps the k most likely tokens. The context is cropped
    to ``model.max_len`` when the model has one (once it is longer, positions shift at every step and
    each step is re-fed). ``use_cache=False`` re-feeds the whole context at every step.
    Returns (B, T + max_new_tokens).
    """
    max_len = getattr(model, "max_len", None)
    cache = _new_cache(model, use_cache)
    for _ in range(max_new_tokens):
        if cache is not None and (max_len is None or ids.shape[1] <= max_len):
            logits = model(ids[:, len(cache):], cache=cache)[:, -1].float()  # (B, V)
        else:
            context = ids if max_len is None else ids[:, -max_len:]
            logits = model(context)[:, -1].float()
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
                  bos_id: int, eos_id: int, max_len: int, use_cache: bool = True) -> torch.Tensor:
    """The most likely next token at every step: (B, <= max_len) ids after <bos>; rows that ended are
    filled with <eos>. ``use_cache=False`` re-feeds the whole output at every step."""
    b = src.shape[0]
    step = _Decoder(model, model.encode(src, src_padding_mask), src_padding_mask, use_cache=use_cache)
    out = torch.full((b, max_len), eos_id, dtype=torch.long, device=src.device)
    seqs = torch.full((b, 1), bos_id, dtype=torch.long, device=src.device)
    alive = torch.arange(b, device=src.device)  # the source of each row still decoding
    for t in range(max_len):
        nxt = step(seqs).argmax(-1)  # (B',)
        seqs = torch.cat([seqs, nxt[:, None]], dim=1)
        out[alive, t] = nxt
        keep = (nxt != eos_id).nonzero().squeeze(1)
        if len(keep) == 0:
            return out[:, : t + 1]
        if len(keep) < len(alive):  # drop the rows that ended
            seqs, alive = seqs[keep], alive[keep]
            step.select(keep)
    return out


def _length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5 + length.float()) / 6) ** alpha  # Wu et al. 2016 (GNMT)


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None, *,
                beam_size: int, bos_id: int, eos_id: int, max_len: int, length_penalty: float = 0.6,
                use_cache: bool = True) -> torch.Tensor:
    """Keep the ``beam_size`` most likely prefixes at every step; return the best finished one per source,
    ranked by log-probability over GNMT's length penalty. ``beam_size=1`` is exactly greedy decoding.

    A source stops once all its hypotheses have ended (<eos>), and the search once every source has.
    ``use_cache=False`` re-feeds the whole output at every step. Returns (B, <= max_len) ids after
    <bos>, rows padded with <eos> after they end.
    """
    b, k = src.shape[0], beam_size
    mask = None if src_padding_mask is None else src_padding_mask.repeat_interleave(k, dim=0)
    step = _Decoder(model, _repeat(model.encode(src, src_padding_mask), k), mask, use_cache=use_cache)
    out = torch.full((b, max_len), eos_id, dtype=torch.long, device=src.device)
    seqs = torch.full((b * k, 1), bos_id, dtype=torch.long, device=src.device)
    scores = torch.zeros(b, k, device=src.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    done = torch.zeros(b * k, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(b * k, dtype=torch.long, device=src.device)  # tokens up to and including <eos>
    alive = torch.arange(b, device=src.device)  # the source of each group of k rows still decoding
    for t in range(max_len):
        n = len(alive)
        logp = step(seqs).float().log_softmax(-1)  # (N*K, V)
        vocab = logp.shape[-1]
        logp[done] = float("-inf")
        logp[done, eos_id] = 0.0  # a finished beam only continues with <eos>, at no cost
        cand = (scores.view(n * k, 1) + logp).view(n, k * vocab)
        scores, flat = cand.topk(k, dim=1)  # (N, K)
        parent = (flat // vocab + torch.arange(n, device=src.device)[:, None] * k).view(-1)  # (N*K,)
        token = (flat % vocab).view(-1)
        seqs = torch.cat([seqs[parent], token[:, None]], dim=1)
        lengths = lengths[parent] + (~done[parent]).long()
        done = done[parent] | (token == eos_id)
        step.reorder(parent)
        ended = done.view(n, k).all(1)  # (N,)
        if t == max_len - 1:
            ended[:] = True
        if bool(ended.any()):  # the best hypothesis of each source that ended, then drop its rows
            normalised = scores[ended] / _length_penalty(lengths.view(n, k)[ended], length_penalty)
            best = normalised.argmax(1) + ended.nonzero().squeeze(1) * k  # (E,) rows
            out[alive[ended], : t + 1] = seqs[best, 1:]
            keep = (~ended).nonzero().squeeze(1)  # (N',) groups
            if len(keep) == 0:
                return out[:, : t + 1]
            rows = (keep[:, None] * k + torch.arange(k, device=src.device)).view(-1)  # (N'*K,)
            seqs, done, lengths, scores, alive = seqs[rows], done[rows], lengths[rows], scores[keep], alive[keep]
            step.select(rows)
    return out
