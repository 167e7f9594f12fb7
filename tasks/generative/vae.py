"""The variational autoencoder's task: the negative ELBO under a Bernoulli likelihood."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from tasks.generative.base import GenerativeTask
from zoo.registry import ZooError

BINARIZE = ("stochastic", "threshold", "none")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in nats, summed over the last dimension: (B, Z) -> (B,)."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)


class ELBO(NamedTuple):
    nelbo: torch.Tensor  # (B,) negative ELBO in nats per image: recon + kl
    recon: torch.Tensor  # (B,) -log p(x | z) at one posterior sample z ~ q(z | x)
    kl: torch.Tensor  # (B,) KL(q(z | x) || p(z)), analytic


class VAETask(GenerativeTask):
    """Train a VAE on the negative ELBO: ``train/loss``, ``{val,test}/nelbo``, ``/recon``, ``/kl`` (nats per image).

    The likelihood is Bernoulli over binarised pixels: ``binarize=stochastic`` draws each pixel as 1 with
    its grey level as probability (a fresh draw every training step; seeded per batch in evaluation),
    the dynamically binarised MNIST of the VAE literature; ``threshold`` sets pixels above 0.5; ``none``
    keeps grey levels, whose binary cross-entropy is then a loss, not a likelihood. The negative ELBO is
    -log p(x | z) summed over all pixels at one sample z ~ q(z | x), plus the analytic KL to the N(0, I)
    prior: an unbiased estimate of the true negative ELBO. Pictures: prior samples from a fixed noise
    buffer, reconstructions under their inputs, latent interpolations between validation images.
    """

    kinds = ("generate", "reconstruct")
    families = ("vae",)
    monitor = ("val/nelbo", "min")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        binarize: str = "stochastic",
        num_images: int = 64,
        fd_samples: int = 5000,
        cache_dir: str | None = None,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images,
                         fd_samples=fd_samples, cache_dir=cache_dir, seed=seed, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        if binarize not in BINARIZE:
            raise ZooError(f"task.binarize={binarize!r}; choose one of {', '.join(BINARIZE)}")
        if not all(hasattr(self.model, a) for a in ("encode", "reparameterize", "decode", "latent_dim")):
            raise ZooError(f"task=vae trains variational autoencoders (vae); {self.model_name!r} is not one. "
                           "Pick the task that fits the model.")
        self.binarize_mode = binarize
        noise = torch.randn(num_images, self.model.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed_noise", noise)  # saved in checkpoints; moves with the module

    def binarize(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.binarize_mode == "stochastic":
            return torch.bernoulli(x, generator=generator)
        if self.binarize_mode == "threshold":
            return (x > 0.5).to(x.dtype)
        return x

    def elbo(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> ELBO:
        """The ELBO's terms per image for (binarised) pixels ``x`` (B, C, H, W)."""
        mu, logvar = self.model.encode(self.to_model_input(x))
        z = self.model.reparameterize(mu, logvar, generator=generator)
        logits = self.model.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1).sum(1)
        kl = gaussian_kl(mu.float(), logvar.float())
        return ELBO(recon + kl, recon, kl)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.elbo(self.binarize(self.unit_pixels(batch[0])))
        loss = terms.nelbo.mean()
        self.log_train("train/loss", loss)
        self.log_train("train/kl", terms.kl.mean(), prog_bar=False)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        g = self.eval_generator(batch[0].device, batch_idx)
        x = self.binarize(self.unit_pixels(batch[0]), generator=g)
        terms = self.elbo(x, generator=g)
        for name, value in terms._asdict().items():
            self.log(f"{stage}/{name}", value.mean(), prog_bar=stage == "val" and name == "nelbo",
                     batch_size=len(x), sync_dist=True)
        self.keep_for_pictures(stage, batch_idx, x=x)

    def _pictures(self, stage: str) -> None:
        self.save_grid("samples", self.model.generate(self.fixed_noise))
        shown = self._shown.pop(stage, None)
        if shown is None:
            return
        x = shown["x"]
        mu, _ = self.model.encode(self.to_model_input(x))
        self.save_grid("recon", self.interleave_rows(x, self.model.generate(mu), nrow=8))  # input / recon rows
        pairs = min(8, len(mu) // 2)  # rows of the interpolation grid
        if pairs:
            steps = torch.linspace(0, 1, 10, device=mu.device, dtype=mu.dtype).view(1, -1, 1)  # (1, 10, 1)
            a, b = mu[:pairs, None], mu[pairs : 2 * pairs, None]  # (P, 1, Z) each
            z = (a * (1 - steps) + b * steps).flatten(0, 1)  # (P, 10, Z) -> (P*10, Z)
            self.save_grid("interpolation", self.model.generate(z), nrow=10)

    def _eval_epoch_end(self, stage: str) -> None:
        self._pictures(stage)
        self.log_fd(stage)
