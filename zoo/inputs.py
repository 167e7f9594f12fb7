"""A model's input contract, checked where the model is entered: a wrong image size or channel count fails
with what was wrong and what to set, not with a shape error deep inside the network."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.registry import ZooError

__all__ = ["InputShapeError", "guard_image_input"]


class InputShapeError(ZooError, ValueError):
    """An input whose shape does not fit what the model was built for."""


def _sides(img_size: Any) -> tuple[int, int] | None:
    if img_size is None:
        return None
    return (int(img_size[0]), int(img_size[1])) if isinstance(img_size, (list, tuple)) else (int(img_size),) * 2


def guard_image_input(model: nn.Module, name: str, *, in_chans: int | None, img_size: Any) -> nn.Module:
    """Check every 4-D input of ``model`` against the ``in_chans`` and ``img_size`` it was built with.

    ``img_size=None`` (ResNets, MobileNet, AlexNet, airbench: global pooling) checks channels only. A forward
    pre-hook on the outermost module: a few integer comparisons a call, about 1 us (benchmarks/README.md).
    Inputs that are not 4-D (a GAN's noise vectors, a table's rows) pass unchecked.
    """
    sides = _sides(img_size)

    def check(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if getattr(x, "ndim", 0) != 4:
            return
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        if in_chans is not None and c != in_chans:
            raise InputShapeError(
                f"{name} was built for {in_chans}-channel images (in_chans={in_chans}) but got a batch of shape "
                f"{tuple(x.shape)} (B, C, H, W) with {c} channels: convert the images "
                f"({'to grey' if in_chans == 1 else 'to RGB' if in_chans == 3 else f'to {in_chans} channels'}) "
                f"or build the model with in_chans={c}.")
        if sides is not None and (h, w) != sides:
            built = f"{sides[0]}x{sides[1]}"
            size = h if h == w else [h, w]
            raise InputShapeError(
                f"{name} was built for {built} images (img_size={img_size}) but got a batch of shape "
                f"{tuple(x.shape)} (B, C, H, W): resize the images to {built} or build the model with "
                f"img_size={size}.")

    model.register_forward_pre_hook(check)
    return model
