"""Autoencoders: the plain autoencoder, the denoising autoencoder and the variational autoencoder.

Each comes in two kinds over the same interface: ``kind="mlp"`` (fully connected, over flattened pixels)
and ``kind="conv"`` (two stride-2 convolutions down to side/4, mirrored by transposed convolutions).
Images are expected in [0, 1]; reconstructions are sigmoid pixels (the VAE returns Bernoulli logits).
Losses live in ``tasks/generative/``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from zoo.layers import ConvNormAct, ConvTransposeNormAct, LinearNormAct, PixelNoise
from zoo.registry import register_model

KINDS = ("mlp", "conv")


class AutoencoderOutput(NamedTuple):
    recon: torch.Tensor  # (B, C, H, W) reconstructed pixels in [0, 1]
    code: torch.Tensor  # (B, latent_dim)


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # (B, C, H, W) Bernoulli logits of the pixels; sigmoid gives the mean image
    mu: torch.Tensor  # (B, latent_dim) posterior mean
    logvar: torch.Tensor  # (B, latent_dim) posterior log-variance


def _check(kind: str, img_size: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "conv" and img_size % 4:
        raise ValueError(f"the conv autoencoders halve the image side twice, so img_size must be a multiple of 4 "
                         f"(28 or 32), got {img_size}; use kind='mlp' for other sizes")


def build_encoder(
    *, kind: str, in_chans: int, img_size: int, out_features: int, width: int, hidden: int, act: str
) -> nn.Sequential:
    """Images (B, C, H, W) -> (B, out_features); the last layer is a plain Linear (the code or its parameters)."""
    _check(kind, img_size)
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),  # (B, C, H, W) -> (B, C*H*W)
            LinearNormAct(in_chans * img_size * img_size, hidden, act=act),
            LinearNormAct(hidden, hidden, act=act),
            nn.Linear(hidden, out_features),
        )
    side = img_size // 4
    return nn.Sequential(
        ConvNormAct(in_chans, width, 4, stride=2, padding=1, norm=False, act=act),  # side*4 -> side*2
        ConvNormAct(width, 2 * width, 4, stride=2, padding=1, norm=False, act=act),  # side*2 -> side
        nn.Flatten(),  # (B, 2w, s, s) -> (B, 2w*s*s)
        LinearNormAct(2 * width * side * side, hidden, act=act),
        nn.Linear(hidden, out_features),
    )


def build_decoder(
    *, kind: str, out_chans: int, img_size: int, latent_dim: int, width: int, hidden: int, act: str
) -> nn.Sequential:
    """Codes (B, latent_dim) -> pre-activation pixels (B, C, H, W), the mirror image of :func:`build_encoder`."""
    _check(kind, img_size)
    if kind == "mlp":
        return nn.Sequential(
            LinearNormAct(latent_dim, hidden, act=act),
            LinearNormAct(hidden, hidden, act=act),
            nn.Linear(hidden, out_chans * img_size * img_size),
            nn.Unflatten(1, (out_chans, img_size, img_size)),  # (B, C*H*W) -> (B, C, H, W)
        )
    side = img_size // 4
    return nn.Sequential(
        LinearNormAct(latent_dim, hidden, act=act),
        LinearNormAct(hidden, 2 * width * side * side, act=act),
        nn.Unflatten(1, (2 * width, side, side)),  # (B, 2w*s*s) -> (B, 2w, s, s)
        ConvTransposeNormAct(2 * width, width, norm=False, act=act),  # side -> side*2
        nn.ConvTranspose2d(width, out_chans, 4, 2, 1),  # side*2 -> side*4
    )


class Autoencoder(nn.Module):
    """An autoencoder (Hinton & Salakhutdinov 2006): encoder -> low-dimensional code -> decoder -> sigmoid pixels."""

    def __init__(
        self, *, in_chans: int, img_size: int, kind: str, latent_dim: int, width: int, hidden: int, act: str
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = build_encoder(kind=kind, in_chans=in_chans, img_size=img_size, out_features=latent_dim,
                                     width=width, hidden=hidden, act=act)
        self.decoder = build_decoder(kind=kind, out_chans=in_chans, img_size=img_size, latent_dim=latent_dim,
                                     width=width, hidden=hidden, act=act)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        code = self.encode(x)
        return AutoencoderOutput(self.decode(code), code)


class DenoisingAutoencoder(Autoencoder):
    """A denoising autoencoder (Vincent et al. 2008): reconstruct the clean image from a corrupted one.

    ``forward`` never corrupts (it reconstructs what it is given, deterministically); the training task
    feeds it ``corrupt(x)`` and scores the reconstruction against the clean ``x``.
    """

    def __init__(
        self,
        *,
        in_chans: int,
        img_size: int,
        kind: str,
        latent_dim: int,
        width: int,
        hidden: int,
        act: str,
        noise: str,
        noise_level: float,
    ) -> None:
        super().__init__(in_chans=in_chans, img_size=img_size, kind=kind, latent_dim=latent_dim, width=width,
                         hidden=hidden, act=act)
        self.noise = PixelNoise(noise, noise_level)

    def corrupt(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The noise model applied to pixels ``x`` in [0, 1]."""
        return self.noise(x, generator=generator)


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling 2014): Gaussian posterior, N(0, I) prior, Bernoulli pixels.

    In training mode ``forward`` decodes a reparameterised sample z = mu + sigma * eps; in eval mode it
    decodes the posterior mean, so it is deterministic. ``encode`` / ``reparameterize`` / ``decode``
    are the pieces a loss needs (an ELBO estimate samples z in eval mode too).
    """

    def __init__(
        self, *, in_chans: int, img_size: int, kind: str, latent_dim: int, width: int, hidden: int, act: str
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = build_encoder(kind=kind, in_chans=in_chans, img_size=img_size, out_features=2 * latent_dim,
                                     width=width, hidden=hidden, act=act)
        self.decoder = build_decoder(kind=kind, out_chans=in_chans, img_size=img_size, latent_dim=latent_dim,
                                     width=width, hidden=hidden, act=act)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, 2Z) -> 2 x (B, Z)
        return mu, logvar

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels, (B, C, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return VAEOutput(self.decode(z), mu, logvar)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Mean images in [0, 1] decoded from latent codes ``z`` (B, latent_dim)."""
        return torch.sigmoid(self.decode(z))

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` images from the prior: z ~ N(0, I), decoded to mean images in [0, 1]."""
        w = next(self.decoder.parameters())  # new tensors follow the parameters' device and dtype
        z = torch.randn(num, self.latent_dim, generator=generator, device=w.device, dtype=w.dtype)
        return self.generate(z)


@register_model(family="autoencoder", modality="image", tasks=("reconstruct",), input_shape=(1, 28, 28),
                paper="Hinton & Salakhutdinov 2006")
def autoencoder(
    *,
    in_chans: int = 1,
    img_size: int = 28,
    kind: str = "conv",
    latent_dim: int = 32,
    width: int = 32,
    hidden: int = 256,
    act: str = "relu",
) -> Autoencoder:
    """``width``: channels of the first conv (the second has twice as many); ``hidden``: fully connected units."""
    return Autoencoder(in_chans=in_chans, img_size=img_size, kind=kind, latent_dim=latent_dim, width=width,
                       hidden=hidden, act=act)


@register_model(family="autoencoder", modality="image", tasks=("denoise", "reconstruct"), input_shape=(1, 28, 28),
                paper="Vincent et al. 2008")
def denoising_autoencoder(
    *,
    in_chans: int = 1,
    img_size: int = 28,
    kind: str = "conv",
    latent_dim: int = 32,
    width: int = 32,
    hidden: int = 256,
    act: str = "relu",
    noise: str = "gaussian",
    noise_level: float = 0.3,
) -> DenoisingAutoencoder:
    """``noise``: gaussian (``noise_level`` = std), masking or salt_pepper (``noise_level`` = probability)."""
    return DenoisingAutoencoder(in_chans=in_chans, img_size=img_size, kind=kind, latent_dim=latent_dim, width=width,
                                hidden=hidden, act=act, noise=noise, noise_level=noise_level)


@register_model(family="vae", modality="image", tasks=("generate", "reconstruct"), input_shape=(1, 28, 28),
                paper="Kingma & Welling 2014")
def vae(
    *,
    in_chans: int = 1,
    img_size: int = 28,
    kind: str = "conv",
    latent_dim: int = 32,
    width: int = 16,
    hidden: int = 256,
    act: str = "relu",
) -> VAE:
    """Defaults sized for a CPU: half the channels of the autoencoders (the VAE trains for more epochs)."""
    return VAE(in_chans=in_chans, img_size=img_size, kind=kind, latent_dim=latent_dim, width=width, hidden=hidden,
               act=act)
