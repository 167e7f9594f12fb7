"""Shared building blocks; every model imports these instead of redefining them."""

from zoo.layers.activations import ACTIVATIONS, create_act, get_act_layer
from zoo.layers.attention import (
    AdditiveAttention,
    AttentionOutput,
    KVCache,
    MultiHeadAttention,
    capture_attention,
    causal_mask,
)
from zoo.layers.classifier import ClassifierMixin, SequenceFeatures
from zoo.layers.conv import ConvNormAct, DepthwiseSeparableConv
from zoo.layers.deconv import ConvTransposeNormAct
from zoo.layers.embedding import FeatureEmbedding, TokenEmbedding
from zoo.layers.mlp import FeedForward, LinearNormAct
from zoo.layers.noise import NOISE_KINDS, PixelNoise
from zoo.layers.position import (
    POSITIONS,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    create_positional,
    create_rope,
    timestep_embedding,
)
from zoo.layers.residual import BasicBlock, Bottleneck
from zoo.layers.transformer import (
    DecoderCache,
    DecoderLayer,
    EncoderLayer,
    TransformerDecoder,
    TransformerEncoder,
)
from zoo.layers.unet import Downsample, SpatialSelfAttention, TimeResBlock, Upsample
from zoo.layers.whitening import PatchWhitening

__all__ = [
    "ACTIVATIONS",
    "NOISE_KINDS",
    "POSITIONS",
    "AdditiveAttention",
    "AttentionOutput",
    "BasicBlock",
    "Bottleneck",
    "ClassifierMixin",
    "ConvNormAct",
    "ConvTransposeNormAct",
    "Downsample",
    "DecoderCache",
    "DecoderLayer",
    "DepthwiseSeparableConv",
    "EncoderLayer",
    "FeatureEmbedding",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "LinearNormAct",
    "MultiHeadAttention",
    "PatchWhitening",
    "PixelNoise",
    "RotaryEmbedding",
    "SequenceFeatures",
    "SinusoidalPositionalEncoding",
    "SpatialSelfAttention",
    "TimeResBlock",
    "TokenEmbedding",
    "TransformerDecoder",
    "TransformerEncoder",
    "Upsample",
    "capture_attention",
    "causal_mask",
    "create_act",
    "create_positional",
    "create_rope",
    "get_act_layer",
    "timestep_embedding",
]
