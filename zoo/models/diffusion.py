"""Denoising diffusion: a DDPM (Ho et al. 2020) with a small U-Net, ancestral and DDIM (Song et al. 2021) sampling.

The forward process adds Gaussian noise over ``T`` steps with variances ``betas`` (a schedule):
q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), alpha_bar_t = prod_{s<=t} (1 - beta_s).
The network predicts the noise eps in x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps from (x_t, t);
``forward(x_t, t)`` returns that prediction and the loss (the MSE to the true eps, Ho et al.'s L_simple)
lives in ``tasks/generative/diffusion.py``. Images are in [-1, 1] inside the model; :meth:`DDPM.sample`
returns them in [0, 1] like the other generative models.

Sampling runs the reverse process from x_T ~ N(0, I):

- ``ddpm``: ancestral sampling, all T steps, x_{t-1} ~ N(posterior mean, beta_tilde_t I) (Ho et al. eq. 7).
- ``ddim``: Song et al. 2021, eq. 12, on ``steps`` evenly spaced timesteps; ``eta`` scales the noise
  (0: deterministic, 1 with steps == T: exactly the ancestral sampler).

Both clip the predicted x_0 to [-1, 1] at every step (as the DDPM code does) and re-derive eps from it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from zoo.layers.position import timestep_embedding
from zoo.layers.unet import Downsample, SpatialSelfAttention, TimeResBlock, Upsample, group_norm
from zoo.registry import ZooError, register_model

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm")


def beta_schedule(kind: str, num_steps: int) -> torch.Tensor:
    """The noise variances beta_1..beta_T (float64, (T,)) of a schedule.

    ``linear``: Ho et al.'s 1e-4 -> 0.02 over 1000 steps, rescaled by 1000 / T so that any T ends about as
    noisy. ``cosine``: Nichol & Dhariwal 2021, alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2) / (same at 0),
    s = 0.008, betas clipped at 0.999 (the last steps would otherwise reach 1).
    """
    if num_steps < 1:
        raise ValueError(f"a diffusion needs at least one step, got num_steps={num_steps}")
    if kind == "linear":
        scale = 1000 / num_steps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), num_steps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown noise schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


class UNet(nn.Module):
    """A small U-Net for noise prediction (Ho et al. 2020): (B, C, H, W), (B,) timesteps -> (B, C, H, W).

    ``channel_mults`` gives each level's width as a multiple of ``width`` (the first level is full size; each
    further level halves the side); ``num_res_blocks`` residual blocks per level on the way down, one more on
    the way up (it also takes the skip of the downsampling); self-attention at the lowest resolution.
    """

    def __init__(
        self,
        *,
        in_chans: int,
        width: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        num_heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.width = width
        time_dim = 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(in_chans, width, 3, padding=1)

        chans = [width * m for m in channel_mults]
        skips = [width]  # channels of every feature map kept for the way up
        self.down = nn.ModuleList()
        c = width
        for level, out in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(TimeResBlock(c, out, time_dim=time_dim, dropout=dropout))
                c = out
                skips.append(c)
            if level < len(chans) - 1:
                self.down.append(Downsample(c))
                skips.append(c)
        self.mid = nn.ModuleList([TimeResBlock(c, c, time_dim=time_dim, dropout=dropout),
                                  SpatialSelfAttention(c, num_heads=num_heads),
                                  TimeResBlock(c, c, time_dim=time_dim, dropout=dropout)])
        self.up = nn.ModuleList()
        for level, out in reversed(list(enumerate(chans))):
            for _ in range(num_res_blocks + 1):
                self.up.append(TimeResBlock(c + skips.pop(), out, time_dim=time_dim, dropout=dropout))
                c = out
            if level > 0:
                self.up.append(Upsample(c))
        self.head = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, in_chans, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # predicts eps = 0 at first: the loss starts at 1
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.width).to(x.dtype))  # (B,) -> (B, 4*width)
        h = self.stem(x)
        kept = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, TimeResBlock) else block(h)
            kept.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block, TimeResBlock):
                h = block(torch.cat([h, kept.pop()], dim=1), emb)  # (B, C, H, W) + skip -> (B, C + C_s, H, W)
            else:
                h = block(h, size=kept[-1].shape[-2:])  # back to the side of the skip it meets next
        return self.head(h)


class Trajectory(NamedTuple):
    images: torch.Tensor  # (B, C, H, W) the final samples x_0 in [0, 1]
    frames: torch.Tensor  # (B, F, C, H, W) x_T ... x_0 in [0, 1], evenly spaced over the sampling steps


class DDPM(nn.Module):
    """Denoising diffusion probabilistic model (Ho et al. 2020): a noise-predicting U-Net and its schedule."""

    def __init__(
        self,
        *,
        unet: nn.Module,
        in_chans: int,
        img_size: int,
        num_steps: int,
        schedule: str,
        sampler: str,
        sample_steps: int,
        eta: float,
    ) -> None:
        super().__init__()
        self.unet, self.in_chans, self.img_size, self.num_steps = unet, in_chans, img_size, num_steps
        self.sampler, self.sample_steps, self.eta = _check_sampler(sampler, sample_steps, eta, num_steps)
        betas = beta_schedule(schedule, num_steps)
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        # Constants as float64 buffers (the products of 1000 factors lose digits in float32), not saved:
        # the schedule follows from the builder's arguments.
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alpha_bar", alpha_bar, persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted noise eps (B, C, H, W) in noisy images ``x_t`` (B, C, H, W) at timesteps ``t`` (B,)."""
        return self.unet(x_t, t)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, per image (t: (B,))."""
        ab = self.alpha_bar[t].to(x0.dtype)[:, None, None, None]  # (B,) -> (B, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def timesteps(self, steps: int) -> list[int]:
        """The ``steps`` timesteps a sampler visits, from T-1 down to 0, evenly spaced (all T when steps == T)."""
        if not 1 <= steps <= self.num_steps:
            raise ZooError(f"sampling steps must be between 1 and the model's num_steps={self.num_steps}, got {steps}")
        return torch.linspace(self.num_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()

    @torch.no_grad()
    def sample(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        eta: float | None = None,
        sampler: str | None = None,
    ) -> torch.Tensor:
        """``num`` images in [0, 1] (N, C, H, W) from x_T ~ N(0, I); the builder's sampler settings by default."""
        return self.sample_trajectory(num, generator=generator, steps=steps, eta=eta, sampler=sampler,
                                      frames=0).images

    @torch.no_grad()
    def sample_trajectory(
        self,
        num: int,
        *,
        frames: int = 8,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        eta: float | None = None,
        sampler: str | None = None,
        noise: torch.Tensor | None = None,
    ) -> Trajectory:
        """Samples and ``frames`` snapshots of the chain x_T ... x_0 (frames=0: none). ``noise``: x_T itself."""
        sampler = sampler or self.sampler
        steps = steps if steps is not None else (self.num_steps if sampler == "ddpm" else self.sample_steps)
        eta = self.eta if eta is None else eta
        sampler, steps, eta = _check_sampler(sampler, steps, eta, self.num_steps)
        w = next(self.parameters())  # new tensors follow the parameters' device and dtype
        shape = (num, self.in_chans, self.img_size, self.img_size)
        x = noise if noise is not None else torch.randn(shape, generator=generator, device=w.device, dtype=w.dtype)
        ts = self.timesteps(steps)
        # After how many steps each frame is taken (0: x_T); with more frames than steps some repeat.
        when = torch.linspace(0, len(ts), frames).round().long().tolist() if frames else []
        kept = {0: x} if 0 in when else {}
        step = self._ancestral_step if sampler == "ddpm" else self._ddim_step
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            x = step(x, t, prev, eta=eta, generator=generator)
            if i + 1 in when:
                kept[i + 1] = x
        images = _unit(x)
        stacked = torch.stack([_unit(kept[w]) for w in when], 1) if when else images[:, None]  # (B, F, C, H, W)
        return Trajectory(images, stacked)

    def _predict_x0(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The clipped x_0 the network implies at step t, and the eps consistent with it."""
        ab_t = float(self.alpha_bar[t])
        eps = self(x, torch.full((len(x),), t, device=x.device, dtype=torch.long))
        x0 = ((x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)).clamp(-1, 1)
        return x0, (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)

    def _noise(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def _ddim_step(self, x: torch.Tensor, t: int, prev: int, *, eta: float,
                   generator: torch.Generator | None) -> torch.Tensor:
        """x_t -> x_prev by Song et al.'s eq. 12 (prev = -1: the clean image)."""
        ab_t = float(self.alpha_bar[t])
        ab_prev = float(self.alpha_bar[prev]) if prev >= 0 else 1.0
        x0, eps = self._predict_x0(x, t)
        # eq. 16: sigma^2 = eta^2 (1 - ab_prev)/(1 - ab_t) (1 - ab_t/ab_prev); with eta = 1 and prev = t - 1 it is
        # beta_tilde_t, the variance of the true posterior q(x_{t-1} | x_t, x_0): the ancestral sampler.
        var = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        out = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - var, 0.0)) * eps
        return out + math.sqrt(var) * self._noise(x, generator) if var > 0 else out

    def _ancestral_step(self, x: torch.Tensor, t: int, prev: int, *, eta: float,
                        generator: torch.Generator | None) -> torch.Tensor:
        """x_t -> x_{t-1} ~ q(x_{t-1} | x_t, x_0 = the prediction): Ho et al.'s eqs. 6-7."""
        beta, ab_t = float(self.betas[t]), float(self.alpha_bar[t])
        ab_prev = float(self.alpha_bar[t - 1]) if t > 0 else 1.0
        x0, _ = self._predict_x0(x, t)
        mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x
        var = beta * (1 - ab_prev) / (1 - ab_t)  # beta_tilde_t; 0 at t = 0
        return mean + math.sqrt(var) * self._noise(x, generator) if t > 0 else mean


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)  # [-1, 1] -> [0, 1]


