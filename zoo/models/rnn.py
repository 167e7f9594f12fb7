"""Recurrent networks: the Elman RNN, LSTM (Hochreiter & Schmidhuber 1997) and GRU (Cho et al. 2014).

One builder per cell (``rnn``, ``lstm``, ``gru``); ``task`` picks the head, so the same recurrent core
is a sequence classifier (``classify``: token ids -> class logits), a language model (``lm``: token ids
-> next-token logits at every step) or a forecaster (``forecast``: a (B, L, C) window -> (B, H, C')).
Stacked (``num_layers``) and bidirectional (``bidirectional``; not for ``lm``, which must not see the
future). They read a sequence one step at a time, which is why they forget over long spans and
cannot be parallelised over time: the seeds' case for attention.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.layers.attention import AdditiveAttention
from zoo.layers.timeseries import RevIN, num_patches, patchify
from zoo.registry import register_model

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean", "max")


class RecurrentCore(nn.Module):
    """A stacked, optionally bidirectional RNN/LSTM/GRU over (B, T, input_size), batch first."""

    def __init__(self, *, cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 dropout: float) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}; choose one of {', '.join(CELLS)}")
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.num_directions = 2 if bidirectional else 1
        self.out_features = hidden_size * self.num_directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> outputs (B, T, dirs*H) and the last layer's final state of each direction, (B, dirs*H).

        With ``lengths`` the batch is packed, so padding never enters the recurrence: a padded sequence
        gives exactly the outputs it gives alone (the backward direction starts at its true end).
        """
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, h = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h_n, c_n)
        b = x.shape[0]
        last = h.view(-1, self.num_directions, b, h.shape[-1])[-1]  # (layers*dirs, B, H) -> (dirs, B, H)
        return out, last.transpose(0, 1).reshape(b, -1)  # (B, dirs*H)


class RNNClassifier(nn.Module):
    """Token ids -> embedding -> recurrent core -> pooled features -> class logits."""

    def __init__(self, *, cell: str, vocab_size: int, num_classes: int, embed_dim: int, hidden_size: int,
                 num_layers: int, bidirectional: bool, dropout: float, pad_id: int, pool: str) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}; choose one of {', '.join(POOLS)}")
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.core = RecurrentCore(cell=cell, input_size=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional, dropout=dropout)
        self.pool = pool
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.core.out_features, num_classes)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        lengths = None if padding_mask is None else (~padding_mask).sum(1)
        out, last = self.core(self.drop(self.embed(tokens)), lengths)  # (B, T, F), (B, F)
        if self.pool == "last":
            feats = last
        else:
            keep = torch.ones_like(tokens, dtype=torch.bool) if padding_mask is None else ~padding_mask
            keep = keep[..., None]  # (B, T, 1)
            if self.pool == "mean":
                feats = (out * keep).sum(1) / keep.sum(1).clamp(min=1)
            else:
                feats = out.masked_fill(~keep, float("-inf")).amax(1)
        return self.head(self.drop(feats))


