"""Classic convolutional networks: LeNet-5, AlexNet, and a MobileNet-style lightweight CNN."""

from __future__ import annotations

import torch
from torch import nn

from zoo.layers import ClassifierMixin, ConvNormAct, DepthwiseSeparableConv, create_act
from zoo.registry import register_model


class LeNet5(ClassifierMixin, nn.Module):
    """LeNet-5 (LeCun et al. 1998): C1 5x5 conv -> S2 pool -> C3 5x5 conv -> S4 pool -> 120 -> 84 -> out.

    ``classic=True`` keeps the paper's tanh and average pooling; the default uses ReLU and max pooling,
    which trains faster. 28-pixel inputs are zero-padded by 2, as the paper padded MNIST to 32.

    timm's surface: ``forward_features`` -> the (B, 16, 5, 5) S4 map; ``forward_head`` flattens it through C5
    and F6 (``pre_logits=True`` stops there: ``num_features`` = 84, as timm's VGG stops after its
    fully connected pre-logits) and applies the output layer, ``get_classifier()`` (``classifier.5``).
    Multi-scale maps come from torchvision's FX feature extractor, by module name::

        from torchvision.models.feature_extraction import create_feature_extractor
        body = create_feature_extractor(model, {"features.2": "s2", "features.5": "s4"})
        maps = body(x)  # 28 px: s2 (B, 6, 14, 14), s4 (B, 16, 5, 5)
    """

    head_path = "classifier.5"  # the last Linear; the index keeps old checkpoints' parameter names

    def __init__(self, *, num_classes: int, in_chans: int, img_size: int, classic: bool) -> None:
        super().__init__()
        act = "tanh" if classic else "relu"
        pool = nn.AvgPool2d if classic else nn.MaxPool2d
        pad = max(0, (32 - img_size) // 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=pad), create_act(act), pool(2),  # C1, S2
            nn.Conv2d(6, 16, 5), create_act(act), pool(2),  # C3, S4
        )
        side = ((img_size + 2 * pad - 4) // 2 - 4) // 2  # 5 for 28- and 32-pixel inputs
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 16, 5, 5) -> (B, 400)
            nn.Linear(16 * side * side, 120), create_act(act),  # C5
            nn.Linear(120, 84), create_act(act),  # F6
            nn.Linear(84, num_classes),
        )
        self.num_features = 84

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 16, 5, 5), the S4 map."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        return _mlp_head(self.classifier, x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNet(ClassifierMixin, nn.Module):
    """AlexNet (Krizhevsky et al. 2012) resized for 28/32-pixel images: five convs, ReLU, Dropout, 3 FCs.

    timm's surface: ``forward_features`` -> the (B, 256, 2, 2) map; ``forward_head`` runs the two hidden FCs
    (``pre_logits=True`` stops there: ``num_features`` = ``width``) and the output layer, ``get_classifier()``.
    """

    head_path = "classifier.7"

    def __init__(self, *, num_classes: int, in_chans: int, width: int, drop_rate: float) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),  # 32 -> 4 -> 2, 28 -> 3 -> 2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 256, 2, 2) -> (B, 1024)
            nn.Dropout(drop_rate), nn.Linear(256 * 4, width), nn.ReLU(inplace=True),
            nn.Dropout(drop_rate), nn.Linear(width, width), nn.ReLU(inplace=True),
            nn.Linear(width, num_classes),
        )
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 256, 2, 2)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        return _mlp_head(self.classifier, x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _mlp_head(classifier: nn.Sequential, x: torch.Tensor, *, pre_logits: bool) -> torch.Tensor:
    """A Flatten -> hidden FCs -> Linear head, run layer by layer so that it can stop before the last."""
    for layer in classifier[:-1]:
        x = layer(x)
    return x if pre_logits else classifier[-1](x)


class MobileNetTiny(ClassifierMixin, nn.Module):
    """A MobileNet-v1-style CNN (Howard et al. 2017) for small images: depthwise-separable convs.

    The decision tree's lightweight branch: a fraction of a ResNet's compute and parameters. timm's surface:
    ``forward_features`` -> the (B, C, H/8, W/8) map, ``forward_head`` pools and classifies.
    """

    # (out_chans, stride) per depthwise-separable block, before width_mult
    cfg = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))

    def __init__(self, *, num_classes: int, in_chans: int, width_mult: float, drop_rate: float) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width_mult))

        blocks: list[nn.Module] = [ConvNormAct(in_chans, ch(32), 3)]
        prev = ch(32)
        for out, stride in self.cfg:
            blocks.append(DepthwiseSeparableConv(prev, ch(out), stride=stride))
            prev = ch(out)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.num_features = prev
        self.head = nn.Linear(prev, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))  # (B, C, 1, 1) -> (B, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(family="lenet", modality="image", tasks=("classify",), input_shape=(1, 28, 28),
                paper="LeCun et al. 1998")
def lenet5(*, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, classic: bool = False) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_chans=in_chans, img_size=img_size, classic=classic)


@register_model(family="alexnet", modality="image", tasks=("classify",), input_shape=(3, 32, 32),
                paper="Krizhevsky, Sutskever & Hinton 2012")
def alexnet(*, num_classes: int = 10, in_chans: int = 3, width: int = 1024, drop_rate: float = 0.5) -> AlexNet:
    return AlexNet(num_classes=num_classes, in_chans=in_chans, width=width, drop_rate=drop_rate)


# It pools globally, so it also classifies a log-mel spectrogram as a one-channel image of any size (speech).
@register_model(family="mobilenet", modality=("image", "speech"), tasks=("classify",), input_shape=(3, 32, 32),
                paper="Howard et al. 2017")
def mobilenet_tiny(
    *, num_classes: int = 10, in_chans: int = 3, width_mult: float = 0.5, drop_rate: float = 0.1
) -> MobileNetTiny:
    return MobileNetTiny(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult, drop_rate=drop_rate)
