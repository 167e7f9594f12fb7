"""A frozen convolution that whitens image patches, its weights computed from training images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchWhitening(nn.Conv2d):
    """Patch whitening (Coates & Ng 2012; the first layer of Jordan 2024, airbench).

    A ``kernel_size`` x ``kernel_size`` convolution without padding whose ``in_chans * k * k`` filters are
    the eigenvectors of the training patches' covariance, each scaled by ``1 / sqrt(eigenvalue + eps)``,
    followed by their negations: ``2 * in_chans * k * k`` output channels, so an activation after it keeps
    both signs of every component. The weights are frozen; only the bias trains. Until
    :meth:`init_from_data` sees images the filters are those of white patches (the identity and its
    negation), so the layer passes pixels through unchanged (up to ``1 / sqrt(1 + eps)``).
    """

    def __init__(self, in_chans: int, kernel_size: int = 2, *, eps: float = 5e-4, bias: bool = True) -> None:
        dim = in_chans * kernel_size * kernel_size
        super().__init__(in_chans, 2 * dim, kernel_size, padding=0, bias=bias)
        self.eps = eps
        self.weight.requires_grad_(False)
        with torch.no_grad():
            self._set_filters(torch.eye(dim) / (1 + eps) ** 0.5)
            if self.bias is not None:
                self.bias.zero_()

    def _set_filters(self, filters: torch.Tensor) -> None:
        # (dim, dim) rows = filters over a flattened (C, k, k) patch -> (2 * dim, C, k, k) conv weight
        w = torch.cat([filters, -filters]).view_as(self.weight)
        self.weight.copy_(w.to(self.weight))

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Compute the whitening filters from ``images``: a (N, C, H, W) float batch, normalised as in training.

        As in airbench, the covariance is the patches' second moment (no mean is subtracted: normalised
        images have a mean near zero), estimated from every k x k patch of every image.
        """
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"PatchWhitening.init_from_data expects (N, {self.in_channels}, H, W) images, "
                             f"got shape {tuple(images.shape)}")
        dim = self.weight[0].numel()
        cov, count = torch.zeros(dim, dim, dtype=torch.float64, device=images.device), 0
        for chunk in images.split(256):  # in float64, a few MB at a time
            patches = F.unfold(chunk.float(), self.kernel_size)  # (n, C*k*k, L): columns are flattened patches
            patches = patches.transpose(1, 2).reshape(-1, dim).double()  # (n*L, C*k*k)
            cov += patches.T @ patches
            count += len(patches)
        cov /= count  # (C*k*k, C*k*k)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        order = eigenvalues.argsort(descending=True)  # strongest component first, as airbench orders them
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        filters = eigenvectors.T / (eigenvalues.clamp_min(0) + self.eps).sqrt()[:, None]  # row i: v_i / sqrt(l_i + eps)
        self._set_filters(filters.float())
