"""Shared building blocks; every model imports these instead of redefining them."""

from zoo.layers.activations import ACTIVATIONS, create_act, get_act_layer
from zoo.layers.conv import ConvNormAct, DepthwiseSeparableConv
from zoo.layers.mlp import FeedForward, LinearNormAct
from zoo.layers.residual import BasicBlock, Bottleneck

__all__ = [
    "ACTIVATIONS",
    "BasicBlock",
    "Bottleneck",
    "ConvNormAct",
    "DepthwiseSeparableConv",
    "FeedForward",
    "LinearNormAct",
    "create_act",
    "get_act_layer",
]
