"""Convolution blocks shared by the CNN families."""

from __future__ import annotations

from torch import nn

from zoo.layers.activations import create_act


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, with 'same' padding for odd kernels by default."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm: bool = True,
        act: str | None = "relu",
    ) -> None:
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=not norm)
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_chans))
        if act is not None:
            layers.append(create_act(act, inplace=True))
        super().__init__(*layers)


class DepthwiseSeparableConv(nn.Sequential):
    """MobileNet's block (Howard et al. 2017): a depthwise 3x3 conv, then a pointwise 1x1 conv.

    It costs about 1/out_chans + 1/9 of a full 3x3 convolution's multiply-adds.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, act: str = "relu") -> None:
        super().__init__(
            ConvNormAct(in_chans, in_chans, 3, stride=stride, groups=in_chans, act=act),
            ConvNormAct(in_chans, out_chans, 1, act=act),
        )
