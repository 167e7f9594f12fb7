"""airbench (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498).

A whitened 2x2 patch layer, then three groups of conv -> max pool -> BatchNorm -> GELU -> conv -> BatchNorm
-> GELU, then a global max pool and a bias-free linear head whose logits are scaled down. Convolutions start
as the identity on their first channels (Dirac init), BatchNorms learn only their bias, and the first layer is
computed from the training images (:meth:`AirBench.init_from_data`) instead of being learned.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.layers import ClassifierMixin, PatchWhitening
from zoo.registry import register_model


def dirac_conv(in_chans: int, out_chans: int) -> nn.Conv2d:
    """A bias-free 3x3 'same' conv whose first ``min(in, out)`` filters pass their input channel through."""
    conv = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:in_chans])  # the rest keep PyTorch's default (Kaiming-uniform) init
    return conv


def bias_only_batchnorm(chans: int, *, momentum: float, eps: float) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1: only the shift learns (airbench's BatchNorm(weight=False))."""
    norm = nn.BatchNorm2d(chans, eps=eps, momentum=momentum)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Module):
    """conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU: halves the resolution."""

    def __init__(self, in_chans: int, out_chans: int, *, bn_momentum: float, bn_eps: float) -> None:
        super().__init__()
        self.conv1 = dirac_conv(in_chans, out_chans)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = bias_only_batchnorm(out_chans, momentum=bn_momentum, eps=bn_eps)
        self.conv2 = dirac_conv(out_chans, out_chans)
        self.norm2 = bias_only_batchnorm(out_chans, momentum=bn_momentum, eps=bn_eps)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # pooling before the norm: 4x less BN work
        return self.act(self.norm2(self.conv2(x)))


class AirBench(ClassifierMixin, nn.Module):
    """airbench's network (Jordan 2024): patch whitening, three ConvGroups, global max pool, scaled linear head.

    timm's surface: ``forward_features`` -> the (B, C, H', W') map, ``forward_head`` max-pools and classifies
    (``pre_logits=True``: the pooled (B, ``num_features``) vector; logits are scaled by ``logit_scale``),
    ``get_classifier`` / ``reset_classifier`` (a bias-free Linear, as airbench's).
    """

    head_bias = False

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        widths: tuple[int, ...],
        whiten_kernel: int = 2,
        whiten_eps: float = 5e-4,
        bn_momentum: float = 0.4,
        bn_eps: float = 1e-12,
        logit_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        self.whiten = PatchWhitening(in_chans, whiten_kernel, eps=whiten_eps)
        self.act = nn.GELU()
        groups, prev = [], self.whiten.out_channels
        for w in widths:
            groups.append(ConvGroup(prev, w, bn_momentum=bn_momentum, bn_eps=bn_eps))
            prev = w
        self.groups = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)  # airbench's MaxPool2d(3) over its final 3x3 map, for any size
        self.num_features = prev
        self.logit_scale = logit_scale
        self.head = nn.Linear(prev, num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Data-dependent init: the whitening filters from (N, C, H, W) normalised training images."""
        self.whiten.init_from_data(images)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, widths[-1], H', W'): H' = ((H - k + 1) // 2 // 2) // 2, 3 for 28-32 px."""
        return self.groups(self.act(self.whiten(x)))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, H', W') -> (B, C)
        if pre_logits or isinstance(self.head, nn.Identity):  # reset_classifier(0): the features, unscaled
            return x
        return self.head(x) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_AIRBENCH = dict(family="airbench", modality="image", tasks=("classify",), input_shape=(3, 32, 32),
                 paper="Jordan 2024, arXiv 2404.00498")


@register_model(**_AIRBENCH)
def airbench94(*, num_classes: int = 10, in_chans: int = 3, widths: list[int] = [64, 256, 256],  # noqa: B006
               whiten_kernel: int = 2, whiten_eps: float = 5e-4, bn_momentum: float = 0.4,
               logit_scale: float = 1 / 9) -> AirBench:
    """airbench94: widths 64/256/256, 94% on CIFAR-10 in about 10 epochs with its recipe.

    ``widths`` defaults to a list, as a YAML config gives it, so saved kwargs read back from JSON compare
    equal (it is never mutated). ``bn_momentum`` is PyTorch's (the weight of the new batch): airbench's 0.6
    is 1 - 0.4.
    """
    return AirBench(num_classes=num_classes, in_chans=in_chans, widths=tuple(widths), whiten_kernel=whiten_kernel,
                    whiten_eps=whiten_eps, bn_momentum=bn_momentum, logit_scale=logit_scale)
