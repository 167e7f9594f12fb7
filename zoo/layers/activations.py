"""Activation factory: one name vocabulary for every model (the seeds' Sigmoid, Tanh, ReLU, SiLU, GELU)."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}

ACTIVATIONS = tuple(_ACTIVATIONS)


def get_act_layer(name: str | type[nn.Module]) -> type[nn.Module]:
    """The activation class for ``name`` (case-insensitive); classes pass through."""
    if isinstance(name, type):
        return name
    try:
        return _ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def create_act(name: str | type[nn.Module], *, inplace: bool = False) -> nn.Module:
    """An activation module; ``inplace`` is honoured where the activation supports it."""
    cls = get_act_layer(name)
    if cls in (nn.ReLU, nn.SiLU, nn.LeakyReLU, nn.ELU) and inplace:
        return cls(inplace=True)
    return cls()