def _check_sampler(sampler: str, steps: int, eta: float, num_steps: int) -> tuple[str, int, float]:
    if sampler not in SAMPLERS:
        raise ZooError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "ddpm":  # ancestral sampling visits every step with the posterior's variance
        if steps != num_steps:
            raise ZooError(f"the ddpm (ancestral) sampler takes all {num_steps} steps, got steps={steps}; "
                           "use sampler=ddim for fewer steps")
        return sampler, steps, 1.0
    if not 1 <= steps <= num_steps:
        raise ZooError(f"DDIM steps must be between 1 and num_steps={num_steps}, got {steps}")
    if eta < 0:
        raise ZooError(f"DDIM eta must be >= 0 (0: deterministic, 1: ancestral-like noise), got {eta}")
    return sampler, steps, float(eta)


def _example(batch: int) -> tuple[torch.Tensor, ...]:
    return torch.randn(batch, 1, 28, 28), torch.randint(0, 1000, (batch,))


@register_model(family="diffusion", modality="image", tasks=("generate",), example=_example,
                paper="Ho, Jain & Abbeel 2020; Song, Meng & Ermon 2021 (DDIM)")
def ddpm(
    *,
    in_chans: int = 1,
    img_size: int = 28,
    width: int = 32,
    channel_mults: tuple[int, ...] = (1, 2, 2),
    num_res_blocks: int = 1,
    num_heads: int = 4,
    dropout: float = 0.0,
    num_steps: int = 1000,
    schedule: str = "linear",
    sampler: str = "ddim",
    sample_steps: int = 50,
    eta: float = 0.0,
) -> DDPM:
    """``width``: channels of the first level (times ``channel_mults`` per level: 32/64/64 by default);
    ``num_steps``: T; ``schedule``: linear or cosine; ``sampler``/``sample_steps``/``eta``: how :meth:`DDPM.sample`
    draws by default (ddim, 50 steps, deterministic)."""
    if schedule not in SCHEDULES:
        raise ZooError(f"unknown noise schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    unet = UNet(in_chans=in_chans, width=width, channel_mults=tuple(channel_mults), num_res_blocks=num_res_blocks,
                num_heads=num_heads, dropout=dropout)
    return DDPM(unet=unet, in_chans=in_chans, img_size=img_size, num_steps=num_steps, schedule=schedule,
                sampler=sampler, sample_steps=sample_steps, eta=eta)
