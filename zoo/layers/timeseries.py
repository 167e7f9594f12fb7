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


class PatchForecaster(nn.Module):
    """The frame shared by patch-token forecasters (PatchTST, Nie et al. 2023; SegRNN, Lin et al. 2023):
    RevIN (Kim et al. 2022) around the model, the window cut into patches that become tokens, and the
    backbone's flat output reshaped to the forecast.

    With as many outputs as inputs each channel is its own series through shared weights (channel
    independence, Nie et al. 2023): (B, L, C) -> (B*C, P, patch_len) tokens, and the head predicts one
    series' horizon. With fewer outputs (e.g. 7 channels -> oil temperature) the channels of a patch
    form one token, (B, L, C) -> (B, P, C*patch_len), and the targets are the last ``out_features``
    input channels. A subclass builds its layers from ``token_dim``, ``num_tokens`` and
    ``head_features`` and implements :meth:`forward_tokens`.
    """

    def __init__(self, *, in_features: int, out_features: int, horizon: int, seq_len: int, patch_len: int,
                 patch_stride: int, revin: bool) -> None:
        super().__init__()
        if out_features > in_features:
            raise ValueError(f"out_features={out_features} > in_features={in_features}: the targets must be "
                             "among the input channels")
        self.num_tokens = num_patches(seq_len, patch_len, patch_stride)
        if (seq_len - patch_len) % patch_stride:
            raise ValueError(f"patches of patch_len={patch_len} every {patch_stride} steps do not end at the last "
                             f"step of a seq_len={seq_len} window, so the newest steps would be dropped; choose "
                             "seq_len - patch_len divisible by the stride")
        self.channel_independent = in_features == out_features
        self.horizon, self.out_features = horizon, out_features
        self.patch_len, self.patch_stride = patch_len, patch_stride
        self.revin = RevIN(in_features) if revin else None
        self.token_dim = patch_len if self.channel_independent else patch_len * in_features
        self.head_features = horizon * (1 if self.channel_independent else out_features)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, P, token_dim) patch tokens -> (N, head_features): the model proper, which subclasses define."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_tokens(tokens)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) window -> (B, horizon, out_features) forecast."""
        b, _, c = x.shape
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        patches = patchify(x.transpose(1, 2), patch_len=self.patch_len, stride=self.patch_stride)
        # (B, L, C) -> (B, C, L) -> (B, C, P, patch_len)
        if self.channel_independent:
            tokens = patches.flatten(0, 1)  # (B, C, P, pl) -> (B*C, P, pl)
        else:
            tokens = patches.transpose(1, 2).flatten(2)  # (B, C, P, pl) -> (B, P, C*pl)
        y = self.forward_tokens(tokens)  # (B*C, H) or (B, H*C')
        if self.channel_independent:
            y = y.view(b, c, self.horizon).transpose(1, 2)  # (B*C, H) -> (B, C, H) -> (B, H, C)
        else:
            y = y.view(b, self.horizon, self.out_features)  # (B, H*C') -> (B, H, C')
        return y if stats is None else self.revin.denormalize(y, stats)
