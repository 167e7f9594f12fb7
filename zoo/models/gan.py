"""Generative adversarial networks: an MLP GAN and a DCGAN, each one module holding both players.

``GAN.generator`` maps latent codes z ~ N(0, I) to images in [-1, 1] (tanh); ``GAN.discriminator`` maps
images to one real-vs-fake logit each. ``forward(z)`` runs both (the generated images and the
discriminator's verdict on them), which is the generator's half of a training step and lets the
registry-wide tests and exporters see every parameter. The adversarial losses live in
``tasks/generative/``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from zoo.layers import ConvNormAct, ConvTransposeNormAct, LinearNormAct
from zoo.registry import register_model


class GANOutput(NamedTuple):
    images: torch.Tensor  # (B, C, H, W) generated images in [-1, 1]
    logits: torch.Tensor  # (B,) the discriminator's logit that each image is real


class GAN(nn.Module):
    """A GAN (Goodfellow et al. 2014): a generator and a discriminator trained against each other."""

    def __init__(self, *, generator: nn.Module, discriminator: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, z: torch.Tensor) -> GANOutput:
        images = self.generator(z)
        return GANOutput(images, self.discriminator(images))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from latent codes ``z`` (B, latent_dim)."""
        return (self.generator(z) + 1) / 2

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` images in [0, 1] from z ~ N(0, I)."""
        w = next(self.generator.parameters())  # new tensors follow the parameters' device and dtype
        z = torch.randn(num, self.latent_dim, generator=generator, device=w.device, dtype=w.dtype)
        return self.generate(z)


def mlp_generator(*, latent_dim: int, out_chans: int, img_size: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        LinearNormAct(latent_dim, hidden // 2, norm=True),
        LinearNormAct(hidden // 2, hidden, norm=True),
        nn.Linear(hidden, out_chans * img_size * img_size),
        nn.Tanh(),
        nn.Unflatten(1, (out_chans, img_size, img_size)),  # (B, C*H*W) -> (B, C, H, W)
    )


def mlp_discriminator(*, in_chans: int, img_size: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),  # (B, C, H, W) -> (B, C*H*W)
        nn.Linear(in_chans * img_size * img_size, hidden), nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(hidden, hidden // 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(hidden // 2, 1),
        nn.Flatten(0),  # (B, 1) -> (B,)
    )


def dcgan_generator(*, latent_dim: int, out_chans: int, img_size: int, width: int) -> nn.Sequential:
    """Radford et al.'s generator: a projection to side/4 x side/4, two stride-2 transposed convs, tanh."""
    side = img_size // 4
    return nn.Sequential(
        nn.Unflatten(1, (latent_dim, 1, 1)),  # (B, Z) -> (B, Z, 1, 1)
        ConvTransposeNormAct(latent_dim, 2 * width, side, stride=1, padding=0),  # 1 -> side
        ConvTransposeNormAct(2 * width, width),  # side -> side*2
        nn.ConvTranspose2d(width, out_chans, 4, 2, 1),  # side*2 -> side*4
        nn.Tanh(),
    )


def dcgan_discriminator(*, in_chans: int, img_size: int, width: int) -> nn.Sequential:
    """Strided convs with LeakyReLU(0.2), batch norm on all but the first layer (Radford et al. 2016)."""
    side = img_size // 4
    return nn.Sequential(
        ConvNormAct(in_chans, width, 4, stride=2, padding=1, norm=False, act=None),  # side*4 -> side*2
        nn.LeakyReLU(0.2, inplace=True),
        ConvNormAct(width, 2 * width, 4, stride=2, padding=1, act=None),  # side*2 -> side
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(2 * width, 1, side),  # side -> 1
        nn.Flatten(0),  # (B, 1, 1, 1) -> (B,)
    )


def _dcgan_init(module: nn.Module) -> None:
    # The paper's initialisation: weights from N(0, 0.02); batch-norm scales from N(1, 0.02).
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@register_model(family="gan", modality="image", tasks=("generate",), input_shape=(100,),
                paper="Goodfellow et al. 2014")
def gan(*, in_chans: int = 1, img_size: int = 28, latent_dim: int = 100, hidden: int = 512) -> GAN:
    """Fully connected players: G latent -> hidden/2 -> hidden -> pixels, D pixels -> hidden -> hidden/2 -> 1."""
    return GAN(generator=mlp_generator(latent_dim=latent_dim, out_chans=in_chans, img_size=img_size, hidden=hidden),
               discriminator=mlp_discriminator(in_chans=in_chans, img_size=img_size, hidden=hidden),
               latent_dim=latent_dim)


@register_model(family="gan", modality="image", tasks=("generate",), input_shape=(100,),
                paper="Radford, Metz & Chintala 2016")
def dcgan(
    *, in_chans: int = 1, img_size: int = 28, latent_dim: int = 100, g_width: int = 32, d_width: int = 32
) -> GAN:
    """``g_width`` / ``d_width``: channels at the generator's last / the discriminator's first hidden layer."""
    if img_size % 4:
        raise ValueError(f"the DCGAN doubles the side twice, so img_size must be a multiple of 4 (28 or 32), "
                         f"got {img_size}")
    model = GAN(
        generator=dcgan_generator(latent_dim=latent_dim, out_chans=in_chans, img_size=img_size, width=g_width),
        discriminator=dcgan_discriminator(in_chans=in_chans, img_size=img_size, width=d_width),
        latent_dim=latent_dim,
    )
    _dcgan_init(model)
    return model
