"""Corruption processes for denoising autoencoders, on pixels in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

NOISE_KINDS = ("gaussian", "masking", "salt_pepper")


class PixelNoise(nn.Module):
    """The corruption q(x~ | x) of a denoising autoencoder (Vincent et al. 2008).

    ``gaussian``: add N(0, level^2) and clip to [0, 1]; ``masking``: zero each pixel with probability
    ``level``; ``salt_pepper``: set each pixel with probability ``level`` to 0 or 1 (even odds).
    It always corrupts (in eval mode too): callers decide when to apply it. ``generator`` (on the
    input's device) makes the corruption reproducible, e.g. for a fixed noisy test set.
    """

    def __init__(self, kind: str = "gaussian", level: float = 0.3) -> None:
        super().__init__()
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if level < 0 or (kind != "gaussian" and level > 1):
            raise ValueError(f"noise level {level} for {kind!r} noise must be "
                             + ("a standard deviation >= 0" if kind == "gaussian" else "a probability in [0, 1]"))
        self.kind, self.level = kind, float(level)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.kind == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return (x + self.level * noise).clamp(0, 1)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        hit = u < self.level
        if self.kind == "masking":
            return x.masked_fill(hit, 0.0)
        # salt_pepper: u is uniform on [0, level) where hit, so its lower half is pepper, its upper half salt
        salt = (u >= self.level / 2).to(x.dtype)
        return torch.where(hit, salt, x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, level={self.level}"
