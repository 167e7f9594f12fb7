"""The Transformer (Vaswani et al. 2017) in its three shapes, all from the shared layers of zoo/layers:

- ``transformer``: encoder-decoder for sequence-to-sequence (masked self-attention, cross-attention);
- ``transformer_encoder``: encoder-only, for classification (BERT-style), masked-LM pretraining (BERT's
  ``task="mlm"``: the same embedding and encoder, so a classifier starts from its weights) and forecasting
  (PatchTST-style);
- ``gpt``: decoder-only language model (Radford et al. 2018), nanoGPT-sized for a CPU.

``pos`` picks the positional information: ``sinusoidal``, ``learned`` or ``rope`` (rotary, inside
attention).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.layers import (
    ClassifierMixin,
    DecoderCache,
    FeatureEmbedding,
    SequenceFeatures,
    TokenEmbedding,
    TransformerDecoder,
    TransformerEncoder,
    create_positional,
    create_rope,
)
from zoo.layers.timeseries import PatchForecaster
from zoo.registry import register_model


def _init_weights(module: nn.Module, *, embed_std: float = 0.02, xavier: bool = False) -> None:
    """N(0, ``embed_std``) embeddings and zero biases; linear weights N(0, 0.02) as in GPT-2, or Xavier-uniform
    (``xavier``) as in the 2017 Transformer, whose embeddings are N(0, dim^-0.5) and scaled by sqrt(dim)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight) if xavier else nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=embed_std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


def _scale_residual_projections(module: nn.Module, depth: int) -> None:
    # GPT-2: the projections that write into the residual stream start 1/sqrt(2 * depth) smaller
    for name, p in module.named_parameters():
        if name.endswith(("out_proj.weight", "fc2.weight")):
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * depth))


