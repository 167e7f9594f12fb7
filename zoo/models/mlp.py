"""Multi-layer perceptrons: weighted sums, biases and activations, stacked."""

from __future__ import annotations

import torch
from torch import nn

from zoo.layers import ClassifierMixin, LinearNormAct
from zoo.registry import register_model


class MLP(ClassifierMixin, nn.Module):
    """A multi-layer perceptron classifier/regressor over flattened inputs (Rumelhart et al. 1986).

    timm's surface: ``forward_features`` -> the last hidden layer's (B, ``num_features``) output (there is no
    map to pool), ``forward_head`` applies the output layer, ``get_classifier()`` / ``reset_classifier()``.
    """

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        depth: int = 2,
        width: int = 512,
        act: str = "relu",
        dropout: float = 0.0,
        norm: bool = False,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0 hidden layers, got {depth}")
        dims = [in_features] + [width] * depth
        self.hidden = nn.Sequential(
            *(LinearNormAct(i, o, act=act, norm=norm, dropout=dropout) for i, o in zip(dims[:-1], dims[1:], strict=True))
        )
        self.num_features = dims[-1]
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x.flatten(1))  # (B, C, H, W) -> (B, C*H*W) -> (B, width)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(family="mlp", modality=("image", "tabular"), tasks=("classify", "regress"), input_shape=(1, 28, 28),
                paper="Rumelhart, Hinton & Williams 1986")
def mlp(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    img_size: int = 28,
    in_features: int | None = None,
    depth: int = 2,
    width: int = 512,
    act: str = "relu",
    dropout: float = 0.0,
    norm: bool = False,
) -> MLP:
    """MLP over flattened images (``in_chans * img_size**2`` inputs) or ``in_features`` tabular columns."""
    in_features = in_features or in_chans * img_size * img_size
    return MLP(in_features=in_features, num_classes=num_classes, depth=depth, width=width, act=act,
               dropout=dropout, norm=norm)
