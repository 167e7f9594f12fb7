"""Residual networks (He et al. 2016): ImageNet-layout ResNet-18/34/50 and the CIFAR ResNets of section 4.2."""

from __future__ import annotations

import torch
from torch import nn

from zoo.layers import BasicBlock, Bottleneck, ClassifierMixin, ConvNormAct
from zoo.registry import register_model


class ResNet(ClassifierMixin, nn.Module):
    """A stem, stages of residual blocks (each after the first halves the resolution), pooling, a linear head.

    timm's surface: ``forward_features`` -> the last stage's (B, C, H', W') map, ``forward_head`` pools and
    classifies (``pre_logits=True``: the pooled (B, ``num_features``) vector), ``get_classifier`` /
    ``reset_classifier`` (:class:`~zoo.layers.ClassifierMixin`). Multi-scale maps come from torchvision's FX
    feature extractor, by module name::

        from torchvision.models.feature_extraction import create_feature_extractor
        body = create_feature_extractor(model, {"stages.0": "s1", "stages.1": "s2", "stages.2": "s3"})
        maps = body(x)  # resnet20 at 32 px: s1 (B, 16, 32, 32), s2 (B, 32, 16, 16), s3 (B, 64, 8, 8)
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        in_chans: int,
        stem: str,
        shortcut: str = "conv",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max pool: 224 -> 56
            self.stem = nn.Sequential(ConvNormAct(in_chans, widths[0], 7, stride=2), nn.MaxPool2d(3, 2, 1))
        elif stem == "small":  # one 3x3 conv at full resolution, for 28/32-pixel inputs
            self.stem = ConvNormAct(in_chans, widths[0], 3)
        else:
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        n_blocks, i = sum(layers), 0
        stages, prev = [], widths[0]
        for s, (n, w) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for b in range(n):
                dpr = drop_path_rate * i / max(1, n_blocks - 1)  # linearly deeper -> more drop
                blocks.append(block(prev, w, stride=2 if s > 0 and b == 0 else 1, shortcut=shortcut, drop_path=dpr))
                prev, i = w * block.expansion, i + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.num_features = prev
        self.head = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_features, H', W'), the last stage's map before pooling."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))  # (B, C, H', W') -> (B, C, 1, 1) -> (B, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _resnet(block, layers, *, small_input: bool, **kwargs) -> ResNet:
    return ResNet(block=block, layers=layers, widths=(64, 128, 256, 512),
                  stem="small" if small_input else "imagenet", **kwargs)


def _cifar_resnet(n: int, **kwargs) -> ResNet:
    # 6n + 2 layers: 3 stages of n basic blocks with 16/32/64 channels and parameter-free shortcuts (option A).
    return ResNet(block=BasicBlock, layers=(n, n, n), widths=(16, 32, 64), stem="small", shortcut="pad", **kwargs)


_IMAGENET = dict(family="resnet", modality="image", tasks=("classify",), input_shape=(3, 32, 32),
                 paper="He et al. 2016")
_CIFAR = dict(family="resnet", modality="image", tasks=("classify",), input_shape=(3, 32, 32),
              paper="He et al. 2016, section 4.2")


@register_model(**_IMAGENET)
def resnet18(*, num_classes: int = 10, in_chans: int = 3, small_input: bool = True, drop_rate: float = 0.0,
             drop_path_rate: float = 0.0) -> ResNet:
    """ResNet-18; ``small_input`` swaps the 7x7/2 stem and max pool for one 3x3 conv (32-pixel images)."""
    return _resnet(BasicBlock, (2, 2, 2, 2), small_input=small_input, num_classes=num_classes,
                   in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(**_IMAGENET)
def resnet34(*, num_classes: int = 10, in_chans: int = 3, small_input: bool = True, drop_rate: float = 0.0,
             drop_path_rate: float = 0.0) -> ResNet:
    return _resnet(BasicBlock, (3, 4, 6, 3), small_input=small_input, num_classes=num_classes,
                   in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(**_IMAGENET)
def resnet50(*, num_classes: int = 10, in_chans: int = 3, small_input: bool = True, drop_rate: float = 0.0,
             drop_path_rate: float = 0.0) -> ResNet:
    return _resnet(Bottleneck, (3, 4, 6, 3), small_input=small_input, num_classes=num_classes,
                   in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(**_CIFAR)
def resnet20(*, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> ResNet:
    return _cifar_resnet(3, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         drop_path_rate=drop_path_rate)


@register_model(**_CIFAR)
def resnet32(*, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> ResNet:
    return _cifar_resnet(5, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         drop_path_rate=drop_path_rate)


@register_model(**_CIFAR)
def resnet56(*, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> ResNet:
    return _cifar_resnet(9, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         drop_path_rate=drop_path_rate)