class Seq2SeqTransformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al. 2017) for translation.

    With one joint vocabulary (``src_vocab_size == tgt_vocab_size``) the source embedding, target
    embedding and output projection share one matrix, as in the paper. Implements the
    ``encode``/``decode`` protocol of :mod:`zoo.decoding`, with a key/value cache (:meth:`new_cache`) so that
    generation feeds one new token per step instead of the whole output so far.
    """

    def __init__(self, *, src_vocab_size: int, tgt_vocab_size: int, pad_id: int, max_len: int, dim: int,
                 depth: int, num_heads: int, mlp_ratio: float, dropout: float, pos: str, norm_first: bool,
                 act: str = "relu") -> None:
        super().__init__()
        self.pad_id, self.max_len = pad_id, max_len
        rope = create_rope(pos, head_dim=dim // num_heads, max_len=max_len)
        self.src_embed = TokenEmbedding(src_vocab_size, dim, max_len=max_len, pos=pos, dropout=dropout, pad_id=pad_id)
        self.tgt_embed = TokenEmbedding(tgt_vocab_size, dim, max_len=max_len, pos=pos, dropout=dropout, pad_id=pad_id)
        common = dict(mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=dropout, act=act, norm_first=norm_first,
                      rope=rope)
        self.encoder = TransformerEncoder(dim, depth, num_heads, **common)
        self.decoder = TransformerDecoder(dim, depth, num_heads, **common)
        self.head = nn.Linear(dim, tgt_vocab_size, bias=False)
        _init_weights(self, embed_std=dim**-0.5, xavier=True)  # sqrt(dim)-scaled embeddings: unit variance
        if src_vocab_size == tgt_vocab_size:
            self.tgt_embed.embed.weight = self.src_embed.embed.weight
            self.head.weight = self.src_embed.embed.weight

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.src_embed(src), key_padding_mask=src_padding_mask)  # (B, S, D)

    def new_cache(self) -> DecoderCache:
        """An empty key/value cache for incremental :meth:`decode`."""
        return self.decoder.new_cache()

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_padding_mask: torch.Tensor | None = None, *,
               cache: DecoderCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for every prefix of ``tgt`` (B, T); causal, so right padding never matters.

        With a ``cache`` (from :meth:`new_cache`) ``tgt`` holds only the tokens after the ``len(cache)`` fed
        before, at positions from there on; the cache keeps their keys and values and the projected memory.
        """
        offset = 0 if cache is None else len(cache)
        h = self.decoder(self.tgt_embed(tgt, offset=offset), memory, memory_padding_mask=src_padding_mask,
                         cache=cache)
        return self.head(h)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_padding_mask: torch.Tensor | None = None,
                tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) predicting ``tgt_in`` shifted by one. ``tgt_padding_mask`` is
        accepted for API symmetry and not needed: causal self-attention already keeps right padding out
        of every real position."""
        return self.decode(tgt_in, self.encode(src, src_padding_mask), src_padding_mask)


class TransformerClassifier(ClassifierMixin, nn.Module):
    """Encoder-only Transformer over token ids, or over feature vectors (``in_features``: log-mel frames, each
    projected linearly, :class:`~zoo.layers.FeatureEmbedding`); masked mean pooling of the last layer, then a
    linear head.

    timm's surface, with the padding mask carried along: ``forward_features(tokens, padding_mask)`` returns a
    :class:`~zoo.layers.SequenceFeatures` (encoded tokens (B, T, D) and the mask), which ``forward_head`` pools
    and classifies, so ``m.forward_head(m.forward_features(tokens, mask))`` equals ``m(tokens, mask)``;
    ``pre_logits=True`` returns the pooled (B, ``num_features``) vector.
    """

    def __init__(self, *, vocab_size: int | None, num_classes: int, pad_id: int, max_len: int, dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, dropout: float, pos: str, norm_first: bool,
                 in_features: int | None = None) -> None:
        super().__init__()
        rope = create_rope(pos, head_dim=dim // num_heads, max_len=max_len)
        if in_features is not None:
            self.embed = FeatureEmbedding(in_features, dim, max_len=max_len, pos=pos, dropout=dropout)
        elif vocab_size is not None:
            self.embed = TokenEmbedding(vocab_size, dim, max_len=max_len, pos=pos, dropout=dropout, pad_id=pad_id)
        else:
            raise ValueError("TransformerClassifier needs vocab_size (token ids) or in_features (feature vectors)")
        self.encoder = TransformerEncoder(dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                          attn_dropout=dropout, norm_first=norm_first, rope=rope)
        self.drop = nn.Dropout(dropout)
        self.num_features = dim
        self.head = nn.Linear(dim, num_classes)
        _init_weights(self, embed_std=dim**-0.5, xavier=True)

    def forward_features(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> SequenceFeatures:
        """Token ids (B, T) or features (B, T, F), and padding mask (B, T, True at padding) -> encoded (B, T, D), mask."""
        return SequenceFeatures(self.encoder(self.embed(tokens), key_padding_mask=padding_mask), padding_mask)

    def forward_head(self, x: SequenceFeatures | torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Masked mean of a :class:`SequenceFeatures` (or bare (B, T, D) tokens, no padding) -> (B, num_classes)."""
        h, padding_mask, _ = x if isinstance(x, SequenceFeatures) else SequenceFeatures(x)
        if padding_mask is None:
            pooled = h.mean(1)
        else:
            keep = (~padding_mask)[..., None].to(h.dtype)  # (B, T, 1)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        pooled = self.drop(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(tokens, padding_mask))


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head (Devlin et al. 2019): dense + GELU + LayerNorm, then a projection to the vocabulary
    whose weight the model ties to its token embedding (plus a per-token bias)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(h))))  # (..., D) -> (..., V)


