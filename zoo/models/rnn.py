"""Recurrent networks: the Elman RNN, LSTM (Hochreiter & Schmidhuber 1997) and GRU (Cho et al. 2014).

One builder per cell (``rnn``, ``lstm``, ``gru``); its ``task`` keyword picks the head, so one registry
name (and one config) serves three tasks with the same recurrent core:

- ``task="classify"`` (the default): :class:`RNNClassifier`, token ids (B, T) -> class logits; needs
  ``vocab_size`` and ``num_classes``; ``pool`` and ``bidirectional`` apply. Given ``in_features`` it reads
  feature vectors (B, T, F) instead (log-mel frames of speech), with no embedding.
- ``task="lm"``: :class:`RNNLanguageModel`, token ids (B, T) -> next-token logits (B, T, V) at every
  step; needs ``vocab_size``; never bidirectional (it must not see the future); ``tie_weights`` applies.
- ``task="forecast"``: :class:`RNNForecaster`, a (B, L, C) window -> (B, horizon, C'); needs
  ``in_features``, ``horizon`` and ``seq_len``; ``patch_len`` and ``revin`` apply.

Arguments the chosen head does not use are ignored. Stacked (``num_layers``) and bidirectional
(``bidirectional``). They read a sequence one step at a time, which is why they forget over long spans
and cannot be parallelised over time: the seeds' case for attention. ``seq2seq_lstm`` is the
encoder-decoder for translation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.layers.attention import AdditiveAttention
from zoo.layers.classifier import ClassifierMixin, SequenceFeatures
from zoo.layers.timeseries import PatchForecaster
from zoo.registry import register_model

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean", "max")
RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for an LSTM; each (layers, B, H)


class RecurrentCache:
    """What a recurrent decoder carries from one step to the next (incremental decoding): its ``state``,
    and, with attention, the encoder states' projection ``keys`` (B, S, A), computed once.

    :meth:`reorder` follows a beam step (the keys are the same for every beam of a source);
    :meth:`select` keeps some batch rows of everything (dropping sources that finished).
    """

    def __init__(self) -> None:
        self.state: RNNState | None = None
        self.keys: torch.Tensor | None = None
        self.length = 0

    def __len__(self) -> int:
        """The positions fed so far."""
        return self.length

    def reorder(self, index: torch.Tensor) -> None:
        if isinstance(self.state, tuple):
            self.state = tuple(s.index_select(1, index) for s in self.state)  # (layers, B, H): batch is dim 1
        elif self.state is not None:
            self.state = self.state.index_select(1, index)

    def select(self, index: torch.Tensor) -> None:
        self.reorder(index)
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)


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

    def step(self, x: torch.Tensor, state: RNNState | None) -> tuple[torch.Tensor, RNNState]:
        """Continue a unidirectional core from ``state`` (None: zeros) over (B, T, input_size): outputs
        (B, T, H) and the new state, to carry into the next call (incremental decoding)."""
        if self.num_directions != 1:
            raise ValueError("a bidirectional core reads the whole sequence; it cannot continue step by step")
        return self.rnn(x, state)


class RNNClassifier(ClassifierMixin, nn.Module):
    """Token ids -> embedding -> recurrent core -> pooled features -> class logits. With ``in_features`` the core
    reads feature vectors (B, T, F) directly (spectrogram frames: they are the input vectors an embedding makes).

    timm's surface, with the padding mask carried along: ``forward_features(tokens, padding_mask)`` returns a
    :class:`~zoo.layers.SequenceFeatures` (outputs (B, T, F), the mask, the final state (B, F)), which
    ``forward_head`` pools (``pool``) and classifies, so ``m.forward_head(m.forward_features(tokens, mask))``
    equals ``m(tokens, mask)``; ``pre_logits=True`` returns the pooled (B, ``num_features``) vector.
    """

    def __init__(self, *, cell: str, vocab_size: int | None, num_classes: int, embed_dim: int, hidden_size: int,
                 num_layers: int, bidirectional: bool, dropout: float, pad_id: int, pool: str,
                 in_features: int | None = None) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}; choose one of {', '.join(POOLS)}")
        if in_features is not None:
            self.embed, input_size = nn.Identity(), in_features
        elif vocab_size is not None:
            self.embed, input_size = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id), embed_dim
        else:
            raise ValueError("RNNClassifier needs vocab_size (token ids) or in_features (feature vectors)")
        self.core = RecurrentCore(cell=cell, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional, dropout=dropout)
        self.pool = pool
        self.drop = nn.Dropout(dropout)
        self.num_features = self.core.out_features
        self.head = nn.Linear(self.core.out_features, num_classes)

    def forward_features(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> SequenceFeatures:
        """Token ids (B, T) or features (B, T, F_in), and padding mask (B, T, True at padding) -> outputs (B, T, F),
        mask, final state (B, F)."""
        lengths = None if padding_mask is None else (~padding_mask).sum(1)
        out, last = self.core(self.drop(self.embed(tokens)), lengths)  # (B, T, F), (B, F)
        return SequenceFeatures(out, padding_mask, last)

    def forward_head(self, x: SequenceFeatures | torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Pool a :class:`SequenceFeatures` (or bare (B, T, F) outputs without padding) -> (B, num_classes)."""
        out, padding_mask, last = x if isinstance(x, SequenceFeatures) else SequenceFeatures(x)
        if self.pool == "last":
            if last is None:
                raise ValueError("pool='last' needs the recurrent final state: pass forward_features(...)'s "
                                 "SequenceFeatures to forward_head, not the bare outputs")
            feats = last
        else:
            keep = out.new_ones(out.shape[:2], dtype=torch.bool) if padding_mask is None else ~padding_mask
            keep = keep[..., None]  # (B, T) -> (B, T, 1)
            if self.pool == "mean":
                feats = (out * keep).sum(1) / keep.sum(1).clamp(min=1)
            else:
                feats = out.masked_fill(~keep, float("-inf")).amax(1)
        feats = self.drop(feats)
        return feats if pre_logits else self.head(feats)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(tokens, padding_mask))


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

    def new_cache(self) -> RecurrentCache:
        """An empty cache for incremental generation (:func:`zoo.decoding.sample`)."""
        return RecurrentCache()

    def forward(self, tokens: torch.Tensor, *, cache: RecurrentCache | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V); with a ``cache`` the recurrence continues from the state it carries."""
        x = self.drop(self.embed(tokens))
        if cache is None:
            out, _ = self.core(x)  # (B, T, H)
        else:
            out, cache.state = self.core.step(x, cache.state)
            cache.length += tokens.shape[1]
        return self.head(self.proj(self.drop(out)))  # (B, T, V)


class RNNForecaster(PatchForecaster):
    """A (B, L, C) window -> (B, horizon, C') forecast, read by the recurrent core segment by segment.

    Each input window is instance-normalised (RevIN) and cut into ``patch_len``-step segments that are
    embedded as tokens (SegRNN, Lin et al. 2023; ``patch_len=1`` is the classic step-by-step RNN); the
    final state predicts the whole horizon at once. When inputs and outputs are the same channels,
    each channel is its own series through shared weights (channel independence, Nie et al. 2023);
    otherwise all channels of a segment form one token and the last ``out_features`` channels are
    the targets (see :class:`~zoo.layers.timeseries.PatchForecaster`).
    """

    def __init__(self, *, cell: str, in_features: int, out_features: int, horizon: int, seq_len: int,
                 embed_dim: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
                 patch_len: int, revin: bool) -> None:
        if seq_len % patch_len:
            raise ValueError(f"seq_len={seq_len} is not divisible by patch_len={patch_len}: SegRNN cuts the "
                             "window into whole segments; choose a patch_len that divides seq_len")
        super().__init__(in_features=in_features, out_features=out_features, horizon=horizon, seq_len=seq_len,
                         patch_len=patch_len, patch_stride=patch_len, revin=revin)
        self.embed = nn.Sequential(nn.Linear(self.token_dim, embed_dim), nn.ReLU())
        self.core = RecurrentCore(cell=cell, input_size=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.core.out_features, self.head_features)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        _, last = self.core(self.embed(tokens))  # (N, P, token_dim) -> (N, dirs*H)
        return self.head(self.drop(last))  # (N, H * per_series)


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
    protocol of :mod:`zoo.decoding`; generating, the decoder carries its state (:meth:`new_cache`).
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

    def new_cache(self) -> RecurrentCache:
        """An empty cache for incremental :meth:`decode`: the decoder's state is carried, not re-run."""
        return RecurrentCache()

    def decode(self, tgt: torch.Tensor, memory: EncoderMemory, src_padding_mask: torch.Tensor | None = None, *,
               cache: RecurrentCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for every prefix of ``tgt`` (B, T) (which starts with <bos>).

        With a ``cache`` (from :meth:`new_cache`) ``tgt`` holds only the tokens after those fed before: the
        decoder continues from the state the cache carries, and the attention keys are projected once.
        """
        if cache is None or cache.state is None:
            h0 = memory.init.transpose(0, 1).contiguous()  # (B, layers, H) -> (layers, B, H)
            state = (h0, torch.zeros_like(h0)) if self.is_lstm else h0
        else:
            state = cache.state
        out, state = self.decoder(self.drop(self.tgt_embed(tgt)), state)  # (B, T, H)
        keys = None
        if cache is not None:
            cache.state, cache.length = state, cache.length + tgt.shape[1]
            if self.attn is not None and cache.keys is None:
                cache.keys = self.attn.project_keys(memory.outputs)  # (B, S, H)
            keys = cache.keys
        if self.attn is not None:
            context = self.attn(out, memory.outputs, key_padding_mask=src_padding_mask,
                                projected_keys=keys).out  # (B, T, 2H)
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
    """The head ``task`` names around a ``cell`` core; what the builders ``rnn``, ``lstm`` and ``gru`` share."""

    def need(**kw: Any) -> None:
        missing = [k for k, v in kw.items() if v is None]
        if missing:
            raise ValueError(f"{cell} with task={task!r} needs {', '.join(missing)} (a data config supplies them)")

    if task == "classify":
        need(num_classes=num_classes, **({} if in_features is not None else {"vocab_size": vocab_size}))
        return RNNClassifier(cell=cell, vocab_size=vocab_size, num_classes=num_classes, embed_dim=embed_dim,
                             hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, pad_id=pad_id, pool=pool, in_features=in_features)
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


_META = dict(family="rnn", modality=("text", "timeseries", "speech"), tasks=("classify", "lm", "forecast"),
             example=_example)


@register_model(paper="Elman 1990", **_META)
def rnn(*, task: str = "classify", vocab_size: int | None = 1000, in_features: int | None = None,
        num_classes: int | None = 2, horizon: int | None = None, out_features: int | None = None,
        seq_len: int | None = None, pad_id: int = 0, embed_dim: int = 128, hidden_size: int = 256,
        num_layers: int = 2, bidirectional: bool = False, dropout: float = 0.1, pool: str = "last",
        tie_weights: bool = False, patch_len: int = 1, revin: bool = True) -> nn.Module:
    """Elman RNN (tanh; Elman 1990).

    ``task`` picks the head: ``"classify"`` -> :class:`RNNClassifier`, ``"lm"`` -> :class:`RNNLanguageModel`,
    ``"forecast"`` -> :class:`RNNForecaster` (what each needs: the module docstring).
    """
    return _recurrent("rnn", **locals())  # locals(): exactly the keyword arguments, nothing else yet


@register_model(paper="Hochreiter & Schmidhuber 1997", **_META)
def lstm(*, task: str = "classify", vocab_size: int | None = 1000, in_features: int | None = None,
         num_classes: int | None = 2, horizon: int | None = None, out_features: int | None = None,
         seq_len: int | None = None, pad_id: int = 0, embed_dim: int = 128, hidden_size: int = 256,
         num_layers: int = 2, bidirectional: bool = False, dropout: float = 0.1, pool: str = "last",
         tie_weights: bool = False, patch_len: int = 1, revin: bool = True) -> nn.Module:
    """LSTM (input, forget and output gates; Hochreiter & Schmidhuber 1997).

    ``task`` picks the head: ``"classify"`` -> :class:`RNNClassifier`, ``"lm"`` -> :class:`RNNLanguageModel`,
    ``"forecast"`` -> :class:`RNNForecaster` (what each needs: the module docstring).
    """
    return _recurrent("lstm", **locals())


@register_model(paper="Cho et al. 2014", **_META)
def gru(*, task: str = "classify", vocab_size: int | None = 1000, in_features: int | None = None,
        num_classes: int | None = 2, horizon: int | None = None, out_features: int | None = None,
        seq_len: int | None = None, pad_id: int = 0, embed_dim: int = 128, hidden_size: int = 256,
        num_layers: int = 2, bidirectional: bool = False, dropout: float = 0.1, pool: str = "last",
        tie_weights: bool = False, patch_len: int = 1, revin: bool = True) -> nn.Module:
    """GRU (update and reset gates; Cho et al. 2014).

    ``task`` picks the head: ``"classify"`` -> :class:`RNNClassifier`, ``"lm"`` -> :class:`RNNLanguageModel`,
    ``"forecast"`` -> :class:`RNNForecaster` (what each needs: the module docstring).
    """
    return _recurrent("gru", **locals())


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
