"""Blocks for forecasting models: reversible instance normalisation and patching of series.

Long-horizon benchmarks such as ETTh1 drift: the test months have other levels than the training
months. RevIN (Kim et al. 2022) removes each input window's own mean and scale before the model and
puts them back on its forecast, so the network learns shapes, not levels. Patching (Nie et al. 2023,
PatchTST; Lin et al. 2023, SegRNN) turns a window of L steps into L / stride tokens of ``patch_len``
steps each: fewer, richer tokens for attention or recurrence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SeriesStats(NamedTuple):
    mean: torch.Tensor  # (B, 1, C)
    std: torch.Tensor  # (B, 1, C)


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022) over the time axis of (B, L, C) windows."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, SeriesStats]:
        mean = x.mean(dim=1, keepdim=True).detach()  # (B, 1, C)
        std = (x.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, SeriesStats(mean, std)

    def denormalize(self, y: torch.Tensor, stats: SeriesStats) -> torch.Tensor:
        """Undo :meth:`normalize` on (B, H, C') forecasts of the *last* C' input channels (the targets)."""
        c = y.shape[-1]
        if self.affine:
            y = (y - self.bias[-c:]) / (self.weight[-c:] + self.eps * self.eps)
        return y * stats.std[..., -c:] + stats.mean[..., -c:]


def num_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """Patches of a window of ``seq_len`` steps, after padding the end by ``stride`` (PatchTST)."""
    if patch_len > seq_len:
        raise ValueError(f"patch_len={patch_len} is longer than the input window seq_len={seq_len}")
    padded = seq_len + (stride if stride < patch_len else 0)
    return (padded - patch_len) // stride + 1


def patchify(x: torch.Tensor, *, patch_len: int, stride: int) -> torch.Tensor:
    """(..., L) series -> (..., num_patches, patch_len); overlapping patches pad the end by repeating it."""
    if stride < patch_len:  # PatchTST pads with the last value so the final steps form a full patch
        lead = x.shape[:-1]
        x = F.pad(x.reshape(-1, 1, x.shape[-1]), (0, stride), mode="replicate").view(*lead, -1)
    return x.unfold(-1, patch_len, stride)  # (..., L') -> (..., P, patch_len)