class TransformerMaskedLM(nn.Module):
    """Encoder-only Transformer pretrained by masked-token prediction (BERT, Devlin et al. 2019).

    Its ``embed`` and ``encoder`` are :class:`TransformerClassifier`'s, parameter for parameter, so a classifier
    fine-tunes from its weights (``init_from=CKPT``: everything but the head is loaded). ``forward`` gives
    logits (B, T, V) at every position; a task that scores only the masked positions calls
    ``forward_head(forward_features(tokens, mask).features[masked])`` and projects only those (N, D) rows.
    """

    def __init__(self, *, vocab_size: int, pad_id: int, max_len: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, dropout: float, pos: str, norm_first: bool) -> None:
        super().__init__()
        rope = create_rope(pos, head_dim=dim // num_heads, max_len=max_len)
        self.embed = TokenEmbedding(vocab_size, dim, max_len=max_len, pos=pos, dropout=dropout, pad_id=pad_id)
        self.encoder = TransformerEncoder(dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                          attn_dropout=dropout, norm_first=norm_first, rope=rope)
        self.mlm_head = MaskedLMHead(dim, vocab_size)
        self.num_features = dim
        _init_weights(self, embed_std=dim**-0.5, xavier=True)
        self.mlm_head.decoder.weight = self.embed.embed.weight  # tied, as in BERT (Press & Wolf 2017)

    def forward_features(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> SequenceFeatures:
        """Token ids (B, T) and padding mask (B, T, True at padding) -> encoded tokens (B, T, D) and the mask."""
        return SequenceFeatures(self.encoder(self.embed(tokens), key_padding_mask=padding_mask), padding_mask)

    def forward_head(self, h: SequenceFeatures | torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for encoded tokens: (..., D) -> (..., V)."""
        return self.mlm_head(h.features if isinstance(h, SequenceFeatures) else h)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(tokens, padding_mask))  # (B, T, V)


class PatchTSTForecaster(PatchForecaster):
    """Encoder-only forecaster in the style of PatchTST (Nie et al. 2023): RevIN, channel-independent
    patches of ``patch_len`` steps as tokens, a Transformer encoder, and a flatten head to the horizon.

    When outputs are fewer channels than inputs (e.g. 7 -> oil temperature) the channels of a patch
    form one token instead and the targets are the last ``out_features`` input channels (see
    :class:`~zoo.layers.timeseries.PatchForecaster`, which does the normalising, patching and reshaping).
    """

    def __init__(self, *, in_features: int, out_features: int, horizon: int, seq_len: int, dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, dropout: float, pos: str, norm_first: bool, patch_len: int,
                 patch_stride: int, revin: bool) -> None:
        super().__init__(in_features=in_features, out_features=out_features, horizon=horizon, seq_len=seq_len,
                         patch_len=patch_len, patch_stride=patch_stride, revin=revin)
        n = self.num_tokens
        self.embed = nn.Linear(self.token_dim, dim)
        self.pos = create_positional("learned" if pos == "learned" else "sinusoidal", dim=dim, max_len=n)
        self.drop = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                          attn_dropout=dropout, norm_first=norm_first)
        self.head = nn.Sequential(nn.Flatten(1), nn.Dropout(dropout), nn.Linear(n * dim, self.head_features))

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.drop(self.pos(self.embed(tokens))))  # (N, P, token_dim) -> (N, P, D)
        return self.head(h)  # (N, P, D) -> (N, P*D) -> (N, H * per_series)


class GPT(nn.Module):
    """Decoder-only Transformer language model (Radford et al. 2018), after nanoGPT: token + position
    embeddings, pre-norm causal blocks, a final LayerNorm and an output layer tied to the embedding."""

    def __init__(self, *, vocab_size: int, max_len: int, dim: int, depth: int, num_heads: int, mlp_ratio: float,
                 dropout: float, pos: str) -> None:
        super().__init__()
        self.max_len = max_len
        rope = create_rope(pos, head_dim=dim // num_heads, max_len=max_len)
        self.embed = TokenEmbedding(vocab_size, dim, max_len=max_len, pos=pos, dropout=dropout, scale=False)
        self.blocks = TransformerEncoder(dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                         attn_dropout=dropout, norm_first=True, rope=rope)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        _init_weights(self)
        _scale_residual_projections(self, depth)
        self.head.weight = self.embed.embed.weight  # weight tying (Press & Wolf 2017)

    def new_cache(self) -> DecoderCache:
        """An empty key/value cache for incremental generation (:func:`zoo.decoding.sample`)."""
        return self.blocks.new_cache()

    def forward(self, tokens: torch.Tensor, *, cache: DecoderCache | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for ``tokens`` (B, T). With a ``cache``, ``tokens`` are the ones after the
        ``len(cache)`` fed before (positions from there on), and the cache keeps their keys and values."""
        offset = 0 if cache is None else len(cache)
        h = self.blocks(self.embed(tokens, offset=offset), is_causal=True, cache=cache)  # step t sees <= t only
        return self.head(h)  # (B, T, D) -> (B, T, V)


def _seq2seq_example(batch: int) -> tuple[torch.Tensor, ...]:
    return torch.randint(4, 100, (batch, 9)), torch.randint(4, 100, (batch, 7))


@register_model(family="transformer", modality="text", tasks=("seq2seq",), example=_seq2seq_example,
                paper="Vaswani et al. 2017")
def transformer(*, src_vocab_size: int = 1000, tgt_vocab_size: int = 1000, pad_id: int = 0, max_len: int = 256,
                dim: int = 256, depth: int = 3, num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.1,
                pos: str = "sinusoidal", norm_first: bool = True, act: str = "relu") -> Seq2SeqTransformer:
    """Encoder-decoder Transformer; ``norm_first=False`` is the 2017 post-norm layout."""
    return Seq2SeqTransformer(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, pad_id=pad_id,
                              max_len=max_len, dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                              dropout=dropout, pos=pos, norm_first=norm_first, act=act)


def _encoder_example(batch: int) -> tuple[torch.Tensor, ...]:
    return (torch.randint(1, 100, (batch, 12)),)


@register_model(family="transformer", modality=("text", "timeseries", "speech"), tasks=("classify", "forecast", "mlm"),
                example=_encoder_example, paper="Vaswani et al. 2017; Devlin et al. 2019; Nie et al. 2023")
def transformer_encoder(*, task: str = "classify", vocab_size: int | None = 1000, in_features: int | None = None,
                        num_classes: int | None = 2, horizon: int | None = None, out_features: int | None = None,
                        seq_len: int | None = None, pad_id: int = 0, max_len: int = 512, dim: int = 128,
                        depth: int = 2, num_heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1,
                        pos: str = "sinusoidal", norm_first: bool = True, patch_len: int = 16,
                        patch_stride: int = 8, revin: bool = True) -> nn.Module:
    """Encoder-only Transformer: ``task="classify"`` over token ids (or, given ``in_features``, over feature
    vectors such as log-mel frames), ``task="mlm"`` (masked-LM pretraining: vocabulary logits at every position)
    over token ids, ``task="forecast"`` over patches."""
    if task == "mlm":
        if vocab_size is None:
            raise ValueError("transformer_encoder with task='mlm' needs vocab_size")
        return TransformerMaskedLM(vocab_size=vocab_size, pad_id=pad_id, max_len=max_len, dim=dim, depth=depth,
                                   num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout, pos=pos,
                                   norm_first=norm_first)
    if task == "classify":
        if (vocab_size is None and in_features is None) or num_classes is None:
            raise ValueError("transformer_encoder with task='classify' needs num_classes and vocab_size (token ids) "
                             "or in_features (feature vectors)")
        return TransformerClassifier(vocab_size=vocab_size, num_classes=num_classes, pad_id=pad_id, max_len=max_len,
                                     dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                     pos=pos, norm_first=norm_first, in_features=in_features)
    if task == "forecast":
        if in_features is None or horizon is None or seq_len is None:
            raise ValueError("transformer_encoder with task='forecast' needs in_features, horizon and seq_len")
        return PatchTSTForecaster(in_features=in_features, out_features=out_features or in_features, horizon=horizon,
                                  seq_len=seq_len, dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                  dropout=dropout, pos=pos, norm_first=norm_first, patch_len=patch_len,
                                  patch_stride=patch_stride, revin=revin)
    raise ValueError(f"transformer_encoder: task={task!r}; choose 'classify', 'mlm' or 'forecast'")


@register_model(family="transformer", modality="text", tasks=("lm",), example=_encoder_example,
                paper="Radford et al. 2018")
def gpt(*, vocab_size: int = 1000, max_len: int = 256, dim: int = 256, depth: int = 4, num_heads: int = 4,
        mlp_ratio: float = 4.0, dropout: float = 0.1, pos: str = "learned") -> GPT:
    """Decoder-only language model; ``pos="rope"`` uses rotary positions instead of learned ones."""
    return GPT(vocab_size=vocab_size, max_len=max_len, dim=dim, depth=depth, num_heads=num_heads,
               mlp_ratio=mlp_ratio, dropout=dropout, pos=pos)
