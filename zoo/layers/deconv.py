"""Transposed-convolution blocks: the learned upsampling of decoders and generators."""

from __future__ import annotations

from torch import nn

from zoo.layers.activations import create_act


class ConvTransposeNormAct(nn.Sequential):
    """ConvTranspose2d -> BatchNorm2d -> activation (the DCGAN generator's block, Radford et al. 2016).

    The defaults (kernel 4, stride 2, padding 1) double the side exactly: 7 -> 14 -> 28, 8 -> 16 -> 32.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 4,
        *,
        stride: int = 2,
        padding: int = 1,
        norm: bool = True,
        act: str | None = "relu",
    ) -> None:
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size, stride, padding, bias=not norm)
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_chans))
        if act is not None:
            layers.append(create_act(act, inplace=True))
        super().__init__(*layers)