class RNNLanguageModel(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V); input and output embeddings tied when sizes match
    (Press & Wolf 2017)."""

    def __init__(self, *, cell: str, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int,
                 dropout: float, tie_weights: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.core = RecurrentCore(cell=cell, input_size=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=False, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, embed_dim) if hidden_size != embed_dim else nn.Identity()
        self.head = nn.Linear(embed_dim, vocab_size)
        if tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.core(self.drop(self.embed(tokens)))  # (B, T, H)
        return self.head(self.proj(self.drop(out)))  # (B, T, V)


class RNNForecaster(nn.Module):
    """A (B, L, C) window -> (B, horizon, C') forecast, read by the recurrent core segment by segment.

    Each input window is instance-normalised (RevIN) and cut into ``patch_len``-step segments that are
    embedded as tokens (SegRNN, Lin et al. 2023; ``patch_len=1`` is the classic step-by-step RNN); the
    final state predicts the whole horizon at once. When inputs and outputs are the same channels,
    each channel is its own series through shared weights (channel independence, Nie et al. 2023);
    otherwise all channels of a segment form one token and the last ``out_features`` channels are
    the targets.
    """

    def __init__(self, *, cell: str, in_features: int, out_features: int, horizon: int, seq_len: int,
                 embed_dim: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
                 patch_len: int, revin: bool) -> None:
        super().__init__()
        if out_features > in_features:
            raise ValueError(f"out_features={out_features} > in_features={in_features}: the targets must be "
                             "among the input channels")
        if seq_len % patch_len:
            raise ValueError(f"seq_len={seq_len} is not divisible by patch_len={patch_len}")
        self.channel_independent = in_features == out_features
        self.horizon, self.out_features, self.patch_len = horizon, out_features, patch_len
        self.revin = RevIN(in_features) if revin else None
        token = patch_len if self.channel_independent else patch_len * in_features
        self.embed = nn.Sequential(nn.Linear(token, embed_dim), nn.ReLU())
        self.core = RecurrentCore(cell=cell, input_size=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        per_series = 1 if self.channel_independent else out_features
        self.head = nn.Linear(self.core.out_features, horizon * per_series)
        self.num_tokens = num_patches(seq_len, patch_len, patch_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        if self.channel_independent:
            series = x.transpose(1, 2).reshape(b * c, -1)  # (B, L, C) -> (B*C, L)
            tokens = patchify(series, patch_len=self.patch_len, stride=self.patch_len)  # (B*C, N, P)
        else:
            tokens = x.reshape(b, -1, self.patch_len * c)  # (B, L, C) -> (B, N, P*C)
        _, last = self.core(self.embed(tokens))
        y = self.head(self.drop(last))  # (B*C, H) or (B, H*C')
        if self.channel_independent:
            y = y.view(b, c, self.horizon).transpose(1, 2)  # (B*C, H) -> (B, H, C)
        else:
            y = y.view(b, self.horizon, self.out_features)
        return y if stats is None else self.revin.denormalize(y, stats)


class EncoderMemory(NamedTuple):
    outputs: torch.Tensor  # (B, S, 2H): the bidirectional encoder's states, attended to
    init: torch.Tensor  # (B, layers, H): the decoder's initial hidden state (batch first, for beam search)


class Seq2SeqRNN(nn.Module):
    """RNN encoder-decoder (Sutskever et al. 2014; Cho et al. 2014), optionally with additive attention
    (Bahdanau et al. 2015).

    A bidirectional encoder reads the source; its final states, through a bridge, start the decoder.
    With ``attention`` each decoder output attends over all encoder states (additive scores), and the
    context joins the output before the vocabulary projection (Luong et al. 2015's placement, so all
    target steps run in parallel under teacher forcing). Implements the ``encode``/``decode``
    protocol of :mod:`zoo.decoding`.
    """

    def __init__(self, *, cell: str, src_vocab_size: int, tgt_vocab_size: int, pad_id: int, embed_dim: int,
                 hidden_size: int, num_layers: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = RecurrentCore(cell=cell, input_size=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                                     bidirectional=True, dropout=dropout)
        self.bridge = nn.Linear(2 * hidden_size, num_layers * hidden_size)
        self.decoder = CELLS[cell](embed_dim, hidden_size, num_layers, batch_first=True,
                                   dropout=dropout if num_layers > 1 else 0.0)
        self.is_lstm = cell == "lstm"
        self.attn = AdditiveAttention(hidden_size, 2 * hidden_size, hidden_size) if attention else None
        self.combine = nn.Linear(3 * hidden_size, hidden_size) if attention else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, tgt_vocab_size)

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> EncoderMemory:
        lengths = None if src_padding_mask is None else (~src_padding_mask).sum(1)
        outputs, last = self.encoder(self.drop(self.src_embed(src)), lengths)  # (B, S, 2H), (B, 2H)
        init = torch.tanh(self.bridge(last)).view(-1, self.num_layers, self.hidden_size)  # (B, layers, H)
        return EncoderMemory(outputs, init)

    def decode(self, tgt: torch.Tensor, memory: EncoderMemory,
               src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for every prefix of ``tgt`` (B, T) (which starts with <bos>)."""
        h0 = memory.init.transpose(0, 1).contiguous()  # (B, layers, H) -> (layers, B, H)
        state = (h0, torch.zeros_like(h0)) if self.is_lstm else h0
        out, _ = self.decoder(self.drop(self.tgt_embed(tgt)), state)  # (B, T, H)
        if self.attn is not None:
            context = self.attn(out, memory.outputs, key_padding_mask=src_padding_mask).out  # (B, T, 2H)
            out = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.head(self.drop(out))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_padding_mask: torch.Tensor | None = None,
                tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) for ``tgt_in``; ``tgt_padding_mask`` is unused (the decoder is
        causal, so right padding never reaches a real position)."""
        return self.decode(tgt_in, self.encode(src, src_padding_mask), src_padding_mask)


def _recurrent(cell: str, *, task: str, vocab_size: int | None, in_features: int | None, num_classes: int | None,
               horizon: int | None, out_features: int | None, seq_len: int | None, pad_id: int, embed_dim: int,
               hidden_size: int, num_layers: int, bidirectional: bool, dropout: float, pool: str,
               tie_weights: bool, patch_len: int, revin: bool) -> nn.Module:
    def need(**kw: Any) -> None:
        missing = [k for k, v in kw.items() if v is None]
        if missing:
            raise ValueError(f"{cell} with task={task!r} needs {', '.join(missing)} (a data config supplies them)")

    if task == "classify":
        need(vocab_size=vocab_size, num_classes=num_classes)
        return RNNClassifier(cell=cell, vocab_size=vocab_size, num_classes=num_classes, embed_dim=embed_dim,
                             hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, pad_id=pad_id, pool=pool)
    if task == "lm":
        need(vocab_size=vocab_size)
        if bidirectional:
            raise ValueError(f"a bidirectional {cell} cannot be a language model: it would read the tokens it "
                             "must predict; set bidirectional=false")
        return RNNLanguageModel(cell=cell, vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size,
                                num_layers=num_layers, dropout=dropout, tie_weights=tie_weights)
    if task == "forecast":
        need(in_features=in_features, horizon=horizon, seq_len=seq_len)
        return RNNForecaster(cell=cell, in_features=in_features, out_features=out_features or in_features,
                             horizon=horizon, seq_len=seq_len, embed_dim=embed_dim, hidden_size=hidden_size,
                             num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                             patch_len=patch_len, revin=revin)
    raise ValueError(f"{cell}: task={task!r}; choose 'classify', 'lm' or 'forecast'")


def _example(batch: int) -> tuple[torch.Tensor, ...]:
    return (torch.randint(1, 100, (batch, 12)),)


_META = dict(modality=("text", "timeseries"), tasks=("classify", "lm", "forecast"), example=_example)


def _builder(cell: str, doc: str):
    def builder(*, task: str = "classify", vocab_size: int | None = 1000, in_features: int | None = None,
                num_classes: int | None = 2, horizon: int | None = None, out_features: int | None = None,
                seq_len: int | None = None, pad_id: int = 0, embed_dim: int = 128, hidden_size: int = 256,
                num_layers: int = 2, bidirectional: bool = False, dropout: float = 0.1, pool: str = "last",
                tie_weights: bool = False, patch_len: int = 1, revin: bool = True) -> nn.Module:
        kwargs = {k: v for k, v in locals().items() if k != "cell"}  # `cell` is a closure variable
        return _recurrent(cell, **kwargs)

    builder.__name__ = builder.__qualname__ = cell
    builder.__doc__ = doc
    return builder


for _cell, _paper, _doc in (
    ("rnn", "Elman 1990", "Elman RNN (tanh) sequence model; the head follows ``task``."),
    ("lstm", "Hochreiter & Schmidhuber 1997", "LSTM (input, forget and output gates); the head follows ``task``."),
    ("gru", "Cho et al. 2014", "GRU (update and reset gates); the head follows ``task``."),
):
    globals()[_cell] = register_model(family="rnn", paper=_paper, **_META)(_builder(_cell, _doc))


def _seq2seq_example(batch: int) -> tuple[torch.Tensor, ...]:
    return torch.randint(4, 100, (batch, 9)), torch.randint(4, 100, (batch, 7))


@register_model(family="rnn", modality="text", tasks=("seq2seq",), example=_seq2seq_example,
                paper="Sutskever et al. 2014; Bahdanau et al. 2015")
def seq2seq_lstm(*, src_vocab_size: int = 1000, tgt_vocab_size: int = 1000, pad_id: int = 0, embed_dim: int = 256,
                 hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.2, attention: bool = True,
                 cell: str = "lstm") -> Seq2SeqRNN:
    """LSTM (or ``cell="gru"``) encoder-decoder; ``attention=False`` is the 2014 fixed-vector baseline."""
    return Seq2SeqRNN(cell=cell, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, pad_id=pad_id,
                      embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                      attention=attention)
