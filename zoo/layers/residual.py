"""Residual blocks of He et al. 2016 ("Deep Residual Learning for Image Recognition")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from zoo.layers.activations import create_act
from zoo.layers.conv import ConvNormAct


class BasicBlock(nn.Module):
    """Two 3x3 convs and an identity (or projected) shortcut: y = act(F(x) + x)."""

    expansion = 1

    def __init__(
        self,
        in_chans: int,
        chans: int,
        *,
        stride: int = 1,
        shortcut: str = "conv",
        act: str = "relu",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        out_chans = chans * self.expansion
        self.conv1 = ConvNormAct(in_chans, chans, 3, stride=stride, act=act)
        self.conv2 = ConvNormAct(chans, out_chans, 3, act=None)
        self.shortcut = _make_shortcut(in_chans, out_chans, stride, shortcut)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = create_act(act, inplace=True)
        # Zero-init the last BN so each block starts as the identity (Goyal et al. 2017).
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), the block of ResNet-50 and deeper."""

    expansion = 4

    def __init__(
        self,
        in_chans: int,
        chans: int,
        *,
        stride: int = 1,
        shortcut: str = "conv",
        act: str = "relu",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        out_chans = chans * self.expansion
        self.conv1 = ConvNormAct(in_chans, chans, 1, act=act)
        self.conv2 = ConvNormAct(chans, chans, 3, stride=stride, act=act)
        self.conv3 = ConvNormAct(chans, out_chans, 1, act=None)
        self.shortcut = _make_shortcut(in_chans, out_chans, stride, shortcut)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = create_act(act, inplace=True)
        nn.init.zeros_(self.conv3[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))


class _PadShortcut(nn.Module):
    """Option A of the ResNet paper (section 4.2): subsample and zero-pad channels, no parameters."""

    def __init__(self, out_chans: int, stride: int) -> None:
        super().__init__()
        self.out_chans, self.stride = out_chans, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_chans - x.shape[1]
        # pad (W_left, W_right, H_top, H_bottom, C_front, C_back)
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def _make_shortcut(in_chans: int, out_chans: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    if kind == "conv":  # option B: 1x1 projection
        return ConvNormAct(in_chans, out_chans, 1, stride=stride, act=None)
    if kind == "pad":
        return _PadShortcut(out_chans, stride)
    raise ValueError(f"shortcut must be 'conv' or 'pad', got {kind!r}")
