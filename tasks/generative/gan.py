"""Adversarial training of a generator against a discriminator."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from tasks.generative.base import GenerativeTask
from tasks.optim import build_optimizer, build_scheduler
from zoo.registry import ZooError

# With manual optimisation Lightning warns at every step-interval checkpoint that it holds the state
# *after* the optimizer steps. That is the state at ``global_step``, exactly what resuming needs.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)


class GANTask(GenerativeTask):
    """Adversarial training (Goodfellow et al. 2014) with Lightning's manual optimisation.

    Each batch: one discriminator step on real vs generated images (binary cross-entropy), then one
    generator step on the non-saturating loss -log D(G(z)), each under ``toggled_optimizer`` so only its
    player's parameters get gradients. Logs ``train/d_loss``, ``train/g_loss``, ``train/d_real`` and
    ``train/d_fake`` (the discriminator's mean probability of "real"), ``val/fd`` / ``test/fd`` /
    ``test/fd_real`` and sample grids from the fixed noise buffer (saved with the checkpoint).
    ``global_step`` counts optimizer steps: two per batch.
    """

    kinds = ("generate",)
    families = ("gan",)
    monitor = ("val/fd", "min")
    # The discriminator's step leaves the generator out of its graph (the fake batch is detached), and each
    # step has two backward passes: DDP must look for unused parameters on each (tasks.runner turns it on).
    ddp_find_unused_parameters = True

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
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
        if not all(hasattr(self.model, a) for a in ("generator", "discriminator", "latent_dim")):
            raise ZooError(f"task=gan trains models with a generator and a discriminator (gan, dcgan); "
                           f"{self.model_name!r} has none. Pick the task that fits the model.")
        self.automatic_optimization = False
        noise = torch.randn(num_images, self.model.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed_noise", noise)  # saved in checkpoints; moves with the module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        real = self.to_model_input(self.unit_pixels(batch[0]) * 2 - 1)  # [0, 1] -> the generator's tanh range
        opt_g, opt_d = self.optimizers()
        G, D = self.model.generator, self.model.discriminator
        z = torch.randn(len(real), self.model.latent_dim, device=real.device, dtype=real.dtype)
        fake = G(z)  # one generator pass serves both steps: detached for D, through D for G
        ones, zeros = torch.ones(len(real), device=real.device), torch.zeros(len(real), device=real.device)

        with self.toggled_optimizer(opt_d):
            d_real, d_fake = D(real).float(), D(fake.detach()).float()
            d_loss = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()

        with self.toggled_optimizer(opt_g):
            # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))), whose gradient
            # vanishes exactly when D confidently rejects the samples (early in training).
            g_loss = F.binary_cross_entropy_with_logits(D(fake).float(), ones)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()

        schedulers = self.lr_schedulers()
        for s in (schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []):
            s.step()
        self.log_train("train/d_loss", d_loss)
        self.log_train("train/g_loss", g_loss)
        self.log_train("train/d_real", torch.sigmoid(d_real).mean(), prog_bar=False)
        self.log_train("train/d_fake", torch.sigmoid(d_fake).mean(), prog_bar=False)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        real = self.to_model_input(self.unit_pixels(batch[0]) * 2 - 1)
        d_real = torch.sigmoid(self.model.discriminator(real).float()).mean()
        self.log(f"{stage}/d_real", d_real, batch_size=len(real), sync_dist=True)  # D's belief in held-out reals

    def _eval_epoch_end(self, stage: str) -> None:
        self.save_grid("samples", self.model.generate(self.fixed_noise))
        self.log_fd(stage)

    def configure_optimizers(self) -> Any:
        opt_cfg = dict(self.hparams.optimizer or {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)})
        optimizers = [build_optimizer(self.model.generator, **opt_cfg),
                      build_optimizer(self.model.discriminator, **opt_cfg)]
        if not self.hparams.scheduler:
            return optimizers
        # Manual optimisation: Lightning does not step these; training_step does, once per batch.
        total = self.trainer.estimated_stepping_batches
        schedulers = [build_scheduler(o, total_steps=total, **dict(self.hparams.scheduler)) for o in optimizers]
        return optimizers, schedulers
