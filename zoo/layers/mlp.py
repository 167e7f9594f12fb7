"""Fully connected blocks."""

from __future__ import annotations

from torch import nn

from zoo.layers.activations import create_act


class LinearNormAct(nn.Sequential):
    """Linear -> (BatchNorm1d) -> activation -> (Dropout): one hidden layer of an MLP."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        act: str = "relu",
        norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm1d(out_features))
        layers.append(create_act(act, inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class FeedForward(nn.Module):
    """Position-wise feed-forward: expand d_model to d_ff, activate, project back ("amplify and enrich")."""

    def __init__(self, dim: int, hidden_dim: int, *, act: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = create_act(act)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
